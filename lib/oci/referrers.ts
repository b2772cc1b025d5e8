/**
 * Referrers as content: what every side needs to know of them, whoever found them (build),
 * admits them (`admit()`), or puts them aboard (import).
 *
 * - OCI 1.1 referrers (image-spec v1.1.0 `manifest.md`, `subject`; distribution-spec v1.1.0
 *   "Listing Referrers" and "Referrers Tag Schema": the fallback tag `sha256-<hex>`);
 * - cosign's tags `sha256-<hex>.sig`, `.att`, `.sbom` (sigstore/cosign `specs/SIGNATURE_SPEC.md`,
 *   "Tag-based Discovery").
 *
 * A referrer's `subject` is never part of its content: the subject is the image, carried on its
 * own, so a referrer's graph stops there. Nothing is parsed beyond the manifest structure, so
 * every kind, known or not, is carried byte for byte.
 */
import type { Digest } from './digest.js';
import { digestHex } from './digest.js';
import { parseImageManifest, parseIndex, REF_NAME, type Descriptor } from './descriptor.js';
import { fetchVerified, resolveGraph, type GraphNode, type ResolveOptions } from './graph.js';
import { isImageManifest } from './media-types.js';
import type { OpOptions, ReadOnlyStorage } from './store.js';

/** What a referrer is: one of cosign's tags, or an OCI 1.1 referrer (`subject` set). */
export type ReferrerKind = 'signature' | 'attestation' | 'sbom' | 'referrer';

/** A referrer as a release lists it, under its image. */
export interface ReferrerRecord {
  kind: ReferrerKind;
  /** The manifest it refers to (the image, one of its manifests, or another referrer). */
  subject: Digest;
  digest: Digest;
  mediaType: string;
  size: number;
  /** The manifest's `artifactType` (or its config's media type), as a referrers list gives it. */
  artifactType?: string;
  /** cosign's tag in the image's repository (`sha256-<hex>.sig`); absent for OCI 1.1 referrers. */
  tag?: string;
}

/** A referrer of a release image with its content graph, to go into the image's repository. */
export interface CarriedReferrer {
  /** The image's repository on the vessel. */
  repository: string;
  record: ReferrerRecord;
  graph: GraphNode;
}

/** The referrers tag schema's tag for a digest: `sha256-<hex>`. */
export function fallbackTag(digest: Digest): string {
  return `sha256-${digestHex(digest)}`;
}

/** cosign's tag for a digest: `sha256-<hex>.sig` (or `.att`, `.sbom`). */
export function cosignTag(digest: Digest, suffix: 'sig' | 'att' | 'sbom'): string {
  return `${fallbackTag(digest)}.${suffix}`;
}

/**
 * The manifest a referrer names as its `subject`, and the `artifactType` and annotations a
 * referrers list gives it (image-spec v1.1.0: an image manifest without `artifactType` is listed
 * with its config's media type).
 *
 * @throws E_LAYOUT_INVALID
 */
export function referrerFacts(bytes: Buffer, desc: Descriptor): { subject?: Digest; artifactType?: string; annotations?: Record<string, string> } {
  if (isImageManifest(desc.mediaType)) {
    const m = parseImageManifest(bytes, desc);
    const artifactType = m.artifactType ?? m.config.mediaType;
    return { ...(m.subject ? { subject: m.subject.digest } : {}), artifactType, ...(m.annotations ? { annotations: m.annotations } : {}) };
  }
  const i = parseIndex(bytes, desc);
  return { ...(i.subject ? { subject: i.subject.digest } : {}), ...(i.artifactType ? { artifactType: i.artifactType } : {}), ...(i.annotations ? { annotations: i.annotations } : {}) };
}

export interface ReferrerGraphOptions extends OpOptions, Pick<ResolveOptions, 'nodes' | 'read' | 'visit'> {
  /** Leave these as leaves too (content omitted from a delta, manifests of the image itself). */
  stop?: (desc: Descriptor) => boolean;
}

/**
 * A referrer's content graph: its manifest and everything it names except its `subject`.
 *
 * @throws E_LAYOUT_INVALID, E_DIGEST_MISMATCH and the store's errors
 */
export async function referrerGraph(store: ReadOnlyStorage, desc: Descriptor, options: ReferrerGraphOptions = {}): Promise<GraphNode> {
  const bytes = options.read === undefined ? await fetchVerified(store, desc, options) : await options.read(desc);
  const { subject } = referrerFacts(bytes, desc);
  const graph = await resolveGraph(store, desc, {
    prune: (d) => d.digest === subject || (d.digest !== desc.digest && options.stop?.(d) === true),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.nodes ? { nodes: options.nodes } : {}),
    ...(options.read ? { read: options.read } : {}),
    ...(options.visit ? { visit: options.visit } : {}),
  });
  return { ...graph, children: graph.children.filter((c) => c.desc.digest !== subject) };
}

/** The `index.json` entry of a referrer in a bundle: cosign's tags under the image's name, so OCI tools find them. */
export function referrerIndexEntry(record: Pick<ReferrerRecord, 'mediaType' | 'digest' | 'size' | 'artifactType' | 'tag'>, imageName: string): Descriptor {
  return {
    mediaType: record.mediaType,
    digest: record.digest,
    size: record.size,
    ...(record.artifactType === undefined ? {} : { artifactType: record.artifactType }),
    ...(record.tag === undefined ? {} : { annotations: { [REF_NAME]: `${imageName}:${record.tag}` } }),
  };
}
