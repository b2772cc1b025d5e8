/**
 * Blob uploads (distribution-spec v1.1.0 "Pushing blobs"): POST for a session, then one streamed
 * PUT with the digest. Distribution 2.8 cannot resume a broken upload (it ignores Content-Range
 * on PATCH), so after a break we HEAD the blob (the PUT may have landed) and otherwise start a new
 * session with the content opened afresh.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { SeabagError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { ContentSource, OpOptions, PushOptions, RangeReader } from '../oci/store.js';
import { BufferPool, COPY_CHUNK, readAhead } from '../util/buffers.js';
import { VerifyingStream } from '../oci/verify.js';
import { drain, type BodyPump } from './http.js';
import type { RepositoryEndpoint } from './requester.js';
import { withRetry } from './retry.js';

function sig(options: OpOptions): { signal?: AbortSignal } {
  return options.signal === undefined ? {} : { signal: options.signal };
}

/** The source piped through a verifier, with the source's errors carried along. */
function verified(source: Readable, desc: Descriptor): Readable {
  const verifier = new VerifyingStream(desc);
  source.once('error', (err) => verifier.destroy(err));
  verifier.once('close', () => source.destroy());
  return source.pipe(verifier);
}

/**
 * A request body read straight from random-access content into reused buffers, hashed as it
 * goes; the last chunk is sent only after the digest checks out.
 */
function pump(open: () => Promise<RangeReader>, desc: Descriptor, onBytes?: (n: number) => void): BodyPump {
  return async (request) => {
    const reader = await open();
    try {
      if (reader.size !== desc.size) {
        throw new SeabagError('E_SIZE_MISMATCH', `blob ${desc.digest}: ${reader.size} bytes, expected ${desc.size}`, { details: { digest: desc.digest, expected: desc.size, found: reader.size } });
      }
      const pool = new BufferPool(3, COPY_CHUNK);
      const hash = createHash('sha256');
      await readAhead(
        reader,
        desc.size,
        pool,
        async (chunk, buffer, last) => {
          hash.update(chunk);
          if (last) {
            const found = `sha256:${hash.digest('hex')}`;
            if (found !== desc.digest) {
              throw new SeabagError('E_DIGEST_MISMATCH', `blob ${desc.digest}: content does not match its digest (found ${found})`, { details: { expected: desc.digest, found, size: desc.size } });
            }
          }
          const flowing = request.write(chunk, () => pool.give(buffer));
          onBytes?.(chunk.length);
          if (!flowing) await once(request, 'drain');
        },
        (at) => new SeabagError('E_SIZE_MISMATCH', `blob ${desc.digest}: ends at ${at} bytes, expected ${desc.size}`, { details: { digest: desc.digest, expected: desc.size, found: at } }),
      );
      request.end();
    } finally {
      await reader.close();
    }
  };
}

/**
 * Uploads one blob, verifying it as it streams: the last bytes are held back until the digest
 * is checked, so the registry never completes an upload of wrong content.
 *
 * @throws E_DIGEST_MISMATCH, E_SIZE_MISMATCH (not retried); E_REGISTRY_UNREACHABLE, E_REGISTRY
 *   after the retries run out
 */
export async function uploadBlob(repo: RepositoryEndpoint, desc: Descriptor, open: ContentSource, options: PushOptions = {}): Promise<void> {
  const client = repo.client;
  await withRetry(
    async (attempt) => {
      if (attempt > 0 && (await repo.exists(desc, options))) return;
      const start = await client.request({
        method: 'POST',
        path: repo.path('blobs', 'uploads/'),
        scope: [repo.pushScope],
        expect: [202],
        retry: false,
        ...sig(options),
      });
      await drain(start);
      const location = start.headers.location;
      if (location === undefined) throw new SeabagError('E_REGISTRY', `${client.registry} started an upload without a Location header`, { details: { registry: client.registry } });
      const url = new URL(location, start.url);
      if ((url.protocol !== 'https:' && url.protocol !== 'http:') || (url.protocol === 'http:' && client.baseUrl.protocol === 'https:')) {
        // The layer would cross the network in clear (or by a scheme we do not speak).
        throw new SeabagError('E_REGISTRY', `${client.registry} sent the upload of ${desc.digest} to ${url.protocol === 'http:' ? 'plain HTTP ' : ''}${url.origin}; an HTTPS registry's uploads go over HTTPS only, and only http(s) is spoken`, {
          details: { registry: client.registry, digest: desc.digest, location: url.origin },
        });
      }
      url.searchParams.set('digest', desc.digest);
      const res = await client.request({
        method: 'PUT',
        path: url.href,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
        body: options.reader === undefined ? async () => verified(await open(), desc) : () => pump(options.reader as () => Promise<RangeReader>, desc, options.onBytes),
        scope: [repo.pushScope],
        expect: [201],
        retry: false,
        ...sig(options),
      });
      await drain(res);
    },
    client.retryPolicy,
    options.signal,
    client.onRetry,
  );
}

/**
 * Asks the registry to mount a blob from another repository (distribution-spec "Mounting a blob
 * from another repository"). True when mounted (201); on 202 the session it opened instead is
 * cancelled and false is returned.
 */
export async function mountBlob(repo: RepositoryEndpoint, desc: Descriptor, from: string, options: OpOptions = {}): Promise<boolean> {
  const client = repo.client;
  const query = new URLSearchParams({ mount: desc.digest, from });
  const res = await client.request({
    method: 'POST',
    path: `${repo.path('blobs', 'uploads/')}?${query.toString()}`,
    scope: [repo.pushScope, `repository:${from}:pull`],
    expect: [201, 202],
    ...sig(options),
  });
  await drain(res);
  if (res.status === 201) return true;
  const location = res.headers.location;
  if (location !== undefined) {
    const cancel = await client
      .request({ method: 'DELETE', path: new URL(location, res.url).href, scope: [repo.pushScope], expect: [204, 200, 202, 404], retry: false, ...sig(options) })
      .catch(() => undefined);
    if (cancel !== undefined) await drain(cancel);
  }
  return false;
}
