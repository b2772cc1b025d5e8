/**
 * Registry credentials and challenges, the way the Docker CLI finds them:
 *
 * - `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): `credHelpers[host]`, then
 *   `credsStore`, then `auths[host]` (`auth` = base64 `user:password`, or `username`/`password`,
 *   or an `identitytoken`);
 * - a credential helper is `docker-credential-NAME get`, given the host on stdin, answering
 *   `{"Username", "Secret"}` (docker/docker-credential-helpers protocol);
 * - `WWW-Authenticate: Basic` gets the credentials directly; `Bearer realm,service,scope` gets a
 *   token from the realm (distribution `docs/spec/auth/token.md`), with the credentials if any.
 */
import { MAX_DOCKER_CONFIG, readRegularFile } from '../util/files.js';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { execa } from '../util/lazy.js';
import { SeabagError } from '../errors.js';
import { DOCKER_HUB } from '../oci/reference.js';

export type Credentials =
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'identity-token'; username: string; token: string };

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** Hub's historic key in `auths`. */
const HUB_KEYS = ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];

/** `https://host:port/v1/` → `host:port`. */
function hostOf(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
}

/**
 * Parses `WWW-Authenticate` (RFC 7235 auth-param syntax, one challenge).
 */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (match === null) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?\s*/g;
  for (const m of (match[2] ?? '').matchAll(re)) {
    params[(m[1] ?? '').toLowerCase()] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme: (match[1] ?? '').toLowerCase(), params };
}

export interface CredentialOptions {
  /** Folder holding config.json (default `$DOCKER_CONFIG`, else `~/.docker`). */
  configDir?: string;
  env?: NodeJS.ProcessEnv;
}

/** Looks up credentials for a registry host, once per host. */
export class CredentialStore {
  readonly #dir: string;
  readonly #env: NodeJS.ProcessEnv;
  #config: Promise<DockerConfig> | undefined;
  readonly #cache = new Map<string, Promise<Credentials | undefined>>();

  constructor(options: CredentialOptions = {}) {
    this.#env = options.env ?? process.env;
    this.#dir = options.configDir ?? this.#env['DOCKER_CONFIG'] ?? join(homedir(), '.docker');
  }

  /** Where config.json is looked for (read only when a regular file of at most 4 MiB). */
  get configPath(): string {
    return join(this.#dir, 'config.json');
  }

  async #load(): Promise<DockerConfig> {
    this.#config ??= (async () => {
      let text: string;
      try {
        // A regular file of at most 4 MiB: a FIFO or a device must not hang a pull.
        text = (await readRegularFile(this.configPath, { maxBytes: MAX_DOCKER_CONFIG, what: 'docker config' })).toString('utf8');
      } catch (err) {
        if (err instanceof SeabagError && err.code === 'E_FILE_NOT_FOUND') return {};
        if (err instanceof SeabagError && err.code === 'E_USAGE') throw err;
        throw new SeabagError('E_AUTH', `cannot read ${this.configPath}: ${(err as Error).message}`, { cause: err });
      }
      try {
        return JSON.parse(text) as DockerConfig;
      } catch (err) {
        throw new SeabagError('E_AUTH', `${this.configPath} is not valid JSON: ${(err as Error).message}`, { cause: err });
      }
    })();
    return this.#config;
  }

  /**
   * Credentials for `registry` (`host[:port]`), or undefined for anonymous access.
   *
   * @throws E_AUTH when the config is unreadable or a credential helper fails
   */
  get(registry: string): Promise<Credentials | undefined> {
    let found = this.#cache.get(registry);
    if (found === undefined) {
      found = this.#lookup(registry);
      this.#cache.set(registry, found);
    }
    return found;
  }

  async #lookup(registry: string): Promise<Credentials | undefined> {
    const config = await this.#load();
    const keys = registry === DOCKER_HUB ? HUB_KEYS : [registry];
    const helper = keys.map((k) => config.credHelpers?.[k]).find((h) => h !== undefined) ?? config.credsStore;
    if (helper !== undefined && helper !== '') {
      const fromHelper = await this.#fromHelper(helper, registry === DOCKER_HUB ? (HUB_KEYS[0] as string) : registry);
      if (fromHelper !== undefined) return fromHelper;
    }
    const auths = config.auths ?? {};
    const entry = Object.entries(auths).find(([key]) => keys.includes(key) || keys.includes(hostOf(key)))?.[1];
    if (entry === undefined) return undefined;
    let username = entry.username;
    let password = entry.password;
    if (entry.auth !== undefined && entry.auth !== '') {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon === -1) throw new SeabagError('E_AUTH', `${this.configPath}: auths["${registry}"].auth is not base64 of user:password`);
      username = decoded.slice(0, colon);
      password = decoded.slice(colon + 1);
    }
    if (entry.identitytoken !== undefined && entry.identitytoken !== '') {
      return { kind: 'identity-token', username: username ?? '<token>', token: entry.identitytoken };
    }
    if (username === undefined || password === undefined) return undefined;
    return { kind: 'basic', username, password };
  }

  async #fromHelper(helper: string, server: string): Promise<Credentials | undefined> {
    const program = `docker-credential-${helper}`;
    let stdout: string;
    try {
      const result = await (await execa())(program, ['get'], { input: server, env: this.#env, timeout: 30_000 });
      stdout = result.stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; code?: string; message: string };
      // Helpers say "credentials not found" on stdout with a non-zero status: that means anonymous.
      if (/credentials not found/i.test(`${e.stdout ?? ''} ${e.stderr ?? ''}`)) return undefined;
      throw new SeabagError('E_AUTH', `credential helper ${program} failed for ${server}: ${e.code === 'ENOENT' ? 'not installed' : e.message}`, {
        cause: err,
        details: { helper: program, server },
      });
    }
    let parsed: { Username?: string; Secret?: string };
    try {
      parsed = JSON.parse(stdout) as { Username?: string; Secret?: string };
    } catch (err) {
      throw new SeabagError('E_AUTH', `credential helper ${program} answered something that is not JSON`, { cause: err });
    }
    if (parsed.Secret === undefined || parsed.Secret === '') return undefined;
    if (parsed.Username === '<token>') return { kind: 'identity-token', username: '<token>', token: parsed.Secret };
    return { kind: 'basic', username: parsed.Username ?? '', password: parsed.Secret };
  }
}

/** `Authorization` value for basic credentials. */
export function basicHeader(creds: Credentials): string {
  const secret = creds.kind === 'basic' ? creds.password : creds.token;
  return `Basic ${Buffer.from(`${creds.username}:${secret}`).toString('base64')}`;
}
