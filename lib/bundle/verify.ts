/**
 * `bundle verify`: the whole bundle checked with no registry and no network: archive structure,
 * the root chain it carries, the signature threshold, expiry, completeness of every image, and
 * every blob's bytes, hashed in one sequential pass over the file.
 */
import { SeabagError, throwIfAborted } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { postOrder, resolveGraph, type GraphNode } from '../oci/graph.js';
import type { OpOptions } from '../oci/store.js';
import { checkExpiry } from '../trust/policy.js';
import type { TrustRoot } from '../trust/root.js';
import { effectiveRoot, verifyReleaseSignatures, type SignatureCheck } from '../trust/verify.js';
import { resolveBundleInput, verifyParts } from './parts.js';
import { carriedReferrers } from './referrers.js';
import { requireSignedImages, type ImageSignatureReport } from './image-policy.js';
import { parseImageKey, type ImageKey } from '../trust/cosign.js';
import { checkIndex, openBundle, releaseSummary, type OpenedBundle, type ReleaseSummary } from './release.js';

export interface VerifyOptions extends OpOptions {
  trust: TrustRoot;
  /** When to judge expiry (default: now). */
  now?: Date;
  /**
   * Also check every image's cosign signature, by these keys and those the signed release's
   * `imagePolicy` names (`bundle verify --images`).
   */
  images?: { keys: readonly ImageKey[] };
}

export interface VerifyReport {
  release: ReleaseSummary;
  signatures: SignatureCheck;
  root: { version: number; accepted: number[] };
  blobs: { verified: number; omitted: number; bytes: number };
  /** Each image's cosign signers (with `images`). */
  images?: ImageSignatureReport[];
}

/**
 * Every blob an image or the release needs is in the bundle, or listed as omitted (a delta).
 * Returns each image's graph, in release order (omitted blobs are leaves), for whoever copies it.
 *
 * @throws E_BLOBS_MISSING listing what is neither
 */
export async function checkComplete(bundle: OpenedBundle, options: OpOptions = {}): Promise<GraphNode[]> {
  const omitted = new Set<string>(bundle.release.omittedBlobs);
  const needed = new Set<string>([bundle.releaseDesc.digest, bundle.releaseManifest.config.digest, ...bundle.releaseManifest.layers.map((l) => l.digest)]);
  const graphs: GraphNode[] = [];
  for (const image of bundle.release.images) {
    const root = bundle.archive.index.manifests.find((d) => d.digest === image.digest) ?? { mediaType: image.mediaType, digest: image.digest, size: bundle.archive.location(image.digest)?.size ?? 0 };
    const graph = await resolveGraph(bundle.archive, root, { prune: (d) => omitted.has(d.digest), ...options });
    for (const node of postOrder(graph)) needed.add(node.desc.digest);
    graphs.push(graph);
  }
  for (const r of await carriedReferrers(bundle.archive, bundle.release.images, { omitted, ...options })) {
    for (const node of postOrder(r.graph)) needed.add(node.desc.digest);
  }
  const missing = [...needed].filter((d) => !omitted.has(d) && bundle.archive.location(d as Digest) === undefined);
  if (missing.length > 0) {
    throw new SeabagError('E_BLOBS_MISSING', `the bundle lacks ${missing.length} blob(s) its release needs and does not list as omitted: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`, {
      details: { missing },
    });
  }
  return graphs;
}

/**
 * Hashes every blob of the archive in file order.
 *
 * @throws E_DIGEST_MISMATCH naming the blob
 */
export async function hashAllBlobs(bundle: OpenedBundle, options: OpOptions = {}): Promise<{ count: number; bytes: number }> {
  const blobs = [...bundle.archive.blobs.entries()].sort(([, a], [, b]) => a.dataOffset - b.dataOffset);
  const total = blobs.reduce((sum, [, e]) => sum + e.size, 0);
  let done = 0;
  for (const [digest, entry] of blobs) {
    throwIfAborted(options.signal);
    const hex = await bundle.archive.source.sha256(
      entry.dataOffset,
      entry.size,
      (n) => {
        done += n;
        options.onProgress?.({ phase: 'verify', done, total, item: digest });
      },
      options.signal,
    );
    const found = `sha256:${hex}`;
    if (found !== digest) {
      const where = bundle.archive.source.locate(entry.dataOffset);
      throw new SeabagError('E_DIGEST_MISMATCH', `blob ${digest} is damaged: its bytes hash to ${found}`, {
        details: { expected: digest, found, file: where.file, offset: where.offset },
      });
    }
  }
  options.onProgress?.({ phase: 'verify', done: total, total });
  return { count: blobs.length, bytes: total };
}

/**
 * Every image of a (signature-checked) bundle carries a valid cosign signature by one of `keys` or
 * of the keys its release's `imagePolicy` names; read from the bundle alone.
 *
 * @throws E_USAGE when there is no key at all; E_IMAGE_UNSIGNED, E_IMAGE_SIGNATURE_INVALID
 */
export async function checkImageSignatures(bundle: OpenedBundle, keys: readonly ImageKey[], options: OpOptions = {}): Promise<ImageSignatureReport[]> {
  const all = [...keys, ...(bundle.release.imagePolicy?.keys ?? []).map((k, i) => parseImageKey(k.publicKey, `the release's image key ${i + 1}`))];
  if (all.length === 0) {
    throw new SeabagError('E_USAGE', 'the release names no image keys, and none were given', { hint: 'pass --image-key KEY.pub (the cosign public key the images are signed with)' });
  }
  return requireSignedImages(bundle.release.images, () => bundle.archive, all, { omitted: new Set(bundle.release.omittedBlobs), ...options });
}

/**
 * Verifies a bundle (or its parts) against a trust root.
 *
 * @throws E_PART_MISSING, E_PART_CORRUPT, E_ARCHIVE_UNSAFE, E_ARCHIVE_TRUNCATED, E_LAYOUT_INVALID,
 *   E_ROOT_CHAIN_INVALID, E_UNSIGNED, E_KEY_UNTRUSTED, E_SIGNATURE_INVALID, E_SUBJECT_MISMATCH,
 *   E_THRESHOLD_UNMET, E_EXPIRED, E_BLOBS_MISSING, E_DIGEST_MISMATCH; with `images`, also
 *   E_IMAGE_UNSIGNED, E_IMAGE_SIGNATURE_INVALID
 */
export async function verifyBundle(path: string, options: VerifyOptions): Promise<VerifyReport> {
  const input = await resolveBundleInput(path);
  await verifyParts(input, options);
  const bundle = await openBundle(input);
  try {
    const { root, accepted } = effectiveRoot(options.trust, bundle.roots);
    const signatures = verifyReleaseSignatures(bundle, root);
    checkIndex(bundle);
    checkExpiry(root, bundle.release, options.now ?? new Date());
    await checkComplete(bundle, options);
    const images = options.images === undefined ? undefined : await checkImageSignatures(bundle, options.images.keys, options);
    const hashed = await hashAllBlobs(bundle, options);
    const { release } = bundle;
    return {
      release: releaseSummary(bundle),
      signatures,
      root: { version: root.signed.version, accepted: accepted.map((r) => r.signed.version) },
      blobs: { verified: hashed.count, omitted: release.omittedBlobs.length, bytes: hashed.bytes },
      ...(images === undefined ? {} : { images }),
    };
  } finally {
    await bundle.close();
  }
}
