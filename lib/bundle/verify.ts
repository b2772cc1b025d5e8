/**
 * `bundle verify`: the whole bundle checked with no registry and no network. The release is
 * judged by `admit()`, the same path `import` takes (archive structure, the trusted root's own
 * signatures, the root chain it carries, the signature threshold, the index, expiry,
 * completeness), and then every blob's bytes are hashed, different blobs on different cores (a split bundle's parts in the
 * same pass).
 */
import { SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { OpOptions, ReadOnlyStorage } from '../oci/store.js';
import { admit } from '../release/admit.js';
import { releaseSummary, type ReleaseDocument, type ReleaseSummary } from '../release/model.js';
import { parseImageKey, type ImageKey } from '../trust/cosign.js';
import { requireSignedImages, type ImageSignatureReport } from './image-policy.js';
import type { TrustRoot } from '../trust/root.js';
import type { SignatureCheck } from '../trust/verify.js';
import type { ArchiveLayout } from './archive.js';
import { hashLanes, type HashJob, type HashTarget } from './hash-lanes.js';
import { partCorrupt, resolveBundleInput, verifyParts, type BundleInput, type PartsFile } from './parts.js';
import type { TarEntry } from './tar.js';
import { openArchive } from './release.js';

export { checkComplete, checkIndex } from '../release/admit.js';

export interface VerifyOptions extends LaneOptions {
  trust: TrustRoot;
  /** What to call the trust root in messages (its file). */
  trustName?: string;
  /** When to judge expiry (default: now). */
  now?: Date;
  /**
   * Also check every image's cosign signature (`bundle verify --images`): by these keys alone when
   * any are given, else by those the signed release's `imagePolicy` names.
   */
  images?: { keys: readonly ImageKey[] };
}

export interface VerifyReport {
  release: ReleaseSummary;
  signatures: SignatureCheck;
  root: { version: number; accepted: number[] };
  /**
   * `omitted`: every blob the bundle leaves out (a delta); `omittedUnsigned`: those of them only
   * the unsigned `index.json` list names (`bundle pull --since`), which import needs the vessel
   * to hold already.
   */
  blobs: { verified: number; omitted: number; omittedUnsigned: number; bytes: number };
  /** Each image's cosign signers (with `images`). */
  images?: ImageSignatureReport[];
  /** The keys image signatures were checked against, and whether given or the release's (with `images`). */
  imageKeys?: ImageKeysUsed;
}

/** How many cores to hash on (default: all, at most 4), and from what size on (tests set both). */
export interface LaneOptions extends OpOptions {
  lanes?: number;
  minParallelBytes?: number;
}

/** The lane options hashLanes takes, from a caller's. */
function laneOptions(options: LaneOptions): { signal?: AbortSignal; lanes?: number; minParallelBytes?: number } {
  return {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.lanes === undefined ? {} : { lanes: options.lanes }),
    ...(options.minParallelBytes === undefined ? {} : { minParallelBytes: options.minParallelBytes }),
  };
}

/** A blob whose bytes do not hash to its name, named with the file (part) and offset it sits at. */
function damagedBlob(archive: ArchiveLayout, digest: Digest, hex: string): SeabagError {
  const found = `sha256:${hex}`;
  const entry = archive.blobs.get(digest) as TarEntry;
  const where = archive.source.locate(entry.dataOffset);
  return new SeabagError('E_DIGEST_MISMATCH', `blob ${digest} is damaged: its bytes hash to ${found}`, {
    details: { expected: digest, found, file: where.file, offset: where.offset },
  });
}

/**
 * Hashes every blob of the archive, different blobs on different cores (`hashLanes`). Progress
 * counts each byte once and ends at the total; when blobs are damaged, the error names the first
 * in file order, as a sequential pass would.
 *
 * @throws E_DIGEST_MISMATCH naming the blob, E_ARCHIVE_TRUNCATED, E_IO
 */
export async function hashAllBlobs(archive: ArchiveLayout, options: LaneOptions = {}): Promise<{ count: number; bytes: number }> {
  const blobs = [...archive.blobs.entries()].sort(([, a], [, b]) => a.dataOffset - b.dataOffset);
  const total = blobs.reduce((sum, [, e]) => sum + e.size, 0);
  let done = 0;
  const bad = new Map<number, SeabagError>();
  await hashLanes(
    archive.source,
    blobs.map(([, e]) => ({ start: e.dataOffset, end: e.dataOffset + e.size, counted: e.dataOffset + e.size, targets: [{ start: e.dataOffset, end: e.dataOffset + e.size }] })),
    {
      ...laneOptions(options),
      onBytes: (n, job) => {
        done += n;
        options.onProgress?.({ phase: 'verify', done, total, item: (blobs[job] as [Digest, TarEntry])[0] });
      },
      onJob: (job, [hex]) => {
        const digest = (blobs[job] as [Digest, TarEntry])[0];
        if (`sha256:${hex as string}` === digest) return false;
        bad.set(job, damagedBlob(archive, digest, hex as string));
        return true;
      },
    },
  );
  const first = [...bad.keys()].sort((a, b) => a - b)[0];
  if (first !== undefined) throw bad.get(first) as SeabagError;
  options.onProgress?.({ phase: 'verify', done: total, total });
  return { count: blobs.length, bytes: total };
}

/**
 * A split bundle: each part's sha256 and each blob's, every byte hashed twice, on every core. A
 * part is read once for its own hash and those of the blobs wholly inside it; a blob that
 * crosses a part's end is a job of its own (its bytes read a second time, from the page cache),
 * so that one big layer's hash runs on one core while the parts are hashed on the other. A bad
 * part is named before any blob (it may be what damaged them), else the first bad blob in file
 * order.
 *
 * Progress counts the bundle's bytes once: each job's hashing moves it by its share of the
 * work, and it ends at the bundle's size.
 *
 * @throws E_PART_CORRUPT naming the first bad part, else E_DIGEST_MISMATCH naming the first bad
 *   blob; E_ARCHIVE_TRUNCATED, E_IO
 */
export async function hashPartsAndBlobs(archive: ArchiveLayout, input: BundleInput, options: LaneOptions = {}): Promise<{ count: number; bytes: number }> {
  const parts = input.parts;
  if (parts === undefined) return hashAllBlobs(archive, options);
  const blobs = [...archive.blobs.entries()].sort(([, a], [, b]) => a.dataOffset - b.dataOffset);
  type Part = PartsFile['parts'][number];
  const starts: number[] = [];
  let at = 0;
  for (const p of parts.parts) {
    starts.push(at);
    at += p.size;
  }
  const total = at;
  type Target = { kind: 'part'; index: number } | { kind: 'blob'; index: number };
  const kinds: Target[][] = [];
  const jobs: HashJob[] = [];
  /** Which part each job starts in (for progress), and how much hashing each byte of it is. */
  const partOf: number[] = [];
  const weight: number[] = [];
  const add = (start: number, end: number, targets: HashTarget[], kind: Target[], part: number): void => {
    jobs.push({ start, end, counted: end, targets });
    kinds.push(kind);
    partOf.push(part);
    weight.push(end > start ? targets.reduce((sum, t) => sum + (t.end - t.start), 0) / (end - start) : 0);
  };
  let b = 0;
  for (const [i, p] of parts.parts.entries()) {
    const start = starts[i] as number;
    const end = start + p.size;
    const targets: HashTarget[] = [{ start, end }];
    const kind: Target[] = [{ kind: 'part', index: i }];
    for (; b < blobs.length && (blobs[b] as [Digest, TarEntry])[1].dataOffset < end; b += 1) {
      const e = (blobs[b] as [Digest, TarEntry])[1];
      if (e.dataOffset + e.size <= end) {
        targets.push({ start: e.dataOffset, end: e.dataOffset + e.size });
        kind.push({ kind: 'blob', index: b });
      } else {
        add(e.dataOffset, e.dataOffset + e.size, [{ start: e.dataOffset, end: e.dataOffset + e.size }], [{ kind: 'blob', index: b }], i);
      }
    }
    add(start, end, targets, kind, i);
  }
  const work = jobs.reduce((sum, j, i) => sum + (j.end - j.start) * (weight[i] as number), 0);
  let worked = 0;
  let done = 0;
  const badParts = new Map<number, SeabagError>();
  const badBlobs = new Map<number, SeabagError>();
  const isPartJob = (job: number): boolean => (kinds[job] as Target[]).some((k) => k.kind === 'part');
  await hashLanes(archive.source, jobs, {
    ...laneOptions(options),
    onBytes: (n, job) => {
      worked += n * (weight[job] as number);
      const now = Math.min(total, Math.floor((worked / work) * total));
      if (now <= done) return;
      done = now;
      options.onProgress?.({ phase: 'verify', done, total, item: (parts.parts[partOf[job] as number] as Part).name });
    },
    onJob: (job, hexes) => {
      let partBad = false;
      let blobBad: number | undefined;
      for (const [t, hex] of hexes.entries()) {
        const target = (kinds[job] as Target[])[t] as Target;
        if (target.kind === 'part') {
          const p = parts.parts[target.index] as Part;
          if (hex === p.sha256) continue;
          badParts.set(target.index, partCorrupt(input, p, hex));
          partBad = true;
        } else {
          const digest = (blobs[target.index] as [Digest, TarEntry])[0];
          if (`sha256:${hex}` === digest) continue;
          badBlobs.set(target.index, damagedBlob(archive, digest, hex));
          blobBad ??= (jobs[job] as HashJob).targets[t]?.start;
        }
      }
      const from = (jobs[job] as HashJob).start;
      // A bad part: blobs no longer matter, nor parts after it. A bad blob: parts still do (one
      // of them may be what damaged it), blobs after it no longer.
      if (partBad) return (other) => !isPartJob(other) || (jobs[other] as HashJob).start > from;
      if (blobBad !== undefined) return (other) => !isPartJob(other) && (jobs[other] as HashJob).start > (blobBad as number);
      return false;
    },
  });
  const firstPart = [...badParts.keys()].sort((x, y) => x - y)[0];
  if (firstPart !== undefined) throw badParts.get(firstPart) as SeabagError;
  const firstBlob = [...badBlobs.keys()].sort((x, y) => x - y)[0];
  if (firstBlob !== undefined) throw badBlobs.get(firstBlob) as SeabagError;
  options.onProgress?.({ phase: 'verify', done: total, total });
  return { count: blobs.length, bytes: blobs.reduce((sum, [, e]) => sum + e.size, 0) };
}

/** Which keys `verify --images` accepted image signatures by, and where they came from. */
export interface ImageKeysUsed {
  /** `image-key`: only the keys given (the release's own are ignored); `release`: its imagePolicy. */
  source: 'image-key' | 'release';
  keyids: string[];
}

/**
 * Every image of an admitted release carries a valid cosign signature by one of `keys` when any
 * are given (and then by those alone: a stolen release key must not bring its own image key), else
 * by one of the keys the signed release's `imagePolicy` names; read from `store` alone (the
 * bundle, offline). Blobs the release or `unsignedOmitted` (admission's) leave out are not read.
 *
 * @throws E_USAGE when there is no key at all; E_IMAGE_UNSIGNED, E_IMAGE_SIGNATURE_INVALID
 */
export async function checkImageSignatures(
  store: ReadOnlyStorage,
  release: ReleaseDocument,
  keys: readonly ImageKey[],
  options: OpOptions & { unsignedOmitted?: readonly string[] } = {},
): Promise<{ reports: ImageSignatureReport[]; keys: ImageKeysUsed }> {
  const given = keys.length > 0;
  const all = given ? [...keys] : (release.imagePolicy?.keys ?? []).map((k, i) => parseImageKey(k.publicKey, `the release's image key ${i + 1}`));
  if (all.length === 0) {
    throw new SeabagError('E_USAGE', 'the release names no image keys, and none were given', { hint: 'pass --image-key KEY.pub (the cosign public key the images are signed with)' });
  }
  const used: ImageKeysUsed = { source: given ? 'image-key' : 'release', keyids: [...new Set(all.map((k) => k.keyid))] };
  const { unsignedOmitted = [], ...rest } = options;
  const reports = await requireSignedImages(release.images, () => store, all, { omitted: new Set([...release.omittedBlobs, ...unsignedOmitted]), ...rest });
  return { reports, keys: used };
}

/**
 * Verifies a bundle (or its parts) against a trust root: `admit()`, then every byte.
 *
 * @throws E_FILE_NOT_FOUND, E_USAGE, E_PART_MISSING, E_PART_CORRUPT, E_ARCHIVE_UNSAFE,
 *   E_ARCHIVE_TRUNCATED, and every code `admit()` throws (E_TRUST_INVALID when the trust root
 *   lacks its own signatures, as import says), then E_DIGEST_MISMATCH; with `images`, also
 *   E_IMAGE_UNSIGNED, E_IMAGE_SIGNATURE_INVALID
 */
export async function verifyBundle(path: string, options: VerifyOptions): Promise<VerifyReport> {
  const input = await resolveBundleInput(path);
  // A split bundle's parts are hashed in the same pass as its blobs; when something fails before
  // that pass, a bad part is the likelier cause, so it is looked for then and named first.
  const namePart = async (err: unknown): Promise<never> => {
    if (input.parts !== undefined && !(err instanceof SeabagError && err.code === 'E_ABORTED')) await verifyParts(input, options);
    throw err;
  };
  const archive = await openArchive(input).catch(namePart);
  // Hashing starts at once, beside admission (signature, root chain, index), so the threads'
  // start and the metadata checks hide behind the bytes: the main thread hashes in slices and
  // lets admission's reads run between them. Admission's verdict still comes first, and a
  // refused bundle stops the hashing.
  const stop = new AbortController();
  const signal = options.signal === undefined ? stop.signal : AbortSignal.any([options.signal, stop.signal]);
  const hashing = hashPartsAndBlobs(archive, input, { ...options, signal });
  hashing.catch(() => undefined);
  try {
    const admitted = await admit(archive, {
      trust: options.trust,
      ...(options.trustName === undefined ? {} : { trustName: options.trustName }),
      ...(options.now === undefined ? {} : { now: options.now }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    }).catch(async (err: unknown) => {
      stop.abort();
      await hashing.catch(() => undefined);
      return namePart(err);
    });
    const images =
      options.images === undefined
        ? undefined
        : await checkImageSignatures(archive, admitted.release, options.images.keys, { ...options, unsignedOmitted: admitted.unsignedOmitted }).catch(async (err: unknown) => {
            stop.abort();
            await hashing.catch(() => undefined);
            return namePart(err);
          });
    const hashed = await hashing;
    return {
      release: releaseSummary(admitted),
      signatures: admitted.signatureCheck,
      root: { version: admitted.root.signed.version, accepted: admitted.accepted.map((r) => r.signed.version) },
      blobs: { verified: hashed.count, omitted: admitted.release.omittedBlobs.length + admitted.unsignedOmitted.length, omittedUnsigned: admitted.unsignedOmitted.length, bytes: hashed.bytes },
      ...(images === undefined ? {} : { images: images.reports, imageKeys: images.keys }),
    };
  } finally {
    stop.abort();
    await hashing.catch(() => undefined);
    await archive.close();
  }
}
