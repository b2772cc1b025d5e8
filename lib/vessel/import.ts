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
import { SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseImageManifest, TITLE, type Descriptor } from '../oci/descriptor.js';
import { copyGraph, copyGraphs, postOrder, resolveGraph, type CopyUnit, type GraphNode } from '../oci/graph.js';
import { MemoryStore } from '../oci/memory.js';
import { isImageManifest, isManifestLike, OCI_MANIFEST } from '../oci/media-types.js';
import { foreignRefused, isForeignLayer, probeForeignLayers } from '../registry/foreign.js';
import type { Repository } from '../registry/repository.js';
import { rewriteImageHosts } from '../bundle/k8s.js';
import { resolveBundleInput, verifyParts } from '../bundle/parts.js';
import { openBundle, releaseRepository, versionTag, type BundleLayout, type OpenedBundle } from '../bundle/release.js';
import type { BundleInput } from '../bundle/parts.js';
import type { OpOptions } from '../oci/store.js';
import { admit, omittedBlobs, type Admission } from '../release/admit.js';
import { checkDowngrade, checkTarget, judgementTime } from '../trust/policy.js';
import { advanceTrustedTime } from '../trust/time-reset.js';
import { loadRoot, verifyRootSelf, type TrustRoot } from '../trust/root.js';
import { canonicalBytes } from '../util/canonical.js';
import { Limiter } from '../util/limit.js';
import type { DeployOptions } from './deploy.js';
import { fluxArtifact, type FluxArtifact, type ManifestFile } from './flux.js';
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
  /**
   * Reads the bundle's metadata (admission judges it next). Called while the vessel is being
   * locked, so it must read only what it names, never the vessel; `options.signal` cancels it when
   * the vessel cannot be opened.
   */
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
 * The HEADs and the two tag reads go out together.
 */
async function stillHeld(vessel: Vessel, held: HeldRelease, signal?: AbortSignal): Promise<boolean> {
  const sig = signal ? { signal } : {};
  const tag = versionTag(held.version);
  const [missing, releaseTag, fluxTag] = await Promise.all([
    missingContent(vessel, held, signal),
    vessel.repository(releaseRepository(held.name)).then((r) => r.headTag(tag, sig)),
    held.fluxDigest === undefined ? undefined : vessel.repository(held.manifestsRepository).then((r) => r.headTag(tag, sig)),
  ]);
  return missing.length === 0 && releaseTag === held.digest && (held.fluxDigest === undefined || fluxTag === held.fluxDigest);
}

/**
 * A re-import's HEADs, started while admission still checks the bundle: when the state holds a
 * release under this bundle's release digest, whether the registry still holds all of it. Only
 * the state's own records are read and nothing is written; the answer is used only after
 * admission has passed (alreadyHeld), and dropped (the requests aborted) otherwise.
 */
interface EarlyHeldCheck {
  held: HeldRelease;
  result: Promise<boolean>;
  abort(): void;
}

function startHeldCheck(vessel: Vessel, bundle: OpenedBundle<BundleLayout>, signal: AbortSignal | undefined): EarlyHeldCheck | undefined {
  const held = findRelease(vessel.state, bundle.release.name, bundle.release.version);
  if (held?.digest !== bundle.releaseDesc.digest) return undefined;
  const controller = new AbortController();
  const result = stillHeld(vessel, held, signal === undefined ? controller.signal : AbortSignal.any([signal, controller.signal]));
  // Judged only when awaited, after admission; a refused bundle drops it.
  result.catch(() => undefined);
  return { held, result, abort: () => controller.abort() };
}

/** What admission found, with what the import needs of it. */
interface Admitted {
  accepted: TrustRoot[];
  signingRoot: TrustRoot;
  /** Each image's graph, then each referrer's, with the repository it goes to. */
  units: ContentUnit[];
  referrers: Admission['referrers'];
  /** This vessel's class: the option, else the remembered one. */
  target: string | undefined;
}

type Trust = { root: TrustRoot; first?: TrustRoot };

/**
 * Admit: the one admission path, shared with verify (root chain, signatures, threshold, index,
 * expiry, completeness); the vessel adds its class and downgrade checks.
 */
async function admitBundle(vessel: Vessel, bundle: OpenedBundle<BundleLayout>, trust: Trust, options: ImportOptions): Promise<Admitted> {
  const { release } = bundle;
  const target = options.target ?? vessel.state.target;
  const admission = await admit(bundle.archive, {
    reader: bundle.reader,
    trust: trust.root,
    trustName: trust.first !== undefined && options.trust !== undefined ? options.trust : 'the pinned trust root',
    knownRoots: await vessel.dir.knownRootBytes(),
    now: judgementTime(options.now ?? new Date(), vessel.state.newestTrustedTime),
    policy: (r, d) => {
      checkTarget(r, target);
      checkDowngrade(r, d, releasesOf(vessel.state, r.name), options.allowDowngrade === true);
    },
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const units: ContentUnit[] = [
    ...admission.graphs.map((graph, i) => ({ repository: (release.images[i] as (typeof release.images)[number]).repository, graph })),
    ...admission.referrers.map((r) => ({ repository: r.repository, graph: r.graph })),
  ];
  return { accepted: admission.accepted, signingRoot: admission.root, units, referrers: admission.referrers, target };
}

/**
 * Does the state's record of a held release name everything the admitted bundle needs: each
 * image's and referrer's graph in its repository, the release manifest with its config and layers,
 * and the Flux artifact where it belongs (a record without one is healed the long way)? The
 * presence check HEADs what the record names, so a record that leaves something out (state.json
 * edited or damaged) must send the import the long way, which checks and pushes the bundle's own
 * graph.
 */
function recordCovers(held: HeldRelease, bundle: OpenedBundle<BundleLayout>, admitted: Admitted): boolean {
  const content = new Map(Object.entries(held.content).map(([repo, digests]) => [repo, new Set<string>(digests)]));
  const names = (repository: string, digest: string): boolean => content.get(repository)?.has(digest) === true;
  for (const { repository, graph } of admitted.units) {
    for (const node of postOrder(graph)) if (!names(repository, node.desc.digest)) return false;
  }
  const releaseRepo = releaseRepository(bundle.release.name);
  for (const d of [bundle.releaseDesc, bundle.releaseManifest.config, ...bundle.releaseManifest.layers]) if (!names(releaseRepo, d.digest)) return false;
  return held.manifestsRepository === `${releaseRepo}/manifests` && held.fluxDigest !== undefined && names(held.manifestsRepository, held.fluxDigest);
}

/**
 * Fast path: the same release again, nothing new to pin, and the registry still holds every blob
 * of it: nothing to do (re-reading the graph and rebuilding the Flux artifact would only find
 * that out more slowly). Undefined when there is work.
 */
async function alreadyHeld(vessel: Vessel, bundle: OpenedBundle<BundleLayout>, trust: Trust, admitted: Admitted, options: ImportOptions, early?: EarlyHeldCheck): Promise<ImportResult | undefined> {
  const { release } = bundle;
  const digest = bundle.releaseDesc.digest;
  const held = findRelease(vessel.state, release.name, release.version);
  const nothingNew = admitted.accepted.length === 0 && trust.first === undefined && (options.target === undefined || options.target === vessel.state.target);
  if (held?.digest !== digest || !nothingNew || !recordCovers(held, bundle, admitted)) return undefined;
  const whole = early?.held === held ? await early.result : await stillHeld(vessel, held, options.signal);
  if (!whole) return undefined;
  const total = Object.values(held.content).reduce((sum, digests) => sum + digests.length, 0);
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

/**
 * Pins: the trust roots, the registry and the class are saved together before any push (so a
 * bare re-run after an interrupt needs no flags), then the journal, unless one is still pending
 * (that one waits for its own command). Returns the roots pinned and whether it journalled.
 */
async function pinAndJournal(vessel: Vessel, bundle: OpenedBundle<BundleLayout>, trust: Trust, admitted: Admitted, options: ImportOptions): Promise<{ pinned: TrustRoot[]; journalled: boolean }> {
  const { release } = bundle;
  const pinned = [...(trust.first ? [trust.first] : []), ...admitted.accepted];
  await vessel.dir.pinRoots(pinned);
  rememberRegistry(vessel, options, admitted.target);
  await vessel.save();
  const journalled = (await readJournal(vessel.dir).catch(() => undefined)) === undefined;
  if (journalled) {
    await writeJournal(vessel.dir, {
      op: 'import',
      started: new Date().toISOString(),
      pid: process.pid,
      name: release.name,
      to: { version: release.version, digest: bundle.releaseDesc.digest },
      bundle: bundle.input.name,
      phase: 'pushing',
    });
  }
  vessel.step('import:journal');
  return { pinned, journalled };
}

/** Every blob and manifest the release needs, by repository, as the import records them. */
class ContentRecord {
  readonly byRepository: Record<string, Set<Digest>> = {};
  /** Which of them are manifests or indexes. */
  readonly manifests = new Set<Digest>();

  add(repository: string, graph: GraphNode): void {
    const set = (this.byRepository[repository] ??= new Set());
    for (const n of postOrder(graph)) {
      set.add(n.desc.digest);
      if (isManifestLike(n.desc.mediaType)) this.manifests.add(n.desc.digest);
    }
  }

  get total(): number {
    return Object.values(this.byRepository).reduce((sum, set) => sum + set.size, 0);
  }

  sorted(): Record<string, Digest[]> {
    return Object.fromEntries(Object.entries(this.byRepository).map(([repo, set]) => [repo, [...set].sort()]));
  }
}

/** Where pushes go, and how they are counted: shared by the push and publish phases. */
interface PushContext {
  vessel: Vessel;
  bundle: OpenedBundle<BundleLayout>;
  tracker: PushTracker;
  limiter: Limiter;
  record: ContentRecord;
  options: ImportOptions;
}

/**
 * Push: every image's and referrer's graph, all blobs before any manifest (`copyGraphs`), every
 * child HEADed even under a manifest the registry has (a layer can be lost under it); the blobs
 * a delta leaves out are skipped. Returns how many the registry already held.
 */
async function pushContent(ctx: PushContext, admitted: Admitted): Promise<number> {
  const { vessel, bundle, options } = ctx;
  const omitted = omittedBlobs(bundle.archive, bundle);
  const units: CopyUnit[] = [];
  for (const { repository, graph } of admitted.units) {
    ctx.record.add(repository, graph);
    units.push({ key: repository, dst: ctx.tracker.storage(await vessel.repository(repository)), graph });
  }
  const { existed } = await copyGraphs(bundle.archive, units, {
    limiter: ctx.limiter,
    checkChildren: true,
    skip: (d) => omitted.has(d.digest),
    onBlobsDone: () => vessel.step('import:blobs'),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  vessel.step('import:images');
  await linkReferrers(admitted.referrers, (name) => vessel.repository(name), options.signal ? { signal: options.signal } : {});
  return existed;
}

/** The release and Flux artifacts, ready to push, and where their version tags point now. */
interface Artifacts {
  releaseRepo: Repository;
  releaseGraph: GraphNode;
  fluxRepoName: string;
  fluxRepo: Repository;
  fluxStore: MemoryStore;
  fluxGraph: GraphNode;
  flux: FluxArtifact['manifest'];
  /** The digests `seabag/NAME:VERSION` and the Flux artifact's VERSION point at now. */
  tagsNow: Promise<[Digest | undefined, Digest | undefined]>;
}

/**
 * Prepare, while the images go up: the release artifact's graph, the Flux artifact of its
 * manifests (built here: hosts rewritten, tar, gzip), and where their version tags point now.
 * Nothing is written to the registry.
 */
async function prepareArtifacts(ctx: PushContext): Promise<Artifacts> {
  const { vessel, bundle, options } = ctx;
  const { release } = bundle;
  const sig = options.signal ? { signal: options.signal } : {};
  const releaseRepoName = releaseRepository(release.name);
  const fluxRepoName = `${releaseRepoName}/manifests`;
  const [releaseRepo, fluxRepo] = await Promise.all([vessel.repository(releaseRepoName), vessel.repository(fluxRepoName)]);
  const tag = versionTag(release.version);
  const tagsNow = Promise.all([releaseRepo.headTag(tag, sig), fluxRepo.headTag(tag, sig)]);
  // Awaited once the artifacts are pushed; an import that fails before drops it.
  tagsNow.catch(() => undefined);
  const files: ManifestFile[] = await Promise.all(
    bundle.releaseManifest.layers.map(async (layer) => {
      const title = layer.annotations?.[TITLE] ?? layer.digest;
      return { path: title.replace(/^manifests\//, ''), text: rewriteImageHosts((await bundle.archive.readSmall(layer)).toString('utf8'), vessel.registryHost, title) };
    }),
  );
  const flux = await fluxArtifact(files, {
    ...(release.created === undefined ? {} : { 'org.opencontainers.image.created': release.created }),
    'org.opencontainers.image.source': `seabag://${release.name}`,
    'org.opencontainers.image.revision': `${release.version}@${bundle.releaseDesc.digest}`,
  });
  const fluxStore = new MemoryStore();
  for (const b of [...flux.blobs, flux.manifest]) fluxStore.add(b.desc, b.data);
  const [releaseGraph, fluxGraph] = await Promise.all([resolveGraph(bundle.archive, bundle.releaseDesc), resolveGraph(fluxStore, flux.manifest.desc)]);
  return { releaseRepo, releaseGraph, fluxRepoName, fluxRepo, fluxStore, fluxGraph, flux: flux.manifest, tagsNow };
}

/**
 * Push: the release artifact (`seabag/NAME`) and the Flux artifact of its manifests
 * (`seabag/NAME/manifests`), side by side and beside the images (their own small blobs and
 * manifests, children first; untagged until `publishArtifacts`). Returns how many the registry
 * already held.
 */
async function pushArtifacts(ctx: PushContext, a: Artifacts): Promise<number> {
  const { bundle, options } = ctx;
  let existed = 0;
  const onNode = (_d: Descriptor, outcome: 'pushed' | 'exists' | 'skipped'): void => {
    if (outcome === 'exists') existed += 1;
  };
  // Their own two lanes: a few KiB of requests that must never hold a slot an image's layer waits for.
  const copy = { limiter: new Limiter(2), onNode, checkChildren: true, ...(options.signal ? { signal: options.signal } : {}) };
  await Promise.all([
    copyGraph(bundle.archive, ctx.tracker.storage(a.releaseRepo), a.releaseGraph, copy),
    copyGraph(a.fluxStore, ctx.tracker.storage(a.fluxRepo), a.fluxGraph, copy),
  ]);
  return existed;
}

/**
 * Publish, once the images and the artifacts are in: each artifact tagged with the version (the
 * manifest bytes already in hand, PUT under the tag); never a tag a workload resolves.
 */
async function publishArtifacts(ctx: PushContext, a: Artifacts, existed: number): Promise<{ manifestsRepository: string; fluxDigest: Digest; existed: number }> {
  const { vessel, bundle, options } = ctx;
  const sig = options.signal ? { signal: options.signal } : {};
  ctx.record.add(a.releaseRepo.name, a.releaseGraph);
  ctx.record.add(a.fluxRepoName, a.fluxGraph);
  vessel.step('import:artifacts');
  const tag = versionTag(bundle.release.version);
  const digest = bundle.releaseDesc.digest;
  const [releaseNow, fluxNow] = await a.tagsNow;
  const releaseBytes = a.releaseGraph.bytes ?? (await bundle.archive.readSmall(bundle.releaseDesc));
  await Promise.all([
    fluxNow === a.flux.desc.digest ? undefined : a.fluxRepo.putManifest(tag, a.flux.data, a.flux.desc.mediaType, sig),
    releaseNow === digest ? undefined : a.releaseRepo.putManifest(tag, releaseBytes, OCI_MANIFEST, sig),
  ]);
  vessel.step('import:tagged');
  return { manifestsRepository: a.fluxRepoName, fluxDigest: a.flux.desc.digest, existed };
}

/**
 * Commit: the release enters state.json (staged, or keeping the state it had), in one atomic
 * write: the import's last step. Returns whether the vessel held it before.
 */
async function commitRelease(vessel: Vessel, bundle: OpenedBundle<BundleLayout>, content: ContentRecord, published: { manifestsRepository: string; fluxDigest: Digest }, signingRoot: TrustRoot, options: ImportOptions): Promise<boolean> {
  const { release } = bundle;
  const existing = findRelease(vessel.state, release.name, release.version);
  const held: HeldRelease = {
    name: release.name,
    version: release.version,
    digest: bundle.releaseDesc.digest,
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
    content: content.sorted(),
    manifests: [...content.manifests].sort(),
    manifestsRepository: published.manifestsRepository,
    fluxDigest: published.fluxDigest,
  };
  vessel.state.releases = [...vessel.state.releases.filter((r) => r !== existing), held];
  // A reproducible build vouches for no time (no created). Otherwise capped by the signing root's
  // expiry and the clock plus a day: a release dated 2100 cannot poison it.
  const trusted = advanceTrustedTime(vessel.state.newestTrustedTime, release.created, signingRoot.signed.expires, options.now ?? new Date());
  if (trusted === undefined) delete vessel.state.newestTrustedTime;
  else vessel.state.newestTrustedTime = trusted;
  await vessel.save();
  vessel.step('import:saved');
  return existing !== undefined;
}

/**
 * Imports a bundle (a file, its parts, or an origin such as `oci://`) into the vessel's registry
 * and stages the release, in phases: recover (a pending journal never blocks it), admit, the
 * fast path, pin, push, publish, commit.
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
  // The bundle's metadata is read (a file's archive structure, or the shore's few KiB) while the
  // vessel is locked and recovered: reading touches nothing of the vessel. The vessel's own
  // refusals come first, as they did when one waited for the other, and cancel the reading.
  const reading = new AbortController();
  const opening = (async () => origin.open({ ...options, signal: options.signal === undefined ? reading.signal : AbortSignal.any([options.signal, reading.signal]) }))();
  const dropOpening = async (): Promise<void> => {
    reading.abort();
    await opening.then(
      (b) => b.close(),
      () => undefined,
    );
  };
  opening.catch(() => undefined);
  let vessel: Vessel;
  try {
    // Recover: a pending journal (a switch that failed half-way) never blocks staging another release.
    vessel = await openForChange({ ...options, deploy: options.deploy ?? { deployer: 'registry' } }, `import ${origin.name}`, true);
  } catch (err) {
    await dropOpening();
    throw err;
  }
  try {
    const trust = await trustFor(vessel, options.trust, given).catch(async (err: unknown) => {
      await dropOpening();
      throw err;
    });
    const bundle = await opening;
    const early = startHeldCheck(vessel, bundle, options.signal);
    // A release this vessel does not hold will be pushed: whether its registry answers (and takes
    // our credentials) is asked while admission runs, and judged after it, where it was asked before.
    const pinging = early === undefined ? new AbortController() : undefined;
    const pinged = pinging === undefined ? undefined : vessel.client().then((c) => c.ping(options.signal === undefined ? pinging.signal : AbortSignal.any([options.signal, pinging.signal])));
    pinged?.catch(() => undefined);
    try {
      let admitted: Admitted;
      let done: ImportResult | undefined;
      let judged = false;
      try {
        admitted = await admitBundle(vessel, bundle, trust, options);
        done = await alreadyHeld(vessel, bundle, trust, admitted, options, early);
        judged = done === undefined;
      } finally {
        // Answered, or not wanted: nothing of it may still be running (a refused bundle exits now).
        early?.abort();
        if (!judged) pinging?.abort();
      }
      if (done !== undefined) {
        await origin.staged?.();
        return done;
      }
      // The last checks that can refuse, then nothing but pushes.
      await (pinged ?? (await vessel.client()).ping(options.signal));
      await checkForeignAccepted(vessel, bundle.release.images, admitted.units.slice(0, bundle.release.images.length).map((u) => u.graph), options.signal);
      const tracker = new PushTracker((desc) => vessel.step(isManifestLike(desc.mediaType) ? 'import:manifest' : 'import:blob'));
      for (const r of vessel.state.releases) for (const [repo, digests] of Object.entries(r.content)) tracker.know(repo, digests);
      const omittedFound = await checkOmitted(vessel, bundle, admitted.units, tracker, options.signal);

      // Verified: from here on the vessel changes.
      vessel.step('import:verified');
      const { pinned, journalled } = await pinAndJournal(vessel, bundle, trust, admitted, options);
      // A failure (not a crash) leaves nothing to finish: the journal goes with it.
      let staged = false;
      try {
        const ctx: PushContext = { vessel, bundle, tracker, limiter: new Limiter(options.concurrency ?? 4), record: new ContentRecord(), options };
        // The artifacts are made and pushed while the images go up; a failure there is reported
        // once the images are in, as when they went one after the other.
        const stopArtifacts = new AbortController();
        const aside: PushContext = { ...ctx, options: { ...options, signal: options.signal === undefined ? stopArtifacts.signal : AbortSignal.any([options.signal, stopArtifacts.signal]) } };
        const artifacts = prepareArtifacts(aside);
        const artifactsPushed = artifacts.then((a) => pushArtifacts(aside, a));
        artifactsPushed.catch(() => undefined);
        let existedImages: number;
        try {
          existedImages = await pushContent(ctx, admitted);
        } catch (err) {
          // A failed import writes nothing more: the artifacts stop before the lock goes.
          stopArtifacts.abort();
          await artifactsPushed.catch(() => undefined);
          throw err;
        }
        const published = await publishArtifacts(ctx, await artifacts, await artifactsPushed);
        const heldBefore = await commitRelease(vessel, bundle, ctx.record, published, admitted.signingRoot, options);
        if (journalled) await vessel.dir.removeJournal();
        staged = true;
        await origin.staged?.();
        // Counted per repository and digest, as pushes, mounts and HEADs are.
        return {
          release: { name: bundle.release.name, version: bundle.release.version, digest: bundle.releaseDesc.digest },
          blobs: { total: ctx.record.total, pushed: tracker.stats.pushed, skipped: existedImages + published.existed, mounted: tracker.stats.mounted, omitted: omittedFound },
          bytesPushed: tracker.stats.bytesPushed,
          rootsPinned: pinned.map((r) => r.signed.version),
          alreadyHeld: heldBefore,
          ...(await keepRuntimeConfig(vessel, options)),
          notes: vessel.notes,
        };
      } finally {
        if (!staged && journalled) await vessel.dir.removeJournal().catch(() => undefined);
      }
    } finally {
      await bundle.close();
    }
  } finally {
    await vessel.close();
  }
}
