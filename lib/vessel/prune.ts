/**
 * `bundle prune`: removes releases beyond the newest N of each name. The active release and the
 * previous one (the rollback target) stay unless `force` (the active one always stays).
 *
 * Crash-safe by a journal: the plan (releases leaving, manifests to delete) is written first,
 * then state.json without those releases, then the manifests are deleted. A crash or failure at
 * any step leaves the journal, and the next command finishes it (every step can be repeated).
 * Blobs go at the registry's next garbage collection.
 */
import { SeabagError, throwIfAborted } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { postOrder, resolveGraph } from '../oci/graph.js';
import { isManifestLike } from '../oci/media-types.js';
import { isNotFound } from '../registry/client.js';
import { releaseRepository } from '../bundle/release.js';
import { compareSemver } from '../util/semver.js';
import { readJournal, writeJournal, type PruneJournal } from './journal.js';
import type { Vessel } from './session.js';
import { releasesOf, type HeldRelease, type ReleaseState, type VesselState } from './state.js';

export interface PruneChoice {
  /** Releases to keep per name, newest first (at least 1). */
  keep: number;
  /** Only releases of this name. */
  name?: string;
  /** Also remove the previous release (the rollback target). The active one always stays. */
  force?: boolean;
}

export interface PrunePlan {
  remove: { name: string; version: string; digest: Digest; state: ReleaseState }[];
  keep: { name: string; version: string; digest: Digest; state: ReleaseState; why: 'newest' | 'active' | 'previous' | 'other name' }[];
}

/**
 * What a prune would remove and keep, from the state alone (pure; for `--dry-run`, for listing
 * before asking, and for the prune itself).
 *
 * @throws E_USAGE when `keep` is not a whole number of at least 1
 */
export function planPrune(state: VesselState, choice: PruneChoice): PrunePlan {
  if (!Number.isInteger(choice.keep) || choice.keep < 1) throw new SeabagError('E_USAGE', `--keep must be a whole number of at least 1, not ${String(choice.keep)}`);
  const plan: PrunePlan = { remove: [], keep: [] };
  const names = [...new Set(state.releases.map((r) => r.name))].sort();
  for (const name of names) {
    const held = releasesOf(state, name).sort((a, b) => compareSemver(b.version, a.version));
    held.forEach((r, i) => {
      const why = choice.name !== undefined && name !== choice.name ? 'other name' : i < choice.keep ? 'newest' : r.state === 'active' ? 'active' : r.state === 'previous' && choice.force !== true ? 'previous' : undefined;
      if (why === undefined) plan.remove.push({ name: r.name, version: r.version, digest: r.digest, state: r.state });
      else plan.keep.push({ name: r.name, version: r.version, digest: r.digest, state: r.state, why });
    });
  }
  return plan;
}

export interface PruneReport {
  removed: { name: string; version: string; digest: Digest }[];
  /** What stays, and why (`previous`: the rollback target, which `force` would remove). */
  kept: { name: string; version: string; state: ReleaseState; why?: PrunePlan['keep'][number]['why'] }[];
  manifestsDeleted: number;
  /** Deletes the registry refused (deletes disabled): content stays until GC with deletes on. */
  deleteRefused: boolean;
  notes: string[];
  /** Only the plan: what would be removed (`--dry-run`); nothing was. */
  dryRun?: boolean;
}

function isRemoved(journal: PruneJournal, r: HeldRelease): boolean {
  return journal.removed.some((x) => x.name === r.name && x.version === r.version && x.digest === r.digest);
}

/** Every manifest (images' child manifests too) of the leaving releases that no staying release uses. */
async function manifestsToDelete(vessel: Vessel, leaving: readonly HeldRelease[], staying: readonly HeldRelease[], signal?: AbortSignal): Promise<PruneJournal['deletes']> {
  const sig = signal ? { signal } : {};
  const used = new Set<string>();
  for (const r of staying) for (const [repo, digests] of Object.entries(r.content)) for (const d of digests) used.add(`${repo} ${d}`);
  const out: PruneJournal['deletes'] = [];
  const add = (repository: string, digest: Digest): void => {
    const key = `${repository} ${digest}`;
    if (used.has(key)) return;
    used.add(key);
    out.push({ repository, digest });
  };
  for (const r of leaving) {
    for (const image of r.images) {
      const repo = await vessel.repository(image.repository);
      let manifests: Digest[] = [image.digest];
      try {
        const root = (await repo.getManifest(image.digest, sig)).desc;
        const graph = await resolveGraph(repo, root, sig);
        // Parents first: an index goes before the manifests it names.
        manifests = postOrder(graph).filter((n) => isManifestLike(n.desc.mediaType)).map((n) => n.desc.digest).reverse();
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      for (const m of manifests) add(image.repository, m);
    }
    add(releaseRepository(r.name), r.digest);
    if (r.fluxDigest !== undefined) add(r.manifestsRepository, r.fluxDigest);
  }
  return out;
}

/** Runs (or re-runs) a prune journal: state first, then the deletes, then the journal goes. */
async function runPrune(vessel: Vessel, journal: PruneJournal, signal?: AbortSignal): Promise<{ deleted: number; refused: boolean }> {
  const staying = vessel.state.releases.filter((r) => !isRemoved(journal, r));
  if (staying.length !== vessel.state.releases.length) {
    vessel.state.releases = staying;
    await vessel.save();
  }
  vessel.step('prune:saved');
  // A release imported since the plan was made may use some of them again.
  const used = new Set(staying.flatMap((r) => Object.entries(r.content).flatMap(([repo, ds]) => ds.map((d) => `${repo} ${d}`))));
  let deleted = 0;
  let refused = false;
  for (const { repository, digest } of journal.deletes) {
    throwIfAborted(signal);
    if (used.has(`${repository} ${digest}`)) continue;
    try {
      await (await vessel.repository(repository)).deleteManifest(digest, signal ? { signal } : {});
      deleted += 1;
    } catch (err) {
      if (err instanceof SeabagError && err.details['status'] === 405) refused = true;
      else if (!isNotFound(err)) throw err;
    }
    vessel.step('prune:delete');
  }
  await vessel.dir.removeJournal();
  return { deleted, refused };
}

/**
 * Prunes an open (locked) vessel. `only`, when given, limits the removal to these release
 * digests (what the captain was shown and confirmed); the plan is made again under the lock.
 *
 * @throws E_USAGE, E_REGISTRY* (the journal then stays, and the next command finishes it), E_ABORTED
 */
export async function pruneVessel(vessel: Vessel, choice: PruneChoice & { only?: readonly Digest[] }, signal?: AbortSignal): Promise<PruneReport> {
  const plan = planPrune(vessel.state, choice);
  const leaving = vessel.state.releases.filter((r) => plan.remove.some((x) => x.digest === r.digest && x.name === r.name && x.version === r.version) && (choice.only === undefined || choice.only.includes(r.digest)));
  const staying = vessel.state.releases.filter((r) => !leaving.includes(r));
  const report = (deleted: number, refused: boolean): PruneReport => ({
    removed: leaving.map((r) => ({ name: r.name, version: r.version, digest: r.digest })),
    kept: staying.map((r) => {
      const why = plan.keep.find((k) => k.digest === r.digest && k.name === r.name && k.version === r.version)?.why;
      return { name: r.name, version: r.version, state: r.state, ...(why === undefined ? {} : { why }) };
    }),
    manifestsDeleted: deleted,
    deleteRefused: refused,
    notes: vessel.notes,
  });
  if (leaving.length === 0) return report(0, false);
  const journal: PruneJournal = {
    op: 'prune',
    started: new Date().toISOString(),
    pid: process.pid,
    removed: leaving.map((r) => ({ name: r.name, version: r.version, digest: r.digest })),
    deletes: await manifestsToDelete(vessel, leaving, staying, signal),
    phase: 'deletes',
  };
  throwIfAborted(signal);
  await writeJournal(vessel.dir, journal);
  vessel.step('prune:journal');
  try {
    const { deleted, refused } = await runPrune(vessel, journal, signal);
    return report(deleted, refused);
  } catch (err) {
    if (err instanceof SeabagError) {
      err.details['changed'] = `nothing that runs has changed; ${journal.removed.map((r) => `${r.name} ${r.version}`).join(', ')} left the vessel's state, and the next seabag command finishes deleting their manifests`;
    }
    throw err;
  }
}

/** Finishes a prune a crash or failure left in the journal; says what it did. */
export async function finishPrune(vessel: Vessel, signal?: AbortSignal): Promise<string> {
  const journal = await readJournal(vessel.dir);
  if (journal?.op !== 'prune') return 'nothing to finish';
  const { deleted } = await runPrune(vessel, journal, signal);
  return `finished the interrupted prune of ${journal.removed.map((r) => `${r.name} ${r.version}`).join(', ')} (${deleted} manifest(s) deleted)`;
}
