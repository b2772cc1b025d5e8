/**
 * A vessel command's hold on the vessel: the state folder, its lock (for commands that change
 * anything), the state, and the registry client.
 */
import { SeabagError } from '../errors.js';
import type { OpOptions } from '../oci/store.js';
import type { CredentialStore } from '../registry/auth.js';
import { RegistryClient, checkRegistryHost, retryAsProgress } from '../registry/client.js';
import { DEFAULT_RETRY } from '../registry/retry.js';
import type { Repository } from '../registry/repository.js';
import type { RetryPolicy } from '../registry/retry.js';
import { acquireLock, removeLeftovers, type Lock } from './lock.js';
import { StateDir, type VesselState } from './state.js';

export interface VesselOptions extends OpOptions {
  stateDir: string;
  /** HOST[:PORT]; remembered in the state from the first import. */
  registry?: string;
  plainHttp?: boolean;
  caFile?: string;
  credentials?: CredentialStore;
  retry?: RetryPolicy;
  /**
   * Told as each durable step is passed (`import:blob`, `switch:tag`, …): for observing, and for
   * crash tests that kill the process at a chosen step.
   */
  onStep?: (step: string) => void;
}

export class Vessel {
  readonly dir: StateDir;
  readonly options: VesselOptions;
  state: VesselState;
  readonly lock: Lock | undefined;
  /** What happened before the command itself: a lock taken over, an operation finished. */
  readonly notes: string[] = [];
  #client: RegistryClient | undefined;

  private constructor(dir: StateDir, options: VesselOptions, state: VesselState, lock: Lock | undefined) {
    this.dir = dir;
    this.options = options;
    this.state = state;
    this.lock = lock;
  }

  /**
   * Opens the state folder; `mutate` takes the lock first (making the folder when missing).
   *
   * @throws E_LOCKED, E_STATE_INVALID, E_IO
   */
  static async open(options: VesselOptions, command: string, mode: 'mutate' | 'read'): Promise<Vessel> {
    const dir = new StateDir(options.stateDir);
    let lock: Lock | undefined;
    if (mode === 'mutate') {
      await dir.ensure();
      lock = await acquireLock(dir.lockPath, command);
    }
    try {
      if (lock !== undefined) {
        // Temp files a killed command left (a SIGKILL between writing and renaming).
        await removeLeftovers(dir.dir, dir.lockPath);
        await removeLeftovers(dir.rootsDir, dir.lockPath);
      }
      const vessel = new Vessel(dir, options, await dir.load(), lock);
      if (lock?.tookOver !== undefined) {
        const t = lock.tookOver;
        vessel.notes.push(`took over the lock of \`${t.command}\` (pid ${t.pid}), whose holder is no longer running`);
      }
      return vessel;
    } catch (err) {
      await lock?.release();
      throw err;
    }
  }

  /** The registry host: the option, else the one remembered from the first import. */
  get registryHost(): string {
    const host = this.options.registry ?? this.state.registry?.host;
    if (host === undefined || host === '') {
      throw new SeabagError('E_USAGE', 'no registry known for this vessel', { hint: 'pass --registry HOST[:PORT] or set SEABAG_REGISTRY (e.g. localhost:32000)' });
    }
    checkRegistryHost(host);
    return host;
  }

  async client(): Promise<RegistryClient> {
    if (this.#client !== undefined) return this.#client;
    const remembered = this.state.registry?.host === this.registryHost ? this.state.registry : undefined;
    const plainHttp = this.options.plainHttp ?? remembered?.plainHttp;
    const caFile = this.options.caFile ?? remembered?.caFile;
    this.#client = await RegistryClient.create(this.registryHost, {
      ...(plainHttp === undefined ? {} : { plainHttp }),
      ...(caFile === undefined ? {} : { caFile }),
      ...(this.options.credentials === undefined ? {} : { credentials: this.options.credentials }),
      ...(this.options.retry === undefined ? {} : { retry: this.options.retry }),
      ...(this.options.onProgress === undefined ? {} : { onRetry: retryAsProgress(this.registryHost, this.options.retry ?? DEFAULT_RETRY, this.options.onProgress) }),
    });
    return this.#client;
  }

  /** Reports a step (see `VesselOptions.onStep`). */
  step(name: string): void {
    this.options.onStep?.(name);
  }

  async repository(name: string): Promise<Repository> {
    return (await this.client()).repository(name);
  }

  /** Writes the state (atomically). */
  async save(): Promise<void> {
    await this.dir.save(this.state);
  }

  async close(): Promise<void> {
    this.#client?.close();
    await this.lock?.release();
  }
}
