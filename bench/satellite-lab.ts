/**
 * Hand lab for the single pull: a shore holding one SIZE release is made once (kept in LAB), then
 * each pair runs `bundle import oci://` and `skopeo copy` into fresh vessels, after `sync`, with
 * user/sys time and the kernel's dirty/writeback pages sampled during each.
 *
 *   node --import tsx bench/satellite-lab.ts setup [--size 2G]
 *   node --import tsx bench/satellite-lab.ts run [--pairs 2] [--only seabag|skopeo]
 */
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { openBundle, parseSize } from '../lib/index.js';
import { buildRandomImage } from '../test/helpers/images.js';
import { startRegistry } from '../test/helpers/registry.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = process.env['LAB_BIN'] ?? join(root, 'dist', 'seabag.mjs');
const LAB = process.env['LAB'] ?? '/tmp/13a-lab';
const BIG = 'releases/big';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
}

const cleanups: (() => Promise<void>)[] = [];
const teardown = (fn: () => Promise<void>): void => void cleanups.push(fn);

async function vmstat(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await readFile('/proc/vmstat', 'utf8')).split('\n')) {
    const [k, v] = line.split(' ');
    if (k !== undefined && v !== undefined) out[k] = Number(v);
  }
  return out;
}

/** user+sys seconds of the docker-registry serving `config` (0 when not found). */
async function cpuOf(config: string): Promise<number> {
  const r = await execa('pgrep', ['-f', config], { reject: false });
  let total = 0;
  for (const pid of r.stdout.split('\n').filter(Boolean)) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total += (Number(f[11]) + Number(f[12])) / 100;
  }
  return total;
}

/** Runs a command after sync, timing it and sampling dirty/writeback pages every 50 ms. */
async function measure(cmd: string, args: string[], env: Record<string, string> = {}, registries: string[] = []): Promise<Record<string, number>> {
  await execa('sync');
  const cpuBefore = await Promise.all(registries.map(cpuOf));
  const before = await vmstat();
  let peakDirty = 0;
  let peakWb = 0;
  let sampling = true;
  // When the vessel registry (the last one given) has read 1% and 99% of SIZE from its sockets.
  const vesselPid = registries.length === 0 ? undefined : (await execa('pgrep', ['-f', registries[registries.length - 1] as string], { reject: false })).stdout.split('\n')[0];
  const rchar = async (): Promise<number> => Number(/rchar: (\d+)/.exec(await readFile(`/proc/${vesselPid}/io`, 'utf8').catch(() => ''))?.[1] ?? 0);
  const rchar0 = vesselPid === undefined ? 0 : await rchar();
  let t1 = NaN;
  let t99 = NaN;
  const t0 = Date.now();
  const size = Number(process.env['LAB_SIZE'] ?? 2 ** 31);
  const sampler = (async () => {
    while (sampling) {
      if (vesselPid !== undefined) {
        const got = (await rchar()) - rchar0;
        if (Number.isNaN(t1) && got >= size * 0.01) t1 = (Date.now() - t0) / 1000;
        if (Number.isNaN(t99) && got >= size * 0.99) t99 = (Date.now() - t0) / 1000;
      }
      const v = await vmstat();
      peakDirty = Math.max(peakDirty, v['nr_dirty'] ?? 0);
      peakWb = Math.max(peakWb, v['nr_writeback'] ?? 0);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const started = process.hrtime.bigint();
  const r = await execa('/usr/bin/time', ['-f', '%U %S %F %R %w %c', cmd, ...args], { env, reject: false });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  sampling = false;
  await sampler;
  const after = await vmstat();
  const cpuAfter = await Promise.all(registries.map(cpuOf));
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} → ${r.exitCode}: ${r.stdout}${r.stderr}`);
  const [user, sys, , , volCs, invCs] = (r.stderr.trim().split('\n').pop() ?? '').split(' ').map(Number);
  const page = 4096 / 2 ** 20;
  return {
    seconds,
    user: user ?? NaN,
    sys: sys ?? NaN,
    volCs: volCs ?? NaN,
    invCs: invCs ?? NaN,
    peakDirtyMiB: peakDirty * page,
    peakWritebackMiB: peakWb * page,
    writtenMiB: ((after['nr_written'] ?? 0) - (before['nr_written'] ?? 0)) * page,
    dirtiedMiB: ((after['nr_dirtied'] ?? 0) - (before['nr_dirtied'] ?? 0)) * page,
    firstPercent: t1,
    lastPercent: t99,
    ...Object.fromEntries(registries.map((_, i) => [`registry${i}Cpu`, (cpuAfter[i] ?? 0) - (cpuBefore[i] ?? 0)])),
  };
}

async function setup(): Promise<void> {
  const size = parseSize(arg('size', '2G'));
  await rm(LAB, { recursive: true, force: true });
  await mkdir(LAB, { recursive: true });
  const layout = join(LAB, 'images');
  await buildRandomImage(layout, 'big-1.0.0', [0, 1, 2, 3].map(() => Math.floor(size / 4)), 'big-1.0.0');
  await execa('node', [BIN, 'keygen', join(LAB, 'root.key')]);
  await execa('node', [BIN, 'keygen', join(LAB, 'release.key')]);
  const trust = join(LAB, 'trust.json');
  await execa('node', [BIN, 'trust', 'init', '--root-key', join(LAB, 'root.key.pub'), '--release-key', join(LAB, 'release.key.pub'), '--sign', join(LAB, 'root.key'), '-o', trust]);
  const dir = join(LAB, 'big');
  await mkdir(dir);
  await writeFile(join(dir, 'release.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: big\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/bench/big:1.0.0\n    from: oci:${layout}:big-1.0.0\n`);
  const bundle = join(LAB, 'big.bundle');
  await execa('node', [BIN, 'build', join(dir, 'release.yaml'), '-o', bundle, '--sign', join(LAB, 'release.key')], { env: { SOURCE_DATE_EPOCH: '1790000000' } });
  const shore = await startRegistry({ storageDir: join(LAB, 'shore') }, teardown);
  await execa('node', [BIN, 'push', bundle, `oci://${shore.host}/${BIG}`]);
  const b = await openBundle(bundle);
  const images = b.release.images.map((i) => ({ repository: i.repository, digest: i.digest, tag: i.tag }));
  await b.close();
  await writeFile(join(LAB, 'images.json'), JSON.stringify(images));
  await rm(layout, { recursive: true, force: true });
  await rm(bundle, { force: true });
}

async function run(): Promise<void> {
  const pairs = Number(arg('pairs', '2'));
  const only = arg('only', '');
  // Several builds, each timed in every pair (e.g. --bins dist/seabag.mjs,/tmp/base/dist/seabag.mjs).
  const bins = arg('bins', BIN).split(',');
  // As the bench does: vessels' storage and state stay until the end (no freed pages to reuse).
  const keep = process.argv.includes('--keep');
  const later: string[] = [];
  const drop = async (path: string): Promise<void> => {
    if (keep) later.push(path);
    else await rm(path, { recursive: true, force: true });
  };
  const images = JSON.parse(await readFile(join(LAB, 'images.json'), 'utf8')) as { repository: string; digest: string; tag?: string }[];
  await stat(join(LAB, 'shore'));
  const shore = await startRegistry({ storageDir: join(LAB, 'shore') }, teardown);
  const rows: Record<string, Record<string, number>>[] = [];
  console.error(`load ${(await readFile('/proc/loadavg', 'utf8')).trim()}`);
  for (let p = 0; p < pairs; p += 1) {
    const row: Record<string, Record<string, number>> = {};
    for (const [b, bin] of (only === 'skopeo' ? [] : bins).entries()) {
      const v = await startRegistry({}, teardown);
      const state = join(LAB, `state-${p}-${b}`);
      await rm(state, { recursive: true, force: true });
      row[b === 0 ? 'seabag' : `seabag${b}`] = await measure('node', [...(process.env['LAB_NODE_ARGS']?.split(' ').filter(Boolean) ?? []), bin, 'import', `oci://${shore.host}/${BIG}:1.0.0`, '--trust', join(LAB, 'trust.json'), '--registry', v.host, '--json', '--no-progress'], { SEABAG_STATE_DIR: state }, [shore.configPath, v.configPath]);
      await v.kill();
      await drop(v.storageDir);
      await drop(state);
    }
    if (process.argv.includes('--floor')) {
      const v = await startRegistry({}, teardown);
      row['floor'] = await measure('node', [...(process.env['LAB_NODE_ARGS']?.split(' ').filter(Boolean) ?? []), join(root, 'bench', 'relay-floor.mjs'), shore.host, BIG, v.host, join(LAB, 'floor-spool'), ...images.map((i) => `${i.repository}:${i.tag ?? 'latest'}@${i.digest}`)], {}, [shore.configPath, v.configPath]);
      await v.kill();
      await drop(v.storageDir);
    }
    if (only !== 'seabag') {
      const v = await startRegistry({}, teardown);
      // skopeo copies the images one after another, as the bench does; time it as one command.
      const script = images
        .map((i) => `skopeo copy --quiet --preserve-digests --multi-arch all --src-tls-verify=false --dest-tls-verify=false docker://${shore.host}/${BIG}@${i.digest} docker://${v.host}/${i.repository}:${i.tag ?? 'latest'}`)
        .join(' && ');
      row['skopeo'] = await measure('sh', ['-c', script], {}, [shore.configPath, v.configPath]);
      await v.kill();
      await drop(v.storageDir);
    }
    const f = (x: Record<string, number> | undefined): string => (x === undefined ? '-' : `${x['seconds']?.toFixed(2)} s (u ${x['user']} s ${x['sys']}; dirty peak ${x['peakDirtyMiB']?.toFixed(0)} MiB, wb peak ${x['peakWritebackMiB']?.toFixed(0)}, written ${x['writtenMiB']?.toFixed(0)}, dirtied ${x['dirtiedMiB']?.toFixed(0)}, cs ${x['volCs']}/${x['invCs']}; shore cpu ${x['registry0Cpu']?.toFixed(2)}, vessel cpu ${x['registry1Cpu']?.toFixed(2)}; 1% at ${x['firstPercent']} s, 99% at ${x['lastPercent']} s)`);
    const lines = Object.entries(row).map(([k, x]) => `  ${k.padEnd(8)} ${f(x)}${k !== 'skopeo' && row['skopeo'] ? ` ratio ${((x['seconds'] as number) / (row['skopeo']['seconds'] as number)).toFixed(2)}` : ''}`);
    console.error(`pair ${p + 1}:\n${lines.join('\n')}`);
    rows.push(row);
  }
  console.error(`load ${(await readFile('/proc/loadavg', 'utf8')).trim()}`);
  console.log(JSON.stringify(rows));
  for (const path of later) await rm(path, { recursive: true, force: true });
}

(process.argv[2] === 'setup' ? setup() : run())
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  });
