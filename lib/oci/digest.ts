/**
 * Digests, after the OCI image-spec v1.1.0 `descriptor.md#digests` grammar:
 *
 *     digest    ::= algorithm ":" encoded
 *     algorithm ::= component (separator component)*
 *     component ::= [a-z0-9]+
 *     separator ::= [+._-]
 *     encoded   ::= [a-zA-Z0-9=_-]+
 *
 * seabag stores and accepts sha256 only, encoded as exactly 64 lowercase hex characters. A digest
 * is checked here before it is ever joined into a path or a URL.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { SeabagError } from '../errors.js';

export type Digest = `sha256:${string}`;

const GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const SHA256 = /^sha256:[a-f0-9]{64}$/;

/** True for a well-formed sha256 digest that seabag can store. */
export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && SHA256.test(value);
}

/**
 * Returns `value` as a Digest, or throws.
 *
 * @throws E_DIGEST_INVALID when `value` is not `sha256:` + 64 lowercase hex (naming what it is
 *   instead: malformed, or a well-formed digest of an algorithm seabag does not accept).
 */
export function parseDigest(value: unknown, what = 'digest'): Digest {
  if (isDigest(value)) return value;
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 100)) : typeof value;
  const reason =
    typeof value === 'string' && GRAMMAR.test(value)
      ? 'only sha256 digests of 64 lowercase hex characters are accepted'
      : 'not a digest (expected sha256:<64 lowercase hex>)';
  throw new SeabagError('E_DIGEST_INVALID', `invalid ${what} ${shown}: ${reason}`, { details: { value: shown } });
}

/** The 64 hex characters of a digest. */
export function digestHex(digest: Digest): string {
  return digest.slice('sha256:'.length);
}

/** The path of a blob under an OCI layout root (`blobs/sha256/<hex>`), after validating the digest. */
export function blobPath(root: string, digest: string): string {
  return join(root, 'blobs', 'sha256', digestHex(parseDigest(digest)));
}

/** The sha256 digest of some bytes. */
export function sha256Digest(data: string | Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}
