/**
 * `bundle verify`: the whole bundle checked with no registry and no network. The release is
 * judged by `admit()`, the same path `import` takes (archive structure, the trusted root's own
 * signatures, the root chain it carries, the signature threshold, the index, expiry,
 * completeness), and then every blob's bytes are hashed, different blobs on different cores (a split bundle's parts in the
 * same pass).
 */
import { availableParallelism } from 'node:os';
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
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.lanes === undefined ? {} : { lanes: options.lanes }),
      ...(options.minParallelBytes === undefined ? {} : { minParallelBytes: options.minParallelBytes }),
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
 * A split bundle in one read: each part's sha256 and the hashes of the blobs inside it come from
 * the same pass. The parts are cut into runs, one per lane; a run reads on past its last part to
 * finish a blob that crosses into the next run. A bad part is named before any blob it damaged.
 *
 * @throws E_PART_CORRUPT naming the first bad part, else E_DIGEST_MISMATCH naming the first bad
 *   blob; E_ARCHIVE_TRUNCATED, E_IO
 */
export async function hashPartsAndBlobs(archive: ArchiveLayout, input: BundleInput, options: LaneOptions = {}): Promise<{ count: number; bytes: number }> {
  const parts = input.parts;
  if (parts === undefined) return hashAllBlobs(archive, options);
  const blobs = [...archive.blobs.entries()].sort(([, a], [, b]) => a.dataOffset - b.dataOffset);
  const lanes = Math.max(1, options.lanes ?? Math.min(availableParallelism(), 4));
  // Part boundaries, then runs of parts of about equal bytes.
  const starts: number[] = [];
  let at = 0;
  for (const p of parts.parts) {
    starts.push(at);
    at += p.size;
  }
  const total = at;
  const runs: { from: number; to: number }[] = [];
  let from = 0;
  for (let i = 0; i < parts.parts.length; i += 1) {
    const end = (starts[i] as number) + (parts.parts[i] as PartsFile['parts'][number]).size;
    if (end >= (total * (runs.length + 1)) / lanes || i === parts.parts.length - 1) {
      runs.push({ from, to: i + 1 });
      from = i + 1;
    }
  }
  type Target = { kind: 'part'; index: number } | { kind: 'blob'; index: number };
  const kinds: Target[][] = [];
  const jobs: HashJob[] = runs.map((run) => {
    const start = starts[run.from] as number;
    const counted = run.to < starts.length ? (starts[run.to] as number) : total;
    const targets: HashTarget[] = [];
    const kind: Target[] = [];
    for (let i = run.from; i < run.to; i += 1) {
      targets.push({ start: starts[i] as number, end: (starts[i] as number) + (parts.parts[i] as PartsFile['parts'][number]).size });
      kind.push({ kind: 'part', index: i });
    }
    let end = counted;
    for (const [index, [, e]] of blobs.entries()) {
      if (e.dataOffset < start || e.dataOffset >= counted) continue;
      targets.push({ start: e.dataOffset, end: e.dataOffset + e.size });
      kind.push({ kind: 'blob', index });
      end = Math.max(end, e.dataOffset + e.size);
    }
    kinds.push(kind);
    return { start, end, counted, targets };
  });
  let done = 0;
  const badParts = new Map<number, SeabagError>();
  const badBlobs = new Map<number, SeabagError>();
  await hashLanes(archive.source, jobs, {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.minParallelBytes === undefined ? {} : { minParallelBytes: options.minParallelBytes }),
    lanes,
    onBytes: (n, job) => {
      done += n;
      const first = (kinds[job] as Target[])[0] as Target;
      options.onProgress?.({ phase: 'verify', done, total, item: (parts.parts[first.index] as PartsFile['parts'][number]).name });
    },
    onJob: (job, hexes) => {
      let damaged = false;
      for (const [t, hex] of hexes.entries()) {
        const target = (kinds[job] as Target[])[t] as Target;
        if (target.kind === 'part') {
          const p = parts.parts[target.index] as PartsFile['parts'][number];
          if (hex === p.sha256) continue;
          badParts.set(target.index, partCorrupt(input, p, hex));
        } else {
          const digest = (blobs[target.index] as [Digest, TarEntry])[0];
          if (`sha256:${hex}` === digest) continue;
          badBlobs.set(target.index, damagedBlob(archive, digest, hex));
        }
        damaged = true;
      }
      return damaged;
    },
  });
  const firstPart = [...badParts.keys()].sort((a, b) => a - b)[0];
  if (firstPart !== undefined) throw badParts.get(firstPart) as SeabagError;
  const firstBlob = [...badBlobs.keys()].sort((a, b) => a - b)[0];
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
  // start and the metadata checks hide behind the bytes; admission's verdict still comes first,
  // and a refused bundle stops the hashing.
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
