/**
 * Blob uploads (distribution-spec v1.1.0 "Pushing blobs"): POST for a session, then one streamed
 * PUT with the digest. Distribution 2.8 cannot resume a broken upload (it ignores Content-Range
 * on PATCH), so after a break we HEAD the blob (the PUT may have landed) and otherwise start a new
 * session with the content opened afresh.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { ClientRequest } from 'node:http';
import type { Readable } from 'node:stream';
import { SeabagError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { BlobWriter, ContentSource, OpOptions, PushOptions, RangeReader } from '../oci/store.js';
import { BufferPool, COPY_CHUNK, readAhead } from '../util/buffers.js';
import { VerifyingStream } from '../oci/verify.js';
import { drain, type BodyPump, type HttpResponse } from './http.js';
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
      const url = await startUpload(repo, desc, options);
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
 * Opens an upload session (POST) and returns where its bytes go.
 *
 * @throws E_REGISTRY when the registry gives no Location, or one that would leave TLS
 */
async function startUpload(repo: RepositoryEndpoint, desc: Descriptor, options: OpOptions): Promise<URL> {
  const start = await repo.client.request({
    method: 'POST',
    path: repo.path('blobs', 'uploads/'),
    scope: [repo.pushScope],
    expect: [202],
    retry: false,
    ...sig(options),
  });
  await drain(start);
  return uploadLocation(repo, desc, start);
}

/** The Location of an upload answer, refused when it is missing or would leave TLS. */
function uploadLocation(repo: RepositoryEndpoint, desc: Descriptor, res: HttpResponse): URL {
  const client = repo.client;
  const location = res.headers.location;
  if (location === undefined) throw new SeabagError('E_REGISTRY', `${client.registry} answered an upload of ${desc.digest} without a Location header`, { details: { registry: client.registry, digest: desc.digest } });
  const url = new URL(location, res.url);
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || (url.protocol === 'http:' && client.baseUrl.protocol === 'https:')) {
    // The layer would cross the network in clear (or by a scheme we do not speak).
    throw new SeabagError('E_REGISTRY', `${client.registry} sent the upload of ${desc.digest} to ${url.protocol === 'http:' ? 'plain HTTP ' : ''}${url.origin}; an HTTPS registry's uploads go over HTTPS only, and only http(s) is spoken`, {
      details: { registry: client.registry, digest: desc.digest, location: url.origin },
    });
  }
  return url;
}

/** Bytes a chunked upload holds back before it opens a PATCH (a blob this small goes up with the commit). */
const HELD_BACK = 256 * 1024;

/** One PATCH request under way: the body is written by hand, ended by `pause`. */
interface Patch {
  request: ClientRequest;
  /** Settles when the registry answers (or the request fails). */
  response: Promise<HttpResponse>;
  /** Rejects as soon as the request failed or the registry answered before the body ended. */
  broken: Promise<never>;
  /** Lets the request end (`request.end()` has been called). */
  finish(): void;
  /** Aborts the request with this error. */
  fail(err: Error): void;
  /**
   * Settles once the request takes more (after `request.write` said to wait); rejects when the
   * request broke or the signal aborted. One listener per request, not one per wait: a 2 GiB blob
   * waits some 30,000 times, and each `Promise.race` with `broken` would stay attached to it until
   * the request ends.
   */
  drained(): Promise<void>;
}

/** What `events.once` rejects with when its signal aborts (the HTTP layer maps it to E_ABORTED). */
function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), { name: 'AbortError', code: 'ABORT_ERR' });
}

/**
 * A chunked upload (distribution-spec v1.1.0 "Pushing a blob in chunks"): POST for a session,
 * PATCH requests streaming the bytes in order (each at the Location the last answer gave; a new
 * one after each `pause`, so a pause in the source leaves no request hanging), and PUT
 * `?digest=` with no body to commit, once the caller has checked the bytes. The registry checks
 * the digest on the PUT as well. Distribution 2.8 cannot resume a broken PATCH (it does not say
 * how much of it it kept): after one the caller cancels this upload and starts a new one.
 */
export class ChunkedUpload implements BlobWriter {
  readonly #repo: RepositoryEndpoint;
  readonly #desc: Descriptor;
  readonly #signal: AbortSignal | undefined;
  #location: URL;
  #written = 0;
  #patch: Patch | undefined;
  #finished = false;
  /** Bytes written before any PATCH was opened (up to `HELD_BACK`). */
  #held: Buffer[] = [];
  #heldBytes = 0;

  private constructor(repo: RepositoryEndpoint, desc: Descriptor, location: URL, signal: AbortSignal | undefined) {
    this.#repo = repo;
    this.#desc = desc;
    this.#location = location;
    this.#signal = signal;
  }

  /**
   * Opens the session.
   *
   * @throws E_REGISTRY, E_REGISTRY_UNREACHABLE (temporary), E_AUTH
   */
  static async start(repo: RepositoryEndpoint, desc: Descriptor, options: OpOptions = {}): Promise<ChunkedUpload> {
    return new ChunkedUpload(repo, desc, await startUpload(repo, desc, options), options.signal);
  }

  get written(): number {
    return this.#written;
  }

  write(chunk: Buffer): Promise<void> | undefined {
    if (this.#finished) return Promise.reject(new SeabagError('E_REGISTRY', `the upload of ${this.#desc.digest} is already finished`));
    this.#written += chunk.length;
    const patch = this.#patch;
    if (patch === undefined) {
      if (this.#heldBytes + chunk.length <= HELD_BACK) {
        // Small content waits for the commit, which then carries it: one request instead of two.
        this.#held.push(chunk);
        this.#heldBytes += chunk.length;
        return undefined;
      }
      return this.#openAndWrite(chunk);
    }
    // The request took it at once: nothing to wait for (the common case between drains).
    return patch.request.write(chunk) ? undefined : patch.drained();
  }

  async #openAndWrite(chunk: Buffer): Promise<void> {
    const patch = (this.#patch ??= await this.#open());
    if (!patch.request.write(chunk)) await patch.drained();
  }

  async pause(): Promise<void> {
    if (this.#patch === undefined && this.#heldBytes > 0) this.#patch = await this.#open();
    await this.#end();
  }

  /** Ends the PATCH under way cleanly and learns the next Location. */
  async #end(): Promise<void> {
    const patch = this.#patch;
    if (patch === undefined) return;
    this.#patch = undefined;
    patch.request.end();
    patch.finish();
    const res = await patch.response;
    await drain(res);
    this.#location = uploadLocation(this.#repo, this.#desc, res);
    const range = /^(?:bytes=)?0-(\d+)$/.exec(String(res.headers.range ?? ''));
    if (range !== null && Number(range[1]) + 1 !== this.#written - this.#heldBytes) {
      throw new SeabagError('E_REGISTRY', `${this.#repo.client.registry} holds ${Number(range[1]) + 1} bytes of the upload of ${this.#desc.digest}; ${this.#written - this.#heldBytes} were sent`, {
        details: { digest: this.#desc.digest, sent: this.#written - this.#heldBytes, held: Number(range[1]) + 1 },
        temporary: true,
      });
    }
  }

  async commit(): Promise<void> {
    if (this.#patch !== undefined) await this.pause();
    const desc = this.#desc;
    if (this.#written !== desc.size) {
      throw new SeabagError('E_SIZE_MISMATCH', `blob ${desc.digest}: ${this.#written} bytes written, expected ${desc.size}`, { details: { digest: desc.digest, expected: desc.size, found: this.#written } });
    }
    const url = new URL(this.#location);
    url.searchParams.set('digest', desc.digest);
    // What is still held back goes with the PUT as the last chunk (distribution-spec allows it).
    const last = Buffer.concat(this.#held, this.#heldBytes);
    this.#held = [];
    this.#heldBytes = 0;
    const res = await this.#repo.client.request({
      method: 'PUT',
      path: url.href,
      headers: { 'content-type': 'application/octet-stream' },
      body: () => last,
      scope: [this.#repo.pushScope],
      expect: [201],
      retry: false,
      ...(this.#signal === undefined ? {} : { signal: this.#signal }),
    });
    await drain(res);
    this.#finished = true;
  }

  async cancel(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    this.#held = [];
    this.#heldBytes = 0;
    const patch = this.#patch;
    if (patch !== undefined) {
      // Ended cleanly where it can be: a PATCH cut off leaves the session at an offset its Location
      // no longer names, and Distribution then refuses to delete it. Without the PUT that commits
      // it, nothing sent here is ever stored under a digest.
      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([
        this.#end().then(
          () => true,
          () => false,
        ),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 10_000))),
      ]);
      clearTimeout(timer);
      if (!ended) {
        patch.fail(new SeabagError('E_ABORTED', `the upload of ${this.#desc.digest} was cancelled`));
        const res = await patch.response.catch(() => undefined);
        if (res !== undefined) await drain(res);
      }
    }
    // Best effort, and bounded: a registry also purges abandoned sessions on its own.
    const res = await this.#repo.client
      .request({ method: 'DELETE', path: this.#location.href, scope: [this.#repo.pushScope], expect: [204, 200, 202, 404], retry: false, signal: AbortSignal.timeout(10_000) })
      .catch(() => undefined);
    if (res !== undefined) await drain(res);
  }

  /** Starts a PATCH whose body `write` feeds; resolves once the request is open. */
  async #open(): Promise<Patch> {
    let opened!: (request: ClientRequest) => void;
    const ready = new Promise<ClientRequest>((resolve) => (opened = resolve));
    let finish!: () => void;
    let fail!: (err: Error) => void;
    const ended = new Promise<void>((resolve, reject) => {
      finish = resolve;
      fail = reject;
    });
    ended.catch(() => undefined);
    let calls = 0;
    const pump: BodyPump = async (request) => {
      calls += 1;
      // A body is asked for again only when the registry wanted credentials after all: what was
      // written is gone, so the upload starts over.
      if (calls > 1) throw new SeabagError('E_REGISTRY', `${this.#repo.client.registry} asked for credentials in the middle of an upload`, { temporary: true });
      opened(request);
      await ended;
    };
    let done = false;
    const response = this.#repo.client.request({
      method: 'PATCH',
      path: this.#location.href,
      headers: { 'content-type': 'application/octet-stream' },
      body: () => pump,
      scope: [this.#repo.pushScope],
      expect: [202],
      retry: false,
      // No abort signal: a PATCH cut off cannot be cancelled (see `cancel`); an abort ends it cleanly.
    });
    const broken = response.then(
      (res): never => {
        if (!done) res.body.destroy();
        throw new SeabagError('E_REGISTRY', `${this.#repo.client.registry} answered the upload of ${this.#desc.digest} (${res.status}) before its body ended`, { temporary: true });
      },
      (err: unknown): never => {
        throw err;
      },
    );
    broken.catch(() => undefined);
    const request = await Promise.race([ready, broken]);
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    for (const chunk of held) request.write(chunk);
    // The one waiter for 'drain' (see `Patch.drained`).
    let resolveWait: (() => void) | undefined;
    let rejectWait: ((err: unknown) => void) | undefined;
    let failure: { err: unknown } | undefined;
    const wake = (err?: { err: unknown }): void => {
      const resolve = resolveWait;
      const reject = rejectWait;
      resolveWait = undefined;
      rejectWait = undefined;
      if (err === undefined) resolve?.();
      else reject?.(err.err);
    };
    request.on('drain', () => wake());
    broken.catch((err: unknown) => {
      failure ??= { err };
      wake(failure);
    });
    const signal = this.#signal;
    const onAbort = (): void => wake({ err: abortError(signal as AbortSignal) });
    signal?.addEventListener('abort', onAbort, { once: true });
    const waiter = (resolve: () => void, reject: (err: unknown) => void): void => {
      resolveWait = resolve;
      rejectWait = reject;
    };
    return {
      request,
      response,
      broken,
      finish: () => {
        done = true;
        signal?.removeEventListener('abort', onAbort);
        finish();
      },
      fail: (err) => {
        signal?.removeEventListener('abort', onAbort);
        fail(err);
      },
      drained: () => {
        if (failure !== undefined) return Promise.reject(failure.err);
        if (signal?.aborted === true) return Promise.reject(abortError(signal));
        return new Promise<void>(waiter);
      },
    };
  }
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
