/**
 * `bundle push FILE oci://HOST/REPO`: a bundle into the registry shore already runs. Every blob
 * and manifest goes into REPO (HEAD first: what is there is not sent again), children before
 * parents; then the bundle's `index.json` as one OCI image index with `artifactType`
 * `application/vnd.seabag.bundle.v1`, tagged with the release version (or `--tag`). Standard
 * tools read what it pushed: `skopeo inspect --raw` shows the index, and every image in it can be
 * copied by digest.
 */
import { SeabagError } from '../errors.js';
import { sha256Digest, type Digest } from '../oci/digest.js';
import { parseImageManifest, type Descriptor, type ImageManifest } from '../oci/descriptor.js';
import { copyGraph, postOrder, resolveGraph, type GraphNode } from '../oci/graph.js';
import { INDEX_FILE, LAYOUT_VERSION, OCI_LAYOUT_FILE } from '../oci/layout.js';
import { OCI_INDEX, SEABAG_SIGNATURE, SEABAG_TRUST_CHAIN } from '../oci/media-types.js';
import { TAG } from '../oci/reference.js';
import type { ArchiveLayout } from '../bundle/archive.js';
import { bundleBlobOrder, contentGraphs } from '../bundle/order.js';
import { resolveBundleInput, verifyParts } from '../bundle/parts.js';
import { openBundle, versionTag, type OpenedBundle } from '../bundle/release.js';
import { checkComplete, checkIndex } from '../release/admit.js';
import { canonicalBytes } from '../util/canonical.js';
import { Limiter } from '../util/limit.js';
import { formatOciAddress, parseOciAddress } from './address.js';
import { pushedIndexBytes, bundleIndexBytes } from './remote.js';
import { shoreClient, type ShoreOptions } from './shore.js';

export interface PushOptions extends ShoreOptions {
  /** Tag for the bundle's index (default: the release version, `+` written `_`). */
  tag?: string;
  /** Blob uploads at once (default 3). */
  concurrency?: number;
}

export interface PushResult {
  /** `oci://HOST/REPO:TAG` */
  address: string;
  /** Digest of the pushed bundle index (`oci://HOST/REPO@DIGEST` names it for good). */
  digest: Digest;
  release: { name: string; version: string; digest: Digest };
  blobs: { total: number; pushed: number; skipped: number; omitted: number };
  bytesPushed: number;
  /** A full `bundle pull` of this will be the pushed file byte for byte. */
  reproducible: boolean;
  notes: string[];
}

/** The graph of every manifest in index.json (images, release, signature, trust chain). */
async function indexGraphs(bundle: OpenedBundle, imageGraphs: readonly GraphNode[], omitted: ReadonlySet<string>): Promise<GraphNode[]> {
  const byDigest = new Map(imageGraphs.map((g) => [g.desc.digest, g]));
  const graphs: GraphNode[] = [];
  for (const d of bundle.archive.index.manifests) {
    graphs.push(byDigest.get(d.digest) ?? (await resolveGraph(bundle.archive, d, { prune: (x) => omitted.has(x.digest) })));
  }
  return graphs;
}

/** Would a pull of this push write this very file? (The order and the metadata files of build.) */
async function reproducible(archive: ArchiveLayout, bundle: OpenedBundle, imageGraphs: readonly GraphNode[], omitted: ReadonlySet<string>, pushed: Buffer): Promise<string | undefined> {
  const entry = (name: string): Buffer | Promise<Buffer> => {
    const e = archive.entries.find((x) => x.name === name);
    return e === undefined ? Buffer.alloc(0) : archive.source.read(e.dataOffset, e.size);
  };
  if (!(await entry(OCI_LAYOUT_FILE)).equals(canonicalBytes({ imageLayoutVersion: LAYOUT_VERSION }))) return `its ${OCI_LAYOUT_FILE} is not the one bundle build writes`;
  if (!(await entry(INDEX_FILE)).equals(bundleIndexBytes(pushed))) return `its ${INDEX_FILE} is not canonical JSON`;
  const artifacts = new Map<string, ImageManifest>();
  for (const d of archive.index.manifests) {
    if (d.artifactType === SEABAG_SIGNATURE || d.artifactType === SEABAG_TRUST_CHAIN) artifacts.set(d.digest, parseImageManifest(await archive.readSmall(d), d));
  }
  const graphs = await contentGraphs(archive, archive.index, imageGraphs, omitted);
  const expected = [OCI_LAYOUT_FILE, INDEX_FILE, 'blobs', 'blobs/sha256', ...bundleBlobOrder({ index: archive.index, releaseManifest: bundle.releaseManifest, artifacts, graphs, omitted }).map((b) => `blobs/sha256/${b.desc.digest.slice(7)}`)];
  const found = archive.entries.map((e) => e.name.replace(/\/$/, ''));
  if (expected.length !== found.length || expected.some((n, i) => n !== found[i])) return 'its entries are not in the order bundle build writes them';
  return undefined;
}

/**
 * Pushes a bundle (a file, its `.parts.json`, or any part) to `oci://HOST[:PORT]/REPO`.
 *
 * @throws E_USAGE (address, tag), E_BLOBS_MISSING (a delta whose omitted blobs REPO lacks: nothing
 *   is pushed), every archive and layout error of `openBundle`, E_DIGEST_MISMATCH, E_AUTH,
 *   E_REGISTRY*
 */
export async function pushBundle(path: string, target: string, options: PushOptions = {}): Promise<PushResult> {
  const address = parseOciAddress(target, 'none');
  if (options.tag !== undefined && !TAG.test(options.tag)) throw new SeabagError('E_USAGE', `invalid tag ${JSON.stringify(options.tag)}`);
  const sig = options.signal ? { signal: options.signal } : {};
  const input = await resolveBundleInput(path);
  await verifyParts(input, options);
  const bundle = await openBundle(input);
  const client = await shoreClient(address.registry, { ...options, retries: 5, backoff: { minMs: 250, maxMs: 8_000 } });
  try {
    const { release } = bundle;
    checkIndex(bundle.archive, bundle);
    const imageGraphs = await checkComplete(bundle.reader, bundle, sig);
    const omitted = new Set<string>(release.omittedBlobs);
    const graphs = await indexGraphs(bundle, imageGraphs, omitted);
    const repo = client.repository(address.repository);
    await client.ping(options.signal);
    const notes: string[] = [];

    // A delta names blobs it does not carry: the registry must have every one of them already.
    if (omitted.size > 0) {
      const descs = new Map<string, Descriptor>();
      for (const g of graphs) for (const n of postOrder(g)) if (omitted.has(n.desc.digest)) descs.set(n.desc.digest, n.desc);
      const missing: string[] = [];
      for (const desc of descs.values()) if (!(await repo.exists(desc, sig))) missing.push(desc.digest);
      if (missing.length > 0) {
        throw new SeabagError('E_BLOBS_MISSING', `this delta bundle leaves out ${missing.length} blob(s) that ${address.registry}/${address.repository} does not have: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`, {
          details: { missing: missing.sort() },
          hint: 'push the full bundle (or the one this delta was built against) to the same repository first',
        });
      }
    }

    const tag = options.tag ?? versionTag(release.version);
    const pushedIndex = pushedIndexBytes(await bundle.archive.source.read(...indexSpan(bundle.archive)));
    const limiter = new Limiter(options.concurrency ?? 3);
    const counted = new Set<string>();
    let pushed = 0;
    let skipped = 0;
    let bytesPushed = 0;
    let total = 0;
    for (const g of graphs) for (const n of postOrder(g)) if (!omitted.has(n.desc.digest) && !counted.has(n.desc.digest)) {
      counted.add(n.desc.digest);
      total += n.desc.size;
    }
    const seen = new Set<string>();
    let done = 0;
    for (const graph of graphs) {
      const result = await copyGraph(bundle.archive, repo, graph, {
        limiter,
        skip: (d) => omitted.has(d.digest) || seen.has(d.digest),
        onNode: (d, outcome) => {
          if (outcome === 'skipped' || seen.has(d.digest)) return;
          seen.add(d.digest);
          done += d.size;
          if (outcome === 'pushed') pushed += 1;
          else skipped += 1;
          options.onProgress?.({ phase: 'push', done, total, item: d.digest });
        },
        ...sig,
      });
      bytesPushed += result.bytesCopied;
    }
    const current = await repo.tagDigest(tag, sig);
    const digest = sha256Digest(pushedIndex);
    if (current !== digest) {
      if (current !== undefined) notes.push(`moved tag ${tag} from ${current} to this bundle`);
      await repo.putManifest(tag, pushedIndex, OCI_INDEX, sig);
      bytesPushed += pushedIndex.length;
    }
    const why = await reproducible(bundle.archive, bundle, imageGraphs, omitted, pushedIndex);
    if (why !== undefined) notes.push(`a pull of this will be an equivalent bundle, not this file byte for byte: ${why}`);
    if (bundle.signatures.length === 0) notes.push('the bundle is unsigned: vessels will refuse it');
    return {
      address: formatOciAddress({ ...address, tag }),
      digest,
      release: { name: release.name, version: release.version, digest: bundle.releaseDesc.digest },
      blobs: { total: seen.size, pushed, skipped, omitted: omitted.size },
      bytesPushed,
      reproducible: why === undefined,
      notes,
    };
  } finally {
    client.close();
    await bundle.close();
  }
}

function indexSpan(archive: ArchiveLayout): [number, number] {
  const e = archive.entries.find((x) => x.name === INDEX_FILE);
  if (e === undefined) throw new SeabagError('E_LAYOUT_INVALID', `${archive.source.name} has no ${INDEX_FILE}`);
  return [e.dataOffset, e.size];
}
