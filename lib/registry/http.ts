/**
 * HTTP for registries: keep-alive agents, a custom CA added to the system roots, streamed bodies,
 * and network failures classified once, here, as temporary or not.
 */
import type { Agent as HttpAgent, ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import { SeabagError } from '../errors.js';
import { nodeHttp, nodeHttps, nodeTls } from '../util/lazy.js';

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  /**
   * A Buffer; a stream, piped in as it arrives (never buffered); or a pump that writes to the
   * request and ends it (its failure aborts the request with that error).
   */
  body?: Buffer | Readable | BodyPump;
  signal?: AbortSignal;
}

export type BodyPump = (request: ClientRequest) => Promise<void>;

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
  url: URL;
}

/** Socket errors after which the same request may well succeed. */
const TEMPORARY_NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
]);

const TLS_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|ERR_SSL|EPROTO/;

/** Maps a socket or TLS error to E_REGISTRY_UNREACHABLE (temporary) or E_REGISTRY (TLS, not retried). */
export function networkError(err: unknown, method: string, url: URL): SeabagError {
  if (err instanceof SeabagError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? '';
  const details = { method, url: url.href, errno: code };
  if (TLS_ERRORS.test(code) || TLS_ERRORS.test(e.message ?? '')) {
    return new SeabagError('E_REGISTRY', `TLS with ${url.host} failed: ${e.message}`, {
      cause: err,
      details,
      hint: 'pass --ca-file with the CA that signed the registry certificate, or --plain-http for a plain HTTP registry',
    });
  }
  if (e.name === 'AbortError' || code === 'ABORT_ERR') {
    return new SeabagError('E_ABORTED', `${method} ${url.href} was cancelled`, { cause: err, details });
  }
  const temporary = TEMPORARY_NETWORK.has(code) || /socket hang up|timed out/i.test(e.message ?? '');
  return new SeabagError('E_REGISTRY_UNREACHABLE', `cannot reach ${url.host}: ${e.message ?? String(err)}`, {
    cause: err,
    details,
    temporary,
    hint: 'check that the registry is running and the address is right',
  });
}

export interface TransportOptions {
  /** PEM of an extra CA to trust, on top of the system roots. */
  ca?: string;
  /** Socket inactivity limit (default 60 s). */
  timeoutMs?: number;
}

/** Keep-alive connections per client; one transport per registry client. */
export class Transport {
  readonly #ca: string | undefined;
  readonly #timeoutMs: number;
  // Each agent is made on first use: node's TLS modules cost a plain-HTTP command (a loopback
  // vessel registry) a few ms to load, and the other way round.
  #http: HttpAgent | undefined;
  #https: HttpsAgent | undefined;

  constructor(options: TransportOptions = {}) {
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#ca = options.ca;
  }

  #agent(isHttps: boolean): HttpAgent | HttpsAgent {
    if (!isHttps) return (this.#http ??= new (nodeHttp().Agent)({ keepAlive: true, maxSockets: 16 }));
    const ca = this.#ca;
    return (this.#https ??= new (nodeHttps().Agent)({
      keepAlive: true,
      maxSockets: 16,
      ...(ca === undefined ? {} : { ca: [...nodeTls().rootCertificates, ca] }),
    }));
  }

  /**
   * Sends one request. Resolves when the response headers arrive; the caller consumes or
   * destroys `body`. A request body stream that fails (a digest mismatch, say) aborts the request
   * and rejects with that stream's error.
   *
   * @throws E_REGISTRY_UNREACHABLE (temporary for resets and refusals), E_REGISTRY for TLS, E_ABORTED
   */
  send(req: HttpRequest): Promise<HttpResponse> {
    return new Promise<HttpResponse>((resolve, reject) => {
      const isHttps = req.url.protocol === 'https:';
      const make = isHttps ? nodeHttps().request : nodeHttp().request;
      const headers: Record<string, string> = { 'user-agent': 'seabag', ...req.headers };
      if (Buffer.isBuffer(req.body)) headers['content-length'] = String(req.body.length);
      let settled = false;
      let bodyError: unknown;
      const outgoing = make(req.url, {
        method: req.method,
        headers,
        agent: this.#agent(isHttps),
        timeout: this.#timeoutMs,
        ...(req.signal === undefined ? {} : { signal: req.signal }),
      });
      outgoing.on('timeout', () => {
        const err = Object.assign(new Error(`no answer from ${req.url.host} in ${this.#timeoutMs} ms (timed out)`), { code: 'ETIMEDOUT' });
        outgoing.destroy(err);
      });
      outgoing.on('response', (res) => {
        settled = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url: req.url });
      });
      outgoing.on('error', (err) => {
        // A request that failed must not keep its source open (a file, a bundle range).
        if (req.body !== undefined && !Buffer.isBuffer(req.body) && typeof req.body !== 'function') req.body.destroy();
        if (settled) return;
        settled = true;
        reject(bodyError !== undefined ? bodyError : networkError(err, req.method, req.url));
      });
      if (req.body === undefined) {
        outgoing.end();
      } else if (Buffer.isBuffer(req.body)) {
        outgoing.end(req.body);
      } else if (typeof req.body === 'function') {
        req.body(outgoing).catch((err: unknown) => {
          bodyError = err;
          outgoing.destroy(err as Error);
        });
      } else {
        const body = req.body;
        body.once('error', (err) => {
          bodyError = err;
          outgoing.destroy(err);
        });
        body.pipe(outgoing);
      }
    });
  }

  close(): void {
    this.#http?.destroy();
    this.#https?.destroy();
  }
}

/** Reads a response body that must be small, refusing more than `limit` bytes. */
export async function readBody(res: HttpResponse, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) {
      res.body.destroy();
      throw new SeabagError('E_REGISTRY', `response from ${res.url.href} is larger than ${limit} bytes`, {
        details: { url: res.url.href, limit },
      });
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks, size);
}

/** Throws the rest of a response away so the connection can be reused. */
export async function drain(res: HttpResponse): Promise<void> {
  try {
    for await (const _ of res.body) {
      // discard
    }
  } catch {
    // the connection is dropped; nothing to keep
  }
}
