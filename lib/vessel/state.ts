/**
 * The vessel's state folder: pinned trust roots (`roots/N.root.json`), `state.json` (releases
 * and their states), `journal.json` (the operation in progress) and `lock`. Every file is written
 * atomically (temp file, fsync, rename, fsync the folder).
 */
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fromSystemError, SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { assertSchema } from '../schema.js';
import { parseRoot, type TrustRoot } from '../trust/root.js';
import { fsyncDir, writeFileAtomic } from '../util/atomic.js';
import { canonicalBytes } from '../util/canonical.js';
import { compareSemver } from '../util/semver.js';

export type ReleaseState = 'staged' | 'active' | 'previous' | 'failed';

export interface HeldImage {
  ref: string;
  repository: string;
  tag?: string;
  digest: Digest;
  mediaType: string;
  size: number;
}

export interface HeldRelease {
  name: string;
  version: string;
  /** The release manifest's digest. */
  digest: Digest;
  state: ReleaseState;
  /** The release's build time, when its bundle recorded one (SOURCE_DATE_EPOCH). */
  created?: string;
  importedAt: string;
  appliedAt?: string;
  failure?: string;
  /** The release's own signed health check (run only when the captain asks, see `apply --release-check`). */
  check?: ReleaseCheck;
  images: HeldImage[];
  /** Every blob and manifest the release needs, by repository (sorted). */
  content: Record<string, Digest[]>;
  /**
   * Which digests of `content` are manifests or indexes (sorted), so a presence check asks each
   * where it lives in one request. Only a hint: a wrong entry costs a second request, never a
   * wrong answer (`missingContent`). Absent in states written before it was recorded.
   */
  manifests?: Digest[];
  /** Where its Flux artifact lives (`seabag/NAME/manifests`). */
  manifestsRepository: string;
  fluxDigest?: Digest;
}

/** A health check as a release carries it: argv (no shell) and a timeout. */
export interface ReleaseCheck {
  command: string[];
  timeoutSeconds: number;
}

/** Where `bundle runtime-config` output is kept current after each import. */
export interface RuntimeTargets {
  /** containerd `config_path` folder (`DIR/HOST/hosts.toml`). */
  containerd?: string;
  /** K3s `registries.yaml`. */
  k3s?: string;
  upstreamFallback?: boolean;
}

export interface VesselState {
  apiVersion: 'seabag.dev/v1';
  kind: 'VesselState';
  registry?: { host: string; plainHttp?: boolean; caFile?: string };
  target?: string;
  /** The newest time any trusted document vouched for: expiry is judged against it too. */
  newestTrustedTime?: string;
  /** The last `trust set-time` statement applied: it, and any not newer, are refused afterwards. */
  lastTimeReset?: { digest: string; notAfter: string; time: string; appliedAt: string };
  /** Set by `import --runtime-config`: regenerated after each import. */
  runtimeConfig?: RuntimeTargets;
  releases: HeldRelease[];
}

export const DEFAULT_STATE_DIR = '/var/lib/seabag';

export class StateDir {
  readonly dir: string;
  /** The pinned roots as first read (each is parsed and checked once per command); pinning forgets them. */
  #roots: Promise<Map<number, TrustRoot>> | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  get statePath(): string {
    return join(this.dir, 'state.json');
  }

  get journalPath(): string {
    return join(this.dir, 'journal.json');
  }

  get lockPath(): string {
    return join(this.dir, 'lock');
  }

  get rootsDir(): string {
    return join(this.dir, 'roots');
  }

  /**
   * Makes the folder (and `roots/`) if missing.
   *
   * @throws E_IO (e.g. read-only), E_DISK_FULL
   */
  async ensure(): Promise<void> {
    try {
      await mkdir(this.rootsDir, { recursive: true, mode: 0o755 });
    } catch (err) {
      throw fromSystemError(err, 'create the state folder', this.dir);
    }
  }

  async exists(): Promise<boolean> {
    return (await stat(this.statePath).catch(() => undefined)) !== undefined;
  }

  /**
   * Reads `state.json` (an empty state when there is none).
   *
   * @throws E_STATE_INVALID when it is not valid (never silently replaced)
   */
  async load(): Promise<VesselState> {
    let text: string;
    try {
      text = await readFile(this.statePath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { apiVersion: 'seabag.dev/v1', kind: 'VesselState', releases: [] };
      throw fromSystemError(err, 'read', this.statePath);
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new SeabagError('E_STATE_INVALID', `${this.statePath} is not valid JSON: ${(err as Error).message}`, {
        hint: 'restore it from a backup; seabag never overwrites a state file it cannot read',
      });
    }
    assertSchema('state', doc, this.statePath, 'E_STATE_INVALID');
    return doc as VesselState;
  }

  /** Writes `state.json` atomically, releases in a stable order. */
  async save(state: VesselState): Promise<void> {
    const sorted: VesselState = {
      ...state,
      releases: [...state.releases].sort((a, b) => (a.name === b.name ? compareSemver(a.version, b.version) : a.name < b.name ? -1 : 1)),
    };
    assertSchema('state', sorted, this.statePath, 'E_STATE_INVALID');
    // Unchanged: not rewritten (a no-op leaves state.json byte for byte, and its time, as it was).
    const text = `${JSON.stringify(sorted, null, 2)}\n`;
    if ((await readFile(this.statePath, 'utf8').catch(() => undefined)) === text) return;
    await writeFileAtomic(this.statePath, text);
  }

  /**
   * The pinned trust roots, by version.
   *
   * @throws E_STATE_INVALID when a stored root is unreadable
   */
  async roots(): Promise<Map<number, TrustRoot>> {
    this.#roots ??= this.#readRoots();
    this.#roots.catch(() => (this.#roots = undefined));
    return new Map(await this.#roots);
  }

  async #readRoots(): Promise<Map<number, TrustRoot>> {
    const found = new Map<number, TrustRoot>();
    let names: string[];
    try {
      names = await readdir(this.rootsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return found;
      throw fromSystemError(err, 'read', this.rootsDir);
    }
    for (const name of names) {
      const m = /^(\d+)\.root\.json$/.exec(name);
      if (m === null) continue;
      const path = join(this.rootsDir, name);
      try {
        const root = parseRoot(await readFile(path), path);
        if (root.signed.version !== Number(m[1])) throw new SeabagError('E_STATE_INVALID', `${path} holds version ${root.signed.version}`);
        found.set(root.signed.version, root);
      } catch (err) {
        throw new SeabagError('E_STATE_INVALID', `pinned trust root ${path} is unreadable: ${(err as Error).message}`, { cause: err });
      }
    }
    return found;
  }

  /** The newest pinned root, if any. */
  async currentRoot(): Promise<TrustRoot | undefined> {
    const roots = await this.roots();
    const newest = Math.max(0, ...roots.keys());
    return roots.get(newest);
  }

  /** Pins roots (each as `N.root.json`), atomically, oldest first. */
  async pinRoots(roots: readonly TrustRoot[]): Promise<void> {
    try {
      for (const root of roots) {
        await writeFileAtomic(join(this.rootsDir, `${root.signed.version}.root.json`), `${JSON.stringify(root, null, 2)}\n`);
      }
    } finally {
      this.#roots = undefined;
    }
  }

  /** Canonical bytes of each pinned root, for spotting a different root under a known version. */
  async knownRootBytes(): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    for (const [v, r] of await this.roots()) out.set(v, canonicalBytes(r).toString('base64'));
    return out;
  }

  async removeJournal(): Promise<void> {
    await rm(this.journalPath, { force: true });
    await fsyncDir(this.dir);
  }
}

/** The releases of one name. */
export function releasesOf(state: VesselState, name: string): HeldRelease[] {
  return state.releases.filter((r) => r.name === name);
}

export function findRelease(state: VesselState, name: string, version: string): HeldRelease | undefined {
  return state.releases.find((r) => r.name === name && r.version === version);
}
