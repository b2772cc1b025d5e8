/**
 * The vessel commands besides import: apply, rollback, status, prune, inventory.
 */
import { SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { postOrder, resolveGraph } from '../oci/graph.js';
import { isManifestLike } from '../oci/media-types.js';
import { isNotFound } from '../registry/client.js';
import { releaseRepository } from '../bundle/release.js';
import type { Inventory } from '../bundle/since.js';
import { settleAll } from '../util/limit.js';
import { compareSemver } from '../util/semver.js';
import type { DeployOptions } from './deploy.js';
import { readJournal, type Journal } from './journal.js';
import { holderAlive, lockHolder } from './lock.js';
import { Vessel, type VesselOptions } from './session.js';
import { findRelease, releasesOf, StateDir, type HeldRelease, type ReleaseState } from './state.js';
import { imageChanges, rollbackTarget, type ImageChange } from './preview.js';
import { planSwitch, recoverJournal, switchRelease, type SwitchGate, type SwitchResult } from './switch.js';

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

/** Opens the vessel for a command that may change it: read-only for a dry run (and says what a crash left pending). */
async function openFor(options: SwitchOptions, command: string): Promise<Vessel> {
  if (options.dryRun !== true) return openForChange(options, command);
  const vessel = await Vessel.open(options, command, 'read');
  const journal = await readJournal(vessel.dir);
  if (journal !== undefined) vessel.notes.push(`an interrupted ${journal.op} of ${journal.name} ${journal.to.version} is pending; the real run finishes it first`);
  return vessel;
}

/** Asks `options.confirm` about a plan; throws E_DECLINED on no. */
async function confirmed(options: SwitchOptions, plan: SwitchResult | PruneReport, what: string): Promise<void> {
  if (options.confirm === undefined) return;
  if (!(await options.confirm(plan))) throw new SeabagError('E_DECLINED', `${what}: not done, the answer was no; nothing changed`);
}

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

/** Opens the vessel for a change, finishing whatever a crash left first. */
async function openForChange(options: SwitchOptions, command: string): Promise<Vessel> {
  const vessel = await Vessel.open(options, command, 'mutate');
  try {
    const recovered = await recoverJournal(vessel, options.deploy, options.signal);
    if (recovered !== undefined) vessel.notes.push(recovered);
    return vessel;
  } catch (err) {
    await vessel.close();
    throw err;
  }
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
      if (options.dryRun === true || plan.unchanged) return { ...plan, notes: vessel.notes };
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
      if (options.dryRun === true || plan.unchanged) return { ...plan, notes: vessel.notes };
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
    /** For a release that is not active: the images whose digests an apply of it would change. */
    changes?: ImageChange[];
  }[];
  /** Per release name: the version `bundle rollback NAME` would return to (none when nothing ran before). */
  rollback: { name: string; version: string }[];
  pending: (Pick<Journal, 'op' | 'name' | 'to' | 'from' | 'phase' | 'started'> & { running: boolean; pid: number }) | null;
  notes: string[];
}

/**
 * `bundle status`: the truth as state.json has it, and any operation under way. An operation a
 * crash left behind is finished first (when no live command holds the vessel).
 */
export async function vesselStatus(options: SwitchOptions & { name?: string }): Promise<StatusReport> {
  const dir = new StateDir(options.stateDir);
  const notes: string[] = [];
  let journal = await readJournal(dir);
  let running = false;
  if (journal !== undefined) {
    const holder = await lockHolder(dir.lockPath);
    running = holder !== undefined && holderAlive(holder);
    if (!running) {
      try {
        const vessel = await openForChange(options, 'status');
        notes.push(...vessel.notes);
        await vessel.close();
      } catch (err) {
        notes.push(`could not finish the interrupted ${journal.op} of ${journal.name} ${journal.to.version} yet: ${(err as Error).message}`);
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
  const releases = shown
    .map((r) => ({
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
      ...(r.state === 'active' ? {} : { changes: imageChanges(state, r) }),
    }));
  return {
    stateDir: dir.dir,
    ...(state.registry === undefined ? {} : { registry: state.registry.host }),
    ...(state.target === undefined ? {} : { target: state.target }),
    ...(root === undefined ? {} : { trustRoot: { version: root.signed.version, expires: root.signed.expires } }),
    releases,
    rollback,
    pending:
      journal === undefined
        ? null
        : {
            op: journal.op,
            name: journal.name,
            to: journal.to,
            ...(journal.from === undefined ? {} : { from: journal.from }),
            ...(journal.phase === undefined ? {} : { phase: journal.phase }),
            started: journal.started,
            running,
            pid: journal.pid,
          },
    notes,
  };
}

export interface PruneReport {
  removed: { name: string; version: string; digest: Digest }[];
  kept: { name: string; version: string; state: ReleaseState }[];
  manifestsDeleted: number;
  /** Deletes the registry refused (deletes disabled): content stays until GC with deletes on. */
  deleteRefused: boolean;
  notes: string[];
  /** Only the plan: what would be removed (`--dry-run`); nothing was. */
  dryRun?: boolean;
}

/**
 * `bundle prune [--keep N]`: removes releases beyond the newest N of each name (never the active
 * one), deleting their manifests that no kept release uses. Blobs go at the registry's next
 * garbage collection.
 */
export async function pruneReleases(options: SwitchOptions & { keep: number; name?: string }): Promise<PruneReport> {
  if (!Number.isInteger(options.keep) || options.keep < 1) throw new SeabagError('E_USAGE', '--keep must be at least 1');
  const vessel = await openFor(options, `prune --keep ${options.keep}`);
  try {
    const names = [...new Set(vessel.state.releases.map((r) => r.name))].filter((n) => options.name === undefined || n === options.name);
    const removed: HeldRelease[] = [];
    for (const name of names) {
      const held = releasesOf(vessel.state, name).sort((a, b) => compareSemver(b.version, a.version));
      const keep = new Set(held.slice(0, options.keep));
      for (const r of held) if (r.state === 'active') keep.add(r);
      removed.push(...held.filter((r) => !keep.has(r)));
    }
    const kept = vessel.state.releases.filter((r) => !removed.includes(r));
    if (options.dryRun === true || (options.confirm !== undefined && removed.length > 0)) {
      const plan: PruneReport = {
        removed: removed.map((r) => ({ name: r.name, version: r.version, digest: r.digest })),
        kept: kept.map((r) => ({ name: r.name, version: r.version, state: r.state })),
        manifestsDeleted: 0,
        deleteRefused: false,
        notes: vessel.notes,
        dryRun: true,
      };
      if (options.dryRun === true) return plan;
      await confirmed(options, plan, 'prune');
    }
    const keptDigests = new Map<string, Set<string>>();
    for (const r of kept) for (const [repo, digests] of Object.entries(r.content)) for (const d of digests) (keptDigests.get(repo) ?? keptDigests.set(repo, new Set()).get(repo))?.add(d);
    let deleted = 0;
    let refused = false;
    const signal = options.signal;
    const sig = signal ? { signal } : {};
    const remove = async (repository: string, digest: Digest): Promise<void> => {
      if (keptDigests.get(repository)?.has(digest) === true) return;
      const repo = await vessel.repository(repository);
      try {
        await repo.deleteManifest(digest, sig);
        deleted += 1;
      } catch (err) {
        if (err instanceof SeabagError && err.details['status'] === 405) refused = true;
        else if (!isNotFound(err)) throw err;
      }
    };
    for (const r of removed) {
      for (const image of r.images) {
        const repo = await vessel.repository(image.repository);
        let manifests: Digest[] = [image.digest];
        try {
          const root = (await repo.getManifest(image.digest, sig)).desc;
          const graph = await resolveGraph(repo, root, sig);
          manifests = postOrder(graph).filter((n) => isManifestLike(n.desc.mediaType)).map((n) => n.desc.digest).reverse();
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
        for (const m of manifests) await remove(image.repository, m);
      }
      await remove(releaseRepository(r.name), r.digest);
      if (r.fluxDigest !== undefined) await remove(r.manifestsRepository, r.fluxDigest);
    }
    vessel.state.releases = kept;
    await vessel.save();
    return {
      removed: removed.map((r) => ({ name: r.name, version: r.version, digest: r.digest })),
      kept: kept.map((r) => ({ name: r.name, version: r.version, state: r.state })),
      manifestsDeleted: deleted,
      deleteRefused: refused,
      notes: vessel.notes,
    };
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
