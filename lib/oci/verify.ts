/**
 * Reading content against its descriptor (OCI image-spec v1.1.0 `descriptor.md#digests`:
 * "the content SHOULD be verified against this digest when consumed").
 *
 * The check happens while bytes stream past, as in oras-go `content/reader.go` (VerifyReader) and
 * npm's ssri IntegrityStream. The last chunk is held back until the whole content has been
 * checked, so a consumer (a registry upload, a file about to be renamed into place) never
 * receives the complete bytes of content that turns out to be wrong.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { SeabagError } from '../errors.js';
import type { Digest } from './digest.js';

export interface Expected {
  digest: Digest;
  size: number;
}

function sizeError(expected: Expected, found: number, what: string, more: boolean): SeabagError {
  const how = more ? `more than the expected ${expected.size} bytes` : `${found} bytes, expected ${expected.size}`;
  return new SeabagError('E_SIZE_MISMATCH', `${what} ${expected.digest}: ${how}`, {
    details: { digest: expected.digest, expected: expected.size, found: more ? `>${expected.size}` : found },
  });
}

/**
 * A pass-through stream that fails with E_SIZE_MISMATCH on short input or trailing bytes, and
 * with E_DIGEST_MISMATCH (carrying expected and found digests) when the content differs.
 */
export class VerifyingStream extends Transform {
  readonly #expected: Expected;
  readonly #what: string;
  readonly #hash: Hash = createHash('sha256');
  #seen = 0;
  #held: Buffer | undefined;

  constructor(expected: Expected, what = 'blob') {
    super();
    this.#expected = expected;
    this.#what = what;
  }

  /** Bytes seen so far. */
  get bytes(): number {
    return this.#seen;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.#expected.size) {
      callback(sizeError(this.#expected, this.#seen, this.#what, true));
      return;
    }
    this.#hash.update(chunk);
    const previous = this.#held;
    this.#held = chunk;
    if (previous !== undefined) this.push(previous);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    const problem = checkDigest(this.#expected, this.#seen, this.#hash.digest('hex'), this.#what);
    if (problem !== undefined) {
      callback(problem);
      return;
    }
    if (this.#held !== undefined) this.push(this.#held);
    this.#held = undefined;
    callback();
  }
}

function checkDigest(expected: Expected, seen: number, hex: string, what: string): SeabagError | undefined {
  if (seen !== expected.size) return sizeError(expected, seen, what, false);
  const found = `sha256:${hex}`;
  if (found !== expected.digest) {
    return new SeabagError('E_DIGEST_MISMATCH', `${what} ${expected.digest}: content does not match its digest (found ${found})`, {
      details: { expected: expected.digest, found, size: seen },
    });
  }
  return undefined;
}

/**
 * Checks bytes already in memory against a descriptor.
 *
 * @throws E_SIZE_MISMATCH, E_DIGEST_MISMATCH
 */
export function verifyBytes(expected: Expected, data: Uint8Array, what = 'blob'): void {
  const problem = checkDigest(expected, data.length, createHash('sha256').update(data).digest('hex'), what);
  if (problem !== undefined) throw problem;
}

/**
 * Reads a whole stream that must be small (manifests, configs, JSON documents) and verifies it.
 * Stops reading as soon as the declared size is passed, so a hostile source can't make us buffer
 * more than `expected.size` bytes; `expected.size` itself must be checked against a cap first.
 *
 * @throws E_SIZE_MISMATCH, E_DIGEST_MISMATCH
 */
export async function readVerified(stream: Readable, expected: Expected, what = 'blob'): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let seen = 0;
  try {
    for await (const chunk of stream) {
      const buf = chunk as Buffer;
      seen += buf.length;
      if (seen > expected.size) throw sizeError(expected, seen, what, true);
      chunks.push(buf);
    }
  } finally {
    stream.destroy();
  }
  const data = Buffer.concat(chunks, seen);
  verifyBytes(expected, data, what);
  return data;
}
