/**
 * `bundle pull oci://HOST/REPO:TAG -o FILE`: a bundle file written from the shore registry, for a
 * bridge PC that has the link while the cluster does not. The same rules as `import oci://`:
 * metadata first (and, with a trust root, every check before a layer moves), blobs through the
 * spool (resumed with `Range` after any break, paced by `--limit-rate`), then the file written in
 * the order `bundle build` writes, so a full pull of a pushed bundle is that file byte for byte.
 */
import { lstat, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fromSystemError, SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseImageManifest, type ImageManifest } from '../oci/descriptor.js';
import { postOrder, type GraphNode } from '../oci/graph.js';
import { LAYOUT_VERSION } from '../oci/layout.js';
import { isManifestLike, SEABAG_SIGNATURE, SEABAG_TRUST_CHAIN } from '../oci/media-types.js';
import { bundleBlobOrder, contentGraphs } from '../bundle/order.js';
import { partName, partsFileName } from '../bundle/parts.js';
import { releaseSummary, type ReleaseSummary } from '../bundle/release.js';
import { admit, checkComplete, checkIndex, omittedBlobs, UNSIGNED_OMITTED } from '../release/admit.js';
import { writeBundle, type BundleEntry, type WriteResult } from '../bundle/writer.js';
import type { TrustRoot } from '../trust/root.js';
import { canonicalBytes } from '../util/canonical.js';
import { parseOciAddress } from './address.js';
import { RegistryLayout, SMALL_BLOB } from './remote.js';
import { shoreClient, spoolOptions, type LinkOptions, type ShoreOptions } from './shore.js';
import { Spool } from './spool.js';

export interface PullOptions extends ShoreOptions, LinkOptions {
  output: string;
  /** Split into parts of at most this many bytes. */
  splitSize?: number;
  /** Check the release against this root before any layer moves (recommended). */
  trust?: TrustRoot;
  /** The clock, for expiry. */
  now?: Date;
  /** Overwrite an existing output. */
  force?: boolean;
  /**
   * Write a delta: leave out the blobs (layers and configs) these digests name, from a vessel's
   * inventory (`readSince`). The import checks the vessel holds them before it changes anything.
   */
  since?: ReadonlySet<string>;
}

export interface PullResult {
  bundle: string;
  files: string[];
  size: number;
  release: ReleaseSummary;
  /** The pushed bundle index's digest. */
  digest: Digest;
  /** Bytes that came over the link in this run. */
  bytesDownloaded: number;
  /** Bytes found in the spool from an earlier, interrupted run. */
  bytesResumed: number;
  /** Signatures were checked (with `trust`). */
  verified: boolean;
  /** Blobs left out with `since`, and their bytes. */
  omitted: { blobs: number; bytes: number };
  write: WriteResult;
}

/**
 * Pulls a pushed bundle into a file (or parts).
 *
 * @throws E_FILE_EXISTS (without force); E_NOT_FOUND, E_LAYOUT_INVALID; with `trust` every
 *   rejection of `verify` before a layer moves; E_DIGEST_MISMATCH naming a damaged blob;
 *   E_REGISTRY_UNREACHABLE once patience runs out (run again: it resumes); E_AUTH; E_DISK_FULL
 */
export async function pullBundle(source: string, options: PullOptions): Promise<PullResult> {
  const address = parseOciAddress(source, 'required');
  const sig = options.signal ? { signal: options.signal } : {};
  if (options.force !== true) {
    const target = options.splitSize === undefined ? options.output : `${options.output.replace(/[^/]*$/, '')}${partsFileName(options.output.replace(/^.*\//, ''))}`;
    for (const path of [target, ...(options.splitSize === undefined ? [] : [partName(options.output, 1)])]) {
      if (await stat(path).then(() => true, () => false)) {
        throw new SeabagError('E_FILE_EXISTS', `${path} exists`, { details: { file: path }, hint: 'choose another -o, or pass --force to overwrite it' });
      }
    }
  }
  const spool = new Spool(await claimSpool(`${options.output}.spool`), { ...spoolOptions(options, (n) => report(n)), onStart: (_size, have) => report(have) });
  let downloaded = 0;
  let expected = 0;
  const report = (n: number): void => {
    downloaded += n;
    options.onProgress?.({ phase: 'link', done: downloaded, total: Math.max(expected, downloaded) });
  };
  const client = await shoreClient(address.registry, options);
  try {
    const repo = client.repository(address.repository);
    const layout = await RegistryLayout.open(repo, address, spool, sig);
    const bundle = await layout.release();
    // Metadata first: a release this root refuses costs a few KiB of link. With a root, the one
    // admission path judges it (as verify and import do); without one, only its integrity is checked.
    let verified = false;
    let imageGraphs: GraphNode[];
    if (options.trust !== undefined) {
      imageGraphs = (await admit(layout, { trust: options.trust, reader: bundle.reader, ...(options.now === undefined ? {} : { now: options.now }), ...sig })).graphs;
      verified = true;
    } else {
      checkIndex(layout, bundle);
      imageGraphs = await checkComplete(bundle.reader, bundle, sig);
    }
    const omitted = omittedBlobs(layout, bundle);
    // A delta for a vessel whose inventory came ashore: what it holds stays out of the file; the
    // list rides unsigned in index.json (see UNSIGNED_OMITTED), and the vessel checks it holds them.
    const left = new Map<string, number>();
    if (options.since !== undefined) {
      for (const g of imageGraphs) {
        for (const n of postOrder(g)) {
          if (n.bytes === undefined && !omitted.has(n.desc.digest) && options.since.has(n.desc.digest)) left.set(n.desc.digest, n.desc.size);
        }
      }
    }
    for (const d of left.keys()) omitted.add(d);
    let indexJson = layout.indexJson;
    if (left.size > 0) {
      const doc = JSON.parse(indexJson.toString('utf8')) as { annotations?: Record<string, string> };
      const already = doc.annotations?.[UNSIGNED_OMITTED];
      const list = [...new Set([...(already === undefined || already === '' ? [] : already.split(',')), ...left.keys()])].sort();
      indexJson = canonicalBytes({ ...doc, annotations: { ...doc.annotations, [UNSIGNED_OMITTED]: list.join(',') } });
    }
    const artifacts = new Map<string, ImageManifest>();
    for (const d of layout.index.manifests) {
      if (d.artifactType === SEABAG_SIGNATURE || d.artifactType === SEABAG_TRUST_CHAIN) artifacts.set(d.digest, parseImageManifest(await layout.manifest(d, sig), d));
    }
    const graphs = await contentGraphs(layout, layout.index, imageGraphs, omitted, sig);
    const order = bundleBlobOrder({ index: layout.index, releaseManifest: bundle.releaseManifest, artifacts, graphs, omitted });
    const entries: BundleEntry[] = [
      { name: 'oci-layout', data: canonicalBytes({ imageLayoutVersion: LAYOUT_VERSION }) },
      { name: 'index.json', data: indexJson },
      { name: 'blobs', type: 'directory' },
      { name: 'blobs/sha256', type: 'directory' },
    ];
    for (const b of order) {
      const name = `blobs/sha256/${b.desc.digest.slice(7)}`;
      if (b.bytes !== undefined) entries.push({ name, data: b.bytes });
      else if (isManifestLike(b.desc.mediaType)) entries.push({ name, data: await layout.manifest(b.desc, sig) });
      else if (b.desc.size <= SMALL_BLOB) entries.push({ name, data: await layout.readSmall(b.desc) });
      else {
        expected += b.desc.size;
        entries.push({ name, desc: b.desc, reader: () => layout.reader(b.desc) });
      }
    }
    // A pull takes long: a file that appeared at the output meanwhile is not replaced without --force.
    const write = await writeBundle(options.output, entries, {
      ...(options.splitSize === undefined ? {} : { splitSize: options.splitSize }),
      ...(options.force === true ? {} : { noClobber: true }),
      ...sig,
    });
    await spool.remove();
    return {
      bundle: write.parts === undefined ? options.output : (write.files.at(-1) as string),
      files: write.files,
      size: write.size,
      release: releaseSummary(bundle),
      digest: layout.desc.digest,
      bytesDownloaded: spool.bytesDownloaded + layout.metadataBytes,
      bytesResumed: spool.bytesReused,
      verified,
      omitted: { blobs: left.size, bytes: [...left.values()].reduce((a, b) => a + b, 0) },
      write,
    };
  } finally {
    client.close();
  }
}

/** The file that marks a folder as a pull spool seabag made (and may therefore empty and remove). */
export const SPOOL_MARKER = '.seabag-pull-spool';

/**
 * Makes the spool folder beside the output, or takes up one an interrupted pull left (resumed):
 * it is removed recursively when the pull ends, so a folder that is not ours (no marker, a
 * symlink, a file) is refused, never emptied.
 *
 * @throws E_FILE_EXISTS
 */
export async function claimSpool(dir: string): Promise<string> {
  const refuse = (why: string): SeabagError =>
    new SeabagError('E_FILE_EXISTS', `${dir} exists and ${why}; a pull keeps its spool there and removes it afterwards, so it is left alone`, {
      details: { file: dir },
      hint: 'move it away, or choose another -o',
    });
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const found = await lstat(dir).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw fromFs(err, dir);
    });
    if (found === undefined) {
      try {
        await mkdir(dir, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw fromFs(err, dir);
      }
      await writeFile(join(dir, SPOOL_MARKER), 'seabag pull spool: removed when the pull ends\n', { flag: 'wx' }).catch((err: unknown) => {
        throw fromFs(err, dir);
      });
      return dir;
    }
    if (found.isSymbolicLink()) throw refuse('is a symbolic link');
    if (!found.isDirectory()) throw refuse('is not a folder');
    const marked = await lstat(join(dir, SPOOL_MARKER)).then((m) => m.isFile(), () => false);
    if (!marked) throw refuse('is not a spool seabag made');
    return dir;
  }
  throw refuse('changed while it was being made');
}

function fromFs(err: unknown, path: string): SeabagError {
  return fromSystemError(err, 'make the pull spool', path);
}
