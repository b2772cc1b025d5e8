/**
 * `npm run bench`: seabag against the fastest tools on this machine, in the same run, as ratios,
 * at three sizes (256 MiB, 800 MiB, 2 GiB by default).
 *
 *   verify 8      bundle verify, 8 layers        vs  openssl dgst -sha256 of the bundle
 *   verify 1      bundle verify, 1 big layer     vs  openssl dgst -sha256 of the bundle
 *   verify split  verify of the split bundle     vs  verify of the same bundle unsplit
 *   build         bundle build                   vs  tar cf of the layout + openssl dgst of the tar
 *   fsync         bundle build                   vs  bundle build --no-sync (what the fsyncs cost)
 *   import        bundle import                  vs  skopeo copy oci:DIR:REF, image by image
 *   ceiling       bundle import                  vs  every image pushed at once by parallel skopeo
 *                                                    copies (the registry's own ingest ceiling)
 *   reimport      bundle import again            vs  the first import (nothing may be pushed)
 *   rss           peak RSS of build, verify, import at each size
 *   start-up      --version, status (empty vessel), inspect (small bundle) vs node -e 0, in ms
 *   delta         size of a v2-over-v1 delta vs the full v2 bundle (smallest size only)
 *
 * Each ratio is taken run by run, the two sides interleaved (A B A B: the machine's load hits
 * both alike), and reported as median (min–max) of those ratios. Every measured import gets a
 * fresh registry. Results go to bench/results/latest.json and the README's table.
 *
 *   npm run bench                                  # 256M,800M,2G; 5,5,3 runs
 *   npm run bench -- --sizes 128M --runs 2 --only verify,build
 *   npm run bench -- --readme                      # re-render the README from latest.json
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as http from 'node:http';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { parseSize } from '../lib/index.js';
import { buildRandomImage } from '../test/helpers/images.js';
import { startRegistry, type RegistryHandle } from '../test/helpers/registry.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'dist', 'seabag.mjs');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
}

const SIZES = arg('sizes', '256M,800M,2G').split(',').map((s) => parseSize(s));
const RUN_LIST = arg('runs', '5,5,3').split(',').map(Number);
const runsAt = (i: number): number => RUN_LIST[Math.min(i, RUN_LIST.length - 1)] ?? 3;
const ONLY = arg('only', 'verify,split,build,import,reimport,rss,startup,delta').split(',');
const STARTUP_RUNS = Number(arg('startup-runs', '15'));

interface Stats {
  median: number;
  min: number;
  max: number;
}

/** One figure at one size. */
interface Cell {
  size: number;
  runs: number;
  ratio?: Stats;
  ours?: Stats;
  theirs?: Stats;
  /**
   * The physical floor of the ratio on this machine, measured in the same run: what an ideal
   * program would score (node's own start, the bytes at the peer's speed on the cores there are).
   * A target below its floor cannot be met here by any program started by node.
   */
  floor?: Stats;
  floorText?: string;
  /** A plain value (MiB, ms) where there is no ratio. */
  value?: Stats;
  unit?: string;
  note?: string;
}

interface Figure {
  key: string;
  name: string;
  /** Met when the median is at most this. */
  target?: number;
  targetText?: string;
  cells: Cell[];
}

const figures = new Map<string, Figure>();

/** Why a figure misses its target, from the profiles (bench/results/*.md); shown when it does. */
const WHY: Record<string, string> = {
  'verify-8':
    "node's start (~55 ms) and the program's load come before ~0.1 s of hashing at 256 MiB; both threads then hash (every lane draws the next blob, largest first, from one shared counter; the main thread starts at once, the second thread joins when up, ~30 ms later); the profile (profile-after.md) shows the main thread idle at the end, waiting for the worker's last blob",
  'verify-1':
    "one sha256 stream runs on one core, and node hashes a cached file at openssl's own speed (reading is ~29% of both; a read-ahead thread measured slower: the bytes cross caches); what is left above the floor is the program's load and admission beside the hash",
  'verify-split':
    "each byte is hashed twice (its part and its blob) on the same two cores: at 256 MiB the split verify spends 0.48 s of CPU against the unsplit one's 0.33 s (user + sys), so at least 0.07 s more on two cores over a 0.22 s verify; a part and the blobs wholly inside it share one read, a blob that crosses a part's end is read again (from the page cache) as a job of its own; the second thread joins ~40 ms after the main thread starts hashing (its start; starting it before the archive's headers are read measured no faster)",
  'verify-split-1':
    "the layer's stream runs on one core and the parts on the other, the same bytes each; the layer crosses every part boundary, so it is read a second time (from the page cache) by its own lane; the parts' thread is started by the CLI's entry, beside the program's load, and is up when hashing begins (started by hashing itself, it came up ~25 ms late and ended 10-17 ms after the layer at 800 MiB); traced at 800 MiB, what is left is ~8 ms before hashing (the parts file, four files, the thread's start slowing the program's load ~5 ms) and ~7-12 ms of the layer's hash (the two streams side by side)",
  build:
    "the program's own work before the first byte, which the floor skips: at 256 MiB (timestamps at each phase, bench/build-lab.ts) node is up at ~55 ms, the program and its arguments at ~80 ms, the spec at ~88 ms (yaml from its code cache), and the 4 images are resolved, at once, by ~117 ms; the write then takes ~0.20–0.22 s, hashed in a lane per core, about what the floor program takes for the same bytes (on this disk a durable 256 MiB takes ~0.18–0.21 s even from /dev/zero with O_DIRECT). Tried and measured no faster: O_DIRECT writes from page-aligned memory, the hashing threads reading their own chunks, the threads started at the CLI's entry (−15 ms at 256 MiB, but +19 ms on a 4 KiB build)",
  import:
    'the registry on the same two cores hashes and writes every byte again; see the floor',
  ceiling: 'seabag hashes each blob on its way out, which the parallel skopeo copies of the ceiling also do; the registry on the same two cores is the limit of both',
  reimport:
    "nothing is pushed; by timestamps in the program (a 64 MiB bundle of 4 images, 2 layers each): the program is ready at ~75 ms from the process's start (node alone: ~56 ms), the lock, state and the bundle's metadata (read together) take ~22 ms more, admission ~15 ms (signature, threshold, expiry, downgrade, target), and the HEADs of the 21 recorded digests and 2 tags ~16–25 ms; the floor program pays the same ~56 ms start and ~28 ms of HEADs (node's http, then the registry's answers on the same two cores), so the floor alone is above 0.03 of an 800 MiB import. Without the HEADs (trusting state.json that the registry still holds the release) it would be ~0.025, but a re-import is how a vessel whose registry lost a blob is healed",
  'startup-version': 'the load of the machine at the time (the CPU-time column is the steadier measure); --version loads nothing but the version',
  'startup-status': 'the program loads from a V8 code cache; what remains is node:fs work on the state directory',
  'startup-inspect': 'as status, plus the release document\'s schema validator (compiled without the cache)',
  satellite:
    "every byte is also written to STATE/spool (resume across a kill or a power cut needs it on disk), which skopeo never writes: on an unpaced link it goes around the page cache (O_DIRECT), which took the pull from 1.5× to about 1.0× (docs/satellite.md); beyond the floor's relay, seabag pays admission, staging and the release and Flux artifacts, and the work V8 does beside the stream (import and pull from a registry start without the code cache, whose eagerly built code made V8 run 100–130 full mark-compacts per 2 GiB pull: cli/program-loader.ts, docs/satellite.md)",
  'fleet-time': "node's start (~0.06 s) is a large share of skopeo's whole copy of one changed layer; beyond the floor's relay, seabag fetches and checks the signed metadata first, stages, pushes the release and Flux artifacts, and writes its state and journal",
};

/** What each floor is: the ideal program the target is held against (see `pair`'s floor functions). */
const FLOOR: Record<string, string> = {
  'verify-8': "node's start (`node -e 0`) plus the blobs hashed by two openssl processes at once, one per core, against one openssl over the bundle",
  'verify-1': "node's start plus one openssl over the bundle: one sha256 stream runs on one core, at openssl's speed at best",
  'verify-split': "the larger of an ideal split verify (node's start plus one read of every byte (dd) and two hashes of it (openssl's time less the read), shared by two cores) and seabag's unsplit verify of the same run with only the second hash of every byte added, at half its openssl time (both cores already hash in an unsplit verify of 8 layers; a split verify does all it does, and that), against that unsplit verify",
  'verify-split-1': "the larger of an ideal split verify (node's start plus the layer's one stream beside the parts' stream: one read, two hashes, two cores) and seabag's unsplit verify of the same run (a split verify does all it does, and more), against that unsplit verify: never below 1",
  build: "the plainest durable build a Node program can run (bench/build-floor.mjs: node's start, a hashing thread per core, the layout's blobs listed, written into one tar each at its place and hashed in lanes, flushed every 32 MiB, every digest checked, fsync, rename), against tar cf then openssl dgst: no spec, resolving, pinning, release document, signature or output",
  import: "node's start plus the registry's raw ingest (every blob at once, a POST and one streamed PUT each, from the plainest client: no manifests, no checks), against skopeo image by image: an import cannot push faster than the registry takes bytes",
  ceiling: "node's start plus the registry's raw ingest (as for the row above), against the parallel skopeo copies",
  reimport: "the plainest re-import a Node program can run (bench/reimport-floor.mjs: node's start, state.json, the bundle's metadata entries read and hashed, two Ed25519 checks, a HEAD per recorded digest, all at once), against the import: no argument parsing, lock, journal, schema or trust-root rules, tags or output",
  'fleet-time': "bench/relay-floor.mjs, the plainest Node relay (HEAD each blob, stream the missing one from the shore into the vessel, hashed and spooled, then the manifest), into a third registry holding 1.0.0, against skopeo's copy (bench:satellite times all three beside each vessel)",
  satellite: "bench/relay-floor.mjs, the same plainest Node relay with seabag's spool, against skopeo docker→docker in the same runs",
};

function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)] as number, min: sorted[0] as number, max: sorted.at(-1) as number };
}

function add(key: string, name: string, target: number | undefined, cell: Cell, targetText?: string): void {
  const f = figures.get(key) ?? { key, name, ...(target === undefined ? {} : { target }), ...(targetText === undefined ? {} : { targetText }), cells: [] };
  f.cells.push(cell);
  figures.set(key, f);
  const show = cell.ratio !== undefined
    ? `ratio ${num(cell.ratio.median)} (${num(cell.ratio.min)}–${num(cell.ratio.max)})${cell.ours && cell.theirs ? `  ours ${cell.ours.median.toFixed(2)} s  theirs ${cell.theirs.median.toFixed(2)} s` : ''}`
    : cell.value !== undefined
      ? `${cell.value.median.toFixed(0)} ${cell.unit ?? ''} (${cell.value.min.toFixed(0)}–${cell.value.max.toFixed(0)})`
      : '';
  const floor = cell.floor === undefined ? '' : `  floor ${num(cell.floor.median)}`;
  process.stdout.write(`${fmtSize(cell.size).padStart(9)}  ${name.padEnd(52)} ${show}${target === undefined ? '' : `  target ≤ ${num(target)}`}${floor}${cell.note ? `  — ${cell.note}` : ''}\n`);
}

function num(r: number): string {
  return r < 0.1 ? r.toFixed(3) : r.toFixed(2);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * Runs ours and theirs alternately, `runs` times; ratios run by run. `floor`, when given, is run
 * in the same loop and returns that run's floor ratio (it times its own sides).
 */
async function pair(
  runs: number,
  ours: () => Promise<unknown>,
  theirs: () => Promise<unknown>,
  before?: () => Promise<void>,
  floor?: (theirsSeconds: number) => Promise<number>,
): Promise<Pick<Cell, 'ratio' | 'ours' | 'theirs' | 'floor'>> {
  const a: number[] = [];
  const b: number[] = [];
  const f: number[] = [];
  // Each side starts with no dirty pages: the writeback of what the step before wrote (a dataset,
  // a bundle) is charged to nobody.
  const settle = async (): Promise<void> => {
    await before?.();
    await execa('sync');
  };
  for (let i = 0; i < runs; i += 1) {
    await settle();
    a.push(await timed(ours));
    await settle();
    b.push(await timed(theirs));
    if (floor !== undefined) {
      await settle();
      f.push(await floor(b.at(-1) as number));
    }
  }
  return { ratio: stats(a.map((x, i) => x / (b[i] as number))), ours: stats(a), theirs: stats(b), ...(f.length === 0 ? {} : { floor: stats(f) }) };
}

/** `node -e 0`: the start every seabag command pays and a native peer does not. */
const nodeStart = (): Promise<number> => timed(() => execa('node', ['-e', '0']));

/** `openssl dgst -sha256` over each group at once, one process per group (one per core). */
const hashAtOnce = (groups: string[][]): Promise<number> => timed(() => Promise.all(groups.filter((g) => g.length > 0).map((g) => execa('openssl', ['dgst', '-sha256', ...g]))));

/**
 * Seconds for a registry to take every blob of a layout, all at once, from the plainest client:
 * POST for a session, then one PUT streaming the file with its digest. No reads of manifests, no
 * hashing on our side: what the registry alone costs.
 */
async function rawIngest(host: string, layout: string): Promise<number> {
  const dir = join(layout, 'blobs', 'sha256');
  const names = await readdir(dir);
  const request = (method: string, url: URL, file?: string, size?: number): Promise<http.IncomingMessage> =>
    new Promise((resolve, reject) => {
      const req = http.request(url, { method, headers: file === undefined ? { 'content-length': 0 } : { 'content-type': 'application/octet-stream', 'content-length': size } }, resolve);
      req.on('error', reject);
      if (file === undefined) req.end();
      else createReadStream(file).on('error', reject).pipe(req);
    });
  return timed(() =>
    Promise.all(
      names.map(async (hex) => {
        const start = await request('POST', new URL(`http://${host}/v2/bench/raw/blobs/uploads/`));
        start.resume();
        const at = new URL(start.headers.location as string, `http://${host}`);
        at.searchParams.set('digest', `sha256:${hex}`);
        const file = join(dir, hex);
        const done = await request('PUT', at, file, (await stat(file)).size);
        done.resume();
        if (done.statusCode !== 201) throw new Error(`raw push of ${hex}: ${done.statusCode}`);
      }),
    ),
  );
}

/** The blob files of a layout in `n` groups of about equal bytes (largest first to the lightest group). */
async function blobGroups(layout: string, n: number): Promise<string[][]> {
  const dir = join(layout, 'blobs', 'sha256');
  const files = await Promise.all((await readdir(dir)).map(async (f) => ({ path: join(dir, f), size: (await stat(join(dir, f))).size })));
  const groups = Array.from({ length: n }, () => ({ bytes: 0, paths: [] as string[] }));
  for (const file of files.sort((x, y) => y.size - x.size)) {
    const g = groups.reduce((lo, c) => (c.bytes < lo.bytes ? c : lo));
    g.bytes += file.size;
    g.paths.push(file.path);
  }
  return groups.map((g) => g.paths);
}

async function bundle(args: string[], env: Record<string, string> = {}): Promise<void> {
  await execa('node', [BIN, ...args, '--no-progress'], { env: { SOURCE_DATE_EPOCH: '1790000000', ...env } });
}

/** Peak RSS of a command in MiB (GNU time's %M). */
async function peakRss(args: string[], env: Record<string, string> = {}): Promise<number> {
  const r = await execa('/usr/bin/time', ['-f', '%M', 'node', BIN, ...args, '--no-progress'], { env: { SOURCE_DATE_EPOCH: '1790000000', ...env } });
  return Number(r.stderr.trim().split('\n').at(-1)) / 1024;
}

interface Dataset {
  dir: string;
  layout: string;
  spec: string;
  bundle: string;
  tags: string[];
  refs: string[];
  size: number;
}

/** `images` images of `layers` random layers each, about `size` bytes in all, and their signed bundle. */
async function dataset(base: string, name: string, size: number, key: string, images: number, layers: number): Promise<Dataset> {
  const dir = join(base, name);
  await mkdir(dir, { recursive: true });
  const layout = join(dir, 'layout');
  const layer = Math.floor(size / (images * layers));
  const tags: string[] = [];
  for (let i = 0; i < images; i += 1) {
    await buildRandomImage(layout, `img${i}`, Array.from({ length: layers }, () => layer), `${name}-${i}`);
    tags.push(`img${i}`);
  }
  const refs = tags.map((t) => `shore.example.com/bench/${t}:1.0.0`);
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: bench\nversion: 1.0.0\nimages:\n${tags.map((t, i) => `  - ref: ${refs[i]}\n    from: oci:${layout}:${t}\n`).join('')}`);
  const out = join(dir, 'bench.bundle');
  await bundle(['build', spec, '-o', out, '--sign', key]);
  return { dir, layout, spec, bundle: out, tags, refs, size: (await stat(out)).size };
}

async function dropRegistry(r: RegistryHandle | undefined): Promise<void> {
  if (r === undefined) return;
  await r.kill();
  // Its folder: the config, the log and (inside it) the storage.
  await rm(dirname(r.configPath), { recursive: true, force: true });
  await rm(r.storageDir, { recursive: true, force: true });
}

async function measureSize(base: string, index: number, size: number, key: string, trust: string): Promise<void> {
  const runs = runsAt(index);
  const at = join(base, `s${index}`);
  const many = await dataset(at, 'many', size, key, 4, 2);
  const cell = (extra: Omit<Cell, 'size' | 'runs'>): Cell => ({ size: many.size, runs, ...extra });

  // The floors of verify: node's start, then the bundle's bytes hashed by openssl on the cores
  // the work can use (blobs spread over both cores; one big layer is one sequential stream),
  // against the same run's openssl over the bundle (`pair` hands the floor that time).
  const openssl = (file: string): Promise<number> => timed(() => execa('openssl', ['dgst', '-sha256', file]));
  const twoCoreFloor = async (d: Dataset, oneOpenssl: number): Promise<number> => (await nodeStart() + await hashAtOnce(await blobGroups(d.layout, 2))) / oneOpenssl;
  const oneStreamFloor = async (oneOpenssl: number): Promise<number> => (await nodeStart() + oneOpenssl) / oneOpenssl;
  // A split bundle hashes every byte twice (each part's sha256, each blob's) but need read it only
  // once: with openssl's time over the bundle (one read R + one hash H) and the read alone (dd),
  // the ideal split verify is node's start + (R + 2H) over two cores (the layer's one stream for
  // one big layer), held against the unsplit verify of the same run: no split verify can beat it.
  const readOnly = (file: string): Promise<number> => timed(() => execa('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M']));
  //
  // A split verify also does everything the unsplit one of the same program does (start, load,
  // admission, one hash of every byte), and then hashes every byte a second time: it cannot take
  // less than that unsplit verify, nor, where the unsplit one already keeps both cores hashing
  // (8 layers), less than the unsplit verify plus half that second hash (H / 2: two cores). The
  // floor is the larger of the two bounds: an ideal program's split, and this program's unsplit
  // verify with only the second hash added.
  const idealSplit = async (d: Dataset, unsplitOnBothCores: boolean, unsplit: number): Promise<number> => {
    const start = await nodeStart();
    const both = await openssl(d.bundle);
    const read = Math.min(both, await readOnly(d.bundle));
    const hash = both - read;
    const split = unsplitOnBothCores ? (read + 2 * hash) / 2 : Math.max(both, (read + 2 * hash) / 2);
    return Math.max(start + split, unsplit + (unsplitOnBothCores ? hash / 2 : 0));
  };
  const splitOf = async (d: Dataset, name: string): Promise<string> => {
    const splitDir = join(at, `split-${name}`);
    await mkdir(splitDir, { recursive: true });
    // About four parts, cut wherever the size falls (inside layers).
    await bundle(['build', d.spec, '-o', join(splitDir, 'bench.bundle'), '--sign', key, '--split', String(Math.ceil(d.size / 4) + 4097)]);
    return join(splitDir, 'bench.bundle.parts.json');
  };

  if (ONLY.includes('verify') || ONLY.includes('split')) {
    const one = await dataset(at, 'one', size, key, 1, 1);
    if (ONLY.includes('verify')) {
      const r8 = await pair(runs, () => bundle(['verify', many.bundle, '--trust', trust]), () => execa('openssl', ['dgst', '-sha256', many.bundle]), undefined, (theirs) => twoCoreFloor(many, theirs));
      add('verify-8', 'verify, 8 layers ÷ openssl dgst -sha256', 0.75, cell(r8));
      const r1 = await pair(runs, () => bundle(['verify', one.bundle, '--trust', trust]), () => execa('openssl', ['dgst', '-sha256', one.bundle]), undefined, oneStreamFloor);
      add('verify-1', 'verify, 1 big layer ÷ openssl dgst -sha256', 1.05, cell(r1));
    }
    if (ONLY.includes('split')) {
      const parts8 = await splitOf(many, 'many');
      const r = await pair(runs, () => bundle(['verify', parts8, '--trust', trust]), () => bundle(['verify', many.bundle, '--trust', trust]), undefined, async (unsplit) => (await idealSplit(many, true, unsplit)) / unsplit);
      add('verify-split', 'verify split (4 parts) ÷ verify unsplit, 8 layers', 1.05, cell(r));
      const parts1 = await splitOf(one, 'one');
      const r1 = await pair(runs, () => bundle(['verify', parts1, '--trust', trust]), () => bundle(['verify', one.bundle, '--trust', trust]), undefined, async (unsplit) => (await idealSplit(one, false, unsplit)) / unsplit);
      add('verify-split-1', 'verify split (4 parts) ÷ verify unsplit, 1 big layer', 1.05, cell(r1));
    }
    await rm(one.dir, { recursive: true, force: true });
  }

  if (ONLY.includes('build')) {
    const out = join(at, 'rebuild.bundle');
    const tarOut = join(at, 'layout.tar');
    const clean = async (): Promise<void> => {
      await rm(out, { force: true });
      await rm(tarOut, { force: true });
    };
    const tarAndHash = async (): Promise<void> => {
      await execa('tar', ['cf', tarOut, '-C', many.layout, '.']);
      await execa('openssl', ['dgst', '-sha256', tarOut]);
    };
    // The floor of a build: the plainest durable build a Node program can run (bench/build-floor.mjs:
    // the layout's blobs into one tar, hashed in a lane per core, flushed as it grows, fsynced).
    const floorOut = join(at, 'floor.tar');
    const buildFloor = async (work: number): Promise<number> => {
      await rm(floorOut, { force: true });
      const seconds = await timed(() => execa('node', [join(root, 'bench', 'build-floor.mjs'), many.layout, floorOut]));
      await rm(floorOut, { force: true });
      return seconds / work;
    };
    const r = await pair(runs, () => bundle(['build', many.spec, '-o', out, '--sign', key]), tarAndHash, clean, buildFloor);
    add('build', 'build ÷ (tar cf + openssl dgst)', 0.8, cell(r));
    const s = await pair(runs, () => bundle(['build', many.spec, '-o', out, '--sign', key]), () => bundle(['build', many.spec, '-o', out, '--sign', key, '--no-sync']), clean);
    add('fsync', 'build ÷ build --no-sync (the cost of fsync)', undefined, cell({ ...s, note: `fsync adds ${((s.ours?.median ?? 0) - (s.theirs?.median ?? 0)).toFixed(2)} s` }));
    await clean();
  }

  if (ONLY.includes('import') || ONLY.includes('reimport')) {
    const imports: number[] = [];
    const reimports: number[] = [];
    const skopeo: number[] = [];
    const ceiling: number[] = [];
    const starts: number[] = [];
    const raw: number[] = [];
    // The plainest re-import (bench/reimport-floor.mjs) checks two Ed25519 signatures over a
    // payload of an envelope's size, with a key made here, outside its timing.
    const reimportFloors: number[] = [];
    const floorKeys = join(at, 'reimport-floor-keys.json');
    if (ONLY.includes('reimport')) {
      const keyPair = generateKeyPairSync('ed25519');
      const payload = Buffer.alloc(1024, 'release');
      await writeFile(floorKeys, JSON.stringify({ publicKey: keyPair.publicKey.export({ type: 'spki', format: 'pem' }), payload: payload.toString('base64'), signature: sign(null, payload, keyPair.privateKey).toString('base64') }));
    }
    for (let i = 0; i < runs; i += 1) {
      starts.push(await nodeStart());
      let registry = await startRegistry({});
      const state = await mkdtemp(join(at, 'state-'));
      const env = { SEABAG_STATE_DIR: state, SEABAG_REGISTRY: registry.host };
      imports.push(await timed(() => bundle(['import', many.bundle, '--trust', trust], env)));
      reimports.push(await timed(() => bundle(['import', many.bundle], env)));
      if (ONLY.includes('reimport')) reimportFloors.push(await timed(async () => { const r = await execa('node', [join(root, 'bench', 'reimport-floor.mjs'), state, many.bundle, registry.host, floorKeys]); if (r.stderr) console.error(r.stderr); }));
      await dropRegistry(registry);
      await rm(state, { recursive: true, force: true });
      if (!ONLY.includes('import')) continue;
      // skopeo from the unpacked layout, image by image, as a user would run it.
      registry = await startRegistry({});
      const host = registry.host;
      skopeo.push(await timed(async () => {
        for (const [n, tag] of many.tags.entries()) {
          await execa('skopeo', ['copy', '--quiet', '--preserve-digests', '--dest-tls-verify=false', `oci:${many.layout}:${tag}`, `docker://${host}/bench/img${n}:1.0.0`]);
        }
      }));
      await dropRegistry(registry);
      // The registry's ingest ceiling: every image at once.
      registry = await startRegistry({});
      const host2 = registry.host;
      ceiling.push(await timed(() => Promise.all(many.tags.map((tag, n) => execa('skopeo', ['copy', '--quiet', '--preserve-digests', '--dest-tls-verify=false', `oci:${many.layout}:${tag}`, `docker://${host2}/bench/img${n}:1.0.0`])))));
      await dropRegistry(registry);
      // The registry's raw ingest: every blob at once by the least a client can do (POST, then
      // one streamed PUT), no checks and no manifests: import's floor.
      registry = await startRegistry({});
      const host3 = registry.host;
      raw.push(await rawIngest(host3, many.layout));
      await dropRegistry(registry);
    }
    const ratios = (a: number[], b: number[]): Stats => stats(a.map((x, i) => x / (b[i] as number)));
    if (ONLY.includes('import')) {
      // Nothing can import faster than the registry ingests: its raw ingest is import's floor.
      add('import', 'import ÷ skopeo copy oci:DIR (image by image)', 0.5, cell({ ratio: ratios(imports, skopeo), ours: stats(imports), theirs: stats(skopeo), floor: ratios(raw.map((r, k) => r + (starts[k] as number)), skopeo) }));
      add('ceiling', 'import ÷ registry ingest ceiling (parallel skopeo)', 1.1, cell({ ratio: ratios(imports, ceiling), ours: stats(imports), theirs: stats(ceiling), floor: ratios(raw.map((r, k) => r + (starts[k] as number)), ceiling) }));
    }
    if (ONLY.includes('reimport')) {
      add('reimport', 're-import ÷ import (nothing pushed)', 0.03, cell({ ratio: ratios(reimports, imports), ours: stats(reimports), theirs: stats(imports), floor: ratios(reimportFloors, imports) }), '≤ 0.03 at 800 MiB');
    }
  }

  if (ONLY.includes('rss')) {
    const out = join(at, 'rss.bundle');
    const b = await peakRss(['build', many.spec, '-o', out, '--sign', key]);
    await rm(out, { force: true });
    const v = await peakRss(['verify', many.bundle, '--trust', trust]);
    const registry = await startRegistry({});
    const state = await mkdtemp(join(at, 'rss-state-'));
    const im = await peakRss(['import', many.bundle, '--trust', trust], { SEABAG_STATE_DIR: state, SEABAG_REGISTRY: registry.host });
    await dropRegistry(registry);
    for (const [cmd, mib] of [['build', b], ['verify', v], ['import', im]] as const) {
      add(`rss-${cmd}`, `peak RSS of ${cmd}`, 200, { size: many.size, runs: 1, value: { median: mib, min: mib, max: mib }, unit: 'MiB' }, '< 200 MiB, flat');
    }
  }

  if (ONLY.includes('delta') && index === 0) {
    await buildRandomImage(many.layout, 'img0-v2', [Math.floor(size / 8), Math.floor(size / 8), 16 * 1024 * 1024], 'many-0');
    const spec2 = join(many.dir, 'release-2.yaml');
    await writeFile(spec2, (await readFile(many.spec, 'utf8')).replace('version: 1.0.0', 'version: 2.0.0').replace(`${many.layout}:img0\n`, `${many.layout}:img0-v2\n`).replace('bench/img0:1.0.0', 'bench/img0:2.0.0'));
    const full = join(at, 'v2-full.bundle');
    const delta = join(at, 'v2-delta.bundle');
    await bundle(['build', spec2, '-o', full, '--sign', key]);
    await bundle(['build', spec2, '-o', delta, '--sign', key, '--since', many.bundle]);
    const f = (await stat(full)).size;
    const d = (await stat(delta)).size;
    add('delta', 'delta v2 over v1 ÷ full v2 (bytes)', undefined, { size: many.size, runs: 1, ratio: { median: d / f, min: d / f, max: d / f }, note: `full ${fmtSize(f)}, delta ${fmtSize(d)}; v2 adds one 16 MiB layer to one image` });
  }
  await rm(at, { recursive: true, force: true });
}

/** Start-up in ms over `node -e 0`, interleaved run by run. */
async function measureStartup(base: string, key: string): Promise<void> {
  const state = await mkdtemp(join(base, 'empty-state-'));
  const small = join(base, 'startup');
  await mkdir(small, { recursive: true });
  await buildRandomImage(join(small, 'layout'), 'tiny', [4096], 'tiny');
  await writeFile(join(small, 'release.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: tiny\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/bench/tiny:1.0.0\n    from: oci:${join(small, 'layout')}:tiny\n`);
  const tiny = join(small, 'tiny.bundle');
  await bundle(['build', join(small, 'release.yaml'), '-o', tiny, '--sign', key]);
  const cases: [string, string, string[]][] = [
    ['startup-version', 'start-up: bundle --version − node -e 0', ['--version']],
    ['startup-status', 'start-up: bundle status (empty vessel) − node -e 0', ['status', '--state-dir', state]],
    ['startup-inspect', 'start-up: bundle inspect (small bundle) − node -e 0', ['inspect', tiny]],
  ];
  // Wall time is the target; CPU time (user + sys, from GNU time) is beside it, as it barely moves
  // with the machine's load.
  const cpu = async (cmd: string[]): Promise<{ wall: number; cpu: number }> => {
    const r = await execa('/usr/bin/time', ['-f', '%e %U %S', ...cmd]);
    const [wall, user, sys] = (r.stderr.trim().split('\n').at(-1) ?? '').split(' ').map(Number);
    return { wall: wall ?? 0, cpu: (user ?? 0) + (sys ?? 0) };
  };
  for (const [key2, name, args] of cases) {
    const diffs: number[] = [];
    const ours: number[] = [];
    const node: number[] = [];
    const cpuDiffs: number[] = [];
    for (let i = 0; i < STARTUP_RUNS; i += 1) {
      const a = await timed(() => execa('node', [BIN, ...args]));
      const b = await timed(() => execa('node', ['-e', '0']));
      ours.push(a);
      node.push(b);
      diffs.push((a - b) * 1000);
      cpuDiffs.push(((await cpu(['node', BIN, ...args])).cpu - (await cpu(['node', '-e', '0'])).cpu) * 1000);
    }
    add(key2, name, 50, { size: 0, runs: STARTUP_RUNS, value: stats(diffs), unit: 'ms', note: `ours ${(stats(ours).median * 1000).toFixed(0)} ms, node -e 0 ${(stats(node).median * 1000).toFixed(0)} ms; CPU time over node's ${stats(cpuDiffs).median.toFixed(0)} ms` }, '≤ 50 ms');
  }
  await rm(small, { recursive: true, force: true });
  await rm(state, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const started = Date.now();
  await execa('npm', ['run', 'build'], { cwd: root });
  const base = await mkdtemp(join(tmpdir(), 'seabag-bench-'));
  process.stdout.write(`seabag bench: ${SIZES.map(fmtSize).join(', ')}; ${SIZES.map((_, i) => runsAt(i)).join(', ')} run(s); in ${base}\n`);
  process.stdout.write(`machine: ${execFileSync('nproc').toString().trim()} cores, node ${process.version}, load ${execFileSync('cat', ['/proc/loadavg']).toString().split(' ').slice(0, 3).join(' ')}\n\n`);
  try {
    const key = join(base, 'release.key');
    await bundle(['keygen', join(base, 'root.key')]);
    await bundle(['keygen', key]);
    const trust = join(base, 'trust.json');
    await bundle(['trust', 'init', '--root-key', join(base, 'root.key.pub'), '--release-key', `${key}.pub`, '--sign', join(base, 'root.key'), '-o', trust]);
    if (ONLY.includes('startup')) await measureStartup(base, key);
    for (const [i, size] of SIZES.entries()) await measureSize(base, i, size, key, trust);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
  const result: BenchResult = {
    date: new Date().toISOString(),
    minutes: (Date.now() - started) / 60000,
    load: execFileSync('cat', ['/proc/loadavg']).toString().split(' ').slice(0, 3).join(' '),
    sizes: SIZES,
    runs: SIZES.map((_, i) => runsAt(i)),
    figures: [...figures.values()],
  };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', 'latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  await updateReadme(result);
  process.stdout.write(`\n${result.minutes.toFixed(1)} min\n`);
}

interface BenchResult {
  date: string;
  minutes: number;
  load: string;
  sizes: number[];
  runs: number[];
  figures: Figure[];
}

function fmtSize(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(0)} MiB`;
}

/** Met, or missed (where, and why from the profile). */
function verdict(f: Figure): string {
  if (f.target === undefined) return f.cells.filter((c) => c.note !== undefined).map((c) => `${fmtSize(c.size)}: ${c.note as string}`).join('; ');
  const misses = f.cells.filter((c) => {
    const m = c.ratio?.median ?? c.value?.median;
    if (m === undefined) return false;
    if (f.key === 'reimport') return c.size >= 700 * 2 ** 20 && c.size < 1000 * 2 ** 20 && m > (f.target as number);
    return m > (f.target as number);
  });
  let flat = '';
  if (f.key.startsWith('rss-') && f.cells.length > 1) {
    const first = f.cells[0]?.value?.median ?? 0;
    const last = f.cells.at(-1)?.value?.median ?? 0;
    flat = last / first <= 1.2 ? `; flat (${(last / first).toFixed(2)}× from smallest to largest)` : `; NOT flat: ${(last / first).toFixed(2)}× from smallest to largest`;
  }
  if (misses.length === 0) return `met${flat}`;
  const at = (cells: Cell[]): string => (f.cells.length === 1 && f.cells[0]?.size === 0 ? '' : ` at ${cells.map((c) => fmtSize(c.size)).join(', ')}`);
  // A miss where even the floor is above the target: no program started by node can meet it here.
  const belowFloor = misses.filter((c) => c.floor !== undefined && c.floor.median > (f.target as number));
  const beatable = misses.filter((c) => !belowFloor.includes(c));
  const parts: string[] = [];
  if (beatable.length > 0) parts.push(`**missed**${at(beatable)}${flat}: ${WHY[f.key] ?? 'see bench/results'}`);
  if (belowFloor.length > 0) {
    parts.push(`**target below the floor**${at(belowFloor)}: the floor measured in the same run (${belowFloor.map((c) => num((c.floor as Stats).median)).join(', ')}) is above the target: ${FLOOR[f.key] ?? 'see bench/run.ts'}`);
  }
  return parts.join('; ');
}

function cellText(c: Cell | undefined, unit?: string): string {
  if (c === undefined) return '';
  if (c.ratio !== undefined) return `${num(c.ratio.median)} (${num(c.ratio.min)}–${num(c.ratio.max)})${c.floor === undefined ? '' : `<br>floor ${num(c.floor.median)}`}`;
  if (c.value !== undefined) return `${c.value.median.toFixed(0)} ${unit ?? c.unit ?? ''} (${c.value.min.toFixed(0)}–${c.value.max.toFixed(0)})`.replace(/ \((\d+)–\1\)$/, '');
  return '';
}

/**
 * The full pull of `npm run bench:satellite` (bench/results/satellite-2g.json from
 * `--size 2G`, or satellite.json, when it has been run):
 * `bundle import oci://` into an empty vessel against skopeo docker → docker, one run.
 */
async function satelliteFigures(): Promise<Figure[]> {
  // The 2 GiB full pull this table wants, else whatever size bench:satellite last ran at.
  const big = join(root, 'bench', 'results', 'satellite-2g.json');
  const path = (await stat(big).catch(() => undefined)) === undefined ? join(root, 'bench', 'results', 'satellite.json') : big;
  type Fleet = { vessels: number; changedLayerBytes: number; bytesOverChangedPlusMetadata: number; timeRatio: { median: number; min?: number; max?: number }; floor?: { ratio: number } };
  const doc = await readFile(path, 'utf8').then((t) => JSON.parse(t) as { single?: { bytes: number; runs?: number; seabagSeconds: number; skopeoSeconds: number; ratio: number; ratios?: number[]; floor?: { ratio: number; ratios?: number[] } }; fleet?: Fleet }, () => undefined);
  // The fleet runs at its own (small) size: it comes from satellite.json whichever file had the pull.
  const fleetDoc = await readFile(join(root, 'bench', 'results', 'satellite.json'), 'utf8').then((t) => JSON.parse(t) as { fleet?: Fleet }, () => undefined);
  const one = (v: number): Stats => ({ median: v, min: v, max: v });
  const out: Figure[] = [];
  const single = doc?.single;
  if (single !== undefined) {
    out.push({
      key: 'satellite',
      name: `import oci:// full pull ÷ skopeo copy docker→docker (npm run bench:satellite, ${single.runs ?? 1} run${(single.runs ?? 1) === 1 ? '' : 's'})`,
      target: 1.0,
      cells: [{ size: single.bytes, runs: single.runs ?? 1, ratio: single.ratios === undefined ? one(single.ratio) : { ...stats(single.ratios), median: single.ratio }, ours: one(single.seabagSeconds), theirs: one(single.skopeoSeconds), ...(single.floor === undefined ? {} : { floor: single.floor.ratios === undefined ? one(single.floor.ratio) : { ...stats(single.floor.ratios), median: single.floor.ratio } }) }],
    });
  }
  const fleet = fleetDoc?.fleet ?? doc?.fleet;
  if (fleet !== undefined) {
    const t = fleet.timeRatio;
    out.push(
      {
        key: 'fleet-bytes',
        name: `fleet of ${fleet.vessels}: bytes served per vessel ÷ (changed layer + metadata) (npm run bench:satellite)`,
        target: 1.01,
        cells: [{ size: fleet.changedLayerBytes, runs: fleet.vessels, ratio: one(fleet.bytesOverChangedPlusMetadata) }],
      },
      {
        key: 'fleet-time',
        name: `fleet of ${fleet.vessels}: import oci:// ÷ skopeo copy per vessel, one layer changed (npm run bench:satellite)`,
        target: 1.0,
        cells: [{ size: fleet.changedLayerBytes, runs: fleet.vessels, ratio: { median: t.median, min: t.min ?? t.median, max: t.max ?? t.median }, ...(fleet.floor === undefined ? {} : { floor: one(fleet.floor.ratio) }) }],
      },
    );
  }
  return out;
}

/** Replaces the tables between the README's bench markers. */
async function updateReadme(result: BenchResult): Promise<void> {
  const path = join(root, 'README.md');
  const text = await readFile(path, 'utf8');
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  if (!text.includes(start) || !text.includes(end)) return;
  const sized = [...result.figures.filter((f) => !f.key.startsWith('startup-')), ...(await satelliteFigures())];
  const startup = result.figures.filter((f) => f.key.startsWith('startup-'));
  const bySize = (f: Figure, size: number, i: number): Cell | undefined => f.cells.find((c) => c.size !== 0 && Math.abs(c.size - size) / size < 0.1) ?? (f.cells.length === result.sizes.length ? f.cells[i] : undefined);
  const lines = [
    start,
    `Measured ${result.date.slice(0, 16).replace('T', ' ')} UTC with \`npm run bench\` on 2 cores (load average ${result.load} at the end; ${result.minutes.toFixed(0)} minutes). Each cell: median (min–max) of the run-by-run ratios, ${result.sizes.map((s, i) => `${result.runs[i]} runs at ${fmtSize(s)}`).join(', ')}. Lower is better.`,
    '',
    `| measure | target | ${result.sizes.map(fmtSize).join(' | ')} | verdict |`,
    `|---|---|${result.sizes.map(() => '---:').join('|')}|---|`,
    ...sized.map((f) => {
      const cells = result.sizes.map((s, i) => bySize(f, s, i));
      // A figure measured at a size of its own (the fleet's changed layer) says its value in the verdict.
      const own = cells.every((c) => c === undefined) ? f.cells.map((c) => `${cellText(c).replace('<br>', ', ')} at ${fmtSize(c.size)}: `).join('') : '';
      return `| ${f.name} | ${f.targetText ?? (f.target === undefined ? '' : `≤ ${num(f.target)}`)} | ${cells.map((c) => cellText(c)).join(' | ')} | ${own}${verdict(f)} |`;
    }),
    '',
    '| start-up, ms over `node -e 0` | target | median (min–max) | verdict |',
    '|---|---|---:|---|',
    ...startup.map((f) => `| ${f.name.replace('start-up: ', '').replace(' − node -e 0', '')} | ≤ 50 ms | ${cellText(f.cells[0])} (${f.cells[0]?.note ?? ''}) | ${verdict(f)} |`),
    end,
  ];
  await writeFile(path, text.slice(0, text.indexOf(start)) + lines.join('\n') + text.slice(text.indexOf(end) + end.length));
}

if (process.argv.includes('--readme')) {
  await updateReadme(JSON.parse(await readFile(join(root, 'bench', 'results', 'latest.json'), 'utf8')) as BenchResult);
} else {
  await main();
}

