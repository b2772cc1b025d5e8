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
import { checkIndex, openBundle, releaseSummary, type BundleLayout, type OpenedBundle, type ReleaseSummary } from './release.js';

export interface VerifyOptions extends OpOptions {
  trust: TrustRoot;
  /** When to judge expiry (default: now). */
  now?: Date;
}

export interface VerifyReport {
  release: ReleaseSummary;
  signatures: SignatureCheck;
  root: { version: number; accepted: number[] };
  blobs: { verified: number; omitted: number; bytes: number };
}

/**
 * Every blob an image or the release needs is in the bundle, or listed as omitted (a delta).
 * Returns each image's graph, in release order (omitted blobs are leaves), for whoever copies it.
 *
 * @throws E_BLOBS_MISSING listing what is neither
 */
export async function checkComplete(bundle: OpenedBundle<BundleLayout>, options: OpOptions = {}): Promise<GraphNode[]> {
  const omitted = new Set<string>(bundle.release.omittedBlobs);
  const needed = new Set<string>([bundle.releaseDesc.digest, bundle.releaseManifest.config.digest, ...bundle.releaseManifest.layers.map((l) => l.digest)]);
  const graphs: GraphNode[] = [];
  for (const image of bundle.release.images) {
    const root = bundle.archive.index.manifests.find((d) => d.digest === image.digest) ?? { mediaType: image.mediaType, digest: image.digest, size: bundle.archive.location(image.digest)?.size ?? 0 };
    const graph = await resolveGraph(bundle.archive, root, { prune: (d) => omitted.has(d.digest), ...options });
    for (const node of postOrder(graph)) needed.add(node.desc.digest);
    graphs.push(graph);
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
 * Verifies a bundle (or its parts) against a trust root.
 *
 * @throws E_PART_MISSING, E_PART_CORRUPT, E_ARCHIVE_UNSAFE, E_ARCHIVE_TRUNCATED, E_LAYOUT_INVALID,
 *   E_ROOT_CHAIN_INVALID, E_UNSIGNED, E_KEY_UNTRUSTED, E_SIGNATURE_INVALID, E_SUBJECT_MISMATCH,
 *   E_THRESHOLD_UNMET, E_EXPIRED, E_BLOBS_MISSING, E_DIGEST_MISMATCH
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
    const hashed = await hashAllBlobs(bundle, options);
    const { release } = bundle;
    return {
      release: releaseSummary(bundle),
      signatures,
      root: { version: root.signed.version, accepted: accepted.map((r) => r.signed.version) },
      blobs: { verified: hashed.count, omitted: release.omittedBlobs.length, bytes: hashed.bytes },
    };
  } finally {
    await bundle.close();
  }
}
