/**
 * The vessel commands besides import: apply, rollback, status, prune, recover, inventory.
 */
import { SeabagError } from '../errors.js';
import { sha256Digest, type Digest } from '../oci/digest.js';
import type { Inventory } from '../bundle/since.js';
import { settleAll } from '../util/limit.js';
import { describeJournal, readJournal, type Journal, type TagMove } from './journal.js';
import { holderAlive, lockHolder } from './lock.js';
import { planPrune, pruneVessel, type PruneChoice, type PrunePlan, type PruneReport } from './prune.js';
import { openForChange, type GateOptions, type SwitchOptions } from './recover.js';
import { Vessel, type VesselOptions } from './session.js';
import { checkNotReplayed, verifyTimeReset } from '../trust/time-reset.js';
import { findRelease, releasesOf, StateDir, type HeldRelease, type ReleaseState } from './state.js';
import { imageChanges, rollbackTarget, type ImageChange } from './preview.js';
import { missingContent, planSwitch, switchRelease, type SwitchGate, type SwitchResult } from './switch.js';

export type { SwitchOptions } from './recover.js';
export type { PruneChoice, PrunePlan, PruneReport } from './prune.js';

/** Opens the vessel for a command that may change it: read-only for a dry run (and says what a crash left pending). */
async function openFor(options: SwitchOptions, command: string): Promise<Vessel> {
  if (options.dryRun !== true) return openForChange(options, command);
  const vessel = await Vessel.open(options, command, 'read');
  const journal = await readJournal(vessel.dir);
  if (journal !== undefined) vessel.notes.push(`an interrupted ${describeJournal(journal)} is pending; the real run finishes it first`);
  return vessel;
}

/** A plan as the result: marked `dryRun` only when it was one (an apply of the active release changes nothing either way). */
function asked(plan: SwitchResult, dryRun: boolean): SwitchResult {
  if (dryRun) return plan;
  const { dryRun: _plan, ...result } = plan;
  return result;
}

/** Asks `options.confirm` about a plan; throws E_DECLINED on no. */
async function confirmed(options: SwitchOptions, plan: SwitchResult | PruneReport, what: string): Promise<void> {
  if (options.confirm === undefined) return;
  if (!(await options.confirm(plan))) throw new SeabagError('E_DECLINED', `${what}: not done, the answer was no; nothing changed`);
}

export type { GateOptions } from './recover.js';

/** Picks the check that gates a switch to `target`, and says why another did not run. */
export function gateFor(target: HeldRelease, gate: GateOptions | undefined, notes: string[]): SwitchGate | undefined {
  const env = gate?.env ?? {};
  const own = target.check;
  const shown = (argv: string[]): string => argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  if (gate?.check !== undefined) {
    if (own !== undefined) notes.push(`${target.name} ${target.version} carries its own health check (${shown(own.command)}); --check replaces it`);
    return { check: { command: ['/bin/sh', '-c', gate.check], timeoutSeconds: gate.timeoutSeconds ?? 120, source: 'cli' }, env };
  }
  if (own === undefined) {
    if (gate?.releaseCheck === true) notes.push(`${target.name} ${target.version} carries no health check of its own; nothing was checked`);
    return undefined;
  }
  if (gate?.releaseCheck !== true) {
    notes.push(`${target.name} ${target.version} carries a signed health check that was not run: ${shown(own.command)} (pass --release-check to run it, or --check CMD for your own)`);
    return undefined;
  }
  return { check: { command: own.command, timeoutSeconds: gate.timeoutSeconds ?? own.timeoutSeconds, source: 'release' }, env };
}

function heldList(releases: HeldRelease[]): string {
  return releases.length === 0 ? 'none' : releases.map((r) => `${r.version} (${r.state})`).join(', ');
}

/**
 * `bundle apply NAME@VERSION`.
 *
 * @throws E_RELEASE_UNKNOWN (not held), and what `switchRelease` throws
 */
export async function applyRelease(name: string, version: string, options: SwitchOptions): Promise<SwitchResult & { notes: string[] }> {
  const vessel = await openFor(options, `apply ${name}@${version}`);
  try {
    const target = findRelease(vessel.state, name, version);
    if (target === undefined) {
      throw new SeabagError('E_RELEASE_UNKNOWN', `this vessel does not hold ${name} ${version}; it holds ${heldList(releasesOf(vessel.state, name))}`, {
        hint: 'import its bundle first (bundle import FILE)',
      });
    }
    const gate = gateFor(target, options.gate, vessel.notes);
    if (options.dryRun === true || options.confirm !== undefined) {
      const plan = await planSwitch(vessel, target, 'apply', options.signal);
      if (gate !== undefined) plan.gate = { source: gate.check.source, command: gate.check.command, timeoutSeconds: gate.check.timeoutSeconds };
      if (options.dryRun === true || plan.unchanged) return { ...asked(plan, options.dryRun === true), notes: vessel.notes };
      await confirmed(options, plan, `apply ${name} ${version}`);
    }
    const result = await switchRelease(vessel, target, 'apply', options.deploy, options.signal, undefined, gate);
    return { ...result, notes: vessel.notes };
  } finally {
    await vessel.close();
  }
}

/**
 * `bundle rollback NAME [--to VERSION]`: back to the previous release, or to one named. No
 * downgrade check: that guards imports, not the captain.
 *
 * @throws E_RELEASE_UNKNOWN, E_NOT_FOUND (nothing to go back to), and what `switchRelease` throws
 */
export async function rollbackRelease(name: string, to: string | undefined, options: SwitchOptions): Promise<SwitchResult & { notes: string[] }> {
  const vessel = await openFor(options, `rollback ${name}${to ? ` --to ${to}` : ''}`);
  try {
    const held = releasesOf(vessel.state, name);
    let target: HeldRelease | undefined;
    if (to !== undefined) {
      target = findRelease(vessel.state, name, to);
      if (target === undefined) throw new SeabagError('E_RELEASE_UNKNOWN', `this vessel does not hold ${name} ${to}; it holds ${heldList(held)}`);
    } else {
      target = held.find((r) => r.state === 'previous');
      if (target === undefined) {
        throw new SeabagError('E_NOT_FOUND', `there is no previous release of ${name} to roll back to; it holds ${heldList(held)}`, { hint: 'name one with --to VERSION' });
      }
    }
    const gate = gateFor(target, options.gate, vessel.notes);
    if (options.dryRun === true || options.confirm !== undefined) {
      const plan = await planSwitch(vessel, target, 'rollback', options.signal);
      if (gate !== undefined) plan.gate = { source: gate.check.source, command: gate.check.command, timeoutSeconds: gate.check.timeoutSeconds };
      if (options.dryRun === true || plan.unchanged) return { ...asked(plan, options.dryRun === true), notes: vessel.notes };
      await confirmed(options, plan, `rollback of ${name} to ${target.version}`);
    }
    const result = await switchRelease(vessel, target, 'rollback', options.deploy, options.signal, undefined, gate);
    return { ...result, notes: vessel.notes };
  } finally {
    await vessel.close();
  }
}

export interface StatusReport {
  stateDir: string;
  registry?: string;
  target?: string;
  trustRoot?: { version: number; expires: string };
  releases: {
    name: string;
    version: string;
    state: ReleaseState;
    digest: Digest;
    created?: string;
    importedAt: string;
    appliedAt?: string;
    failure?: string;
    /** Its own signed health check (run only with `--release-check`). */
    check?: { command: string[]; timeoutSeconds: number };
    images: number;
    /** Is every blob and manifest it needs in the registry? null when the registry could not be asked. */
    complete: boolean | null;
    /** What the registry lacks of it (`repository@digest`). */
    missing?: string[];
    /** For a release that is not active: the images whose digests an apply of it would change. */
    changes?: ImageChange[];
  }[];
  /** Per release name: the version `bundle rollback NAME` would return to (none when nothing ran before). */
  rollback: { name: string; version: string }[];
  pending:
    | {
        op: Journal['op'];
        /** `apply of awareness 1.5.0`, `prune of awareness 1.2.0`. */
        what: string;
        name?: string;
        to?: { version: string; digest: Digest };
        from?: { version: string; digest: Digest };
        phase?: string;
        started: string;
        running: boolean;
        pid: number;
        /** A switch that failed and could not be undone: what it failed with; `bundle recover` decides. */
        failed?: { code: string; error: string; undo: string };
        /** For a switch: each tag it moves, and where it points now (undefined: missing; null: unknown). */
        tags?: (TagMove & { now: Digest | undefined | null })[];
      }
    | null;
  notes: string[];
}

/**
 * `bundle status`: the truth as state.json has it, whether the registry still holds every
 * release completely, and any operation under way. An operation a crash left behind is finished
 * first (when no live command holds the vessel); a switch that failed half-way is left for
 * `bundle recover`, and its tags are shown as they stand.
 */
export async function vesselStatus(options: SwitchOptions & { name?: string }): Promise<StatusReport> {
  const dir = new StateDir(options.stateDir);
  const notes: string[] = [];
  let journal = await readJournal(dir);
  let running = false;
  if (journal !== undefined) {
    const holder = await lockHolder(dir.lockPath);
    running = holder !== undefined && holderAlive(holder);
    const waits = journal.op !== 'prune' && journal.op !== 'import' && journal.failed !== undefined;
    if (!running && !waits) {
      try {
        const vessel = await openForChange(options, 'status');
        notes.push(...vessel.notes);
        await vessel.close();
      } catch (err) {
        notes.push(`could not finish the interrupted ${describeJournal(journal)} yet: ${(err as Error).message}`);
      }
      journal = await readJournal(dir);
    }
  }
  const state = await dir.load();
  const root = await dir.currentRoot().catch(() => undefined);
  if (options.name !== undefined && !state.releases.some((r) => r.name === options.name)) {
    const names = [...new Set(state.releases.map((r) => r.name))].sort();
    throw new SeabagError('E_RELEASE_UNKNOWN', `this vessel holds no release named ${options.name}; ${names.length === 0 ? 'it holds none yet' : `it holds ${names.join(', ')}`}`, {
      details: { name: options.name, held: names },
      hint: names.length === 0 ? 'stage one with bundle import FILE' : `run bundle status ${names[0]}, or bundle status for all`,
    });
  }
  const shown = state.releases.filter((r) => options.name === undefined || r.name === options.name);
  const rollback = [...new Set(shown.map((r) => r.name))].flatMap((name) => {
    const back = rollbackTarget(state, name);
    return back === undefined ? [] : [{ name, version: back.version }];
  });
  // One look at the registry: every blob of every release shown, and the tags of a pending switch.
  let complete: Map<HeldRelease, string[]> | undefined;
  let tags: NonNullable<StatusReport['pending']>['tags'];
  const vessel = shown.length > 0 || journal !== undefined ? await Vessel.open({ ...options, retry: { retries: 1, minDelayMs: 100, maxDelayMs: 200 } }, 'status', 'read').catch(() => undefined) : undefined;
  try {
    if (vessel !== undefined && (options.registry ?? state.registry?.host) !== undefined) {
      try {
        complete = new Map();
        for (const r of shown) complete.set(r, await missingContent(vessel, r, options.signal));
      } catch (err) {
        complete = undefined;
        notes.push(`could not check the releases in the registry: ${(err as Error).message}`);
      }
      if (journal !== undefined && journal.op !== 'prune' && journal.op !== 'import' && journal.moves !== undefined) {
        tags = [];
        for (const m of journal.moves) {
          const now = await (await vessel.repository(m.repository)).tagDigest(m.tag, options.signal ? { signal: options.signal } : {}).catch(() => null);
          tags.push({ ...m, now });
        }
      }
    }
  } finally {
    await vessel?.close();
  }
  const releases = shown.map((r) => {
    const missing = complete?.get(r);
    return {
      name: r.name,
      version: r.version,
      state: r.state,
      digest: r.digest,
      ...(r.created === undefined ? {} : { created: r.created }),
      importedAt: r.importedAt,
      ...(r.appliedAt === undefined ? {} : { appliedAt: r.appliedAt }),
      ...(r.failure === undefined ? {} : { failure: r.failure }),
      ...(r.check === undefined ? {} : { check: r.check }),
      images: r.images.length,
      complete: missing === undefined ? null : missing.length === 0,
      ...(missing !== undefined && missing.length > 0 ? { missing } : {}),
      ...(r.state === 'active' ? {} : { changes: imageChanges(state, r) }),
    };
  });
  return {
    stateDir: dir.dir,
    ...(state.registry === undefined ? {} : { registry: state.registry.host }),
    ...(state.target === undefined ? {} : { target: state.target }),
    ...(root === undefined ? {} : { trustRoot: { version: root.signed.version, expires: root.signed.expires } }),
    releases,
    rollback,
    pending: journal === undefined ? null : pendingOf(journal, running, tags),
    notes,
  };
}

function pendingOf(journal: Journal, running: boolean, tags: NonNullable<StatusReport['pending']>['tags']): NonNullable<StatusReport['pending']> {
  const base = { op: journal.op, what: describeJournal(journal), ...(journal.phase === undefined ? {} : { phase: journal.phase }), started: journal.started, running, pid: journal.pid };
  if (journal.op === 'prune') return base;
  return {
    ...base,
    name: journal.name,
    to: journal.to,
    ...(journal.op !== 'import' && journal.from !== undefined ? { from: journal.from } : {}),
    ...(journal.op !== 'import' && journal.failed !== undefined ? { failed: { code: journal.failed.code, error: journal.failed.error, undo: journal.failed.undo } } : {}),
    ...(tags === undefined ? {} : { tags }),
  };
}

/**
 * What `bundle prune` would remove now, without changing anything (for listing and asking).
 *
 * @throws E_USAGE, E_STATE_INVALID
 */
export async function prunePlan(options: VesselOptions & PruneChoice): Promise<PrunePlan> {
  return planPrune(await new StateDir(options.stateDir).load(), options);
}

/**
 * `bundle prune [--keep N] [--force]`: removes releases beyond the newest N of each name, never
 * the active one nor (without `force`) the previous one, deleting their manifests that no kept
 * release uses; journalled, so a crash at any step is finished by the next command. Blobs go at
 * the registry's next garbage collection. `only` limits it to the releases the captain confirmed.
 *
 * @throws E_USAGE, E_LOCKED, E_REGISTRY*, E_ABORTED
 */
export async function pruneReleases(options: SwitchOptions & PruneChoice & { only?: readonly Digest[] }): Promise<PruneReport> {
  planPrune({ apiVersion: 'seabag.dev/v1', kind: 'VesselState', releases: [] }, options);
  const vessel = await openFor(options, `prune --keep ${options.keep}${options.force === true ? ' --force' : ''}`);
  try {
    if (options.dryRun === true || options.confirm !== undefined) {
      const plan = planPrune(vessel.state, options);
      const report: PruneReport = {
        removed: plan.remove.map((r) => ({ name: r.name, version: r.version, digest: r.digest })),
        kept: plan.keep.map((k) => ({ name: k.name, version: k.version, state: k.state, why: k.why })),
        manifestsDeleted: 0,
        deleteRefused: false,
        notes: vessel.notes,
        dryRun: true,
      };
      if (options.dryRun === true) return report;
      if (report.removed.length > 0) await confirmed(options, report, 'prune');
    }
    return await pruneVessel(vessel, options, options.signal);
  } finally {
    await vessel.close();
  }
}

/**
 * `bundle inventory`: what the vessel holds (releases, and every digest of theirs the registry
 * really has), small enough to mail ashore for `bundle build --since`.
 */
export async function vesselInventory(options: VesselOptions): Promise<Inventory> {
  const vessel = await Vessel.open(options, 'inventory', 'read');
  try {
    const checks: (() => Promise<string | undefined>)[] = [];
    const seen = new Set<string>();
    for (const r of vessel.state.releases) {
      for (const [repository, digests] of Object.entries(r.content)) {
        for (const d of digests) {
          if (seen.has(d)) continue;
          seen.add(d);
          checks.push(async () => ((await (await vessel.repository(repository)).has(d, options.signal ? { signal: options.signal } : {})) ? d : undefined));
        }
      }
    }
    const present = (await settleAll(checks, 8)).filter((d): d is string => d !== undefined);
    return {
      apiVersion: 'seabag.dev/v1',
      kind: 'Inventory',
      created: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      ...(vessel.state.target === undefined ? {} : { target: vessel.state.target }),
      releases: vessel.state.releases.map((r) => ({ name: r.name, version: r.version, digest: r.digest, state: r.state })),
      blobs: present.sort() as Digest[],
    };
  } finally {
    await vessel.close();
  }
}

export interface SetTimeResult {
  previous: string | undefined;
  time: string;
  rootVersion: number;
  notes: string[];
}

/**
 * `bundle trust set-time`: sets the vessel's trusted time from a statement signed by a threshold
 * of the root keys of its newest pinned root (lib/trust/time-reset.ts), under the vessel lock.
 * The only way the trusted time moves back.
 *
 * @throws E_TRUST_REQUIRED (no root pinned), E_TRUST_INVALID, E_ROOT_CHAIN_INVALID, E_EXPIRED,
 *   E_THRESHOLD_UNMET, E_LOCKED, E_DOWNGRADE (the statement, or a newer one, was applied already)
 */
export async function setTrustedTime(statement: Uint8Array, options: VesselOptions & { now?: Date }): Promise<SetTimeResult> {
  const vessel = await Vessel.open(options, 'trust set-time', 'mutate');
  try {
    const root = await vessel.dir.currentRoot();
    if (root === undefined) throw new SeabagError('E_TRUST_REQUIRED', 'this vessel has no trust root yet, so no trusted time to reset');
    const now = options.now ?? new Date();
    const { time, notAfter } = verifyTimeReset(statement, root, now);
    const digest = sha256Digest(Buffer.from(statement));
    checkNotReplayed(digest, notAfter, vessel.state.lastTimeReset);
    const previous = vessel.state.newestTrustedTime;
    vessel.state.newestTrustedTime = time.toISOString().replace(/\.\d{3}Z$/, 'Z');
    // Saved with the time it set, in the same atomic write of state.json.
    vessel.state.lastTimeReset = { digest, notAfter: isoSecondsOf(notAfter), time: vessel.state.newestTrustedTime, appliedAt: isoSecondsOf(now) };
    await vessel.save();
    return { previous, time: vessel.state.newestTrustedTime, rootVersion: root.signed.version, notes: vessel.notes };
  } finally {
    await vessel.close();
  }
}

function isoSecondsOf(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
