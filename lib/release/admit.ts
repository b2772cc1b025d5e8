/**
 * `admit()`: the one admission path. `bundle verify`, `bundle import FILE` and `bundle import
 * oci://` all judge a release here, so CI can never call valid a release a vessel refuses.
 *
 * In order: the metadata is read within fixed caps (`MetadataReader`); the trusted root must
 * carry a threshold of its own root keys' signatures; the roots the release carries extend it
 * (TUF v1.0.x §5.3); a threshold of the effective root's release keys must have signed an in-toto
 * Statement v1 naming the release manifest; the unsigned `index.json` must say exactly what the
 * signed release says; neither the root nor the release may have expired; the caller's own policy
 * (target class, downgrade) runs; and every blob the release needs must be present or listed as
 * omitted.
 */
import { SeabagError } from '../errors.js';
import { isDigest, type Digest } from '../oci/digest.js';
import { REF_NAME, type Descriptor } from '../oci/descriptor.js';
import { postOrder, resolveGraph, type GraphNode } from '../oci/graph.js';
import { SEABAG_RELEASE, SEABAG_SIGNATURE, SEABAG_TRUST_CHAIN } from '../oci/media-types.js';
import type { OpOptions } from '../oci/store.js';
import { checkExpiry } from '../trust/policy.js';
import { verifyRootSelf, type TrustRoot } from '../trust/root.js';
import { effectiveRoot, verifyReleaseSignatures, type SignatureCheck } from '../trust/verify.js';
import { MetadataReader, type MetadataLimits, type MetadataSource } from './metadata.js';
import type { ReleaseDocument, ReleaseImage, ReleaseMetadata } from './model.js';
import { referrerGraph, referrerIndexEntry, type CarriedReferrer } from '../oci/referrers.js';
import { formatReference, parseReference, referenceName } from '../oci/reference.js';
import { isManifestLike } from '../oci/media-types.js';
import { cosignTag } from '../oci/referrers.js';
import { versionTag } from './model.js';
import { readRelease } from './read.js';

export interface AdmitOptions extends OpOptions {
  /** The root the judge trusts: the vessel's pinned root, or `--trust` for verify and a first import. */
  trust: TrustRoot;
  /** What to call `trust` in messages (its file, or "the pinned root"). */
  trustName?: string;
  /** Canonical bytes (base64) of root versions the judge already holds, by version. */
  knownRoots?: ReadonlyMap<number, string>;
  /** When to judge expiry (default: now). */
  now?: Date;
  /** The caller's own checks, after the signature and expiry and before completeness (target class, downgrade). */
  policy?: (release: ReleaseDocument, digest: Digest) => void;
  /** Caps on the metadata read (default `METADATA_LIMITS`). */
  limits?: Partial<MetadataLimits>;
  /** A reader already used on this source (its reads are shared). */
  reader?: MetadataReader;
}

export interface Admission extends ReleaseMetadata {
  /** The root the release was judged by (the trusted one, extended by what it carried). */
  root: TrustRoot;
  /** Roots newly accepted from the release, oldest first. */
  accepted: TrustRoot[];
  signatureCheck: SignatureCheck;
  /** Each image's graph, in release order; omitted blobs are leaves. Nodes are shared between images. */
  graphs: GraphNode[];
  /** The referrers the release carries, each with its graph and the repository it goes to. */
  referrers: CarriedReferrer[];
  /** The reader, for later metadata reads of the same release (shared bytes, same caps). */
  reader: MetadataReader;
  /**
   * Blobs left out by `bundle pull --since` (the unsigned `UNSIGNED_OMITTED` list) that the
   * signed release does not list: layers and configs of its images and referrers only.
   */
  unsignedOmitted: Digest[];
}

function layoutError(name: string, message: string): SeabagError {
  return new SeabagError('E_LAYOUT_INVALID', `${name}: ${message}`, { details: { file: name } });
}

/**
 * `index.json` is not signed, so after the signature check it must say exactly what the signed
 * release says: the release manifest under `seabag/NAME:VERSION`, the release's images under
 * their references with their digests, media types and sizes, each referrer the release lists
 * (cosign tags under the image's name), and signature and trust-chain artifacts; nothing else,
 * and nothing left out.
 *
 * @throws E_LAYOUT_INVALID naming the entry that disagrees
 */
export function checkIndex(source: Pick<MetadataSource, 'name' | 'index' | 'sizeOf'>, meta: Pick<ReleaseMetadata, 'release' | 'releaseDesc'>): void {
  const { release } = meta;
  const name = source.name;
  const listed = new Set<string>();
  for (const [i, d] of source.index.manifests.entries()) {
    const where = `index.json manifests[${i}]`;
    const size = source.sizeOf?.(d.digest);
    if (size !== undefined && size !== d.size) throw layoutError(name, `${where} says ${d.size} bytes for ${d.digest}, the archive holds ${size}`);
    if (d.artifactType === SEABAG_RELEASE) {
      const tag = `seabag/${release.name}:${versionTag(release.version)}`;
      if (d.digest !== meta.releaseDesc.digest || d.annotations?.[REF_NAME] !== tag) throw layoutError(name, `${where} does not name the release as ${tag}`);
      continue;
    }
    if (d.artifactType === SEABAG_SIGNATURE || d.artifactType === SEABAG_TRUST_CHAIN) continue;
    const ref = d.annotations?.[REF_NAME];
    const image = release.images.find((im) => im.digest === d.digest && im.ref === ref);
    if (image === undefined && isListedReferrer(release, d)) {
      listed.add(`${d.digest} ${ref ?? ''}`);
      continue;
    }
    if (image === undefined) throw layoutError(name, `${where} names ${ref ?? '(no name)'}@${d.digest}, which the signed release does not list`);
    if (image.mediaType !== d.mediaType) throw layoutError(name, `${where} gives ${ref} the media type ${d.mediaType}, the signed release says ${image.mediaType}`);
    listed.add(`${image.ref} ${image.digest}`);
  }
  for (const image of release.images) {
    if (!listed.has(`${image.ref} ${image.digest}`)) throw layoutError(name, `index.json does not list ${image.ref}@${image.digest}, which the signed release holds`);
    for (const r of image.referrers ?? []) {
      const entry = referrerIndexEntry(r, imageName(image));
      if (!listed.has(`${entry.digest} ${entry.annotations?.[REF_NAME] ?? ''}`)) throw layoutError(name, `index.json does not list the referrer ${r.digest} (${r.kind}) of ${image.ref}, which the signed release holds`);
    }
  }
}

/** The repository prefix seabag's own artifacts live under on a vessel; no image may use it. */
const RESERVED_REPOSITORY = 'seabag';

/**
 * Each signed image's vessel repository and tag are the ones its reference gives, as build
 * derives them (`repository` and `tag` of `parseReference(ref)`, `ref` in its normalized form),
 * and never under `seabag/`, where the vessel keeps releases: a signer's slip or a hand-edited
 * release cannot push `shore.example.com/groke/fusion:1.4.0` into another repository.
 *
 * @throws E_LAYOUT_INVALID naming the image
 */
export function checkImageNames(name: string, release: Pick<ReleaseDocument, 'images'>): void {
  for (const [i, image] of release.images.entries()) {
    const where = `the signed release's images[${i}] (${JSON.stringify(String(image.ref).slice(0, 300))})`;
    let parsed;
    try {
      parsed = parseReference(image.ref);
    } catch (err) {
      throw layoutError(name, `${where}: ${(err as Error).message}`);
    }
    if (formatReference(parsed) !== image.ref) throw layoutError(name, `${where} is not in normalized form (${formatReference(parsed)})`);
    if (image.repository !== parsed.repository) throw layoutError(name, `${where} names the repository ${JSON.stringify(image.repository)}; its reference gives ${JSON.stringify(parsed.repository)}`);
    if (image.tag !== parsed.tag) throw layoutError(name, `${where} names the tag ${JSON.stringify(image.tag ?? null)}; its reference gives ${JSON.stringify(parsed.tag ?? null)}`);
    if (parsed.repository === RESERVED_REPOSITORY || parsed.repository.startsWith(`${RESERVED_REPOSITORY}/`)) {
      throw layoutError(name, `${where} would go to ${parsed.repository}, under ${RESERVED_REPOSITORY}/, where the vessel keeps its releases`);
    }
  }
}

const COSIGN_SUFFIX: Readonly<Record<string, 'sig' | 'att' | 'sbom'>> = { signature: 'sig', attestation: 'att', sbom: 'sbom' };

/**
 * Each referrer a signed image carries refers to that image: its `subject` is a manifest or index
 * of the image's own graph, the source index it was filtered from (`sourceDigest`), or another
 * referrer of the same image (a signature of an attestation); a cosign tag is exactly
 * `sha256-<hex of subject>.sig|.att|.sbom` for its kind, so no referrer can take a tag that
 * names another image's content.
 *
 * @throws E_LAYOUT_INVALID naming the referrer
 */
export function checkReferrerSubjects(name: string, release: Pick<ReleaseDocument, 'images'>, graphs: readonly GraphNode[]): void {
  for (const [i, image] of release.images.entries()) {
    const graph = graphs[i];
    const own = new Set<string>([image.digest, ...(image.sourceDigest === undefined ? [] : [image.sourceDigest])]);
    if (graph !== undefined) for (const n of postOrder(graph)) if (isManifestLike(n.desc.mediaType)) own.add(n.desc.digest);
    for (const r of image.referrers ?? []) own.add(r.digest);
    for (const r of image.referrers ?? []) {
      const where = `the referrer ${r.digest} (${r.kind}) of ${image.ref}`;
      if (!own.has(r.subject)) throw layoutError(name, `${where} refers to ${r.subject}, which is not in that image`);
      if (r.subject === r.digest) throw layoutError(name, `${where} refers to itself`);
      if (r.tag === undefined) continue;
      const suffix = COSIGN_SUFFIX[r.kind];
      const expected = suffix === undefined ? undefined : cosignTag(r.subject, suffix);
      if (r.tag !== expected) throw layoutError(name, `${where} has the tag ${JSON.stringify(r.tag)}; a ${r.kind} of ${r.subject} is tagged ${expected ?? '(no cosign tag)'}`);
    }
  }
}

/** The name an image's cosign tags go under in `index.json`: its reference without tag or digest. */
function imageName(image: ReleaseImage): string {
  return referenceName(parseReference(image.ref));
}

/** An `index.json` entry that is exactly a referrer the signed release lists (digest, type, size, name). */
function isListedReferrer(release: ReleaseDocument, d: Descriptor): boolean {
  return release.images.some((image) =>
    (image.referrers ?? []).some((r) => {
      const entry = referrerIndexEntry(r, imageName(image));
      return entry.digest === d.digest && entry.mediaType === d.mediaType && entry.size === d.size && entry.annotations?.[REF_NAME] === d.annotations?.[REF_NAME];
    }),
  );
}

/**
 * The `index.json` annotation of a delta written by `bundle pull --since` on a bridge PC: the
 * blobs it left out that the signed release does not list (comma-separated digests). It needs no
 * signature: a blob is named by its digest in the signed graph, and an import checks that the
 * vessel's registry holds every blob a bundle leaves out before it changes anything.
 */
export const UNSIGNED_OMITTED = 'dev.seabag.bundle.omitted';

/**
 * The blobs a bundle leaves out: those its signed release lists, and those `bundle pull --since`
 * left out (`UNSIGNED_OMITTED`).
 *
 * @throws E_LAYOUT_INVALID when the annotation names something that is not a digest
 */
export function omittedBlobs(source: Pick<MetadataSource, 'name' | 'index'>, meta: Pick<ReleaseMetadata, 'release'>): Set<string> {
  const omitted = new Set<string>(meta.release.omittedBlobs);
  for (const d of unsignedOmitted(source, meta)) omitted.add(d);
  return omitted;
}

/**
 * The digests `UNSIGNED_OMITTED` names that the signed release does not list itself.
 *
 * @throws E_LAYOUT_INVALID when the annotation names something that is not a digest
 */
export function unsignedOmitted(source: Pick<MetadataSource, 'name' | 'index'>, meta: Pick<ReleaseMetadata, 'release'>): Set<Digest> {
  const signed = new Set<string>(meta.release.omittedBlobs);
  const out = new Set<Digest>();
  const extra = source.index.annotations?.[UNSIGNED_OMITTED];
  if (extra !== undefined && extra !== '') {
    for (const d of extra.split(',')) {
      if (!isDigest(d)) throw layoutError(source.name, `index.json annotation ${UNSIGNED_OMITTED} names ${JSON.stringify(d.slice(0, 80))}, which is not a digest`);
      if (!signed.has(d)) out.add(d);
    }
  }
  return out;
}

/**
 * Every blob an image or the release needs is in the source, or listed as omitted (a delta).
 * Each distinct manifest is read and parsed once, whichever images share it.
 *
 * @returns each image's graph, in release order (omitted blobs are leaves)
 * @throws E_BLOBS_MISSING listing what is neither; what the reader throws
 */
export async function checkComplete(reader: MetadataReader, meta: Pick<ReleaseMetadata, 'release' | 'releaseDesc' | 'releaseManifest'>, options: OpOptions = {}): Promise<GraphNode[]> {
  return (await completeContent(reader, meta, options)).graphs;
}

/**
 * {@link checkComplete}, with the graphs of the referrers the release carries (each beside its
 * image's repository, each distinct repository, digest and tag once; their subjects are not part
 * of them).
 *
 * @throws what `checkComplete` throws
 */
export async function completeContent(
  reader: MetadataReader,
  meta: Pick<ReleaseMetadata, 'release' | 'releaseDesc' | 'releaseManifest'>,
  options: OpOptions = {},
): Promise<{ graphs: GraphNode[]; referrers: CarriedReferrer[]; unsignedOmitted: Digest[] }> {
  const source = reader.source;
  const omitted = omittedBlobs(source, meta);
  // The unsigned list may leave out only blobs (configs, layers) of the images and their
  // referrers: never the release itself, never a manifest or index (the nodes that say what the
  // release is), never a digest the release does not hold.
  const unsigned = unsignedOmitted(source, meta);
  const refuseUnsigned = (digest: string, what: string): never => {
    throw layoutError(source.name, `index.json annotation ${UNSIGNED_OMITTED} leaves out ${digest}, ${what}; that list is unsigned and may name only layers and configs of the release's images`);
  };
  const needed = new Map<string, Descriptor>();
  for (const d of [meta.releaseDesc, meta.releaseManifest.config, ...meta.releaseManifest.layers]) {
    if (unsigned.has(d.digest)) refuseUnsigned(d.digest, 'a part of the signed release itself');
    needed.set(d.digest, d);
  }
  for (const image of meta.release.images) {
    for (const d of [image.digest, image.sourceDigest, ...(image.referrers ?? []).map((r) => r.digest)]) if (d !== undefined && unsigned.has(d)) refuseUnsigned(d, `a manifest of ${image.ref}`);
  }
  const prune = (d: Descriptor): boolean => {
    // Only manifests and indexes are asked about: one of them left out unsigned hides what it names.
    if (unsigned.has(d.digest)) refuseUnsigned(d.digest, `a ${d.mediaType} manifest`);
    return omitted.has(d.digest);
  };
  const nodes = new Map<string, Promise<GraphNode>>();
  const graphs: GraphNode[] = [];
  const sig = options.signal === undefined ? {} : { signal: options.signal };
  for (const image of meta.release.images) {
    const root = source.index.manifests.find((d) => d.digest === image.digest) ?? { mediaType: image.mediaType, digest: image.digest, size: source.sizeOf?.(image.digest) ?? 0 };
    const graph = await resolveGraph(source, root, {
      ...sig,
      prune,
      nodes,
      read: (d) => reader.read(d, d.mediaType, sig),
      visit: (d) => reader.count(1, d.digest),
    });
    for (const node of postOrder(graph)) needed.set(node.desc.digest, node.desc);
    graphs.push(graph);
  }
  const referrers: CarriedReferrer[] = [];
  const carried = new Set<string>();
  for (const image of meta.release.images) {
    for (const record of image.referrers ?? []) {
      const key = `${image.repository} ${record.digest} ${record.tag ?? ''}`;
      if (carried.has(key)) continue;
      carried.add(key);
      const desc: Descriptor = { mediaType: record.mediaType, digest: record.digest, size: record.size };
      const graph = await referrerGraph(source, desc, {
        ...sig,
        stop: prune,
        nodes,
        read: (d) => reader.read(d, d.mediaType, sig),
        visit: (d) => reader.count(1, d.digest),
      });
      for (const node of postOrder(graph)) needed.set(node.desc.digest, node.desc);
      referrers.push({ repository: image.repository, record, graph });
    }
  }
  for (const d of unsigned) if (!needed.has(d)) refuseUnsigned(d, 'which no image of the release holds');
  const missing: string[] = [];
  for (const [digest, desc] of needed) {
    if (omitted.has(digest)) continue;
    const size = source.sizeOf?.(digest as Digest);
    const present = source.sizeOf !== undefined ? size !== undefined : await source.exists(desc, sig);
    if (!present) missing.push(digest);
  }
  if (missing.length > 0) {
    throw new SeabagError('E_BLOBS_MISSING', `the bundle lacks ${missing.length} blob(s) its release needs and does not list as omitted: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`, {
      details: { missing },
    });
  }
  checkReferrerSubjects(source.name, meta.release, graphs);
  return { graphs, referrers, unsignedOmitted: [...unsigned].sort() };
}

/**
 * Admits a release from `source`, or says why not. Reads metadata only: no layer is read (a
 * caller that needs every byte checked, like `verify`, hashes the blobs after).
 *
 * Limits: the caps of `MetadataReader` (`METADATA_LIMITS`: 4 MiB per metadata blob, 64 MiB of
 * distinct metadata, 100,000 descriptors), applied before any signature is checked.
 *
 * @throws E_LAYOUT_INVALID (malformed or oversized metadata, an index that disagrees with the
 *   signed release), E_SIZE_MISMATCH, E_DIGEST_MISMATCH (metadata blobs),
 *   E_TRUST_INVALID (the trusted root lacks a threshold of its own root signatures),
 *   E_ROOT_CHAIN_INVALID, E_UNSIGNED, E_KEY_UNTRUSTED, E_SIGNATURE_INVALID, E_SUBJECT_MISMATCH,
 *   E_THRESHOLD_UNMET, E_EXPIRED, what `policy` throws, E_BLOBS_MISSING, and what the source throws
 */
export async function admit(source: MetadataSource, options: AdmitOptions): Promise<Admission> {
  const reader = options.reader ?? new MetadataReader(source, options.limits);
  const meta = await readRelease(reader);
  verifyRootSelf(options.trust, options.trustName ?? 'the trusted root');
  const { root, accepted } = effectiveRoot(options.trust, meta.roots, options.knownRoots);
  const signatureCheck = verifyReleaseSignatures(meta, root);
  checkIndex(source, meta);
  checkImageNames(source.name, meta.release);
  checkExpiry(root, meta.release, options.now ?? new Date());
  options.policy?.(meta.release, meta.releaseDesc.digest);
  const { graphs, referrers, unsignedOmitted: leftOut } = await completeContent(reader, meta, options);
  return { ...meta, root, accepted, signatureCheck, graphs, referrers, reader, unsignedOmitted: leftOut };
}
