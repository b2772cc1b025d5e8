/**
 * `bundle build`: release spec → one signed, content-addressed, reproducible bundle.
 *
 * Images are resolved first (manifests and configs only, held in memory and verified), then
 * manifests are pinned and device profiles rendered, the release document and its manifest made
 * and signed, and finally the archive is written in the order DESIGN.md gives: `oci-layout`,
 * `index.json`, small metadata blobs, then layers, each layer read once from its source and
 * verified as it passes into the bundle.
 */
import { isoSeconds, parseTime } from '../util/time.js';
import { SeabagError } from '../errors.js';
import { checkSplit } from './parts.js';
import { sha256Digest, type Digest } from '../oci/digest.js';
import { formatPlatform, MAX_METADATA_SIZE, parseImageManifest, REF_NAME, TITLE, type Descriptor, type Platform } from '../oci/descriptor.js';
import { postOrder, type GraphNode } from '../oci/graph.js';
import { LAYOUT_VERSION } from '../oci/layout.js';
import {
  EMPTY_DIGEST,
  EMPTY_JSON,
  DSSE_ENVELOPE,
  isImageManifest,
  isManifestLike,
  OCI_EMPTY,
  OCI_INDEX,
  OCI_MANIFEST,
  SEABAG_DEVICE_PROFILE,
  SEABAG_K8S_MANIFESTS,
  SEABAG_RELEASE,
  SEABAG_RELEASE_CONFIG,
  SEABAG_SIGNATURE,
  SEABAG_TRUST_CHAIN,
  SEABAG_TRUST_ROOT,
} from '../oci/media-types.js';
import { formatReference, referenceName, type Reference } from '../oci/reference.js';
import type { OpOptions, ReadOnlyStorage } from '../oci/store.js';
import { readVerified } from '../oci/verify.js';
import type { CredentialStore } from '../registry/auth.js';
import type { RegistryClient } from '../registry/client.js';
import { throwProblems } from '../schema.js';
import { IN_TOTO_PAYLOAD_TYPE, signEnvelope } from '../trust/dsse.js';
import type { SigningKey } from '../trust/keys.js';
import { releaseStatement } from '../trust/verify.js';
import { canonicalBytes } from '../util/canonical.js';
import { loadImageKey, type ImageKey } from '../trust/cosign.js';
import { renderDeviceProfiles } from './devices.js';
import { requireSignedImages, type ImageSignatureReport } from './image-policy.js';
import { referrerIndexEntry } from '../oci/referrers.js';
import { discoverReferrers, ReferrerLookups, referrerSubjects, type DiscoveredReferrer } from './referrers.js';
import type { OciLayout } from '../oci/layout.js';
import { ImageMatcher, pinManifestFiles, type PinTarget } from './k8s.js';
import { attestationsOf, checkForeignLayers, namingMissing, platformsOf, resolveImage, type BuildWarning } from './image-graph.js';
import { versionTag, type ReleaseDocument, type ReleaseImage } from './release.js';
import { openImageSource, parseFrom, type ImageSource } from './sources.js';
import { checkOutputs } from '../util/outputs.js';
import { Limiter } from '../util/limit.js';
import { dirname, resolve as resolvePath } from 'node:path';
import { collectYAMLFiles, loadReleaseSpec, ReleaseFolder, type LoadedSpec } from './spec.js';
import { METADATA_LIMITS } from '../release/metadata.js';
import { MAX_SPEC_FILE } from '../util/files.js';
import { hashThreadsFor, keepsHoles, startHashThreads, writeBundle, type BundleEntry, type WriteResult } from './writer.js';
import type { HashThread } from '../util/hash-thread.js';
import { DEFAULT_CHECK_TIMEOUT, MAX_RELEASE_CHECK_SECONDS, parseDuration } from '../util/duration.js';

export interface BuildOptions extends OpOptions {
  /** Where to write the bundle (parts go beside it). */
  output: string;
  /** False: skip the fsyncs (scratch builds only; see `WriteOptions.sync`). */
  sync?: boolean;
  /** When source blobs are hashed on a second thread (see `WriteOptions.hashThreadFrom`). */
  hashThreadFrom?: number;
  /** How many threads hash blobs at once (see `WriteOptions.hashLanes`). */
  hashLanes?: number;
  /**
   * How many images are resolved at once (default {@link RESOLVE_CONCURRENCY}; 1: one after
   * another). The result, the warnings and the progress are the same whatever it is.
   */
  resolveConcurrency?: number;
  /** Keep only these platforms (overrides the spec's `platforms`). */
  platforms?: readonly Platform[];
  /** An image with none of the platforms is an error, not a warning (or the spec's `platformStrict`). */
  platformStrict?: boolean;
  /**
   * Carry referrers (default true; `--no-referrers`): cosign signatures, attestations and SBOMs,
   * OCI 1.1 referrers, and buildx attestation manifests of the kept platforms.
   */
  referrers?: boolean;
  /** Told of each warning as it arises (the result lists them too). */
  onWarning?: (warning: BuildWarning) => void;
  /** Keys to sign with; the bundle is unsigned without any. */
  signers?: readonly SigningKey[];
  /** Trust roots to carry, as their JSON bytes, oldest first. */
  roots?: readonly Buffer[];
  /** Blobs the target vessel already has: left out of the bundle (a delta). */
  omit?: { digests: ReadonlySet<string>; kind: 'inventory' | 'bundle'; releases?: string[] };
  /** Split into parts of at most this many bytes. */
  splitSize?: number;
  /**
   * The release's `created` time, written only when given (SOURCE_DATE_EPOCH): by default the
   * bundle records only what its inputs determine, so the same inputs give the same bytes.
   */
  created?: Date;
  /**
   * The time of the build: an `expires` not after it is refused (E_SPEC_INVALID), since every
   * vessel would refuse the bundle. Absent: not checked (tests make expired bundles on purpose).
   */
  now?: Date;
  credentials?: CredentialStore;
  plainHttp?: boolean;
  caFile?: string;
  /** Require a valid cosign signature by one of these keys on every image (with the spec's `imagePolicy`). */
  imageKeys?: readonly ImageKey[];
  /** Replace an existing output (never a file the build reads). */
  force?: boolean;
  /** Files the caller read for this build (keys, trust roots, --since): never written over. */
  reads?: readonly string[];
}

export type { BuildWarning } from './image-graph.js';

export interface BuildResult {
  warnings: BuildWarning[];
  release: ReleaseDocument;
  releaseDigest: Digest;
  write: WriteResult;
  /** Bytes of blobs left out (delta). */
  omittedBytes: number;
  signedBy: string[];
  /** Each image's cosign signers, when an image policy applied. */
  imageSignatures?: ImageSignatureReport[];
}

interface ResolvedImage {
  reference: Reference;
  source: ImageSource;
  graph: GraphNode;
  ref: string;
  image: ReleaseImage;
  /** Its referrers' content, carried unless `--no-referrers`. */
  referrers: DiscoveredReferrer[];
}

/**
 * A bundle that expires before it is built would be refused by every vessel: dead on arrival.
 *
 * @throws E_SPEC_INVALID
 */
function checkExpiresAhead(expires: string, now: Date): void {
  if (new Date(expires).getTime() > now.getTime()) return;
  throw new SeabagError('E_SPEC_INVALID', `expires: ${expires} is in the past; every vessel would refuse the bundle`, {
    details: { expires, now: isoSeconds(now) },
    hint: 'set expires: in release.yaml to a later date, or remove it',
  });
}

/**
 * An RFC 3339 time for the spec's `expires`; a date alone means the start of that day, UTC.
 *
 * @throws E_SPEC_INVALID for a day that does not exist or anything not RFC 3339
 */
export function expiryTime(value: string): string {
  const date = parseTime(value, { dateOnly: true });
  if (date === undefined) throw new SeabagError('E_SPEC_INVALID', `expires: ${JSON.stringify(value)} is not a real date or RFC 3339 time`, { details: { expires: value } });
  return isoSeconds(date);
}

function json(value: unknown): Buffer {
  return canonicalBytes(value);
}

function blob(data: Buffer, mediaType: string, annotations?: Record<string, string>): { desc: Descriptor; data: Buffer } {
  const desc: Descriptor = { mediaType, digest: sha256Digest(data), size: data.length };
  if (annotations !== undefined) desc.annotations = annotations;
  return { desc, data };
}

const MIB = 1024 * 1024;

/**
 * Refuses metadata blobs a bundle reader would refuse: each one over `METADATA_LIMITS.maxBlobBytes`
 * (the per-blob cap of admission's `MetadataReader`, which `verify`, `import` and `inspect` read
 * through, and of the archive's `readSmall`). A spec file may be up to `MAX_SPEC_FILE`, but what
 * it renders to must fit the reader's cap, or the release would build and sign and then never
 * verify nor import. Every blob over the cap is named at once.
 *
 * @throws E_SPEC_INVALID
 */
function checkMetadataSizes(blobs: readonly { what: string; file?: string; size: number }[]): void {
  const limit = METADATA_LIMITS.maxBlobBytes;
  const over = blobs.filter((b) => b.size > limit);
  if (over.length === 0) return;
  const limits = `the ${limit}-byte (${limit / MIB} MiB) limit a bundle reader accepts for one metadata blob (spec files may be up to ${MAX_SPEC_FILE / MIB} MiB)`;
  const named = over.map((b) => `${b.what}${b.file === undefined ? '' : ` ${b.file}`} is ${b.size} bytes`).join('; ');
  throw new SeabagError('E_SPEC_INVALID', `${named}: over ${limits}; the release would be signed but could never be verified or imported`, {
    details: { blobs: over.map((b) => ({ what: b.what, ...(b.file === undefined ? {} : { file: b.file }), size: b.size })), limit, specFileLimit: MAX_SPEC_FILE },
    hint: `split it into several files of at most ${limit / MIB} MiB each once pinned or rendered (large data belongs in an image, not in a manifest)`,
  });
}

/** The referrers of an image at its source: of every manifest kept, and of the root the source named. */
async function imageReferrers(source: ImageSource, graph: GraphNode, wanted: boolean, lookups: ReferrerLookups, options: OpOptions): Promise<DiscoveredReferrer[]> {
  if (!wanted) return [];
  const sourceDigest = graph.desc.digest === source.root.digest ? undefined : source.root.digest;
  return discoverReferrers(source.store, referrerSubjects(graph, sourceDigest), {
    carried: new Set(postOrder(graph).map((n) => n.desc.digest)),
    lookups,
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/**
 * The spec's `imagePolicy.keys`: files inside the release folder (the rule of `ReleaseFolder`: no
 * absolute path, no `..`, no symlink out), regular files only (`loadImageKey`).
 *
 * @throws E_SPEC_INVALID (outside the folder), E_USAGE (not a regular file), E_KEY_INVALID, E_FILE_NOT_FOUND
 */
async function specImageKeys(paths: readonly string[], baseDir: string): Promise<ImageKey[]> {
  if (paths.length === 0) return [];
  const folder = await ReleaseFolder.open(baseDir);
  const hint = 'keep imagePolicy keys inside the folder of release.yaml (copy them in; symlinks out are refused), or pass --image-key';
  const keys: ImageKey[] = [];
  for (const p of paths) {
    const path = folder.entry('imagePolicy.keys', p, hint);
    keys.push(await loadImageKey(await folder.resolve(path, 'imagePolicy.keys', p, hint)));
  }
  return keys;
}

/** The same referrer under the same name once (an image listed twice shares its referrers). */
function uniqueEntries(entries: Descriptor[]): Descriptor[] {
  return [...new Map(entries.map((e) => [`${e.digest} ${e.annotations?.[REF_NAME] ?? ''}`, e])).values()];
}

function uniqueKeys(keys: readonly ImageKey[]): ImageKey[] {
  return [...new Map(keys.map((k) => [k.keyid, k])).values()].sort((a, b) => a.keyid.localeCompare(b.keyid));
}

/** What resolving the images of one build shares. */
interface ImageContext {
  loaded: LoadedSpec;
  clients: Map<string, Promise<RegistryClient>>;
  /** Layouts opened, by folder: images of one folder share its store (and its referrer lookups). */
  layouts: Map<string, Promise<OciLayout>>;
  referrers: ReferrerLookups;
  /** Every source opened, to close when the build ends. */
  sources: ImageSource[];
  platforms: Parameters<typeof resolveImage>[3];
  strict: boolean;
  /** Config blobs read, by digest: written with the metadata, before any layer. */
  configs: Map<string, Buffer>;
  /** How many image keys the release requires signatures of (their referrers are read then). */
  imageKeys: number;
}

/** One image resolved, and what it adds to the build. */
interface Resolution {
  image: ResolvedImage;
  /** Where the bytes of each of its digests come from, in the order one image alone would name them. */
  providers: [string, ReadOnlyStorage][];
}

/**
 * Step 1 of a build, for one image: its source opened, its graph resolved (platform filter,
 * attestations), every manifest, index and config verified and held; its referrers found.
 *
 * @throws E_DIGEST_MISMATCH (the source does not hold the pinned digest), E_NOT_FOUND,
 *   E_FOREIGN_LAYER_MISSING, E_AUTH, E_REGISTRY*
 */
async function resolveOne(ctx: ImageContext, i: number, ref: LoadedSpec['refs'][number], options: BuildOptions, warn: (w: BuildWarning) => void): Promise<Resolution> {
  const sig = options.signal ? { signal: options.signal } : {};
  const from = ctx.loaded.spec.images[i]?.from;
  const source = await openImageSource(ref, from, {
    baseDir: ctx.loaded.baseDir,
    clients: ctx.clients,
    layouts: ctx.layouts,
    ...(options.credentials ? { credentials: options.credentials } : {}),
    ...(options.plainHttp === undefined ? {} : { plainHttp: options.plainHttp }),
    ...(options.caFile ? { caFile: options.caFile } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  ctx.sources.push(source);
  const name = formatReference(ref);
  const store = namingMissing(source.store, name, source.origin);
  const graph = await resolveImage(name, store, source.root, ctx.platforms, ctx.configs, { strict: ctx.strict, referrers: options.referrers !== false, warn, ...sig });
  await checkForeignLayers(name, source.origin, graph, source.store, sig);
  const providers: [string, ReadOnlyStorage][] = postOrder(graph).map((node) => [node.desc.digest, store]);
  const size = postOrder(graph).reduce((sum, n) => sum + n.desc.size, 0);
  const image: ReleaseImage = {
    ref: formatReference(ref),
    repository: ref.repository,
    digest: graph.desc.digest,
    mediaType: graph.desc.mediaType,
    size,
    platforms: platformsOf(graph, ctx.configs),
  };
  const attestations = attestationsOf(graph);
  if (attestations.length > 0) image.attestations = attestations;
  if (ref.tag !== undefined) image.tag = ref.tag;
  if (graph.desc.digest !== source.root.digest) image.sourceDigest = source.root.digest;
  if (ref.digest !== undefined && ref.digest !== source.root.digest) {
    throw new SeabagError('E_DIGEST_MISMATCH', `${image.ref}: the source has ${source.root.digest}`, { details: { expected: ref.digest, found: source.root.digest } });
  }
  const referrers = await imageReferrers(source, graph, options.referrers !== false || ctx.imageKeys > 0, ctx.referrers, options);
  for (const r of referrers) {
    for (const node of postOrder(r.graph)) {
      providers.push([node.desc.digest, source.store]);
      // A referrer's config is metadata like an image's: written before any layer.
      if (node.bytes !== undefined && isImageManifest(node.desc.mediaType)) {
        const config = parseImageManifest(node.bytes, node.desc).config;
        if (!ctx.configs.has(config.digest) && config.size <= MAX_METADATA_SIZE) ctx.configs.set(config.digest, await readVerified(await source.store.fetch(config, sig), config, 'config'));
      }
    }
  }
  if (referrers.length > 0 && options.referrers !== false) image.referrers = referrers.map((r) => r.record);
  return { image: { reference: ref, source, graph, ref: image.ref, image, referrers }, providers };
}

/**
 * How many images are resolved at once: each is a chain of small reads (index, manifests,
 * configs, referrers) that mostly waits, on the disk's thread pool or on a registry.
 */
export const RESOLVE_CONCURRENCY = 8;

/**
 * Step 1 of a build, for every image: up to `resolveConcurrency` resolved at once, and
 * handed over in the spec's order exactly as if they were resolved one after another: the resolve
 * progress of image i is told once every image before it is handed over, the warnings of each
 * image come with it (`warn`), and `onImage` gets them in order. The first image in the spec's
 * order that fails is the error thrown, after its own warnings; images after it are never handed
 * over, those still running are stopped, and every one started has ended before this returns
 * or throws (so the build's sources and clients can be closed).
 *
 * @throws what `resolveOne` throws, for the first image in the spec's order that fails
 */
async function resolveImages(ctx: ImageContext, options: BuildOptions, warn: (w: BuildWarning) => void, onImage: (r: Resolution) => void): Promise<ResolvedImage[]> {
  const refs = ctx.loaded.refs;
  const wanted = options.resolveConcurrency ?? RESOLVE_CONCURRENCY;
  const concurrency = wanted >= 1 ? Math.floor(wanted) : 1;
  type Outcome = { ok: true; value: Resolution; warnings: BuildWarning[] } | { ok: false; error: unknown; warnings: BuildWarning[] };
  const stops: AbortController[] = [];
  // The first image (in the spec's order) known to have failed: none after it is started, and
  // those running are stopped.
  let failed = refs.length;
  const limiter = new Limiter(concurrency);
  const run = async (i: number, ref: LoadedSpec['refs'][number]): Promise<Outcome> => {
    const warnings: BuildWarning[] = [];
    try {
      if (i > failed) return { ok: false, error: undefined, warnings };
      const stop = new AbortController();
      stops[i] = stop;
      const signal = options.signal === undefined ? stop.signal : AbortSignal.any([options.signal, stop.signal]);
      return { ok: true, value: await resolveOne(ctx, i, ref, { ...options, signal }, (w) => warnings.push(w)), warnings };
    } catch (error) {
      if (i < failed) {
        failed = i;
        for (const s of stops.slice(i + 1)) s?.abort();
      }
      return { ok: false, error, warnings };
    }
  };
  const outcomes = refs.map((ref, i) => limiter.run(() => run(i, ref)));
  const resolved: ResolvedImage[] = [];
  try {
    for (const [i, ref] of refs.entries()) {
      options.onProgress?.({ phase: 'resolve', done: i, total: refs.length, item: formatReference(ref), unit: 'images' });
      const outcome = await (outcomes[i] as Promise<Outcome>);
      for (const w of outcome.warnings) warn(w);
      if (!outcome.ok) throw outcome.error;
      onImage(outcome.value);
      resolved.push(outcome.value.image);
    }
    return resolved;
  } finally {
    if (resolved.length < refs.length) {
      failed = Math.min(failed, resolved.length);
      for (const s of stops.slice(resolved.length + 1)) s?.abort();
    }
    await Promise.all(outcomes);
  }
}

/**
 * Step 2 of a build: the release's Kubernetes manifests with every image pinned to a digest, and
 * its device profiles rendered (brokers pinned too), as release layers. Every problem of every
 * file is reported at once; an image the release lacks is E_IMAGE_NOT_IN_RELEASE.
 *
 * @throws E_SPEC_INVALID, E_IMAGE_NOT_IN_RELEASE, E_USAGE (an output over an input)
 */
async function pinAndRender(loaded: LoadedSpec, resolved: readonly ResolvedImage[], outputs: readonly string[]) {
  const { spec } = loaded;
  const targets: PinTarget[] = resolved.map(({ reference, image }) => ({
    name: referenceName(reference),
    digest: image.digest,
    ...(image.tag === undefined ? {} : { tag: image.tag }),
    ...(image.sourceDigest === undefined ? {} : { sourceDigest: image.sourceDigest }),
  }));
  const matcher = new ImageMatcher(targets);
  const manifestFiles = await collectYAMLFiles(loaded.baseDir, spec.manifests ?? []);
  const pinned = await pinManifestFiles(manifestFiles, loaded.baseDir, matcher);
  const profileFiles = await collectYAMLFiles(loaded.baseDir, spec.deviceProfiles ?? [], 'deviceProfiles');
  await checkOutputs(outputs, { force: true, reads: [...manifestFiles, ...profileFiles] });
  const devices = await renderDeviceProfiles(profileFiles, loaded.baseDir, matcher);
  const notInRelease = [...pinned.problems, ...devices.problems].filter((p) => p.code === 'E_IMAGE_NOT_IN_RELEASE');
  throwProblems([...pinned.problems, ...devices.problems].filter((p) => !notInRelease.includes(p)), 'the manifests and device profiles');
  throwProblems(notInRelease, 'the manifests and device profiles', 'E_IMAGE_NOT_IN_RELEASE');

  const manifestLayers = pinned.files.map((f) => blob(Buffer.from(f.text), SEABAG_K8S_MANIFESTS, { [TITLE]: `manifests/${f.file}` }));
  const profileLayers = devices.profiles.map((p) => blob(Buffer.from(p.text), SEABAG_DEVICE_PROFILE, { [TITLE]: `devices/${p.name}.yaml` }));
  checkMetadataSizes([
    ...pinned.files.map((f, i) => ({ what: 'the pinned manifest', file: f.file, size: (manifestLayers[i] as { desc: Descriptor }).desc.size })),
    ...devices.profiles.map((p, i) => ({ what: 'the rendered device profile', file: p.file, size: (profileLayers[i] as { desc: Descriptor }).desc.size })),
  ]);
  return { pinned, devices, manifestLayers, profileLayers };
}

type Artifact = { manifest: { desc: Descriptor; data: Buffer }; blobs: { desc: Descriptor; data: Buffer }[]; artifactType: string };

/**
 * Step 4 of a build: the artifacts whose subject is the release manifest: the signature (a DSSE
 * envelope over an in-toto statement, one signature per signer) and the trust roots carried.
 */
function releaseArtifacts(release: ReleaseDocument, releaseManifestDesc: Descriptor, options: BuildOptions): { empty: { desc: Descriptor; data: Buffer }; artifacts: Artifact[] } {
  const empty = blob(Buffer.from(EMPTY_JSON), OCI_EMPTY);
  if (empty.desc.digest !== EMPTY_DIGEST) throw new SeabagError('E_INTERNAL', `the empty descriptor's digest drifted: ${empty.desc.digest}`);
  const artifacts: Artifact[] = [];
  const signers = options.signers ?? [];
  if (signers.length > 0) {
    const statement = canonicalBytes(releaseStatement(release, releaseManifestDesc));
    const envelope = blob(json(signEnvelope(statement, IN_TOTO_PAYLOAD_TYPE, signers)), DSSE_ENVELOPE);
    const manifest = blob(
      json({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: SEABAG_SIGNATURE, config: empty.desc, layers: [envelope.desc], subject: releaseManifestDesc }),
      OCI_MANIFEST,
    );
    artifacts.push({ manifest, blobs: [envelope], artifactType: SEABAG_SIGNATURE });
  }
  if (options.roots !== undefined && options.roots.length > 0) {
    const roots = options.roots.map((r) => blob(r, SEABAG_TRUST_ROOT));
    const manifest = blob(
      json({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: SEABAG_TRUST_CHAIN, config: empty.desc, layers: roots.map((r) => r.desc), subject: releaseManifestDesc }),
      OCI_MANIFEST,
    );
    artifacts.push({ manifest, blobs: roots, artifactType: SEABAG_TRUST_CHAIN });
  }
  return { empty, artifacts };
}

/**
 * Builds the bundle a release spec describes.
 *
 * @throws E_SPEC_INVALID (every problem of the spec, manifests and profiles at once),
 *   E_IMAGE_NOT_IN_RELEASE, E_IMAGE_UNSIGNED, E_IMAGE_SIGNATURE_INVALID (image keys given),
 *   E_KEY_INVALID, E_DIGEST_MISMATCH (a source blob that doesn't match), E_NOT_FOUND,
 *   E_AUTH, E_REGISTRY*, E_DISK_FULL, E_IO. Nothing is left at `output` on failure.
 */
/** The files a build writes, refused when they exist (without --force) or are read by this build. */
async function checkBuildOutputs(loaded: LoadedSpec, options: BuildOptions): Promise<string[]> {
  const outputs = options.splitSize === undefined ? [options.output] : [options.output, `${options.output}.parts.json`, `${options.output}.001`];
  const archives = loaded.spec.images.flatMap((image) => {
    if (image.from === undefined) return [];
    const from = parseFrom(image.from);
    return from.kind === 'oci-archive' || from.kind === 'docker-archive' ? [resolvePath(loaded.baseDir, from.path)] : [];
  });
  await checkOutputs(outputs, { force: options.force === true, reads: [loaded.file, ...archives, ...(options.reads ?? [])] });
  return outputs;
}

/** The blobs a delta leaves out (never a manifest or index), and their bytes. */
function omissions(nodes: readonly GraphNode[], vesselHas: ReadonlySet<string> | undefined): { omitted: Set<Digest>; omittedBytes: number } {
  const omitted = new Set<Digest>();
  let omittedBytes = 0;
  for (const node of nodes) {
    if (omitted.has(node.desc.digest) || isManifestLike(node.desc.mediaType) || vesselHas?.has(node.desc.digest) !== true) continue;
    omitted.add(node.desc.digest);
    omittedBytes += node.desc.size;
  }
  return { omitted, omittedBytes };
}

interface ReleaseInputs {
  loaded: LoadedSpec;
  resolved: readonly ResolvedImage[];
  rendered: Awaited<ReturnType<typeof pinAndRender>>;
  omitted: ReadonlySet<Digest>;
  created: Date | undefined;
  platforms: readonly Platform[];
  imageKeys: readonly ImageKey[];
  options: BuildOptions;
}

/** The release document: what the signature covers about the release. */
function releaseDocument({ loaded, resolved, rendered, omitted, created, platforms, imageKeys, options }: ReleaseInputs): ReleaseDocument {
  const { spec } = loaded;
  const { pinned, devices, manifestLayers, profileLayers } = rendered;
  const release: ReleaseDocument = {
    apiVersion: 'seabag.dev/v1',
    kind: 'ReleaseDocument',
    name: spec.name,
    version: spec.version,
    ...(created === undefined ? {} : { created: isoSeconds(created) }),
    targets: spec.targets ?? [],
    images: resolved.map((r) => r.image),
    manifests: pinned.files.map((f, i) => ({ file: f.file, digest: (manifestLayers[i] as { desc: Descriptor }).desc.digest, documents: f.documents })),
    deviceProfiles: devices.profiles.map((p, i) => ({
      name: p.name,
      file: p.file,
      discovery: p.discovery,
      ...(p.node === undefined ? {} : { node: p.node }),
      digest: (profileLayers[i] as { desc: Descriptor }).desc.digest,
      brokerImage: p.brokerImage,
    })),
    omittedBlobs: [...omitted].sort(),
  };
  if (spec.expires !== undefined) release.expires = expiryTime(spec.expires);
  if (spec.check !== undefined) release.check = { command: spec.check.command, timeoutSeconds: parseDuration(spec.check.timeout ?? DEFAULT_CHECK_TIMEOUT, 'check.timeout', MAX_RELEASE_CHECK_SECONDS) };
  if (platforms.length > 0) release.platforms = platforms.map(formatPlatform);
  if (imageKeys.length > 0) release.imagePolicy = { keys: uniqueKeys(imageKeys).map((k) => ({ keyid: k.keyid, publicKey: k.pem })) };
  if (options.omit !== undefined) release.since = { kind: options.omit.kind, ...(options.omit.releases ? { releases: options.omit.releases } : {}) };
  return release;
}

/** The release manifest: an OCI artifact whose config is the release document. */
function releaseManifestBlob(release: ReleaseDocument, config: Descriptor, layers: readonly { desc: Descriptor }[]): { desc: Descriptor; data: Buffer } {
  return blob(
    json({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: SEABAG_RELEASE,
      config,
      layers: layers.map((l) => l.desc),
      annotations: {
        ...(release.created === undefined ? {} : { 'org.opencontainers.image.created': release.created }),
        'org.opencontainers.image.title': release.name,
        'org.opencontainers.image.version': release.version,
      },
    }),
    OCI_MANIFEST,
  );
}

interface ArchiveInputs {
  release: ReleaseDocument;
  releaseConfig: { desc: Descriptor; data: Buffer };
  releaseManifest: { desc: Descriptor; data: Buffer };
  releaseLayers: readonly { desc: Descriptor; data: Buffer }[];
  empty: { desc: Descriptor; data: Buffer };
  artifacts: readonly Artifact[];
  resolved: readonly ResolvedImage[];
  carried: readonly { image: ResolvedImage; referrer: DiscoveredReferrer }[];
  allNodes: readonly GraphNode[];
  configs: ReadonlyMap<string, Buffer>;
  providers: ReadonlyMap<string, ReadOnlyStorage>;
  omitted: ReadonlySet<Digest>;
}

/**
 * The bundle's entries in their fixed order (DESIGN.md, "The bundle"): `oci-layout`,
 * `index.json`, the small metadata blobs (signature, roots, release, manifests, configs), then
 * layers, each blob once; the blobs a delta omits are left out.
 */
function bundleEntries(a: ArchiveInputs, options: BuildOptions): BundleEntry[] {
  const { release, releaseConfig, releaseManifest, releaseLayers, empty, artifacts, resolved, carried, allNodes, configs, providers, omitted } = a;
  const index = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { ...releaseManifest.desc, artifactType: SEABAG_RELEASE, annotations: { [REF_NAME]: `seabag/${release.name}:${versionTag(release.version)}` } },
      ...artifacts.map((a) => ({ ...a.manifest.desc, artifactType: a.artifactType })),
      ...resolved.map((r) => ({ mediaType: r.graph.desc.mediaType, digest: r.graph.desc.digest, size: r.graph.desc.size, annotations: { [REF_NAME]: r.ref } })),
      ...uniqueEntries(carried.map((c) => referrerIndexEntry(c.referrer.record, referenceName(c.image.reference)))),
    ],
  };
  const indexData = json(index);
  checkMetadataSizes([
    { what: 'the release document', size: releaseConfig.desc.size },
    { what: 'the release manifest', size: releaseManifest.desc.size },
    { what: 'index.json', size: indexData.length },
    ...artifacts.flatMap((a) => [a.manifest, ...a.blobs].map((b) => ({ what: `the ${a.artifactType} artifact's ${b.desc.mediaType}`, size: b.desc.size }))),
  ]);
  const entries: BundleEntry[] = [
    { name: 'oci-layout', data: json({ imageLayoutVersion: LAYOUT_VERSION }) },
    { name: 'index.json', data: indexData },
    { name: 'blobs', type: 'directory' },
    { name: 'blobs/sha256', type: 'directory' },
  ];
  const written = new Set<string>();
  const add = (desc: Descriptor, entry: Omit<BundleEntry, 'name'>): void => {
    if (written.has(desc.digest)) return;
    written.add(desc.digest);
    entries.push({ name: `blobs/sha256/${desc.digest.slice(7)}`, ...entry });
  };
  for (const a of artifacts) {
    for (const b of a.blobs) add(b.desc, { data: b.data });
    add(empty.desc, { data: empty.data });
    add(a.manifest.desc, { data: a.manifest.data });
  }
  add(releaseConfig.desc, { data: releaseConfig.data });
  for (const l of releaseLayers) add(l.desc, { data: l.data });
  add(releaseManifest.desc, { data: releaseManifest.data });
  for (const node of allNodes) {
    if (node.bytes !== undefined) add(node.desc, { data: node.bytes });
    else if (configs.has(node.desc.digest) && !omitted.has(node.desc.digest)) add(node.desc, { data: configs.get(node.desc.digest) as Buffer });
  }
  for (const node of allNodes) {
    if (node.bytes !== undefined || written.has(node.desc.digest) || omitted.has(node.desc.digest)) continue;
    const provider = providers.get(node.desc.digest) as ReadOnlyStorage;
    const desc = node.desc;
    const reader = provider.reader?.bind(provider);
    add(desc, reader === undefined ? { desc, open: () => provider.fetch(desc, options) } : { desc, reader: () => reader(desc) });
  }
  return entries;
}

export async function buildBundle(specPath: string, options: BuildOptions): Promise<BuildResult> {
  if (options.splitSize !== undefined) checkSplit(options.splitSize);
  const loaded = await loadReleaseSpec(specPath);
  const { spec } = loaded;
  if (spec.expires !== undefined && options.now !== undefined) checkExpiresAhead(expiryTime(spec.expires), options.now);
  const outputs = await checkBuildOutputs(loaded, options);
  const platforms = options.platforms && options.platforms.length > 0 ? options.platforms : loaded.platforms;
  const strict = options.platformStrict === true || spec.platformStrict === true;
  const warnings: BuildWarning[] = [];
  const warn = (w: BuildWarning): void => {
    warnings.push(w);
    options.onWarning?.(w);
  };
  // Reproducible by default: no time of the build is written unless SOURCE_DATE_EPOCH gave one.
  const created = options.created;
  const clients = new Map<string, Promise<RegistryClient>>();
  const sources: ImageSource[] = [];
  // Layers read from files are hashed on other threads while they are written (writer.ts). Each is
  // started as soon as the images resolved so far hold enough bytes in files to use it, so that
  // its start (~20–35 ms, on the other core) is over by the time the write begins.
  const hashThreads: Promise<HashThread>[] = [];
  // Sizes of the blobs from files resolved so far (configs among them: they are small).
  const inFiles: number[] = [];
  try {
    // Written in order, hashed on one thread, where the output's filesystem keeps no holes (writer.ts).
    const threadOptions = await keepsHoles(dirname(resolvePath(options.output))) ? options : { ...options, hashLanes: 1 };
    const imageKeys = [...(options.imageKeys ?? []), ...(await specImageKeys(spec.imagePolicy?.keys ?? [], loaded.baseDir))];
    // 1. Images: manifests, indexes and configs, verified and held in memory.
    const configs = new Map<string, Buffer>();
    const providers = new Map<string, ReadOnlyStorage>();
    const imageContext: ImageContext = { loaded, clients, layouts: new Map(), referrers: new ReferrerLookups(), sources, platforms, strict, configs, imageKeys: imageKeys.length };
    const resolved = await resolveImages(imageContext, options, warn, ({ image, providers: claims }) => {
      // The first image in the spec's order to name a digest provides its bytes.
      for (const [digest, store] of claims) if (!providers.has(digest)) providers.set(digest, store);
      if (image.source.store.reader !== undefined) inFiles.push(...postOrder(image.graph).flatMap((n) => (n.bytes === undefined ? [n.desc.size] : [])));
      const more = startHashThreads(hashThreadsFor(inFiles, threadOptions) - hashThreads.length);
      for (const t of more) t.catch(() => undefined);
      hashThreads.push(...more);
    });

    const imageSignatures = imageKeys.length === 0 ? undefined : await requireSignedImages(
      resolved.map((r) => ({ ...r.image, referrers: r.referrers.map((x) => x.record) })),
      (_image, i) => (resolved[i] as ResolvedImage).source.store,
      imageKeys,
      options.signal ? { signal: options.signal } : {},
    );
    const carried = options.referrers === false ? [] : resolved.flatMap((r) => r.referrers.map((x) => ({ image: r, referrer: x })));

    // 2. Manifests pinned, device profiles rendered; every problem at once.
    const rendered = await pinAndRender(loaded, resolved, outputs);

    // 3. The release: its layers, its document, its manifest.
    const allNodes = [...resolved.flatMap((r) => postOrder(r.graph)), ...carried.flatMap((c) => postOrder(c.referrer.graph))];
    const { omitted, omittedBytes } = omissions(allNodes, options.omit?.digests);
    const release = releaseDocument({ loaded, resolved, rendered, omitted, created, platforms, imageKeys, options });
    const releaseConfig = blob(json(release), SEABAG_RELEASE_CONFIG);
    const releaseLayersList = [...rendered.manifestLayers, ...rendered.profileLayers];
    const releaseManifest = releaseManifestBlob(release, releaseConfig.desc, releaseLayersList);

    // 4. Signature and carried roots: artifacts whose subject is the release manifest.
    const { empty, artifacts } = releaseArtifacts(release, releaseManifest.desc, options);

    // 5. The archive: index.json, metadata, then layers.
    const entries = bundleEntries({ release, releaseConfig, releaseManifest, releaseLayers: releaseLayersList, empty, artifacts, resolved, carried, allNodes, configs, providers, omitted }, options);
    const write = await writeBundle(options.output, entries, {
      ...(options.splitSize === undefined ? {} : { splitSize: options.splitSize }),
      ...(options.sync === false ? { sync: false } : {}),
      ...(options.hashThreadFrom === undefined ? {} : { hashThreadFrom: options.hashThreadFrom }),
      ...(options.hashLanes === undefined ? {} : { hashLanes: options.hashLanes }),
      hashThreads,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    return { warnings, release, releaseDigest: releaseManifest.desc.digest, write, omittedBytes, signedBy: (options.signers ?? []).map((s) => s.keyid), ...(imageSignatures ? { imageSignatures } : {}) };
  } finally {
    await Promise.all(sources.map((s) => s.close().catch(() => undefined)));
    await Promise.all([...clients.values()].map((c) => c.then((client) => client.close(), () => undefined)));
    await Promise.all(hashThreads.map((p) => p.then((t) => t.close(), () => undefined)));
  }
}
