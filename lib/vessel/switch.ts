/**
 * `apply` and `rollback`: the captain's switch between held releases. The images' own tags move
 * first, then (with `--deploy kubectl`) the manifests are applied and rolled out, then the single
 * commit point moves: `seabag/NAME:current` (and the Flux artifact's `current`).
 *
 * The journal records the switch, with every tag it will move and where that tag pointed before,
 * before anything moves. A crash at any step is finished by the next command (the captain asked
 * for the switch and every step can be repeated). A failure is undone: the tags that moved go back
 * and the journal goes; if the undo fails too the journal stays, marked failed, and waits for
 * `bundle recover --abort|--finish`.
 */
import { SeabagError, throwIfAborted } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseImageManifest, TITLE } from '../oci/descriptor.js';
import { readVerified } from '../oci/verify.js';
import { rewriteImageHosts } from '../bundle/k8s.js';
import { releaseRepository } from '../bundle/release.js';
import { describeFailure, runHealthCheck, type HealthCheck } from '../runtime/check.js';
import { settleAll } from '../util/limit.js';
import { kubectlDeploy, type DeployOptions } from './deploy.js';
import type { ManifestFile } from './flux.js';
import { writeJournal, type SwitchJournal, type TagMove } from './journal.js';
import type { Vessel } from './session.js';
import { findRelease, releasesOf, type HeldRelease } from './state.js';

export type { TagMove } from './journal.js';

export interface SwitchResult {
  op: 'apply' | 'rollback';
  release: { name: string; version: string; digest: Digest };
  from?: { version: string; digest: Digest };
  tags: TagMove[];
  deployed?: { applied: string[]; rolledOut: string[] };
  /** The health check that gated the switch, when one ran (it passed, or this is not returned). */
  check?: { source: HealthCheck['source']; command: string[]; output: string };
  /** The check that gates (or, in a plan, would gate) the switch. */
  gate?: { source: HealthCheck['source']; command: string[]; timeoutSeconds: number };
  /** It was already the active release and every tag already pointed at it: nothing was written. */
  unchanged: boolean;
  /** Only the plan: what would move (`--dry-run`, or the captain said no); nothing moved. */
  dryRun?: boolean;
}

export const CURRENT_TAG = 'current';

function sig(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

/**
 * What the registry lacks of a held release: every blob and manifest it needs, HEADed in the
 * repository that must have it. Empty when the release is complete.
 *
 * A state that records which digests are manifests (`HeldRelease.manifests`) lets each be asked
 * where it lives, in one HEAD; one that does not (or a digest the record places wrongly, which
 * that HEAD does not find or a registry answers with an error) is asked as a blob and then as a
 * manifest before it is called missing, so the record only saves requests.
 */
export async function missingContent(vessel: Vessel, release: HeldRelease, signal?: AbortSignal): Promise<string[]> {
  const manifests = release.manifests === undefined ? undefined : new Set<string>(release.manifests);
  const checks: (() => Promise<string | undefined>)[] = [];
  for (const [repository, digests] of Object.entries(release.content)) {
    for (const digest of digests) {
      checks.push(async () => {
        const repo = await vessel.repository(repository);
        const where = async (kind: 'blobs' | 'manifests'): Promise<boolean> => {
          try {
            return await repo.holds(digest, kind, { ...sig(signal), retry: false });
          } catch (err) {
            if (signal?.aborted === true) throw err;
            return false;
          }
        };
        const there = (manifests !== undefined && (await where(manifests.has(digest) ? 'manifests' : 'blobs'))) || (await repo.has(digest, sig(signal)));
        return there ? undefined : `${repository}@${digest}`;
      });
    }
  }
  return (await settleAll(checks, 8)).filter((m): m is string => m !== undefined).sort();
}

/**
 * Checks that everything the release needs to run is still in the registry: every blob, not only
 * the manifests (a layer lost to disk trouble or a careless garbage collection fails the pull on
 * the node, after the switch).
 *
 * @throws E_BLOBS_MISSING naming what is gone
 */
export async function checkHeld(vessel: Vessel, release: HeldRelease, signal?: AbortSignal): Promise<void> {
  const missing = await missingContent(vessel, release, signal);
  if (missing.length > 0) {
    throw new SeabagError('E_BLOBS_MISSING', `${release.name} ${release.version} is no longer complete in the registry: ${missing.length} missing (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''})`, {
      details: { missing },
      hint: 'import its bundle again: the import checks every blob and pushes only what is missing',
    });
  }
}

/** The release's manifests and rendered device profiles, read back from the registry, hosts rewritten. */
export async function releaseFiles(vessel: Vessel, release: HeldRelease, signal?: AbortSignal): Promise<ManifestFile[]> {
  const repo = await vessel.repository(releaseRepository(release.name));
  const { bytes, desc } = await repo.getManifest(release.digest, sig(signal));
  const manifest = parseImageManifest(bytes, desc, 'release manifest');
  const files: ManifestFile[] = [];
  for (const layer of manifest.layers) {
    const text = (await readVerified(await repo.fetch(layer, sig(signal)), layer, 'release layer')).toString('utf8');
    const title = layer.annotations?.[TITLE] ?? layer.digest;
    files.push({ path: title.replace(/^manifests\//, ''), text: rewriteImageHosts(text, vessel.registryHost, title) });
  }
  return files;
}

/** Points `tag` at the manifest `digest` the repository holds (GET it by digest, PUT it under the tag). */
async function pointTag(vessel: Vessel, repository: string, tag: string, digest: Digest, signal?: AbortSignal): Promise<void> {
  const repo = await vessel.repository(repository);
  const { desc, bytes } = await repo.getManifest(digest, sig(signal));
  await repo.putManifest(tag, bytes, desc.mediaType, sig(signal));
}

/** The tags a switch to `release` moves: the images' own tags, then the commit point(s). */
function wantedTags(release: HeldRelease): { repository: string; tag: string; to: Digest; commit: boolean }[] {
  const out: { repository: string; tag: string; to: Digest; commit: boolean }[] = [];
  for (const image of release.images) if (image.tag !== undefined) out.push({ repository: image.repository, tag: image.tag, to: image.digest, commit: false });
  out.push({ repository: releaseRepository(release.name), tag: CURRENT_TAG, to: release.digest, commit: true });
  if (release.fluxDigest !== undefined) out.push({ repository: release.manifestsRepository, tag: CURRENT_TAG, to: release.fluxDigest, commit: true });
  return out;
}

/**
 * The tags a switch to `release` would move now, each with where it points today: images' tags
 * first, the commit point(s) last. Empty when every tag already names the release. Reads only.
 *
 * @throws E_REGISTRY*, E_AUTH
 */
export async function plannedMoves(vessel: Vessel, release: HeldRelease, signal?: AbortSignal): Promise<(TagMove & { commit: boolean })[]> {
  const plan: (TagMove & { commit: boolean })[] = [];
  for (const want of wantedTags(release)) {
    throwIfAborted(signal);
    const now = await (await vessel.repository(want.repository)).tagDigest(want.tag, sig(signal));
    if (now === want.to) continue;
    plan.push({ repository: want.repository, tag: want.tag, ...(now === undefined ? {} : { from: now }), to: want.to, commit: want.commit });
  }
  return plan;
}

function asMove(m: TagMove): TagMove {
  return { repository: m.repository, tag: m.tag, ...(m.from === undefined ? {} : { from: m.from }), to: m.to };
}

/**
 * What `switchRelease` would move, read from the registry and changing nothing: the images' tags
 * that point elsewhere, then the commit point. The same list the switch itself reports.
 *
 * @throws E_BLOBS_MISSING, E_REGISTRY*
 */
export async function planSwitch(vessel: Vessel, target: HeldRelease, op: 'apply' | 'rollback', signal?: AbortSignal): Promise<SwitchResult> {
  const current = releasesOf(vessel.state, target.name).find((r) => r.state === 'active');
  await checkHeld(vessel, target, signal);
  const tags = (await plannedMoves(vessel, target, signal)).map(asMove);
  const from = current !== target ? current : undefined;
  return {
    op,
    release: { name: target.name, version: target.version, digest: target.digest },
    ...(from === undefined ? {} : { from: { version: from.version, digest: from.digest } }),
    tags,
    unchanged: current === target && tags.length === 0,
    dryRun: true,
  };
}

/** Marks `target` active and `from` (what ran before) previous; any other active or previous one is staged. */
function markActive(vessel: Vessel, target: HeldRelease, from: HeldRelease | undefined): void {
  if (target.state === 'active' && from === undefined) return;
  for (const r of releasesOf(vessel.state, target.name)) {
    if (r === target) continue;
    if (r === from) r.state = 'previous';
    else if (r.state === 'active' || (r.state === 'previous' && from !== undefined)) r.state = 'staged';
  }
  target.state = 'active';
  target.appliedAt = new Date().toISOString();
  delete target.failure;
}

export interface UndoOutcome {
  /** Every moved tag points where it did before (or, for a tag the switch created, at the target still: see `left`). */
  ok: boolean;
  /** Tags put back. */
  restored: TagMove[];
  /** Tags the switch created that a registry cannot remove without deleting the manifest: they stay. */
  left: TagMove[];
  /** Why the undo failed, when it did. */
  error?: string;
}

/**
 * Undoes a switch: puts every tag it moved back where it pointed before, last moved first. Not
 * cancellable (it runs after an interrupt). A tag the switch created is left (Distribution cannot
 * untag without deleting the manifest, and nothing could have resolved it before the switch).
 */
export async function undoSwitch(vessel: Vessel, moves: readonly TagMove[]): Promise<UndoOutcome> {
  const restored: TagMove[] = [];
  const left: TagMove[] = [];
  try {
    for (const move of [...moves].reverse()) {
      const repo = await vessel.repository(move.repository);
      const now = await repo.tagDigest(move.tag);
      if (move.from === undefined) {
        if (now !== undefined) left.push(move);
        continue;
      }
      if (now === move.from) continue;
      await pointTag(vessel, move.repository, move.tag, move.from);
      restored.push(move);
      vessel.step('switch:undo');
    }
    return { ok: true, restored, left };
  } catch (err) {
    return { ok: false, restored, left, error: err instanceof Error ? err.message : String(err) };
  }
}

/** Words for where the tags of an interrupted or failed switch stand. */
function movesText(moves: readonly TagMove[]): string {
  return moves.map((m) => `${m.repository}:${m.tag}`).join(', ');
}

/**
 * A switch failed (not a crash): undo it. Clean undo: the journal goes and the original error is
 * thrown, saying nothing changed. Failed undo: the journal stays, marked failed, and
 * E_SWITCH_INCOMPLETE says exactly which tags may have moved.
 */
async function failSwitch(vessel: Vessel, journal: SwitchJournal, moves: readonly TagMove[], err: unknown): Promise<never> {
  const undo = await undoSwitch(vessel, moves);
  const what = `${journal.op} of ${journal.name} ${journal.to.version}`;
  const code = err instanceof SeabagError ? err.code : 'E_INTERNAL';
  const reason = err instanceof Error ? err.message : String(err);
  if (undo.ok) {
    await vessel.dir.removeJournal();
    const changed = undo.left.length === 0 ? 'nothing that runs has changed' : `nothing that runs has changed (new tag(s) ${movesText(undo.left)} stay, naming ${journal.to.version})`;
    if (err instanceof SeabagError) {
      err.details['undone'] = true;
      err.details['changed'] = changed;
      throw err;
    }
    throw new SeabagError('E_INTERNAL', `${what} failed: ${reason}; it was undone: ${changed}`, { cause: err, details: { undone: true, changed } });
  }
  const failed: SwitchJournal = { ...journal, moves: [...moves], failed: { code, error: reason, undo: undo.error ?? 'unknown', at: new Date().toISOString() } };
  await writeJournal(vessel.dir, failed);
  const changed = `the ${what} is half done: tags ${movesText(moves)} may name either release`;
  throw new SeabagError('E_SWITCH_INCOMPLETE', `${what} failed (${reason}) and undoing it failed too (${undo.error ?? 'unknown'}); ${changed}`, {
    cause: err,
    details: { failedWith: code, undo: undo.error, moves, changed },
    hint: '`bundle status` shows where each tag points; `bundle recover --abort` puts them back, `bundle recover --finish` completes the switch',
  });
}

/** A health check gating a switch, and the environment it runs in. */
export interface SwitchGate {
  check: HealthCheck;
  env: Record<string, string | undefined>;
}

/** The environment a check runs in: the caller's, and which switch it judges. */
function checkEnv(gate: SwitchGate, target: HeldRelease, from: HeldRelease | undefined, registry: string): Record<string, string | undefined> {
  return { ...gate.env, SEABAG_RELEASE: target.name, SEABAG_VERSION: target.version, SEABAG_PREVIOUS: from?.version ?? '', SEABAG_REGISTRY: registry };
}

/** The states of one name's releases, to put back when a switch is reverted. */
export type StateSnapshot = Map<HeldRelease, Pick<HeldRelease, 'state' | 'appliedAt' | 'failure'>>;

function snapshotStates(vessel: Vessel, name: string): StateSnapshot {
  return new Map(releasesOf(vessel.state, name).map((r) => [r, { state: r.state, ...(r.appliedAt === undefined ? {} : { appliedAt: r.appliedAt }), ...(r.failure === undefined ? {} : { failure: r.failure }) }]));
}

/**
 * Switches back after `target` did not pass (its rollout or its health check failed): the tags go
 * back where they were (`moves`), the earlier release's manifests are applied again (kubectl),
 * the releases' states are put back (`before`, or: `back` active) and `target` is marked failed
 * with `reason`. Every step can be repeated, so a crash here is finished the same way by the next
 * command. Says how it went.
 *
 * @throws E_SWITCH_INCOMPLETE when the tags cannot be put back (the journal stays, marked failed)
 */
export async function revertSwitch(
  vessel: Vessel,
  journal: SwitchJournal,
  moves: readonly TagMove[],
  target: HeldRelease,
  back: HeldRelease | undefined,
  reason: { code: string; message: string },
  deploy: DeployOptions,
  before?: StateSnapshot,
): Promise<string> {
  const undo = await undoSwitch(vessel, moves);
  if (!undo.ok) {
    await writeJournal(vessel.dir, { ...journal, moves: [...moves], failed: { code: reason.code, error: reason.message, undo: undo.error ?? 'unknown', at: new Date().toISOString() } });
    throw new SeabagError('E_SWITCH_INCOMPLETE', `${journal.op} of ${target.name} ${target.version} failed (${reason.message}) and switching back failed too (${undo.error ?? 'unknown'})`, {
      details: { failedWith: reason.code, undo: undo.error, moves, changed: `the ${journal.op} of ${target.name} ${target.version} is half done: tags ${movesText(moves)} may name either release` },
      hint: '`bundle status` shows where each tag points; `bundle recover --abort` puts them back, `bundle recover --finish` completes the switch',
    });
  }
  let how = back === undefined || back === target ? 'there was no earlier release to switch back to: its tags stay where they are' : `switched back to ${back.version}`;
  if (back !== undefined && back !== target && deploy.deployer === 'kubectl') {
    try {
      await kubectlDeploy(await releaseFiles(vessel, back), deploy);
    } catch (err) {
      how = `switching back to ${back.version} failed: ${(err as Error).message}`;
    }
  }
  if (before !== undefined) {
    for (const [r, was] of before) {
      r.state = was.state;
      if (was.appliedAt === undefined) delete r.appliedAt;
      else r.appliedAt = was.appliedAt;
      if (was.failure === undefined) delete r.failure;
      else r.failure = was.failure;
    }
  } else if (back !== undefined && back !== target) {
    for (const r of releasesOf(vessel.state, target.name)) if (r.state === 'active') r.state = 'staged';
    back.state = 'active';
  }
  target.state = 'failed';
  target.failure = reason.message;
  await vessel.save();
  vessel.step('switch:reverted');
  await vessel.dir.removeJournal();
  return how;
}

/**
 * Switches `name` to `target`. A repeated apply of the active release, with every tag already
 * in place, writes nothing at all. With a gate, the check runs once the switch is committed; if
 * it fails or times out, the switch is reverted (`revertSwitch`) and E_HEALTH_CHECK_FAILED thrown.
 * The journal carries the check from the start, so a crash before the check has passed is
 * finished by switching back.
 *
 * @throws E_BLOBS_MISSING (before anything moves), E_ROLLOUT_FAILED and E_HEALTH_CHECK_FAILED
 *   (after switching back), E_SWITCH_INCOMPLETE (failed, and the undo failed), E_ABORTED,
 *   E_REGISTRY*, E_TOOL: each failure after the first move is undone first
 */
export async function switchRelease(
  vessel: Vessel,
  target: HeldRelease,
  op: 'apply' | 'rollback',
  deploy: DeployOptions,
  signal?: AbortSignal,
  resumed?: SwitchJournal,
  gate?: SwitchGate,
): Promise<SwitchResult> {
  const current = releasesOf(vessel.state, target.name).find((r) => r.state === 'active');
  const fromRelease = resumed?.from !== undefined ? findRelease(vessel.state, target.name, resumed.from.version) : current !== target ? current : undefined;
  await checkHeld(vessel, target, signal);
  const plan = await plannedMoves(vessel, target, signal);
  const result = (tags: TagMove[], extra: Pick<SwitchResult, 'deployed' | 'check'> = {}): SwitchResult => ({
    op,
    release: { name: target.name, version: target.version, digest: target.digest },
    ...(fromRelease === undefined ? {} : { from: { version: fromRelease.version, digest: fromRelease.digest } }),
    tags,
    ...extra,
    ...(gate === undefined ? {} : { gate: { source: gate.check.source, command: gate.check.command, timeoutSeconds: gate.check.timeoutSeconds } }),
    unchanged: resumed === undefined && current === target && tags.length === 0,
  });
  if (resumed === undefined && current === target && plan.length === 0 && deploy.deployer !== 'kubectl' && gate === undefined) return result([]);

  const before = snapshotStates(vessel, target.name);
  // What an undo restores: the moves as first planned (a resumed switch already moved some).
  const moves: TagMove[] = resumed?.moves ?? plan.map(asMove);
  const journal: SwitchJournal = {
    op,
    started: resumed?.started ?? new Date().toISOString(),
    pid: process.pid,
    name: target.name,
    to: { version: target.version, digest: target.digest },
    ...(fromRelease === undefined ? {} : { from: { version: fromRelease.version, digest: fromRelease.digest } }),
    deploy: deploy.deployer,
    moves,
    phase: 'tags',
    ...(gate === undefined ? {} : { check: { source: gate.check.source, command: gate.check.command, timeoutSeconds: gate.check.timeoutSeconds } }),
  };
  await writeJournal(vessel.dir, journal);
  vessel.step('switch:journal');
  const tags: TagMove[] = [];
  let deployed: SwitchResult['deployed'];
  try {
    for (const move of plan.filter((m) => !m.commit)) {
      throwIfAborted(signal);
      await pointTag(vessel, move.repository, move.tag, move.to, signal);
      tags.push(asMove(move));
      vessel.step('switch:tag');
    }
    if (deploy.deployer === 'kubectl') {
      await writeJournal(vessel.dir, { ...journal, phase: 'deploy' });
      try {
        deployed = await kubectlDeploy(await releaseFiles(vessel, target, signal), deploy, signal);
      } catch (err) {
        if (err instanceof SeabagError && err.code === 'E_ABORTED') throw err;
        const reason = err instanceof Error ? err.message : String(err);
        const how = await revertSwitch(vessel, journal, moves, target, fromRelease, { code: 'E_ROLLOUT_FAILED', message: reason }, deploy, before);
        throw new SeabagError('E_ROLLOUT_FAILED', `${op} of ${target.name} ${target.version} failed: ${reason}; ${how}`, {
          cause: err,
          details: { release: target.version, revertedTo: fromRelease?.version, undone: true },
          hint: 'see `bundle status`; the failed release stays held and can be applied again once fixed',
        });
      }
    }
    await writeJournal(vessel.dir, { ...journal, phase: 'commit' });
    for (const move of plan.filter((m) => m.commit)) {
      throwIfAborted(signal);
      await pointTag(vessel, move.repository, move.tag, move.to, signal);
      tags.push(asMove(move));
      vessel.step('switch:commit');
    }
    markActive(vessel, target, fromRelease);
    await vessel.save();
  } catch (err) {
    if (err instanceof SeabagError && (err.code === 'E_ROLLOUT_FAILED' || err.code === 'E_SWITCH_INCOMPLETE')) throw err;
    return failSwitch(vessel, journal, moves, err);
  }
  vessel.step('switch:saved');
  const checked = gate === undefined ? undefined : await gateSwitch(vessel, journal, moves, target, fromRelease, current === target, gate, deploy, before, signal);
  await vessel.dir.removeJournal();
  return result(tags, { ...(deployed === undefined ? {} : { deployed }), ...(checked === undefined ? {} : { check: checked }) });
}

/**
 * Runs the health check of a committed switch. Passed: the journal says `checked`. Failed or
 * timed out: the switch is reverted and E_HEALTH_CHECK_FAILED thrown. Interrupted: the journal
 * stays at `check`, and the next command switches back (the check never passed).
 */
async function gateSwitch(
  vessel: Vessel,
  journal: SwitchJournal,
  moves: readonly TagMove[],
  target: HeldRelease,
  fromRelease: HeldRelease | undefined,
  wasActive: boolean,
  gate: SwitchGate,
  deploy: DeployOptions,
  before: StateSnapshot,
  signal?: AbortSignal,
): Promise<SwitchResult['check']> {
  await writeJournal(vessel.dir, { ...journal, phase: 'check' });
  vessel.step('switch:check');
  let outcome;
  try {
    outcome = await runHealthCheck(gate.check, checkEnv(gate, target, fromRelease, vessel.registryHost), {
      ...(signal === undefined ? {} : { signal }),
      onStarted: () => vessel.step('check:running'),
    });
  } catch (err) {
    if (err instanceof SeabagError) {
      err.details['changed'] = `${target.name} ${target.version} was switched to, but its health check did not finish; the next seabag command switches back`;
    }
    throw err;
  }
  if (!outcome.passed) {
    const reason = describeFailure(outcome, gate.check);
    let how: string;
    if (wasActive && fromRelease === undefined) {
      // It was already running before this command: there is nothing to switch back to, and
      // nothing this command changed to undo.
      await vessel.dir.removeJournal();
      how = 'it was already active, so nothing was switched';
    } else {
      how = await revertSwitch(vessel, journal, moves, target, fromRelease, { code: 'E_HEALTH_CHECK_FAILED', message: reason }, deploy, before);
    }
    throw new SeabagError('E_HEALTH_CHECK_FAILED', `${journal.op} of ${target.name} ${target.version} failed its ${reason}; ${how}`, {
      details: {
        release: target.version,
        revertedTo: fromRelease?.version,
        source: gate.check.source,
        exitCode: outcome.exitCode,
        signal: outcome.signal,
        timedOut: outcome.timedOut,
        output: outcome.output,
      },
      hint: 'see `bundle status`; the failed release stays held and can be applied again once fixed',
    });
  }
  await writeJournal(vessel.dir, { ...journal, phase: 'checked' });
  vessel.step('switch:checked');
  return { source: gate.check.source, command: gate.check.command, output: outcome.output };
}

/** The error for a switch that failed half-way and waits for the captain. */
export function switchIncomplete(journal: SwitchJournal): SeabagError {
  return new SeabagError(
    'E_SWITCH_INCOMPLETE',
    `an earlier ${journal.op} of ${journal.name} ${journal.to.version} failed half-way (${journal.failed?.error ?? 'interrupted'}) and could not be undone (${journal.failed?.undo ?? ''})`,
    {
      details: { pending: { op: journal.op, name: journal.name, to: journal.to, ...(journal.from ? { from: journal.from } : {}), moves: journal.moves ?? [] } },
      hint: '`bundle status` shows where each tag points; `bundle recover --abort` puts them back, `bundle recover --finish` completes the switch',
    },
  );
}

