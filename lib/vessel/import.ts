/**
 * `bundle import`: a bundle from a stick or a download, staged in the vessel's registry without
 * changing what runs.
 *
 * Everything that can refuse the bundle runs before the first byte reaches the registry: parts,
 * archive structure, root chain, signature threshold, expiry, target class, downgrade,
 * completeness, and (for a delta) that the blobs it leaves out are already in the registry. Then
 * blobs stream from their place in the bundle into the registry, hashed as they go, children
 * before parents, manifests by digest; repositories keep their upstream path without the host.
 * No tag a workload could resolve is created or moved: the only tags are the release's own
 * (`seabag/NAME:VERSION`, and the Flux artifact's VERSION).
 */
import { setMaxListeners } from 'node:events';
import { SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseImageManifest, TITLE, type Descriptor } from '../oci/descriptor.js';
import { copyGraph, postOrder, resolveGraph, type GraphNode } from '../oci/graph.js';
import { MemoryStore } from '../oci/memory.js';
import { isImageManifest, isManifestLike, OCI_MANIFEST } from '../oci/media-types.js';
import { foreignRefused, isForeignLayer, probeForeignLayers } from '../registry/foreign.js';
import { rewriteImageHosts } from '../bundle/k8s.js';
import { resolveBundleInput, verifyParts } from '../bundle/parts.js';
import { openBundle, releaseRepository, versionTag, type BundleLayout, type OpenedBundle } from '../bundle/release.js';
import type { BundleInput } from '../bundle/parts.js';
import type { OpOptions } from '../oci/store.js';
import { admit, omittedBlobs } from '../release/admit.js';
import { checkDowngrade, checkTarget, judgementTime } from '../trust/policy.js';
import { advanceTrustedTime } from '../trust/time-reset.js';
import { loadRoot, verifyRootSelf, type TrustRoot } from '../trust/root.js';
import { canonicalBytes } from '../util/canonical.js';
import { Limiter } from '../util/limit.js';
import type { DeployOptions } from './deploy.js';
import { fluxArtifact, type ManifestFile } from './flux.js';
import { readJournal, writeJournal } from './journal.js';
import { openForChange } from './recover.js';
import type { Vessel, VesselOptions } from './session.js';
import { findRelease, releasesOf, type HeldRelease, type RuntimeTargets } from './state.js';
import { refreshRuntimeConfig } from '../runtime/config.js';
import { missingContent } from './switch.js';
import { linkReferrers } from './referrers.js';
import { PushTracker } from './target.js';

export interface ImportOptions extends VesselOptions {
  /** The trust root to pin on a vessel that has none yet. */
  trust?: string;
  /** This vessel's class (also remembered in the state). */
  target?: string;
  allowDowngrade?: boolean;
  /** The clock (tests set it back). */
  now?: Date;
  /** Blob uploads at once (default 4). */
  concurrency?: number;
  /** How to finish an interrupted switch found in the journal. */
  deploy?: DeployOptions;
  /** Where to keep the runtime's mirror settings current from now on (remembered in the state). */
  runtimeConfig?: RuntimeTargets;
}

export interface ImportResult {
  release: { name: string; version: string; digest: Digest };
  blobs: { total: number; pushed: number; skipped: number; mounted: number; omitted: number };
  bytesPushed: number;
  /** Trust root versions newly pinned (the first root, and rotations the bundle carried). */
  rootsPinned: number[];
  /** The vessel already held this release. */
  alreadyHeld: boolean;
  /** The runtime's mirror settings rewritten after the import (`import --runtime-config`). */
  runtimeConfig?: { written: string[]; error?: { code: string; message: string } };
  notes: string[];
}

/**
 * Remembers new runtime config targets, then rewrites every remembered one for what the vessel
 * now holds. A failure here does not undo the import (the release is staged); it is reported.
 */
async function keepRuntimeConfig(vessel: Vessel, options: ImportOptions): Promise<Pick<ImportResult, 'runtimeConfig'>> {
  if (options.runtimeConfig !== undefined) {
    vessel.state.runtimeConfig = { ...vessel.state.runtimeConfig, ...options.runtimeConfig };
    await vessel.save();
  }
  const refreshed = await refreshRuntimeConfig(vessel.state);
  if (refreshed === undefined) return {};
  if (refreshed.error !== undefined) vessel.notes.push(`the runtime's mirror settings were not rewritten: ${refreshed.error.message}`);
  return { runtimeConfig: { written: refreshed.written, ...(refreshed.error === undefined ? {} : { error: { code: refreshed.error.code, message: refreshed.error.message } }) } };
}

/**
 * Where the bundle being imported comes from: a file (or its parts), or the shore registry it was
 * pushed to (`lib/satellite`, whose layout downloads a blob only when the vessel's registry lacks
 * it). Everything after `open` is the same for both.
 */
export interface BundleOrigin {
  /** What to call it in the journal and in messages. */
  readonly name: string;
  /** Reads what the user named before the vessel is locked (a FIFO or a missing part must not hold it). */
  check?(): Promise<void>;
  /** Reads the bundle's metadata (admission judges it next). */
  open(options: OpOptions): Promise<OpenedBundle<BundleLayout>>;
  /** Called once the release is staged (or found already held), while the vessel is still locked. */
  staged?(): Promise<void>;
}

/** A bundle file, its parts file, a part, or their folder. */
export function fileOrigin(path: string): BundleOrigin {
  let input: BundleInput | undefined;
  const resolveInput = async (): Promise<BundleInput> => (input ??= await resolveBundleInput(path));
  return {
    name: path,
    check: async () => {
      await resolveInput();
    },
    async open(options) {
      const resolved = await resolveInput();
      await verifyParts(resolved, options);
      return openBundle(resolved);
    },
  };
}

/** The pinned root, or the one given to pin first. */
async function trustFor(vessel: Vessel, trustPath: string | undefined, given: TrustRoot | undefined): Promise<{ root: TrustRoot; first?: TrustRoot }> {
  const pinned = await vessel.dir.currentRoot();
  if (trustPath === undefined || given === undefined) {
    if (pinned === undefined) {
      throw new SeabagError('E_TRUST_REQUIRED', 'this vessel has no trust root yet', { hint: 'pass --trust trust.json with the first import; later roots arrive inside bundles' });
    }
    return { root: pinned };
  }
  const root = given;
  verifyRootSelf(root, trustPath);
  if (pinned === undefined) return { root, first: root };
  const known = (await vessel.dir.roots()).get(root.signed.version);
  if (known !== undefined && canonicalBytes(known).equals(canonicalBytes(root))) return { root: pinned };
  throw new SeabagError('E_TRUST_MISMATCH', `this vessel already trusts root version ${pinned.signed.version}; --trust ${trustPath} (version ${root.signed.version}) is not one it holds`, {
    hint: 'after the first import, new roots only arrive chained inside bundles (bundle build --trust)',
  });
}

/** Remembers the registry (with how to reach it) and the vessel's class in the state (not yet saved). */
function rememberRegistry(vessel: Vessel, options: ImportOptions, target: string | undefined): void {
  const remembered = vessel.state.registry;
  const same = remembered?.host === vessel.registryHost;
  vessel.state.registry = {
    host: vessel.registryHost,
    ...(options.plainHttp !== undefined ? { plainHttp: options.plainHttp } : same && remembered?.plainHttp !== undefined ? { plainHttp: remembered.plainHttp } : {}),
    ...(options.caFile !== undefined ? { caFile: options.caFile } : same && remembered?.caFile !== undefined ? { caFile: remembered.caFile } : {}),
  };
  if (target !== undefined) vessel.state.target = target;
}

/**
 * Checks that every blob a delta leaves out is in the registry where the release needs it,
 * mounting it there from another repository when the vessel has it elsewhere.
 *
 * @throws E_BLOBS_MISSING listing every blob that is nowhere
 */
async function checkOmitted(vessel: Vessel, bundle: OpenedBundle<BundleLayout>, units: readonly ContentUnit[], tracker: PushTracker, signal?: AbortSignal): Promise<number> {
  const omitted = omittedBlobs(bundle.archive, bundle);
  if (omitted.size === 0) return 0;
  const missing = new Set<string>();
  const found = new Set<string>();
  for (const { repository, graph } of units) {
    const image = { repository };
    const repo = await vessel.repository(image.repository);
    for (const node of postOrder(graph)) {
      if (!omitted.has(node.desc.digest)) continue;
      const opts = signal ? { signal } : {};
      if (await repo.exists(node.desc, opts)) {
        found.add(node.desc.digest);
        continue;
      }
      let mounted = false;
      for (const from of tracker.holders(node.desc.digest, image.repository)) {
        if (await repo.mount(node.desc, from, opts)) {
          mounted = true;
          break;
        }
      }
      if (mounted) found.add(node.desc.digest);
      else missing.add(node.desc.digest);
    }
  }
  if (missing.size > 0) {
    throw new SeabagError('E_BLOBS_MISSING', `this delta bundle leaves out ${missing.size} blob(s) this vessel does not have: ${[...missing].slice(0, 5).join(', ')}${missing.size > 5 ? ', …' : ''}`, {
      details: { missing: [...missing].sort() },
      hint: 'import the full bundle, or ask shore for a delta built --since this vessel\'s current inventory',
    });
  }
  return found.size;
}

/** Content to push into one repository: an image's graph, or a referrer's beside its image. */
interface ContentUnit {
  repository: string;
  graph: GraphNode;
}

/**
 * Before any blob moves: when an image has foreign layers (`urls`), asks the registry whether it
 * takes such manifests (one probe that stores nothing), so a refusing registry costs one request
 * rather than every blob and then a 500.
 *
 * @throws E_FOREIGN_LAYERS_REFUSED
 */
async function checkForeignAccepted(vessel: Vessel, images: readonly { ref: string; repository: string }[], graphs: GraphNode[], signal?: AbortSignal): Promise<void> {
  const byType = new Map<string, { image: { ref: string; repository: string }; layers: Map<string, Descriptor> }>();
  graphs.forEach((graph, i) => {
    const image = images[i];
    if (image === undefined) return;
    for (const node of postOrder(graph)) {
      if (node.bytes === undefined || !isImageManifest(node.desc.mediaType)) continue;
      const foreign = parseImageManifest(node.bytes, node.desc).layers.filter(isForeignLayer);
      if (foreign.length === 0) continue;
      const entry = byType.get(node.desc.mediaType) ?? { image, layers: new Map<string, Descriptor>() };
      for (const l of foreign) entry.layers.set(l.digest, l);
      byType.set(node.desc.mediaType, entry);
    }
  });
  for (const [manifestType, { image, layers }] of byType) {
    const repo = await vessel.repository(image.repository);
    const probe = await probeForeignLayers(repo, manifestType, [...layers.values()], signal ? { signal } : {});
    if (!probe.accepted) throw foreignRefused(vessel.registryHost, image.ref, [...layers.values()], probe);
  }
}

/**
 * Does the registry still hold all of this release: every blob and manifest (HEADed, not assumed
 * from a manifest that names them: a layer can be lost under a manifest) and its version tags?
 */
async function stillHeld(vessel: Vessel, held: HeldRelease, signal?: AbortSignal): Promise<boolean> {
  const sig = signal ? { signal } : {};
  if ((await missingContent(vessel, held, signal)).length > 0) return false;
  const tag = versionTag(held.version);
  if ((await (await vessel.repository(releaseRepository(held.name))).tagDigest(tag, sig)) !== held.digest) return false;
  if (held.fluxDigest !== undefined && (await (await vessel.repository(held.manifestsRepository)).tagDigest(tag, sig)) !== held.fluxDigest) return false;
  return true;
}

/**
 * Imports a bundle (or its parts) into the vessel's registry and stages the release.
 *
 * @throws every rejection code of verify (exit 1), E_DOWNGRADE, E_TARGET_MISMATCH,
 *   E_BLOBS_MISSING, E_TRUST_REQUIRED, E_TRUST_MISMATCH, E_LOCKED, E_REGISTRY*, E_AUTH, E_IO
 */
export async function importBundle(path: string | BundleOrigin, options: ImportOptions): Promise<ImportResult> {
  const origin = typeof path === 'string' ? fileOrigin(path) : path;
  // What the user named is read (regular files only) before the lock is taken: a FIFO or a
  // missing part must not hold the vessel.
  const given = options.trust === undefined ? undefined : (await loadRoot(options.trust)).root;
  await origin.check?.();
  // A pending journal (a switch that failed half-way) never blocks staging another release.
  const vessel = await openForChange({ ...options, deploy: options.deploy ?? { deployer: 'registry' } }, `import ${origin.name}`, true);
  const signal = options.signal;
  const sig = signal ? { signal } : {};
  try {
    const trust = await trustFor(vessel, options.trust, given);

    const bundle = await origin.open(options);
    const { input } = bundle;
    try {
      const { release } = bundle;
      const digest = bundle.releaseDesc.digest;
      const target = options.target ?? vessel.state.target;
      // The one admission path, shared with verify; the vessel adds its class and downgrade checks.
      const { accepted, graphs, referrers, root: signingRoot } = await admit(bundle.archive, {
        reader: bundle.reader,
        trust: trust.root,
        trustName: trust.first !== undefined && options.trust !== undefined ? options.trust : 'the pinned trust root',
        knownRoots: await vessel.dir.knownRootBytes(),
        now: judgementTime(options.now ?? new Date(), vessel.state.newestTrustedTime),
        policy: (r, d) => {
          checkTarget(r, target);
          checkDowngrade(r, d, releasesOf(vessel.state, r.name), options.allowDowngrade === true);
        },
        ...sig,
      });
      // What goes where: each image's graph, then each referrer's beside its image.
      const units: ContentUnit[] = [
        ...graphs.map((graph, i) => ({ repository: (release.images[i] as (typeof release.images)[number]).repository, graph })),
        ...referrers.map((r) => ({ repository: r.repository, graph: r.graph })),
      ];

      // The same release again, with nothing new to pin: when the registry still has all of it,
      // there is nothing to do (re-reading the graph and rebuilding the Flux artifact would only
      // find that out more slowly).
      const held = findRelease(vessel.state, release.name, release.version);
      const nothingNew = accepted.length === 0 && trust.first === undefined && (options.target === undefined || options.target === vessel.state.target);
      if (held?.digest === digest && nothingNew && (await stillHeld(vessel, held, signal))) {
        const total = Object.values(held.content).reduce((sum, digests) => sum + digests.length, 0);
        await origin.staged?.();
        return {
          release: { name: release.name, version: release.version, digest },
          blobs: { total, pushed: 0, skipped: total, mounted: 0, omitted: 0 },
          bytesPushed: 0,
          rootsPinned: [],
          alreadyHeld: true,
          ...(await keepRuntimeConfig(vessel, options)),
          notes: vessel.notes,
        };
      }

      const omitted = omittedBlobs(bundle.archive, bundle);
      const client = await vessel.client();
      await client.ping(signal);
      await checkForeignAccepted(vessel, release.images, graphs, signal);
      const tracker = new PushTracker((desc) => vessel.step(isManifestLike(desc.mediaType) ? 'import:manifest' : 'import:blob'));
      for (const r of vessel.state.releases) for (const [repo, digests] of Object.entries(r.content)) tracker.know(repo, digests);
      const omittedFound = await checkOmitted(vessel, bundle, units, tracker, signal);

      // Verified: from here on the vessel changes.
      vessel.step('import:verified');
      // What the first import pins (trust root, registry, class) is saved together, before any
      // push, so a bare re-run after an interrupt needs no flags.
      const pinned = [...(trust.first ? [trust.first] : []), ...accepted];
      await vessel.dir.pinRoots(pinned);
      rememberRegistry(vessel, options, target);
      await vessel.save();
      // Never over a journal still pending: that one waits for its own command.
      const pendingJournal = await readJournal(vessel.dir).catch(() => undefined);
      if (pendingJournal === undefined) await writeJournal(vessel.dir, {
        op: 'import',
        started: new Date().toISOString(),
        pid: process.pid,
        name: release.name,
        to: { version: release.version, digest },
        bundle: input.name,
        phase: 'pushing',
      });
      vessel.step('import:journal');
      // A failure (not a crash) leaves nothing to finish: the journal goes with it.
      let staged = false;
      try {
        const limiter = new Limiter(options.concurrency ?? 4);
        const content: Record<string, Set<Digest>> = {};
        const record = (repo: string, digests: Iterable<Digest>): void => {
          const set = (content[repo] ??= new Set());
          for (const d of digests) set.add(d);
        };
        let skipped = 0;
        const onNode = (_d: Descriptor, outcome: 'pushed' | 'exists' | 'skipped'): void => {
          if (outcome === 'exists') skipped += 1;
        };

        const totals = new Map<number, { done: number; total: number }>();
        // Named for the image (or artifact) that last moved bytes: what is being worked on now.
        const progress = (key: number, item: string) => (p: { done: number; total?: number }): void => {
          totals.set(key, { done: p.done, total: p.total ?? 0 });
          let done = 0;
          let total = 0;
          for (const v of totals.values()) {
            done += v.done;
            total += v.total;
          }
          options.onProgress?.({ phase: 'push', done, total, item });
        };
        // Two passes: every blob of every image first, then the manifests, so a bad blob anywhere
        // leaves no manifest in the registry. The first failure stops the other images' transfers.
        const present = new Set<string>();
        const stop = new AbortController();
        // One listener per image and referrer copied at once: not a leak.
        setMaxListeners(Math.max(10, units.length + 10), stop.signal);
        const onAbort = (): void => stop.abort(signal?.reason);
        signal?.addEventListener('abort', onAbort, { once: true });
        const pass = async (manifests: boolean): Promise<void> => {
          const results = await Promise.allSettled(
            units.map(async ({ repository, graph }, i) => {
              const image = { repository };
              if (!manifests) record(image.repository, postOrder(graph).map((n) => n.desc.digest));
              const repo = await vessel.repository(image.repository);
              await copyGraph(bundle.archive, tracker.storage(repo), graph, {
                limiter,
                manifests,
                checkChildren: true,
                skip: (d) => omitted.has(d.digest) || (manifests && present.has(`${image.repository} ${d.digest}`)),
                onNode: (d, outcome) => {
                  if (!manifests && outcome !== 'skipped') present.add(`${image.repository} ${d.digest}`);
                  if (outcome === 'exists' && !(manifests && present.has(`${image.repository} ${d.digest}`))) skipped += 1;
                },
                ...(manifests ? {} : { onProgress: progress(i, image.repository) }),
                signal: stop.signal,
              }).catch((err: unknown) => {
                stop.abort(err);
                throw err;
              });
            }),
          );
          const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
          const real = failed.find((e) => !(e instanceof SeabagError && e.code === 'E_ABORTED')) ?? failed[0];
          if (real !== undefined) throw real;
        };
        try {
          await pass(false);
          vessel.step('import:blobs');
          await pass(true);
        } finally {
          signal?.removeEventListener('abort', onAbort);
        }
        vessel.step('import:images');
        await linkReferrers(referrers, (name) => vessel.repository(name), sig);
        // The release artifact, then the Flux artifact of its manifests.
        const releaseRepo = releaseRepository(release.name);
        const releaseGraph = await resolveGraph(bundle.archive, bundle.releaseDesc);
        record(releaseRepo, postOrder(releaseGraph).map((n) => n.desc.digest));
        await copyGraph(bundle.archive, tracker.storage(await vessel.repository(releaseRepo)), releaseGraph, { limiter, onNode, checkChildren: true, onProgress: progress(-1, releaseRepo), ...sig });
        const files: ManifestFile[] = [];
        for (const layer of bundle.releaseManifest.layers) {
          const title = layer.annotations?.[TITLE] ?? layer.digest;
          files.push({ path: title.replace(/^manifests\//, ''), text: rewriteImageHosts((await bundle.archive.readSmall(layer)).toString('utf8'), vessel.registryHost, title) });
        }
        const flux = await fluxArtifact(files, {
          ...(release.created === undefined ? {} : { 'org.opencontainers.image.created': release.created }),
          'org.opencontainers.image.source': `seabag://${release.name}`,
          'org.opencontainers.image.revision': `${release.version}@${digest}`,
        });
        const fluxRepoName = `${releaseRepo}/manifests`;
        const fluxStore = new MemoryStore();
        for (const b of [...flux.blobs, flux.manifest]) fluxStore.add(b.desc, b.data);
        const fluxGraph = await resolveGraph(fluxStore, flux.manifest.desc);
        record(fluxRepoName, postOrder(fluxGraph).map((n) => n.desc.digest));
        const fluxRepo = await vessel.repository(fluxRepoName);
        await copyGraph(fluxStore, tracker.storage(fluxRepo), fluxGraph, { limiter, onNode, checkChildren: true, ...sig });
        const tag = versionTag(release.version);
        if ((await fluxRepo.tagDigest(tag, sig)) !== flux.manifest.desc.digest) await fluxRepo.tag(flux.manifest.desc, tag, sig);
        vessel.step('import:artifacts');
        const relRepo = await vessel.repository(releaseRepo);
        if ((await relRepo.tagDigest(tag, sig)) !== digest) await relRepo.tag({ mediaType: OCI_MANIFEST, digest, size: bundle.releaseDesc.size }, tag, sig);

        vessel.step('import:tagged');
        // Staged: the last step, one atomic write.
        const existing = findRelease(vessel.state, release.name, release.version);
        const held: HeldRelease = {
          name: release.name,
          version: release.version,
          digest,
          state: existing?.state ?? 'staged',
          ...(release.created === undefined ? {} : { created: release.created }),
          importedAt: existing?.importedAt ?? new Date().toISOString(),
          ...(existing?.appliedAt === undefined ? {} : { appliedAt: existing.appliedAt }),
          ...(existing?.failure === undefined ? {} : { failure: existing.failure }),
          ...(release.check === undefined ? {} : { check: release.check }),
          images: release.images.map((i) => ({
            ref: i.ref,
            repository: i.repository,
            ...(i.tag === undefined ? {} : { tag: i.tag }),
            digest: i.digest,
            mediaType: i.mediaType,
            size: i.size,
          })),
          content: Object.fromEntries(Object.entries(content).map(([repo, set]) => [repo, [...set].sort()])),
          manifestsRepository: fluxRepoName,
          fluxDigest: flux.manifest.desc.digest,
        };
        vessel.state.releases = [...vessel.state.releases.filter((r) => r !== existing), held];
        // A reproducible build vouches for no time (no created). Otherwise capped by the signing root's
        // expiry and the clock plus a day: a release dated 2100 cannot poison it.
        const trusted = advanceTrustedTime(vessel.state.newestTrustedTime, release.created, signingRoot.signed.expires, options.now ?? new Date());
        if (trusted === undefined) delete vessel.state.newestTrustedTime;
        else vessel.state.newestTrustedTime = trusted;
        await vessel.save();
        vessel.step('import:saved');
        if (pendingJournal === undefined) await vessel.dir.removeJournal();
        staged = true;
        await origin.staged?.();

        // Counted per repository and digest, as pushes, mounts and HEADs are.
        const total = Object.values(content).reduce((sum, set) => sum + set.size, 0);
        return {
          release: { name: release.name, version: release.version, digest },
          blobs: { total, pushed: tracker.stats.pushed, skipped, mounted: tracker.stats.mounted, omitted: omittedFound },
          bytesPushed: tracker.stats.bytesPushed,
          rootsPinned: pinned.map((r) => r.signed.version),
          alreadyHeld: existing !== undefined,
          ...(await keepRuntimeConfig(vessel, options)),
          notes: vessel.notes,
        };
      } finally {
        if (!staged && pendingJournal === undefined) await vessel.dir.removeJournal().catch(() => undefined);
      }
    } finally {
      await bundle.close();
    }
  } finally {
    await vessel.close();
  }
}
