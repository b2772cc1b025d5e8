/**
 * `bundle verify`: the whole bundle checked with no registry and no network. The release is
 * judged by `admit()`, the same path `import` takes (archive structure, the trusted root's own
 * signatures, the root chain it carries, the signature threshold, the index, expiry,
 * completeness), and then every blob's bytes are hashed in one sequential pass over the file.
 */
import { SeabagError, throwIfAborted } from '../errors.js';
import type { OpOptions, ReadOnlyStorage } from '../oci/store.js';
import { admit } from '../release/admit.js';
import { releaseSummary, type ReleaseDocument, type ReleaseSummary } from '../release/model.js';
import { parseImageKey, type ImageKey } from '../trust/cosign.js';
import { requireSignedImages, type ImageSignatureReport } from './image-policy.js';
import type { TrustRoot } from '../trust/root.js';
import type { SignatureCheck } from '../trust/verify.js';
import type { ArchiveLayout } from './archive.js';
import { resolveBundleInput, verifyParts } from './parts.js';
import { openArchive } from './release.js';

export { checkComplete, checkIndex } from '../release/admit.js';

export interface VerifyOptions extends OpOptions {
  trust: TrustRoot;
  /** What to call the trust root in messages (its file). */
  trustName?: string;
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
 * Hashes every blob of the archive in file order.
 *
 * @throws E_DIGEST_MISMATCH naming the blob
 */
export async function hashAllBlobs(archive: ArchiveLayout, options: OpOptions = {}): Promise<{ count: number; bytes: number }> {
  const blobs = [...archive.blobs.entries()].sort(([, a], [, b]) => a.dataOffset - b.dataOffset);
  const total = blobs.reduce((sum, [, e]) => sum + e.size, 0);
  let done = 0;
  for (const [digest, entry] of blobs) {
    throwIfAborted(options.signal);
    const hex = await archive.source.sha256(
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
      const where = archive.source.locate(entry.dataOffset);
      throw new SeabagError('E_DIGEST_MISMATCH', `blob ${digest} is damaged: its bytes hash to ${found}`, {
        details: { expected: digest, found, file: where.file, offset: where.offset },
      });
    }
  }
  options.onProgress?.({ phase: 'verify', done: total, total });
  return { count: blobs.length, bytes: total };
}

/**
 * Every image of an admitted release carries a valid cosign signature by one of `keys` or of the
 * keys the signed release's `imagePolicy` names; read from `store` alone (the bundle, offline).
 *
 * @throws E_USAGE when there is no key at all; E_IMAGE_UNSIGNED, E_IMAGE_SIGNATURE_INVALID
 */
export async function checkImageSignatures(store: ReadOnlyStorage, release: ReleaseDocument, keys: readonly ImageKey[], options: OpOptions = {}): Promise<ImageSignatureReport[]> {
  const all = [...keys, ...(release.imagePolicy?.keys ?? []).map((k, i) => parseImageKey(k.publicKey, `the release's image key ${i + 1}`))];
  if (all.length === 0) {
    throw new SeabagError('E_USAGE', 'the release names no image keys, and none were given', { hint: 'pass --image-key KEY.pub (the cosign public key the images are signed with)' });
  }
  return requireSignedImages(release.images, () => store, all, { omitted: new Set(release.omittedBlobs), ...options });
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
  await verifyParts(input, options);
  const archive = await openArchive(input);
  try {
    const admitted = await admit(archive, {
      trust: options.trust,
      ...(options.trustName === undefined ? {} : { trustName: options.trustName }),
      ...(options.now === undefined ? {} : { now: options.now }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    const images = options.images === undefined ? undefined : await checkImageSignatures(archive, admitted.release, options.images.keys, options);
    const hashed = await hashAllBlobs(archive, options);
    return {
      release: releaseSummary(admitted),
      signatures: admitted.signatureCheck,
      root: { version: admitted.root.signed.version, accepted: admitted.accepted.map((r) => r.signed.version) },
      blobs: { verified: hashed.count, omitted: admitted.release.omittedBlobs.length, bytes: hashed.bytes },
      ...(images === undefined ? {} : { images }),
    };
  } finally {
    await archive.close();
  }
}
