/**
 * A release's image policy: every image carries a valid cosign signature by one of the keys the
 * release names (`build --image-key`, `imagePolicy.keys` in release.yaml). Checked at build
 * against the source, and offline inside a bundle (`bundle verify --images`), with the same code.
 *
 * An image's signatures are its cosign signature referrers (`sha256-<hex>.sig`) whose subject is
 * the image's digest, or the digest its source named when a platform filter made a smaller index
 * (the signed release document records that link as `sourceDigest`).
 */
import { SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseImageManifest, type Descriptor } from '../oci/descriptor.js';
import { fetchVerified } from '../oci/graph.js';
import type { OpOptions, ReadOnlyStorage } from '../oci/store.js';
import { readVerified } from '../oci/verify.js';
import { checkCosignSignature, COSIGN_SIGNATURE_ANNOTATION, MAX_PAYLOAD_SIZE, type ImageKey, type SignatureFault } from '../trust/cosign.js';
import type { ReferrerRecord } from '../oci/referrers.js';

export interface PolicyImage {
  ref: string;
  digest: Digest;
  sourceDigest?: Digest;
  referrers?: ReferrerRecord[];
}

export interface ImageSignatureReport {
  ref: string;
  digest: Digest;
  /** Keyids whose valid signature the image carries. */
  signedBy: string[];
}

interface Failure {
  ref: string;
  digest: Digest;
  code: 'E_IMAGE_UNSIGNED' | 'E_IMAGE_SIGNATURE_INVALID';
  problems: { signature: Digest; fault: SignatureFault | 'omitted'; message: string }[];
}

/**
 * Checks one image's cosign signatures against `keys`.
 *
 * @returns the keyids that signed it, or the failure
 */
async function checkImage(image: PolicyImage, store: ReadOnlyStorage, keys: readonly ImageKey[], options: OpOptions & { omitted?: ReadonlySet<string> }): Promise<ImageSignatureReport | Failure> {
  const subjects = new Set<string>([image.digest, ...(image.sourceDigest === undefined ? [] : [image.sourceDigest])]);
  const candidates = (image.referrers ?? []).filter((r) => r.kind === 'signature' && subjects.has(r.subject));
  const signedBy = new Set<string>();
  const problems: Failure['problems'] = [];
  let layers = 0;
  for (const sig of candidates) {
    const desc: Descriptor = { mediaType: sig.mediaType, digest: sig.digest, size: sig.size };
    const manifest = parseImageManifest(await fetchVerified(store, desc, options), desc, `signature ${sig.digest}`);
    for (const layer of manifest.layers) {
      const signature = layer.annotations?.[COSIGN_SIGNATURE_ANNOTATION];
      if (signature === undefined) continue;
      layers += 1;
      if (options.omitted?.has(layer.digest) === true) {
        problems.push({ signature: sig.digest, fault: 'omitted', message: `payload ${layer.digest} is left out of this delta bundle` });
        continue;
      }
      if (layer.size > MAX_PAYLOAD_SIZE) {
        problems.push({ signature: sig.digest, fault: 'payload', message: `payload ${layer.digest} is ${layer.size} bytes, over ${MAX_PAYLOAD_SIZE}` });
        continue;
      }
      const payload = await readVerified(await store.fetch(layer, options), layer, 'signature payload');
      const check = checkCosignSignature(payload, signature, keys, sig.subject);
      if (check.valid) signedBy.add(check.keyid);
      else problems.push({ signature: sig.digest, fault: check.fault, message: check.message });
    }
  }
  if (signedBy.size > 0) return { ref: image.ref, digest: image.digest, signedBy: [...signedBy].sort() };
  return { ref: image.ref, digest: image.digest, code: layers === 0 ? 'E_IMAGE_UNSIGNED' : 'E_IMAGE_SIGNATURE_INVALID', problems };
}

/**
 * Requires a valid cosign signature by one of `keys` on every image. Each image's content is read
 * from `storeOf(image)` (the source at build, the bundle at verify).
 *
 * @throws E_IMAGE_UNSIGNED (an image has no cosign signature at all), E_IMAGE_SIGNATURE_INVALID
 *   (it has signatures, none valid by these keys for this digest); both name the first such image
 *   and list every failing one in `details.images`. E_LAYOUT_INVALID, E_DIGEST_MISMATCH when a
 *   signature manifest or payload is damaged.
 */
export async function requireSignedImages(
  images: readonly PolicyImage[],
  storeOf: (image: PolicyImage, index: number) => ReadOnlyStorage,
  keys: readonly ImageKey[],
  options: OpOptions & { omitted?: ReadonlySet<string> } = {},
): Promise<ImageSignatureReport[]> {
  const reports: ImageSignatureReport[] = [];
  const failures: Failure[] = [];
  for (const [i, image] of images.entries()) {
    const result = await checkImage(image, storeOf(image, i), keys, options);
    if ('code' in result) failures.push(result);
    else reports.push(result);
  }
  const first = failures[0];
  if (first !== undefined) {
    const why = first.code === 'E_IMAGE_UNSIGNED' ? 'has no cosign signature' : `has no valid cosign signature by the image keys: ${first.problems.map((p) => p.message).join('; ')}`;
    throw new SeabagError(first.code, `image ${first.ref} (${first.digest}) ${why}${failures.length > 1 ? ` (and ${failures.length - 1} more image(s))` : ''}`, {
      details: { image: first.ref, digest: first.digest, images: failures, keys: keys.map((k) => k.keyid) },
      hint: first.code === 'E_IMAGE_UNSIGNED' ? 'sign it (cosign sign --key …) at the source, or build without --image-key' : 'check that the image was signed with one of the --image-key keys, for this digest',
    });
  }
  return reports;
}
