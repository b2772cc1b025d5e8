/**
 * cosign image signatures (sigstore/cosign `specs/SIGNATURE_SPEC.md`, "Simple Signing" payloads;
 * containers/image `docs/containers-signature.5.md` for the payload's JSON), checked offline with
 * a public key and `node:crypto`: ECDSA P-256 over sha256 (ASN.1 DER signatures, as cosign writes
 * them) or Ed25519. Keyless (Fulcio certificate) signatures and Rekor bundles are not checked here:
 * a key the release names is the only authority.
 *
 * This module sees narrow types only (payload bytes, the base64 signature, keys); finding the
 * signature manifests of an image is `bundle/image-policy.ts`'s business.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { readRegularFile } from '../util/files.js';
import { SeabagError } from '../errors.js';
import { keyidOf } from './keys.js';

/** A layer of a cosign signature manifest holds this payload type. */
export const COSIGN_SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
/** The layer annotation that holds the base64 signature over the payload. */
export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
/** `critical.type` of a cosign container image signature. */
export const COSIGN_SIGNATURE_TYPE = 'cosign container image signature';
/** A payload larger than this is not a simple-signing payload (they are a few hundred bytes). */
export const MAX_PAYLOAD_SIZE = 64 * 1024;

export interface ImageKey {
  keyid: string;
  /** SPKI PEM, as recorded in the release document. */
  pem: string;
  key: KeyObject;
  algorithm: 'ecdsa-p256' | 'ed25519';
}

/**
 * Parses a public key for image signatures: PEM SPKI, ECDSA P-256 (`cosign generate-key-pair`'s
 * `cosign.pub`) or Ed25519.
 *
 * @throws E_KEY_INVALID naming `what`
 */
export function parseImageKey(pem: string | Buffer, what = 'image key'): ImageKey {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new SeabagError('E_KEY_INVALID', `${what} is not a PEM public key: ${(err as Error).message}`, { cause: err });
  }
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (type === 'ec' && curve === 'prime256v1') return { keyid: keyidOf(key), pem: key.export({ type: 'spki', format: 'pem' }).toString(), key, algorithm: 'ecdsa-p256' };
  if (type === 'ed25519') return { keyid: keyidOf(key), pem: key.export({ type: 'spki', format: 'pem' }).toString(), key, algorithm: 'ed25519' };
  throw new SeabagError('E_KEY_INVALID', `${what} is a ${type ?? 'unknown'}${curve ? ` (${curve})` : ''} key; image signatures are checked with ECDSA P-256 or Ed25519 keys`, {
    hint: 'pass the cosign.pub of `cosign generate-key-pair`, or an Ed25519 public key',
  });
}

/**
 * Reads a public key file for image signatures.
 *
 * @throws E_FILE_NOT_FOUND, E_USAGE (not a regular file), E_KEY_INVALID (malformed, over 64 KiB)
 */
export async function loadImageKey(path: string): Promise<ImageKey> {
  // A regular file of at most 64 KiB: a FIFO or /dev/zero is E_USAGE, never read.
  const pem = await readRegularFile(path, { maxBytes: 64 * 1024, what: 'image key', tooLarge: 'E_KEY_INVALID' });
  return parseImageKey(pem, path);
}

/** Why a signature did not count. */
export type SignatureFault = 'key' | 'digest' | 'payload';

export type SignatureCheck = { valid: true; keyid: string } | { valid: false; fault: SignatureFault; message: string };

/** The one value of `obj` whose key equals `name` ignoring case (as Go's encoding/json reads it); undefined when none or several. */
function field(obj: unknown, name: string): unknown {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return undefined;
  const keys = Object.keys(obj).filter((k) => k.toLowerCase() === name);
  return keys.length === 1 ? (obj as Record<string, unknown>)[keys[0] as string] : undefined;
}

/**
 * Checks one cosign signature: the base64 `signature` over `payload` by one of `keys`, and the
 * payload a simple-signing document of type {@link COSIGN_SIGNATURE_TYPE} whose
 * `critical.image.docker-manifest-digest` is `digest`. The signature is checked first, so a
 * payload by an unknown key is reported as such whatever it says.
 */
export function checkCosignSignature(payload: Buffer, signature: string, keys: readonly ImageKey[], digest: string): SignatureCheck {
  if (payload.length > MAX_PAYLOAD_SIZE) return { valid: false, fault: 'payload', message: `payload is ${payload.length} bytes, over ${MAX_PAYLOAD_SIZE}` };
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(signature) || signature.length > 4096) return { valid: false, fault: 'payload', message: 'the signature annotation is not base64' };
  const sig = Buffer.from(signature, 'base64');
  const signer = keys.find((k) => {
    try {
      return verify(k.algorithm === 'ed25519' ? null : 'sha256', payload, k.key, sig);
    } catch {
      return false;
    }
  });
  if (signer === undefined) return { valid: false, fault: 'key', message: `no signature by ${keys.length === 1 ? 'the key' : `any of the ${keys.length} keys`} given` };
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch {
    return { valid: false, fault: 'payload', message: 'the signed payload is not JSON' };
  }
  const critical = field(doc, 'critical');
  const type = field(critical, 'type');
  const named = field(field(critical, 'image'), 'docker-manifest-digest');
  if (type !== COSIGN_SIGNATURE_TYPE) return { valid: false, fault: 'payload', message: `the signed payload is of type ${JSON.stringify(type)}, not ${JSON.stringify(COSIGN_SIGNATURE_TYPE)}` };
  if (named !== digest) return { valid: false, fault: 'digest', message: `the signed payload names ${typeof named === 'string' ? named : JSON.stringify(named)}, not ${digest}` };
  return { valid: true, keyid: signer.keyid };
}
