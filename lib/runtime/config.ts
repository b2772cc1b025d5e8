/**
 * `bundle runtime-config`: writes the mirror settings of the held releases where the runtime
 * reads them, atomically, and (when `import --runtime-config` asked for it) again after each
 * import, so a host new in a release is mirrored before anyone applies it.
 */
import { access, lstat, mkdir } from 'node:fs/promises';
import { openRegularFile } from '../util/files.js';
import { dirname, join, resolve } from 'node:path';
import { fromSystemError, SeabagError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { Vessel, type VesselOptions } from '../vessel/session.js';
import type { RuntimeTargets, VesselState } from '../vessel/state.js';
import { mirrorPlan, type MirrorPlan } from './mirrors.js';
import { hostsToml, MARKER, registriesYaml } from './render.js';

export interface RuntimeConfigOptions extends VesselOptions, RuntimeTargets {
  /** Replace files seabag did not write. */
  force?: boolean;
}

export interface RuntimeConfigResult {
  registry: MirrorPlan['endpoint'];
  /** Each host with the endpoint(s) its pulls go to (the vessel registry; its upstream last only with fallback). */
  hosts: (MirrorPlan['hosts'][number] & { endpoints: string[] })[];
  collisions: MirrorPlan['collisions'];
  upstreamFallback: boolean;
  /** Files written, in order. */
  written: string[];
}

/** Reads the first line of a file, or undefined when it does not exist. */
async function firstLine(path: string): Promise<string | undefined> {
  let handle;
  try {
    // O_NONBLOCK, regular files only: a FIFO where the output goes is E_USAGE, not a hang.
    ({ handle } = await openRegularFile(path, 'output'));
  } catch (err) {
    if (err instanceof SeabagError && err.code === 'E_FILE_NOT_FOUND') return undefined;
    throw err;
  }
  try {
    const buf = Buffer.alloc(MARKER.length + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8').split('\n')[0] ?? '';
  } finally {
    await handle.close();
  }
}

/** Refuses to replace a file another hand wrote (unless forced), and a path that is a link or a folder. */
async function checkWritable(path: string, force: boolean): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (st === undefined) return;
  if (!st.isFile()) throw new SeabagError('E_FILE_EXISTS', `${path} exists and is not a regular file; seabag writes no config through a link`, { details: { file: path } });
  if (force) return;
  if ((await firstLine(path)) !== MARKER) {
    throw new SeabagError('E_FILE_EXISTS', `${path} exists and was not written by seabag`, {
      details: { file: path },
      hint: 'move it aside (or merge it by hand), or pass --force to replace it',
    });
  }
}

/** A folder on the way to a config file: made if missing, never followed if it is a link. */
async function ensureDir(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (st !== undefined && !st.isDirectory()) throw new SeabagError('E_FILE_EXISTS', `${path} exists and is not a folder`, { details: { file: path } });
  if (st === undefined) {
    try {
      await mkdir(path, { recursive: true, mode: 0o755 });
    } catch (err) {
      throw fromSystemError(err, 'create folder', path);
    }
  }
}

/**
 * Writes `DIR/HOST/hosts.toml` for every host of the plan. Every file is checked before any is
 * written, so a refusal leaves the folder as it was.
 *
 * @throws E_FILE_EXISTS (a file seabag did not write, without `force`), E_IO, E_DISK_FULL
 */
export async function writeContainerdHosts(plan: MirrorPlan, dir: string, force = false): Promise<string[]> {
  await ensureDir(dir);
  const files = plan.hosts.map((h) => ({ entry: h, dir: join(dir, h.host), file: join(dir, h.host, 'hosts.toml') }));
  for (const f of files) {
    const st = await lstat(f.dir).catch(() => undefined);
    if (st !== undefined && !st.isDirectory()) throw new SeabagError('E_FILE_EXISTS', `${f.dir} exists and is not a folder`, { details: { file: f.dir } });
    await checkWritable(f.file, force);
  }
  for (const f of files) {
    await ensureDir(f.dir);
    await writeFileAtomic(f.file, hostsToml(plan, f.entry));
  }
  return files.map((f) => f.file);
}

/**
 * Writes K3s's `registries.yaml`.
 *
 * @throws E_FILE_EXISTS, E_IO, E_DISK_FULL
 */
export async function writeK3sRegistries(plan: MirrorPlan, file: string, force = false): Promise<string[]> {
  await ensureDir(dirname(file));
  await checkWritable(file, force);
  await writeFileAtomic(file, registriesYaml(plan), 0o600);
  return [file];
}

/** The plan for a vessel's state: its registry as remembered, unless the options say otherwise. */
export function planFor(state: VesselState, options: Pick<VesselOptions, 'registry' | 'plainHttp' | 'caFile'> & { upstreamFallback?: boolean }): MirrorPlan {
  const registry = options.registry ?? state.registry?.host;
  if (registry === undefined || registry === '') {
    throw new SeabagError('E_USAGE', 'no registry known for this vessel', { hint: 'import a release first, or pass --registry HOST[:PORT]' });
  }
  const remembered = state.registry?.host === registry ? state.registry : undefined;
  const caFile = options.caFile ?? (options.plainHttp === true ? undefined : remembered?.caFile);
  const plainHttp = options.plainHttp ?? (options.caFile !== undefined ? false : remembered?.plainHttp);
  return mirrorPlan(state, {
    registry,
    ...(plainHttp === undefined ? {} : { plainHttp }),
    ...(caFile === undefined ? {} : { caFile: resolve(caFile) }),
    ...(options.upstreamFallback === undefined ? {} : { upstreamFallback: options.upstreamFallback }),
  });
}

/** Writes the plan to each target named. */
export async function writeRuntimeConfig(plan: MirrorPlan, targets: RuntimeTargets, force = false): Promise<string[]> {
  const written: string[] = [];
  if (targets.containerd !== undefined) written.push(...(await writeContainerdHosts(plan, resolve(targets.containerd), force)));
  if (targets.k3s !== undefined) written.push(...(await writeK3sRegistries(plan, resolve(targets.k3s), force)));
  return written;
}

/**
 * `bundle runtime-config`: the plan for what the vessel holds, written to the targets named (none
 * for `--json` alone).
 *
 * @throws E_USAGE (no registry known), E_FILE_EXISTS, E_REFERENCE_INVALID, E_STATE_INVALID, E_IO
 */
export async function runtimeConfig(options: RuntimeConfigOptions): Promise<RuntimeConfigResult> {
  if (options.caFile !== undefined) {
    // The runtime reads the CA, not seabag: a missing one would only show at the next pull.
    await access(options.caFile).catch((err: unknown) => {
      throw fromSystemError(err, 'read the CA file', options.caFile);
    });
  }
  const vessel = await Vessel.open(options, 'runtime-config', 'read');
  try {
    const plan = planFor(vessel.state, options);
    const written = await writeRuntimeConfig(plan, options, options.force === true);
    const hosts = plan.hosts.map((h) => ({ ...h, endpoints: plan.upstreamFallback && !h.self ? [plan.endpoint.url, h.upstream] : [plan.endpoint.url] }));
    return { registry: plan.endpoint, hosts, collisions: plan.collisions, upstreamFallback: plan.upstreamFallback, written };
  } finally {
    await vessel.close();
  }
}

/**
 * After an import: rewrites what `import --runtime-config` asked to keep current. Never forced:
 * a file someone else has since put there is left alone and reported.
 */
export async function refreshRuntimeConfig(state: VesselState): Promise<{ written: string[]; error?: SeabagError } | undefined> {
  const targets = state.runtimeConfig;
  if (targets === undefined || (targets.containerd === undefined && targets.k3s === undefined)) return undefined;
  try {
    return { written: await writeRuntimeConfig(planFor(state, targets.upstreamFallback === undefined ? {} : { upstreamFallback: targets.upstreamFallback }), targets) };
  } catch (err) {
    return { written: [], error: err instanceof SeabagError ? err : fromSystemError(err, 'write runtime config') };
  }
}
