/**
 * The order of a bundle's blobs, as `bundle build` writes them (DESIGN.md, "The bundle"): the
 * signature and trust-chain artifacts (their layers, config, manifest) in index order; the
 * release (config, layers, manifest); every image's manifests and indexes and its configs of at
 * most 4 MiB, image by image, children before parents; then the remaining blobs (layers) in the
 * same walk. Each blob once, where it first appears; blobs a delta leaves out nowhere.
 *
 * `bundle pull` writes a bundle from a registry in this order, so a full pull of a pushed bundle
 * is the pushed file byte for byte; `bundle push` checks the file it pushes follows it.
 */
import type { Digest } from '../oci/digest.js';
import { MAX_METADATA_SIZE, parseImageManifest, type Descriptor, type ImageIndex, type ImageManifest } from '../oci/descriptor.js';
import { postOrder, resolveGraph, type GraphNode } from '../oci/graph.js';
import type { OpOptions, ReadOnlyStorage } from '../oci/store.js';
import { isImageManifest, SEABAG_RELEASE, SEABAG_SIGNATURE, SEABAG_TRUST_CHAIN } from '../oci/media-types.js';

export interface OrderedBlob {
  desc: Descriptor;
  /** Bytes already in hand (manifests and indexes of the image graphs). */
  bytes?: Buffer;
}

export interface OrderInput {
  index: ImageIndex;
  releaseManifest: ImageManifest;
  /** Manifests of the signature and trust-chain artifacts, by digest. */
  artifacts: ReadonlyMap<string, ImageManifest>;
  /**
   * The graph of every other entry of index.json (images, then the referrers carried with them),
   * in the order index.json lists them (see `contentGraphs`).
   */
  graphs: readonly GraphNode[];
  omitted: ReadonlySet<string>;
}

/** The blobs of a bundle in the order they are written. */
export function bundleBlobOrder(input: OrderInput): OrderedBlob[] {
  const out: OrderedBlob[] = [];
  const written = new Set<string>();
  const add = (desc: Descriptor, bytes?: Buffer): void => {
    if (written.has(desc.digest)) return;
    written.add(desc.digest);
    out.push(bytes === undefined ? { desc } : { desc, bytes });
  };
  for (const d of input.index.manifests) {
    if (d.artifactType !== SEABAG_SIGNATURE && d.artifactType !== SEABAG_TRUST_CHAIN) continue;
    const manifest = input.artifacts.get(d.digest);
    if (manifest === undefined) continue;
    for (const l of manifest.layers) add(l);
    add(manifest.config);
    add(d);
  }
  const release = input.index.manifests.find((d) => d.artifactType === SEABAG_RELEASE);
  add(input.releaseManifest.config);
  for (const l of input.releaseManifest.layers) add(l);
  if (release !== undefined) add(release);
  const nodes = input.graphs.flatMap((g) => postOrder(g));
  const configs = new Set<Digest>();
  for (const node of nodes) {
    if (node.bytes !== undefined && isImageManifest(node.desc.mediaType)) {
      const config = parseImageManifest(node.bytes, node.desc).config;
      if (config.size <= MAX_METADATA_SIZE) configs.add(config.digest);
    }
  }
  for (const node of nodes) {
    if (node.bytes !== undefined) add(node.desc, node.bytes);
    else if (configs.has(node.desc.digest) && !input.omitted.has(node.desc.digest)) add(node.desc);
  }
  for (const node of nodes) {
    if (node.bytes === undefined && !input.omitted.has(node.desc.digest)) add(node.desc);
  }
  return out;
}

/** Is this index.json entry an image or a carried referrer (not the release, a signature or a trust chain)? */
export function isContentEntry(d: Descriptor): boolean {
  return d.artifactType === undefined || ![SEABAG_RELEASE, SEABAG_SIGNATURE, SEABAG_TRUST_CHAIN].includes(d.artifactType);
}

/**
 * The graphs `bundleBlobOrder` walks: one per image or referrer entry of index.json, in its order;
 * those admission already resolved are reused, the others (referrers) resolved from `source`.
 */
export async function contentGraphs(source: ReadOnlyStorage, index: ImageIndex, known: readonly GraphNode[], omitted: ReadonlySet<string>, options: OpOptions = {}): Promise<GraphNode[]> {
  const byDigest = new Map(known.map((g) => [g.desc.digest, g]));
  const out: GraphNode[] = [];
  for (const d of index.manifests) {
    if (!isContentEntry(d)) continue;
    let graph = byDigest.get(d.digest);
    if (graph === undefined) {
      graph = await resolveGraph(source, d, { prune: (x) => omitted.has(x.digest), ...(options.signal ? { signal: options.signal } : {}) });
      byDigest.set(d.digest, graph);
    }
    out.push(graph);
  }
  return out;
}
