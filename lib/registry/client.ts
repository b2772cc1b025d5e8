/**
 * A distribution-spec v1.1 client for one registry: scheme choice, authentication, retries and
 * error mapping. Blob, manifest and tag operations live in `repository.ts` and `upload.ts`.
 */
import { MAX_CA_FILE, readRegularFile } from '../util/files.js';
import { SeabagError } from '../errors.js';
import { SharedWork } from '../util/shared.js';
import { apiHost, isLoopbackRegistry } from '../oci/reference.js';
import { basicHeader, CredentialStore, parseChallenge, type Credentials } from './auth.js';
import { drain, readBody, Transport, type HttpResponse } from './http.js';
import { DEFAULT_RETRY, isPermanentAnswer, withRetry, type RetryPolicy } from './retry.js';
import type { Progress } from '../oci/store.js';
import { Repository, type RepositoryOptions } from './repository.js';
import type { RegistryRequest, Requester } from './requester.js';

export type { RegistryRequest } from './requester.js';

export interface RegistryClientOptions {
  /** Speak plain HTTP. Loopback registries (127.0.0.0/8, localhost, ::1) do by default, as Docker does. */
  plainHttp?: boolean;
  /** PEM file of a CA to trust for this registry's certificate. */
  caFile?: string;
  credentials?: CredentialStore;
  retry?: RetryPolicy;
  timeoutMs?: number;
  /** Told about every HTTP exchange (tests count requests with it). */
  onRequest?: (info: { method: string; url: string; status: number }) => void;
  /** Told before each retry. */
  onRetry?: (err: SeabagError, attempt: number, delayMs: number) => void;
}


interface ErrorBody {
  errors?: { code?: string; message?: string; detail?: unknown }[];
}

/**
 * A registry is named HOST[:PORT]: a scheme (`http://host:5000`) or a path is refused with
 * what to write instead, rather than failing later as an unreachable host.
 *
 * @throws E_USAGE
 */
export function checkRegistryHost(registry: string): void {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(registry);
  if (scheme !== null) {
    const rest = registry.slice(scheme[0].length).replace(/\/+$/, '');
    const plain = (scheme[1] ?? '').toLowerCase() === 'http';
    throw new SeabagError('E_USAGE', `registry ${JSON.stringify(registry)}: give host:port (${rest}); use --plain-http or --ca-file for the scheme`, {
      details: { registry, scheme: scheme[1] },
      hint: `--registry ${rest}${plain ? ' --plain-http' : ''} (loopback registries speak plain HTTP by default)`,
    });
  }
  if (registry === '' || /[/\s@?#]/.test(registry)) {
    throw new SeabagError('E_USAGE', `registry ${JSON.stringify(registry)}: give HOST[:PORT] only, like localhost:32000 (no path, user or spaces)`, { details: { registry } });
  }
}

/** Turns the client's retry callback into a progress report (`Progress.retry`). */
export function retryAsProgress(registry: string, policy: RetryPolicy, onProgress: (p: Progress) => void): (err: SeabagError, attempt: number, delayMs: number) => void {
  return (err, attempt, delayMs) => {
    const status = err.details['status'];
    onProgress({
      phase: 'retry',
      done: 0,
      retry: { registry, attempt, of: policy.retries, delayMs, code: err.code, ...(typeof status === 'number' ? { status } : {}), reason: err.message },
    });
  };
}

export class RegistryClient implements Requester {
  readonly registry: string;
  readonly baseUrl: URL;
  readonly #options: RegistryClientOptions;
  readonly #transport: Transport;
  readonly #credentials: CredentialStore;
  #scheme: { kind: 'basic' } | { kind: 'bearer'; realm: string; service: string | undefined } | undefined;
  /** Tokens by scope, each fetched once for every request that needs it (whatever each request's signal does). */
  readonly #tokens = new Map<string, SharedWork<string>>();

  private constructor(registry: string, options: RegistryClientOptions, ca: string | undefined) {
    this.registry = registry;
    this.#options = options;
    const plain = options.plainHttp ?? isLoopbackRegistry(registry);
    this.baseUrl = new URL(`${plain ? 'http' : 'https'}://${apiHost(registry)}`);
    this.#transport = new Transport({ ...(ca === undefined ? {} : { ca }), ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) });
    this.#credentials = options.credentials ?? new CredentialStore();
  }

  /**
   * Makes a client for `registry` (`host[:port]`).
   *
   * @throws E_USAGE for a URL or a path instead of HOST[:PORT]; E_FILE_NOT_FOUND when `caFile` is missing
   */
  static async create(registry: string, options: RegistryClientOptions = {}): Promise<RegistryClient> {
    checkRegistryHost(registry);
    let ca: string | undefined;
    if (options.caFile !== undefined) {
      ca = (await readRegularFile(options.caFile, { maxBytes: MAX_CA_FILE, what: 'CA file' })).toString('utf8');
    }
    return new RegistryClient(registry, options, ca);
  }

  get retryPolicy(): RetryPolicy {
    return this.#options.retry ?? DEFAULT_RETRY;
  }

  get onRetry(): RegistryClientOptions['onRetry'] {
    return this.#options.onRetry;
  }

  repository(name: string, options: RepositoryOptions = {}): Repository {
    return new Repository(this, name, options);
  }

  /**
   * `GET /v2/` with credentials (distribution-spec "Determining support"): is the registry
   * there, and do our credentials work?
   *
   * @throws E_REGISTRY_UNREACHABLE, E_AUTH, E_REGISTRY
   */
  async ping(signal?: AbortSignal): Promise<void> {
    const res = await this.request({ method: 'GET', path: '/v2/', expect: [200], ...(signal ? { signal } : {}) });
    await drain(res);
  }

  /** Sends a request with auth and retries; resolves on an expected status, else throws a mapped error. */
  async request(req: RegistryRequest): Promise<HttpResponse> {
    const once = (): Promise<HttpResponse> => this.#attempt(req);
    if (req.retry === false) return once();
    return withRetry(once, this.retryPolicy, req.signal, this.#options.onRetry);
  }

  /**
   * Is `url` this registry itself (same scheme, host and port)? Only then do credentials and
   * tokens go with a request, and only then does a 401 teach us the registry's auth scheme: a
   * redirect target (object storage, a CDN) or an upload location elsewhere gets a bare request,
   * as go-containerregistry's `transport/bearer.go` `matchesHost` does.
   */
  isOwnOrigin(url: URL): boolean {
    return url.origin === this.baseUrl.origin;
  }

  async #attempt(req: RegistryRequest): Promise<HttpResponse> {
    const url = /^https?:\/\//.test(req.path) ? new URL(req.path) : new URL(req.path, this.baseUrl);
    const scope = req.scope ?? [];
    const own = this.isOwnOrigin(url);
    let authorization = own ? await this.#authorization(scope, req.signal) : undefined;
    for (let round = 0; ; round += 1) {
      const body = req.body === undefined ? undefined : await req.body();
      const headers: Record<string, string> = { ...req.headers };
      if (authorization !== undefined) headers['authorization'] = authorization;
      const res = await this.#transport.send({
        method: req.method,
        url,
        headers,
        ...(body === undefined ? {} : { body }),
        ...(req.signal === undefined ? {} : { signal: req.signal }),
      });
      this.#options.onRequest?.({ method: req.method, url: url.href, status: res.status });
      // A 401 from elsewhere is that server's business, never our registry's scheme.
      if (res.status === 401 && round === 0 && own) {
        const challenge = parseChallenge(res.headers['www-authenticate']);
        await drain(res);
        if (body !== undefined && !Buffer.isBuffer(body) && typeof body !== 'function') body.destroy();
        if (challenge !== undefined && this.#learn(challenge)) {
          // A token refused is dropped; a request that went without one (the first to this
          // registry) leaves alone the token that requests sent beside it may have asked for.
          if (authorization !== undefined) this.#tokens.delete(scopeKey(scope));
          authorization = await this.#authorization(scope, req.signal, challenge.params['scope']);
          if (authorization !== undefined) continue;
        }
        throw await this.#authError(url, req.method, undefined);
      }
      if (req.expect.includes(res.status)) return res;
      if (res.status === 401 && authorization !== undefined) {
        await drain(res);
        throw await this.#authError(url, req.method, undefined);
      }
      throw await this.#statusError(req.method, url, res);
    }
  }

  /** Remembers how this registry wants us to authenticate; false for schemes we don't speak. */
  #learn(challenge: { scheme: string; params: Record<string, string> }): boolean {
    if (challenge.scheme === 'basic') {
      this.#scheme = { kind: 'basic' };
      return true;
    }
    if (challenge.scheme === 'bearer' && challenge.params['realm'] !== undefined) {
      this.#scheme = { kind: 'bearer', realm: challenge.params['realm'], service: challenge.params['service'] };
      return true;
    }
    return false;
  }

  async #authorization(scope: string[], signal: AbortSignal | undefined, challengeScope?: string): Promise<string | undefined> {
    const scheme = this.#scheme;
    if (scheme === undefined) return undefined;
    const creds = await this.#credentials.get(this.registry);
    if (scheme.kind === 'basic') {
      if (creds === undefined) return undefined;
      if (!registryMayHaveCredentials(this.baseUrl)) {
        // A man in the middle of plain HTTP answers 401 Basic to read the password in clear.
        throw new SeabagError('E_AUTH', `${this.registry} asks for Basic credentials over plain HTTP; credentials are not sent over plain HTTP except to loopback`, {
          details: { registry: this.registry, url: this.baseUrl.href, scheme: 'basic' },
          hint: `serve the registry over HTTPS and drop --plain-http (with --ca-file CA.pem for a private CA), or remove the credentials for ${this.registry}`,
        });
      }
      return basicHeader(creds);
    }
    const scopes = [...new Set([...scope, ...(challengeScope === undefined ? [] : challengeScope.split(' '))])].filter((s) => s !== '');
    const key = scopeKey(scopes);
    let token = this.#tokens.get(key);
    if (token === undefined || token.abandoned) {
      // Shared by the requests sent beside this one (images of a build resolved at once): the
      // stop of this request alone does not stop the fetch the others wait for.
      const fetched = new SharedWork((own) => this.#fetchToken(scheme.realm, scheme.service, scopes, creds, own));
      this.#tokens.set(key, fetched);
      fetched.result.catch(() => {
        if (this.#tokens.get(key) === fetched) this.#tokens.delete(key);
      });
      token = fetched;
    }
    return `Bearer ${await token.wait(signal)}`;
  }

  /** distribution `docs/spec/auth/token.md` (GET) and `oauth.md` (POST with a refresh token). */
  async #fetchToken(realm: string, service: string | undefined, scopes: string[], found: Credentials | undefined, signal: AbortSignal | undefined): Promise<string> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch (err) {
      throw new SeabagError('E_AUTH', `${this.registry} named a token realm that is not a URL`, { cause: err, details: { registry: this.registry, realm } });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new SeabagError('E_AUTH', `${this.registry} named a token realm with scheme ${JSON.stringify(url.protocol)}; only https (or http on loopback) is used`, {
        details: { registry: this.registry, realm: url.href },
      });
    }
    const safe = realmMayHaveCredentials(url.href);
    const creds = safe ? found : undefined;
    url.username = '';
    url.password = '';
    const headers: Record<string, string> = {};
    let body: Buffer | undefined;
    let method = 'GET';
    if (creds?.kind === 'identity-token') {
      method = 'POST';
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.token, client_id: 'seabag' });
      if (service !== undefined) form.set('service', service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      body = Buffer.from(form.toString());
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (service !== undefined) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (creds !== undefined) headers['authorization'] = basicHeader(creds);
    }
    const send = async (): Promise<string> => {
      const res = await this.#transport.send({ method, url, headers, ...(body ? { body } : {}), ...(signal ? { signal } : {}) });
      this.#options.onRequest?.({ method, url: url.href, status: res.status });
      if (res.status === 401 || res.status === 403) {
        await drain(res);
        throw await this.#authError(url, method, creds);
      }
      if (res.status !== 200) throw await this.#statusError(method, url, res);
      const doc = JSON.parse((await readBody(res, 1024 * 1024)).toString('utf8')) as { token?: string; access_token?: string };
      const token = doc.token ?? doc.access_token;
      if (token === undefined || token === '') throw new SeabagError('E_AUTH', `token server ${url.host} returned no token`);
      return token;
    };
    return withRetry(send, this.retryPolicy, signal, this.#options.onRetry);
  }

  async #authError(url: URL, method: string, creds: Credentials | undefined): Promise<SeabagError> {
    const who = creds ?? (await this.#credentials.get(this.registry).catch(() => undefined));
    const scheme = this.#scheme;
    if (who !== undefined && scheme?.kind === 'bearer' && !realmMayHaveCredentials(scheme.realm)) {
      return new SeabagError('E_AUTH', `${this.registry} sends us for tokens to ${scheme.realm} over plain HTTP; its credentials are not sent there`, {
        details: { registry: this.registry, method, url: url.href, realm: scheme.realm },
        hint: 'the token server must speak HTTPS (or run on this machine) for credentials to be sent to it',
      });
    }
    const message =
      who === undefined
        ? `${this.registry} requires authentication and no credentials were found`
        : `${this.registry} refused the credentials of ${JSON.stringify(who.username)}`;
    return new SeabagError('E_AUTH', message, {
      details: { registry: this.registry, method, url: url.href, username: who?.username },
      hint: `log in with \`docker login ${this.registry}\` or set DOCKER_CONFIG to a folder whose config.json has credentials (looked in ${this.#credentials.configPath})`,
    });
  }

  async #statusError(method: string, url: URL, res: HttpResponse): Promise<SeabagError> {
    let errors: ErrorBody['errors'] = [];
    try {
      const text = (await readBody(res, 64 * 1024)).toString('utf8');
      errors = (JSON.parse(text) as ErrorBody).errors ?? [];
    } catch {
      // not a distribution error body
    }
    const codes = (errors ?? []).map((e) => e.code ?? 'UNKNOWN');
    const first = errors?.[0];
    const details: Record<string, unknown> = { method, url: url.href, status: res.status, errors: codes };
    if (res.status === 401 || res.status === 403) {
      return new SeabagError('E_AUTH', `${this.registry} denied ${method} ${url.pathname} (${res.status}${codes.length ? ` ${codes.join(',')}` : ''})`, { details });
    }
    // Distribution passes the storage driver's error through as the detail of an UNKNOWN error.
    const detail = (errors ?? []).map((e) => (typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail ?? ''))).join(' ');
    if (/no space left on device|ENOSPC|disk quota exceeded/i.test(detail)) {
      return new SeabagError('E_DISK_FULL', `the registry ${this.registry} is out of disk space (${method} ${url.pathname})`, {
        details: { ...details, detail },
        hint: 'free space on the registry (bundle prune, then its garbage collection) and run the command again',
      });
    }
    const retryAfter = Number(res.headers['retry-after']);
    if (Number.isFinite(retryAfter) && retryAfter > 0) details['retryAfterMs'] = retryAfter * 1000;
    const temporary = res.status === 429 || (res.status >= 500 && !isPermanentAnswer(res.status, codes));
    const what = first?.message ?? `HTTP ${res.status}`;
    return new SeabagError('E_REGISTRY', `${method} ${url.href}: ${res.status} ${codes.join(',')} ${what}`.replace(/\s+/g, ' ').trim(), {
      details,
      temporary,
    });
  }

  close(): void {
    this.#transport.close();
  }
}

/**
 * Credentials cross the wire to a token realm only inside TLS, or without leaving this machine
 * (plain HTTP to loopback), as go-containerregistry's `validateRealmURL` allows http only for an
 * insecure registry.
 */
export function realmMayHaveCredentials(realm: string): boolean {
  try {
    const url = new URL(realm);
    return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackRegistry(url.host));
  } catch {
    return false;
  }
}

/**
 * Basic credentials go to the registry itself under the same rule as to a token realm: only over
 * TLS, or to loopback (plain HTTP that never leaves this machine). `baseUrl` is the registry's
 * base URL as the client speaks to it.
 */
export function registryMayHaveCredentials(baseUrl: URL): boolean {
  return realmMayHaveCredentials(baseUrl.href);
}

function scopeKey(scopes: readonly string[]): string {
  return [...scopes].sort().join(' ');
}

export { isNotFound } from './requester.js';
