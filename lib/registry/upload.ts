/**
 * Blob uploads (distribution-spec v1.1.0 "Pushing blobs"): POST for a session, then one streamed
 * PUT with the digest. Distribution 2.8 cannot resume a broken upload (it ignores Content-Range
 * on PATCH), so after a break we HEAD the blob (the PUT may have landed) and otherwise start a new
 * session with the content opened afresh.
 */
import type { Readable } from 'node:stream';
import type { Descriptor } from '../oci/descriptor.js';
import type { ContentSource, OpOptions } from '../oci/store.js';
import { VerifyingStream } from '../oci/verify.js';
import { drain } from './http.js';
import type { Repository } from './repository.js';
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
 * Uploads one blob, verifying it as it streams: the last bytes are held back until the digest
 * is checked, so the registry never completes an upload of wrong content.
 *
 * @throws E_DIGEST_MISMATCH, E_SIZE_MISMATCH (not retried); E_REGISTRY_UNREACHABLE, E_REGISTRY
 *   after the retries run out
 */
export async function uploadBlob(repo: Repository, desc: Descriptor, open: ContentSource, options: OpOptions = {}): Promise<void> {
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
      if (location === undefined) throw new Error(`${client.registry} started an upload without a Location`);
      const url = new URL(location, start.url);
      url.searchParams.set('digest', desc.digest);
      const res = await client.request({
        method: 'PUT',
        path: url.href,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
        body: async () => verified(await open(), desc),
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
export async function mountBlob(repo: Repository, desc: Descriptor, from: string, options: OpOptions = {}): Promise<boolean> {
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
