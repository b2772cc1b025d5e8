/**
 * Opening the vessel for a change, and what to do with an operation a crash or a failure left in
 * the journal: finish it, drop it, or (a switch that failed half-way and could not be undone)
 * leave it to the captain: `bundle recover --abort|--finish`.
 */
import { SeabagError } from '../errors.js';
import type { DeployOptions } from './deploy.js';
import { describeJournal, readJournal, type SwitchJournal, type TagMove } from './journal.js';
import { finishPrune } from './prune.js';
import { Vessel, type VesselOptions } from './session.js';
import { findRelease } from './state.js';
import type { PruneReport } from './prune.js';
import { plannedMoves, revertSwitch, switchIncomplete, switchRelease, undoSwitch, type SwitchResult } from './switch.js';

/**
 * What the captain said about health checks. `check` (a shell command line) wins over the
 * release's own check; the release's check runs only with `releaseCheck`, since it is a command
 * chosen ashore that would run on this host with seabag's rights (see README, "The health gate").
 */
export interface GateOptions {
  check?: string;
  /** Seconds; default 120 for `check`, the release's own timeout for its check. */
  timeoutSeconds?: number;
  releaseCheck?: boolean;
  env?: Record<string, string | undefined>;
}

export interface SwitchOptions extends VesselOptions {
  deploy: DeployOptions;
  /** The health gate of apply and rollback (see `gateFor`). */
  gate?: GateOptions;
  /** Work out what would change and return it, changing nothing (no lock, no recovery, no write). */
  dryRun?: boolean;
  /**
   * Shown the plan (what would move or be removed) before anything changes; resolving false
   * stops with nothing changed (E_DECLINED). Absent: no question (scripts, `--yes`).
   */
  confirm?: (plan: SwitchResult | PruneReport) => Promise<boolean>;
}

/**
 * Finishes what a crashed command left in the journal, and says what it did.
 *
 * - import: it had staged nothing (its state write is its last step): dropped;
 * - apply/rollback: finished, since the captain asked for it and every step can be repeated (a
 *   failure while finishing is undone as any failed switch is);
 * - prune: finished (its releases already left state.json, or are about to);
 * - a switch marked failed (its undo failed) is left for `bundle recover`: E_SWITCH_INCOMPLETE.
 */
export async function recoverJournal(vessel: Vessel, deploy: DeployOptions, signal?: AbortSignal): Promise<string | undefined> {
  const journal = await readJournal(vessel.dir);
  if (journal === undefined) return undefined;
  if (journal.op === 'prune') return finishPrune(vessel, signal);
  const what = `${journal.name} ${journal.to.version}`;
  if (journal.op === 'import') {
    await vessel.dir.removeJournal();
    if (findRelease(vessel.state, journal.name, journal.to.version)?.digest === journal.to.digest) {
      return `an import of ${what} had finished just before it was interrupted; nothing to do`;
    }
    return `an import of ${what} was interrupted (${journal.phase ?? 'early'}); it had staged nothing, and importing the bundle again finishes it, pushing only what is missing`;
  }
  if (journal.failed !== undefined) throw switchIncomplete(journal);
  const target = findRelease(vessel.state, journal.name, journal.to.version);
  if (target === undefined || target.digest !== journal.to.digest) {
    await vessel.dir.removeJournal();
    return `dropped an interrupted ${journal.op} of ${what}: this vessel no longer holds that release`;
  }
  const journalDeploy = { ...deploy, deployer: journal.deploy ?? deploy.deployer };
  if (journal.check !== undefined && journal.phase !== 'checked') {
    // A gated switch counts only once its check has passed; this one never did.
    const back = journal.from === undefined ? undefined : findRelease(vessel.state, journal.name, journal.from.version);
    const reason =
      journal.phase === 'check'
        ? `health check interrupted: seabag (pid ${journal.pid}) stopped while the check ran, so it never passed`
        : `health check never ran: seabag (pid ${journal.pid}) stopped at ${journal.phase ?? 'the start'} of the switch`;
    const moves = journal.moves ?? (await movesBackTo(vessel, journal, signal));
    const how = await revertSwitch(vessel, journal, moves, target, back?.digest === journal.from?.digest ? back : undefined, { code: 'E_HEALTH_CHECK_FAILED', message: reason }, journalDeploy);
    return `the interrupted ${journal.op} of ${what} never passed its health check: ${how}; ${journal.to.version} is marked failed`;
  }
  await switchRelease(vessel, target, journal.op, journalDeploy, signal, journal);
  return `finished the interrupted ${journal.op} of ${what} (it had stopped at ${journal.phase ?? 'the start'})`;
}

/**
 * Opens the vessel for a change (takes the lock), finishing whatever a crash left first. When
 * finishing fails: if the journal is gone (the switch was undone), a note says so and the command
 * goes on; if it stays, the command is refused, unless `tolerate` (imports: a pending journal
 * never blocks staging another release), which only notes it.
 *
 * @throws E_LOCKED, E_SWITCH_INCOMPLETE, and what finishing the journal throws
 */
export async function openForChange(options: SwitchOptions, command: string, tolerate = false): Promise<Vessel> {
  const vessel = await Vessel.open(options, command, 'mutate');
  const pending = await readJournal(vessel.dir).catch(() => undefined);
  try {
    const recovered = await recoverJournal(vessel, options.deploy, options.signal);
    if (recovered !== undefined) vessel.notes.push(recovered);
    return vessel;
  } catch (err) {
    const left = await readJournal(vessel.dir).catch(() => undefined);
    const what = pending === undefined ? 'interrupted operation' : `interrupted ${describeJournal(pending)}`;
    const reason = err instanceof SeabagError ? `${err.code}: ${err.message}` : String(err);
    if (left === undefined && !(err instanceof SeabagError && err.code === 'E_ABORTED')) {
      vessel.notes.push(`could not finish the ${what} (${reason}); it was undone: nothing that runs has changed`);
      return vessel;
    }
    if (tolerate && !(err instanceof SeabagError && err.code === 'E_ABORTED')) {
      vessel.notes.push(`the ${what} is still pending (${reason}); see \`bundle status\``);
      return vessel;
    }
    await vessel.close();
    throw err;
  }
}

/** Moves that put tags back where `from` has them (for a journal written before moves were recorded). */
async function movesBackTo(vessel: Vessel, journal: SwitchJournal, signal?: AbortSignal): Promise<TagMove[]> {
  const from = journal.from === undefined ? undefined : findRelease(vessel.state, journal.name, journal.from.version);
  if (from === undefined) return [];
  return (await plannedMoves(vessel, from, signal)).map((p) => ({ repository: p.repository, tag: p.tag, from: p.to, to: p.from ?? p.to }));
}

/**
 * `bundle recover --abort|--finish`: the captain's decision on what the journal holds. For a
 * switch, abort puts every tag back where it was before the switch, finish completes it. An
 * interrupted import is dropped either way; a prune is finished either way (its releases have
 * already left state.json).
 *
 * @throws E_SWITCH_INCOMPLETE (the abort failed again), E_RELEASE_UNKNOWN (finish of a release no
 *   longer held), E_LOCKED, and what `switchRelease` throws
 */
export async function recoverVessel(decision: 'abort' | 'finish', options: SwitchOptions): Promise<{ message: string; notes: string[] }> {
  const vessel = await Vessel.open(options, `recover --${decision}`, 'mutate');
  try {
    const journal = await readJournal(vessel.dir);
    if (journal === undefined) return { message: 'nothing to recover: no operation is pending', notes: vessel.notes };
    if (journal.op !== 'apply' && journal.op !== 'rollback') {
      return { message: (await recoverJournal(vessel, options.deploy, options.signal)) ?? 'nothing to recover', notes: vessel.notes };
    }
    const what = `${journal.op} of ${journal.name} ${journal.to.version}`;
    if (decision === 'finish') {
      const target = findRelease(vessel.state, journal.name, journal.to.version);
      if (target === undefined || target.digest !== journal.to.digest) {
        throw new SeabagError('E_RELEASE_UNKNOWN', `cannot finish the ${what}: this vessel no longer holds that release`, { hint: 'use `bundle recover --abort`' });
      }
      const { failed: _failed, ...resumed } = journal;
      await switchRelease(vessel, target, journal.op, { ...options.deploy, deployer: journal.deploy ?? options.deploy.deployer }, options.signal, resumed);
      return { message: `finished the ${what}`, notes: vessel.notes };
    }
    const moves = journal.moves ?? (await movesBackTo(vessel, journal, options.signal));
    const undo = await undoSwitch(vessel, moves);
    if (!undo.ok) {
      throw new SeabagError('E_SWITCH_INCOMPLETE', `could not abort the ${what}: ${undo.error ?? 'unknown'}`, {
        details: { moves },
        hint: 'fix what the message names (is the registry up?) and run `bundle recover --abort` again',
      });
    }
    await vessel.dir.removeJournal();
    const left = undo.left.length > 0 ? `; new tag(s) ${undo.left.map((m) => `${m.repository}:${m.tag}`).join(', ')} stay` : '';
    return { message: `aborted the ${what}: ${undo.restored.length} tag(s) put back${left}; nothing that runs has changed`, notes: vessel.notes };
  } finally {
    await vessel.close();
  }
}
