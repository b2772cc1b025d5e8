/**
 * The release inside a bundle: the release manifest (an OCI artifact whose config is the release
 * document and whose layers are the pinned manifests and rendered device profiles), the signature
 * artifacts that refer to it, and trust roots carried for vessels on an older root.
 */
import { SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseImageManifest, parseJSON, REF_NAME, type Descriptor, type ImageIndex, type ImageManifest } from '../oci/descriptor.js';
import type { ReadOnlyStorage } from '../oci/store.js';
import { isImageManifest, SEABAG_RELEASE, SEABAG_RELEASE_CONFIG, SEABAG_SIGNATURE, SEABAG_TRUST_CHAIN } from '../oci/media-types.js';
import { assertSchema } from '../schema.js';
import { ArchiveLayout, BUNDLE_POLICY } from './archive.js';
import { openInput, resolveBundleInput, type BundleInput } from './parts.js';

export interface ReleaseImage {
  /** Full source reference: `shore.example.com/groke/fusion:1.4.0`. */
  ref: string;
  /** Repository on the vessel's registry: `groke/fusion`. */
  repository: string;
  tag?: string;
  digest: Digest;
  /** The digest at the source, when a platform filter made a smaller index. */
  sourceDigest?: Digest;
  mediaType: string;
  /** Bytes of every distinct blob of the image (manifests, configs, layers). */
  size: number;
  platforms: string[];
}

export interface ReleaseDocument {
  apiVersion: 'seabag.dev/v1';
  kind: 'ReleaseDocument';
  name: string;
  version: string;
  created: string;
  expires?: string;
  targets: string[];
  platforms?: string[];
  images: ReleaseImage[];
  manifests: { file: string; digest: Digest; documents: number }[];
  deviceProfiles: { name: string; file: string; discovery: 'udev' | 'onvif'; node?: string; digest: Digest; brokerImage: string }[];
  /** Blobs a delta bundle leaves out: the vessel must already hold them. */
  omittedBlobs: Digest[];
  since?: { kind: 'inventory' | 'bundle'; releases?: string[] };
}

/** A tag may not hold `+` (semver build metadata); OCI tools write `_` instead. */
export function versionTag(version: string): string {
  return version.replace(/\+/g, '_');
}

/** The registry repository the release manifest goes to on the vessel. */
export function releaseRepository(name: string): string {
  return `seabag/${name}`;
}

export interface SignatureArtifact {
  desc: Descriptor;
  manifest: ImageManifest;
  /** The DSSE envelope's bytes (verified against the manifest's layer digest). */
  envelope: Buffer;
}

/**
 * What the release checks and import read of where a bundle's content lives: the archive
 * (`ArchiveLayout`), or the shore registry a bundle was pushed to (`lib/satellite`).
 */
export interface BundleLayout extends ReadOnlyStorage {
  /** The bundle's `index.json`. */
  readonly index: ImageIndex;
  /** What to call the bundle in messages. */
  readonly source: { readonly name: string };
  /** Where a blob is (its size), or undefined when the layout lacks it. */
  location(digest: Digest): { size: number } | undefined;
  /** Reads a small blob (≤ 4 MiB: metadata) and verifies it. */
  readSmall(desc: Descriptor, what?: string): Promise<Buffer>;
  close(): Promise<void>;
}

export interface OpenedBundle<L extends BundleLayout = ArchiveLayout> {
  input: BundleInput;
  archive: L;
  releaseDesc: Descriptor;
  releaseManifest: ImageManifest;
  release: ReleaseDocument;
  signatures: SignatureArtifact[];
  /** Trust roots carried in the bundle, in the order of the chain artifact. */
  roots: Buffer[];
  close(): Promise<void>;
}

function layoutError(name: string, message: string): SeabagError {
  return new SeabagError('E_LAYOUT_INVALID', `${name}: ${message}`, { details: { file: name } });
}

/**
 * Opens a bundle (or its parts), checks the archive, and reads its release, signatures and roots.
 * Only metadata is read here; layers are checked when they stream.
 *
 * @throws E_FILE_NOT_FOUND, E_PART_MISSING, E_PART_CORRUPT, E_ARCHIVE_UNSAFE, E_ARCHIVE_TRUNCATED,
 *   E_LAYOUT_INVALID, E_DIGEST_MISMATCH
 */
export async function openBundle(path: string | BundleInput): Promise<OpenedBundle> {
  const input = typeof path === 'string' ? await resolveBundleInput(path) : path;
  const source = await openInput(input);
  try {
    return await readRelease(input, await ArchiveLayout.open(source, BUNDLE_POLICY));
  } catch (err) {
    await source.close();
    throw err;
  }
}

/**
 * Reads the release, its signatures and carried roots from a bundle's layout (metadata only).
 *
 * @throws E_LAYOUT_INVALID, E_DIGEST_MISMATCH, and what the layout throws when reading
 */
export async function readRelease<L extends BundleLayout>(input: BundleInput, archive: L): Promise<OpenedBundle<L>> {
  const name = archive.source.name;
  const releases = archive.index.manifests.filter((d) => d.artifactType === SEABAG_RELEASE);
  if (releases.length !== 1) {
    throw layoutError(name, releases.length === 0 ? 'not a seabag bundle: index.json names no release manifest' : `index.json names ${releases.length} release manifests`);
  }
  const releaseDesc = releases[0] as Descriptor;
  if (!isImageManifest(releaseDesc.mediaType)) throw layoutError(name, `release manifest has media type ${releaseDesc.mediaType}`);
  const releaseManifest = parseImageManifest(await archive.readSmall(releaseDesc, 'release manifest'), releaseDesc, 'release manifest');
  if (releaseManifest.artifactType !== SEABAG_RELEASE || releaseManifest.config.mediaType !== SEABAG_RELEASE_CONFIG) {
    throw layoutError(name, 'the release manifest is not a seabag release artifact');
  }
  const releaseBytes = await archive.readSmall(releaseManifest.config, 'release document');
  const release = parseJSON(releaseBytes, 'release document') as ReleaseDocument;
  assertSchema('release-document', release, `${name}: release document`, 'E_LAYOUT_INVALID');

  const signatures: SignatureArtifact[] = [];
  for (const desc of archive.index.manifests.filter((d) => d.artifactType === SEABAG_SIGNATURE)) {
    const manifest = parseImageManifest(await archive.readSmall(desc, 'signature manifest'), desc, 'signature manifest');
    const layer = manifest.layers[0];
    if (manifest.layers.length !== 1 || layer === undefined) throw layoutError(name, `signature manifest ${desc.digest} must have exactly one layer`);
    signatures.push({ desc, manifest, envelope: await archive.readSmall(layer, 'signature envelope') });
  }
  const roots: Buffer[] = [];
  for (const desc of archive.index.manifests.filter((d) => d.artifactType === SEABAG_TRUST_CHAIN)) {
    const manifest = parseImageManifest(await archive.readSmall(desc, 'trust chain'), desc, 'trust chain');
    for (const layer of manifest.layers) roots.push(await archive.readSmall(layer, 'trust root'));
  }
  return { input, archive, releaseDesc, releaseManifest, release, signatures, roots, close: () => archive.close() };
}

/** What reports say of a bundle's release: name, version, dates, targets and its digest. */
export interface ReleaseSummary {
  name: string;
  version: string;
  created: string;
  targets: string[];
  digest: Digest;
  expires?: string;
}

export function releaseSummary(bundle: Pick<OpenedBundle, 'release' | 'releaseDesc'>): ReleaseSummary {
  const { release } = bundle;
  return {
    name: release.name,
    version: release.version,
    created: release.created,
    targets: release.targets,
    digest: bundle.releaseDesc.digest,
    ...(release.expires === undefined ? {} : { expires: release.expires }),
  };
}

/**
 * `index.json` is not signed, so after the signature check it must say exactly what the signed
 * release says: the release manifest under `seabag/NAME:VERSION`, the release's images under
 * their references with their digests, media types and sizes, and signature and trust-chain
 * artifacts; nothing else, and nothing left out.
 *
 * @throws E_LAYOUT_INVALID naming the entry that disagrees
 */
export function checkIndex(bundle: Pick<OpenedBundle<BundleLayout>, 'archive' | 'release' | 'releaseDesc'>): void {
  const { release } = bundle;
  const name = bundle.archive.source.name;
  const listed = new Set<string>();
  for (const [i, d] of bundle.archive.index.manifests.entries()) {
    const where = `index.json manifests[${i}]`;
    const size = bundle.archive.location(d.digest)?.size;
    if (size !== undefined && size !== d.size) throw layoutError(name, `${where} says ${d.size} bytes for ${d.digest}, the archive holds ${size}`);
    if (d.artifactType === SEABAG_RELEASE) {
      const tag = `seabag/${release.name}:${versionTag(release.version)}`;
      if (d.digest !== bundle.releaseDesc.digest || d.annotations?.[REF_NAME] !== tag) throw layoutError(name, `${where} does not name the release as ${tag}`);
      continue;
    }
    if (d.artifactType === SEABAG_SIGNATURE || d.artifactType === SEABAG_TRUST_CHAIN) continue;
    const ref = d.annotations?.[REF_NAME];
    const image = release.images.find((im) => im.digest === d.digest && im.ref === ref);
    if (image === undefined) throw layoutError(name, `${where} names ${ref ?? '(no name)'}@${d.digest}, which the signed release does not list`);
    if (image.mediaType !== d.mediaType) throw layoutError(name, `${where} gives ${ref} the media type ${d.mediaType}, the signed release says ${image.mediaType}`);
    listed.add(`${image.ref} ${image.digest}`);
  }
  for (const image of release.images) {
    if (!listed.has(`${image.ref} ${image.digest}`)) throw layoutError(name, `index.json does not list ${image.ref}@${image.digest}, which the signed release holds`);
  }
}
