/**
 * `npm run bench:satellite`: the satellite path against skopeo, as ratios in one run.
 *
 *   fleet   10 vessel registries each holding release 1.0.0 pull 1.1.0 (one layer changed) from
 *           one shore registry through the counting proxy: bytes served per vessel against the
 *           changed layer (target ≤ 1.01× + metadata), and wall time of `bundle import oci://`
 *           against `skopeo copy` of the same images from the same shore into a twin registry
 *           holding the same 1.0.0 (target ≤ 1.0×)
 *   single  a full pull of a SIZE release into an empty vessel (`bundle import oci://`) against
 *           `skopeo copy docker://shore… docker://vessel…` of all its images (target ≤ 1.0×),
 *           and beside them the floor: bench/relay-floor.mjs, the plainest Node relay with
 *           seabag's spool, in the same runs (seabag, skopeo, floor; each after `sync`)
 *
 * The shore is a plain loopback Distribution (no TLS, no auth: skopeo and seabag pay the same).
 * Every command runs as its own process, as a user would run it.
 *
 * The fleet's floor: beside each vessel's pair of runs, bench/relay-floor.mjs (the plainest Node
 * relay: HEAD, then only the missing blobs, spooled as seabag spools them) pulls the same release
 * into a third registry holding 1.0.0, timed the same way; `floor.ratio` = relay ÷ skopeo, the
 * median over vessels. `node -e 0` and `bundle --version` are recorded beside it.
 * Every timed command starts after `sync`: the writeback of what the one before wrote is not
 * charged to it. Beside each single pull's wall time, both sides record the same things: their own
 * user and system CPU time (`/usr/bin/time`, summed over skopeo's one process per image), the
 * vessel registry's CPU time during the command (/proc), and the pages the kernel dirtied and
 * wrote back meanwhile (/proc/vmstat): where the time went when the two differ.
 * Results go to bench/results/satellite.json (and satellite-2g.json at --size 2G, which the
 * README table reads), with the load average before and after.
 *
 *   npm run bench:satellite                         # --size 2G --fleet-size 256M --vessels 10
 *   npm run bench:satellite -- --size 128M --fleet-size 32M --vessels 3
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { openBundle, parseSize } from '../lib/index.js';
import { buildRandomImage } from '../test/helpers/images.js';
import { startRegistry, type RegistryHandle } from '../test/helpers/registry.js';
import { startCuttingProxy } from '../test/helpers/web.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'dist', 'seabag.mjs');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
}

const SIZE = parseSize(arg('size', '2G'));
const SINGLE_RUNS = Number(arg('single-runs', '2'));
const FLEET = parseSize(arg('fleet-size', '256M'));
const VESSELS = Number(arg('vessels', '10'));
const REPO = 'releases/app';
const BIG = 'releases/big';

const cleanups: (() => Promise<void> | void)[] = [];
const teardown = { teardown: (fn: () => Promise<void> | void) => cleanups.push(fn) };

/**
 * Writes back every dirty page before a timed command, so each starts from the same state: the
 * writeback of what the command before it wrote (2 GiB into a registry, say) is not paid by the
 * next one, whichever tool that is.
 */
async function settle(): Promise<void> {
  await execa('sync');
}

async function seabag(args: string[], env: Record<string, string> = {}, cpu?: CpuMeter): Promise<{ seconds: number; json: Record<string, unknown> }> {
  await settle();
  await cpu?.begin();
  const started = process.hrtime.bigint();
  const r = await execa(...(cpu?.wrap('node', [BIN, ...args, '--json', '--no-progress']) ?? ['node', [BIN, ...args, '--json', '--no-progress']]), { env: { SOURCE_DATE_EPOCH: '1790000000', ...env }, reject: false });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await cpu?.end();
  if (r.exitCode !== 0) throw new Error(`bundle ${args.join(' ')} → ${r.exitCode}: ${r.stdout}${r.stderr}`);
  return { seconds, json: JSON.parse(r.stdout) as Record<string, unknown> };
}

/**
 * Stops a vessel registry and removes what the full pull left (its storage, the importer's state),
 * so that every timed pull starts from the same memory: each finds the 2 GiB the one before wrote
 * freed, not piled up. On this VM that matters more than either tool: page cache on memory the
 * guest never touched (or handed back to the host) costs the registry writing into it 6 s more CPU
 * than recycled pages (the vessel registry's 6.4 s against 12.9 s in one run), and left piled up,
 * whichever run came when the free memory ran out got the cheap pages.
 */
async function forget(registry: RegistryHandle, ...more: string[]): Promise<void> {
  await registry.kill();
  for (const dir of [registry.storageDir, ...more]) await rm(dir, { recursive: true, force: true });
}

/** Clock ticks per second of /proc/PID/stat (Linux's USER_HZ). */
const HZ = 100;

async function vmstat(): Promise<Map<string, number>> {
  const text = await readFile('/proc/vmstat', 'utf8').catch(() => '');
  return new Map(text.split('\n').map((l) => l.split(' ')).map(([k, v]) => [k ?? '', Number(v)]));
}

async function cpuSeconds(pid: number | undefined): Promise<number> {
  const stat = pid === undefined ? '' : await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return stat === '' ? NaN : (Number(f[11]) + Number(f[12])) / HZ;
}

/**
 * What one timed command cost beyond its wall time, measured the same way for seabag and skopeo:
 * its own CPU (through `/usr/bin/time -o`, every process it runs included), the vessel registry's
 * CPU meanwhile, and the kernel's dirtied and written-back pages meanwhile.
 */
class CpuMeter {
  user = 0;
  sys = 0;
  registrySeconds = 0;
  dirtiedMiB = 0;
  writtenMiB = 0;
  readonly #registry: RegistryHandle;
  readonly #file: string;
  #before: { registry: number; vm: Map<string, number> } | undefined;

  constructor(registry: RegistryHandle, file: string) {
    this.#registry = registry;
    this.#file = file;
  }

  async begin(): Promise<void> {
    this.#before = { registry: await cpuSeconds(this.#registry.pid()), vm: await vmstat() };
  }

  /** The command, run under `/usr/bin/time` writing its user and system seconds to a file. */
  wrap(cmd: string, args: string[]): [string, string[]] {
    return ['/usr/bin/time', ['-f', '%U %S', '-o', this.#file, cmd, ...args]];
  }

  /** Adds what the command wrapped last took (skopeo runs one per image). */
  async took(): Promise<void> {
    const [user, sys] = (await readFile(this.#file, 'utf8')).trim().split('\n').pop()?.split(' ').map(Number) ?? [];
    this.user += user ?? NaN;
    this.sys += sys ?? NaN;
  }

  async end(): Promise<void> {
    const before = this.#before;
    if (before === undefined) return;
    const vm = await vmstat();
    const mib = (k: string): number => (((vm.get(k) ?? 0) - (before.vm.get(k) ?? 0)) * 4096) / 2 ** 20;
    this.registrySeconds = (await cpuSeconds(this.#registry.pid())) - before.registry;
    this.dirtiedMiB = mib('nr_dirtied');
    this.writtenMiB = mib('nr_written');
    await this.took();
  }

  toJSON(): Record<string, number> {
    const r = (n: number): number => Math.round(n * 100) / 100;
    return { userSeconds: r(this.user), sysSeconds: r(this.sys), vesselRegistrySeconds: r(this.registrySeconds), dirtiedMiB: Math.round(this.dirtiedMiB), writtenMiB: Math.round(this.writtenMiB) };
  }
}

async function timed(cmd: string, args: string[]): Promise<number> {
  await settle();
  const started = process.hrtime.bigint();
  await execa(cmd, args);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function skopeoCopyAll(from: string, repo: string, to: string, images: { repository: string; digest: string; tag?: string }[], cpu?: CpuMeter): Promise<number> {
  await settle();
  await cpu?.begin();
  const started = process.hrtime.bigint();
  for (const [i, image] of images.entries()) {
    const args = ['copy', '--quiet', '--preserve-digests', '--multi-arch', 'all', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${from}/${repo}@${image.digest}`, `docker://${to}/${image.repository}:${image.tag ?? 'latest'}`];
    await execa(...(cpu?.wrap('skopeo', args) ?? ['skopeo', args]));
    if (cpu !== undefined && i < images.length - 1) await cpu.took();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await cpu?.end();
  return seconds;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};
const fmt = (n: number, digits = 3): string => n.toFixed(digits);

async function main(): Promise<void> {
  const loadBefore = (await readFile('/proc/loadavg', 'utf8')).trim();
  const work = await mkdtemp(join(tmpdir(), 'seabag-bench-satellite-'));
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  const layout = join(work, 'images');
  console.error(`making images: fleet ${FLEET} bytes (a quarter changes), single ${SIZE} bytes`);
  const base = Math.floor(FLEET * 0.75);
  const changed = FLEET - base;
  await buildRandomImage(layout, 'app-1.0.0', [base, changed], 'app-1.0.0', ['base', 'app-1.0.0']);
  await buildRandomImage(layout, 'app-1.1.0', [base, changed], 'app-1.1.0', ['base', 'app-1.1.0']);
  await buildRandomImage(layout, 'big-1.0.0', [0, 1, 2, 3].map(() => Math.floor(SIZE / 4)), 'big-1.0.0');
  await execa('node', [BIN, 'keygen', join(work, 'root.key')]);
  await execa('node', [BIN, 'keygen', join(work, 'release.key')]);
  const trust = join(work, 'trust.json');
  await execa('node', [BIN, 'trust', 'init', '--root-key', join(work, 'root.key.pub'), '--release-key', join(work, 'release.key.pub'), '--sign', join(work, 'root.key'), '-o', trust]);
  const bundles: Record<string, string> = {};
  for (const [name, version, tag] of [
    ['app', '1.0.0', 'app-1.0.0'],
    ['app', '1.1.0', 'app-1.1.0'],
    ['big', '1.0.0', 'big-1.0.0'],
  ] as const) {
    const dir = join(work, `${name}-${version}`);
    await mkdir(dir);
    await writeFile(join(dir, 'release.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: ${name}\nversion: ${version}\nimages:\n  - ref: shore.example.com/bench/${name}:${version}\n    from: oci:${layout}:${tag}\n`);
    bundles[`${name}-${version}`] = join(work, `${name}-${version}.bundle`);
    await seabag(['build', join(dir, 'release.yaml'), '-o', bundles[`${name}-${version}`] as string, '--sign', join(work, 'release.key')]);
  }
  const shore = await startRegistry({}, teardown.teardown);
  for (const [name, b] of Object.entries(bundles)) await seabag(['push', b, `oci://${shore.host}/${name.startsWith('big') ? BIG : REPO}`]);

  const imagesOf = async (path: string): Promise<{ images: { repository: string; digest: string; tag?: string }[]; metadata: number; changedLayer?: number }> => {
    const b = await openBundle(path);
    try {
      let metadata = b.archive.entries.find((e) => e.name === 'index.json')?.size ?? 0;
      for (const [, e] of b.archive.blobs) if (e.size < 64 * 1024) metadata += e.size;
      return { images: b.release.images.map((i) => ({ repository: i.repository, digest: i.digest, ...(i.tag === undefined ? {} : { tag: i.tag }) })), metadata };
    } finally {
      await b.close();
    }
  };
  const next = await imagesOf(bundles['app-1.1.0'] as string);
  const changedBlob = changed + 1536; // a tar of one file: header and end blocks
  const fleet: { bytes: number; seabag: number; skopeo: number; skopeoBytes: number; node: number; cli: number; relay: number }[] = [];
  for (let v = 0; v < VESSELS; v += 1) {
    const vessel: RegistryHandle = await startRegistry({}, teardown.teardown);
    const twin: RegistryHandle = await startRegistry({}, teardown.teardown);
    const state = join(work, `state-${v}`);
    const env = { SEABAG_STATE_DIR: state, SEABAG_REGISTRY: vessel.host };
    await seabag(['import', `oci://${shore.host}/${REPO}:1.0.0`, '--trust', trust], env);
    await skopeoCopyAll(shore.host, REPO, twin.host, (await imagesOf(bundles['app-1.0.0'] as string)).images);
    const proxy = await startCuttingProxy(teardown, shore.port);
    const ours = await seabag(['import', `oci://127.0.0.1:${proxy.port}/${REPO}:1.1.0`], env);
    const theirsProxy = await startCuttingProxy(teardown, shore.port);
    const theirs = await skopeoCopyAll(`127.0.0.1:${theirsProxy.port}`, REPO, twin.host, next.images);
    // The floor: the plainest Node relay (bench/relay-floor.mjs) into a third registry holding 1.0.0.
    const plain: RegistryHandle = await startRegistry({}, teardown.teardown);
    await skopeoCopyAll(shore.host, REPO, plain.host, (await imagesOf(bundles['app-1.0.0'] as string)).images);
    const plainProxy = await startCuttingProxy(teardown, shore.port);
    const relay = await timed('node', [join(root, 'bench', 'relay-floor.mjs'), `127.0.0.1:${plainProxy.port}`, REPO, plain.host, join(work, `fleet-spool-${v}`), ...next.images.map((i) => `${i.repository}:${i.tag ?? 'latest'}@${i.digest}`)]);
    await plain.kill();
    const node = await timed('node', ['-e', '0']);
    const cli = await timed('node', [BIN, '--version']);
    fleet.push({ bytes: proxy.bytesDown, seabag: ours.seconds, skopeo: theirs, skopeoBytes: theirsProxy.bytesDown, node, cli, relay });
    console.error(`vessel ${v + 1}: ${proxy.bytesDown} bytes over the link (changed layer ${changedBlob}), ${fmt(ours.seconds, 3)} s; skopeo ${theirsProxy.bytesDown} bytes, ${fmt(theirs, 3)} s; the plain relay ${fmt(relay, 3)} s; node -e 0 ${fmt(node, 3)} s, bundle --version ${fmt(cli, 3)} s`);
    await vessel.kill();
    await twin.kill();
  }

  // A full pull into an empty vessel, against skopeo docker → docker, A B A B.
  const big = await imagesOf(bundles['big-1.0.0'] as string);
  const pulls: { seabag: number; skopeo: number; floor: number; seabagCost: CpuMeter; skopeoCost: CpuMeter; floorCost: CpuMeter }[] = [];
  // Untimed, so that the first timed pull, like every later one, finds the pages of a full pull freed (see forget).
  const warm = await startRegistry({}, teardown.teardown);
  await skopeoCopyAll(shore.host, BIG, warm.host, big.images);
  await forget(warm);
  for (let run = 0; run < SINGLE_RUNS; run += 1) {
    const v1 = await startRegistry({}, teardown.teardown);
    const seabagCost = new CpuMeter(v1, join(work, 'time.txt'));
    const ours = await seabag(['import', `oci://${shore.host}/${BIG}:1.0.0`, '--trust', trust, '--registry', v1.host], { SEABAG_STATE_DIR: join(work, `state-big-${run}`) }, seabagCost);
    await forget(v1, join(work, `state-big-${run}`));
    const v2 = await startRegistry({}, teardown.teardown);
    const skopeoCost = new CpuMeter(v2, join(work, 'time.txt'));
    const theirs = await skopeoCopyAll(shore.host, BIG, v2.host, big.images, skopeoCost);
    await forget(v2);
    // The floor (bench/relay-floor.mjs): the plainest Node relay with the same spool, timed the same way.
    const v3 = await startRegistry({}, teardown.teardown);
    const floorCost = new CpuMeter(v3, join(work, 'time.txt'));
    const spool = join(work, `floor-spool-${run}`);
    await settle();
    await floorCost.begin();
    const floorStarted = process.hrtime.bigint();
    await execa(...floorCost.wrap('node', [join(root, 'bench', 'relay-floor.mjs'), shore.host, BIG, v3.host, spool, ...big.images.map((i) => `${i.repository}:${i.tag ?? 'latest'}@${i.digest}`)]));
    const floor = Number(process.hrtime.bigint() - floorStarted) / 1e9;
    await floorCost.end();
    await forget(v3, spool);
    pulls.push({ seabag: ours.seconds, skopeo: theirs, floor, seabagCost, skopeoCost, floorCost });
    const cost = (c: CpuMeter): string => `user ${fmt(c.user, 2)} s, sys ${fmt(c.sys, 2)} s, vessel registry ${fmt(c.registrySeconds, 2)} s, dirtied ${fmt(c.dirtiedMiB, 0)} MiB`;
    console.error(`single ${run + 1}: ${fmt(ours.seconds, 2)} s (${cost(seabagCost)}) against skopeo ${fmt(theirs, 2)} s (${cost(skopeoCost)}); floor ${fmt(floor, 2)} s (${cost(floorCost)})`);
  }
  const single = {
    bytes: SIZE,
    runs: SINGLE_RUNS,
    seabagSeconds: median(pulls.map((p) => p.seabag)),
    skopeoSeconds: median(pulls.map((p) => p.skopeo)),
    ratio: median(pulls.map((p) => p.seabag / p.skopeo)),
    ratios: pulls.map((p) => p.seabag / p.skopeo),
    floor: {
      note: 'bench/relay-floor.mjs: every blob from the shore GET into one PATCH on the vessel, four at a time, hashed and spooled with seabag\'s appender, committed after its digest matched; no admission, staging, artifacts, retries or state. floor.ratio is what a Node relay with this spool reaches here against skopeo in the same runs',
      seconds: median(pulls.map((p) => p.floor)),
      ratio: median(pulls.map((p) => p.floor / p.skopeo)),
      ratios: pulls.map((p) => p.floor / p.skopeo),
      seabagOverFloor: median(pulls.map((p) => p.seabag / p.floor)),
    },
    // Each run's wall time and what it cost, the same readings on every side (see CpuMeter).
    each: pulls.map((p) => ({
      seabag: { seconds: Math.round(p.seabag * 1000) / 1000, ...p.seabagCost.toJSON() },
      skopeo: { seconds: Math.round(p.skopeo * 1000) / 1000, ...p.skopeoCost.toJSON() },
      floor: { seconds: Math.round(p.floor * 1000) / 1000, ...p.floorCost.toJSON() },
    })),
  };

  const perVessel = fleet.map((f) => f.bytes);
  const floorCli = median(fleet.map((f) => f.cli));
  const skopeoFleet = median(fleet.map((f) => f.skopeo));
  const results = {
    machine: 'shared (other work running at the same time); loopback registries',
    loadAverage: { before: loadBefore, after: (await readFile('/proc/loadavg', 'utf8')).trim() },
    fleet: {
      vessels: VESSELS,
      changedLayerBytes: changedBlob,
      metadataBytes: next.metadata,
      bytesPerVessel: { median: median(perVessel), min: Math.min(...perVessel), max: Math.max(...perVessel) },
      bytesOverChanged: median(perVessel) / changedBlob,
      bytesOverChangedPlusMetadata: median(perVessel) / (changedBlob + next.metadata),
      skopeoBytesPerVessel: median(fleet.map((f) => f.skopeoBytes)),
      timeRatio: { median: median(fleet.map((f) => f.seabag / f.skopeo)), min: Math.min(...fleet.map((f) => f.seabag / f.skopeo)), max: Math.max(...fleet.map((f) => f.seabag / f.skopeo)), seabagSeconds: median(fleet.map((f) => f.seabag)), skopeoSeconds: skopeoFleet },
      floor: {
        note: "bench/relay-floor.mjs, the plainest Node relay: HEAD each blob of 1.1.0 on the vessel, stream the missing one from the shore into one PATCH (hashed, spooled with seabag's appender, committed after its digest matched), put the manifest; into a third registry holding 1.0.0, through its own counting proxy, timed like the others. No metadata check, admission, staging, artifacts, state or journal: floor.ratio is what the plainest Node program reaches against skopeo here; seabagOverFloorSeconds is what seabag spends beyond it",
        seconds: median(fleet.map((f) => f.relay)),
        ratio: median(fleet.map((f) => f.relay / f.skopeo)),
        min: Math.min(...fleet.map((f) => f.relay / f.skopeo)),
        max: Math.max(...fleet.map((f) => f.relay / f.skopeo)),
        nodeStartSeconds: median(fleet.map((f) => f.node)),
        cliStartSeconds: floorCli,
        seabagOverFloorSeconds: median(fleet.map((f) => f.seabag)) - median(fleet.map((f) => f.relay)),
      },
    },
    single,
  };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', 'satellite.json'), `${JSON.stringify(results, null, 2)}\n`);
  // bench/run.ts puts the 2 GiB figure in the README table from this file.
  if (SIZE === 2 * 1024 ** 3) await writeFile(join(root, 'bench', 'results', 'satellite-2g.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.log(JSON.stringify(results, null, 2));
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
  });
