/**
 * Ed25519 keys in PEM: PKCS#8 private keys, SPKI public keys (RFC 8410), so keys made by
 * `openssl genpkey -algorithm ed25519` work the same as ours. A keyid is the hex sha256 of the
 * public key's SPKI DER encoding.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readRegularFile } from '../util/files.js';
import { SeabagError } from '../errors.js';
import { describeKind, sniff } from '../util/sniff.js';

export interface PublicKey {
  keyid: string;
  /** SPKI PEM. */
  pem: string;
  key: KeyObject;
}

export interface SigningKey {
  keyid: string;
  publicPem: string;
  privateKey: KeyObject;
}

function spkiPem(publicKey: KeyObject): string {
  return publicKey.export({ type: 'spki', format: 'pem' }).toString();
}

/** Hex sha256 of the SPKI DER of a public key. */
export function keyidOf(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
}

function requireEd25519(key: KeyObject, what: string): void {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new SeabagError('E_KEY_INVALID', `${what} is a ${key.asymmetricKeyType ?? 'unknown'} key; seabag signs with Ed25519 only`, {
      hint: 'make one with `bundle keygen FILE` or `openssl genpkey -algorithm ed25519 -out FILE`',
    });
  }
}

/** A new Ed25519 key pair as PEM. */
export function generateKeyPair(): { privatePem: string; publicPem: string; keyid: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: spkiPem(publicKey),
    keyid: keyidOf(publicKey),
  };
}

/**
 * Parses a PEM private key (PKCS#8 Ed25519).
 *
 * @throws E_KEY_INVALID
 */
export function parsePrivateKey(pem: string | Buffer, what = 'private key'): SigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new SeabagError('E_KEY_INVALID', `${what} is not a PEM private key: ${(err as Error).message}`, { cause: err });
  }
  requireEd25519(privateKey, what);
  const publicKey = createPublicKey(privateKey);
  return { keyid: keyidOf(publicKey), publicPem: spkiPem(publicKey), privateKey };
}

/**
 * Parses a PEM public key (SPKI Ed25519); a private key is accepted too and its public half used.
 *
 * @throws E_KEY_INVALID
 */
export function parsePublicKey(pem: string | Buffer, what = 'public key'): PublicKey {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new SeabagError('E_KEY_INVALID', `${what} is not a PEM public key: ${(err as Error).message}`, { cause: err });
  }
  requireEd25519(key, what);
  return { keyid: keyidOf(key), pem: spkiPem(key), key };
}

/** Largest key file read: a PEM Ed25519 key is a few hundred bytes. */
export const MAX_KEY_FILE = 64 * 1024;

/** A regular file of at most 64 KiB. @throws E_USAGE (not a regular file), E_KEY_INVALID (too large), E_FILE_NOT_FOUND, E_IO */
async function readKeyFile(path: string): Promise<Buffer> {
  return readRegularFile(path, { maxBytes: MAX_KEY_FILE, what: 'key', tooLarge: 'E_KEY_INVALID' });
}

/**
 * Reads a private key a person named; `use` names what wants it in messages (`--sign`).
 *
 * @throws E_FILE_NOT_FOUND, E_KEY_INVALID (a public key, a trust root… is named for what it is)
 */
export async function loadPrivateKey(path: string, use = 'signing'): Promise<SigningKey> {
  const bytes = await readKeyFile(path);
  const kind = sniff(bytes);
  if (kind === 'public-key') {
    const pair = path.endsWith('.pub') ? ` (${path.slice(0, -4)})` : '';
    throw new SeabagError('E_KEY_INVALID', `${path} is a public key; ${use} wants the private key${pair}`, {
      details: { file: path, kind },
      hint: 'bundle keygen NAME writes the private key to NAME and the public one to NAME.pub',
    });
  }
  if (kind !== 'private-key' && kind !== 'pem' && kind !== 'unknown') {
    throw new SeabagError('E_KEY_INVALID', `${path} is ${describeKind(kind)}, not a private key; ${use} wants a private key (PEM)`, { details: { file: path, kind } });
  }
  return parsePrivateKey(bytes, path);
}

/**
 * Reads a public key a person named (a private key gives its public half).
 *
 * @throws E_FILE_NOT_FOUND, E_KEY_INVALID (a trust root, a bundle… is named for what it is)
 */
export async function loadPublicKey(path: string, use = 'this'): Promise<PublicKey> {
  const bytes = await readKeyFile(path);
  const kind = sniff(bytes);
  if (kind !== 'public-key' && kind !== 'private-key' && kind !== 'pem' && kind !== 'unknown') {
    throw new SeabagError('E_KEY_INVALID', `${path} is ${describeKind(kind)}, not a key; ${use} wants a public key (PEM, e.g. release.key.pub)`, { details: { file: path, kind } });
  }
  return parsePublicKey(bytes, path);
}

/** An Ed25519 signature (deterministic: the same key and message give the same bytes). */
export function signMessage(key: SigningKey, message: Uint8Array): Buffer {
  return sign(null, message, key.privateKey);
}

export function verifyMessage(key: PublicKey, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(null, message, key.key, signature);
  } catch {
    return false;
  }
}
