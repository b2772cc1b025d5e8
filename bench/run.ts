/**
 * `npm run bench`: seabag against the fastest tools on this machine, in the same run, as ratios.
 *
 *   verify    bundle verify           vs  openssl dgst -sha256 of the bundle
 *   build     bundle build            vs  tar cf of the layout + openssl dgst of the tar
 *   import    bundle import           vs  skopeo copy oci:DIR:REF (all images, layout unpacked)
 *                                     and skopeo copy oci-archive:BUNDLE:REF, image by image
 *   reimport  bundle import again     vs  the first import (nothing may be pushed)
 *   rss       peak RSS of build, verify and import at the small and the large size
 *   delta     size of a v2-over-v1 delta vs the full v2 bundle
 *
 * Every figure is the median of several runs (min and max beside it); every measured import
 * gets a fresh registry. Results go to bench/results/latest.json and the README's table.
 *
 *   npm run bench                       # 2 GiB and 256 MiB, 3 runs
 *   npm run bench -- --size 512M --runs 1 --only verify,build
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

const LARGE = parseSize(arg('size', '2G'));
const SMALL = parseSize(arg('small', '256M'));
const RUNS = Number(arg('runs', '3'));
const ONLY = arg('only', 'verify,build,import,reimport,rss,delta').split(',');

interface Figure {
  name: string;
  ours?: Stats;
  theirs?: Stats;
  ratio?: number;
  target?: string;
  value?: string;
  note?: string;
}

interface Stats {
  median: number;
  min: number;
  max: number;
}

const figures: Figure[] = [];

function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)] as number, min: sorted[0] as number, max: sorted.at(-1) as number };
}

function fmt(s: Stats, unit = 's'): string {
  return `${s.median.toFixed(2)} ${unit} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
}

/** Ratios near zero keep a third decimal, so 0.045 does not read as 0.05. */
function ratioText(r: number): string {
  return r < 0.1 ? r.toFixed(3) : r.toFixed(2);
}

function say(f: Figure): void {
  figures.push(f);
  const parts = [f.name.padEnd(44)];
  if (f.ours && f.theirs) parts.push(`ours ${fmt(f.ours)}  theirs ${fmt(f.theirs)}  ratio ${f.ratio === undefined ? '' : ratioText(f.ratio)}${f.target ? ` (target ${f.target})` : ''}`);
  if (f.value) parts.push(f.value);
  if (f.note) parts.push(`— ${f.note}`);
  process.stdout.write(`${parts.join('  ')}\n`);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function repeat(fn: () => Promise<unknown>, before?: () => Promise<void>): Promise<Stats> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i += 1) {
    await before?.();
    times.push(await timed(fn));
  }
  return stats(times);
}

async function bundle(args: string[], env: Record<string, string> = {}): Promise<void> {
  await execa('node', [BIN, ...args, '--no-progress'], { env: { SOURCE_DATE_EPOCH: '1790000000', ...env } });
}

/** Peak RSS of a command in MiB (GNU time's %M). */
async function peakRss(args: string[], env: Record<string, string> = {}): Promise<number> {
  const r = await execa('/usr/bin/time', ['-f', '%M', 'node', BIN, ...args, '--no-progress'], { env: { SOURCE_DATE_EPOCH: '1790000000', ...env }, all: false });
  const kib = Number(r.stderr.trim().split('\n').at(-1));
  return kib / 1024;
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

/** Images of random layers (8 per dataset) in one OCI layout, a spec, and its signed bundle. */
async function dataset(base: string, name: string, size: number, key: string): Promise<Dataset> {
  const dir = join(base, name);
  await mkdir(dir, { recursive: true });
  const layout = join(dir, 'layout');
  const images = 4;
  const layer = Math.floor(size / (images * 2));
  const tags: string[] = [];
  for (let i = 0; i < images; i += 1) {
    await buildRandomImage(layout, `img${i}`, [layer, layer], `${name}-${i}`);
    tags.push(`img${i}`);
  }
  const refs = tags.map((t) => `shore.example.com/bench/${t}:1.0.0`);
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: bench\nversion: 1.0.0\nimages:\n${tags.map((t, i) => `  - ref: ${refs[i]}\n    from: oci:${layout}:${t}\n`).join('')}`);
  const out = join(dir, 'bench.bundle');
  await bundle(['build', spec, '-o', out, '--sign', key]);
  return { dir, layout, spec, bundle: out, tags, refs, size: (await stat(out)).size };
}

async function freshRegistry(): Promise<RegistryHandle> {
  return startRegistry({});
}

async function main(): Promise<void> {
  await execa('npm', ['run', 'build'], { cwd: root });
  const base = await mkdtemp(join(tmpdir(), 'seabag-bench-'));
  process.stdout.write(`seabag bench: ${(LARGE / 2 ** 30).toFixed(2)} GiB and ${(SMALL / 2 ** 20).toFixed(0)} MiB datasets, ${RUNS} run(s) each, in ${base}\n`);
  process.stdout.write(`machine: ${execFileSync('nproc').toString().trim()} cores, node ${process.version}\n\n`);
  try {
    const key = join(base, 'release.key');
    await bundle(['keygen', join(base, 'root.key')]);
    await bundle(['keygen', key]);
    const trust = join(base, 'trust.json');
    await bundle(['trust', 'init', '--root-key', join(base, 'root.key.pub'), '--release-key', `${key}.pub`, '--sign', join(base, 'root.key'), '-o', trust]);
    const large = await dataset(base, 'large', LARGE, key);
    const small = ONLY.includes('rss') ? await dataset(base, 'small', SMALL, key) : undefined;

    if (ONLY.includes('verify')) {
      const ours = await repeat(() => bundle(['verify', large.bundle, '--trust', trust]));
      const theirs = await repeat(() => execa('openssl', ['dgst', '-sha256', large.bundle]));
      say({ name: `verify ${fmtSize(large.size)} vs openssl dgst -sha256`, ours, theirs, ratio: ours.median / theirs.median, target: '≤ 1.25' });
    }

    if (ONLY.includes('build')) {
      const out = join(base, 'rebuild.bundle');
      const ours = await repeat(() => bundle(['build', large.spec, '-o', out, '--sign', key]), () => rm(out, { force: true }));
      const tarOut = join(base, 'layout.tar');
      const theirs = await repeat(
        async () => {
          await execa('tar', ['cf', tarOut, '-C', large.layout, '.']);
          await execa('openssl', ['dgst', '-sha256', tarOut]);
        },
        () => rm(tarOut, { force: true }),
      );
      say({ name: `build ${fmtSize(large.size)} vs tar cf + openssl dgst`, ours, theirs, ratio: ours.median / theirs.median, target: '≤ 1.0' });
      await rm(tarOut, { force: true });
      await rm(out, { force: true });
    }

    if (ONLY.includes('import') || ONLY.includes('reimport')) {
      let registry: RegistryHandle | undefined;
      let state = '';
      const reimports: number[] = [];
      const imports: number[] = [];
      for (let i = 0; i < RUNS; i += 1) {
        registry = await freshRegistry();
        state = await mkdtemp(join(base, 'state-'));
        const env = { SEABAG_STATE_DIR: state, SEABAG_REGISTRY: registry.host };
        imports.push(await timed(() => bundle(['import', large.bundle, '--trust', trust], env)));
        reimports.push(await timed(() => bundle(['import', large.bundle], env)));
        await registry.kill();
        await rm(registry.storageDir, { recursive: true, force: true });
        await rm(state, { recursive: true, force: true });
      }
      const ours = stats(imports);
      const skopeo = await repeat(
        async () => {
          registry = await freshRegistry();
          for (const [i, tag] of large.tags.entries()) {
            await execa('skopeo', ['copy', '--quiet', '--preserve-digests', '--dest-tls-verify=false', `oci:${large.layout}:${tag}`, `docker://${registry.host}/bench/img${i}:1.0.0`]);
          }
        },
        async () => {
          if (registry) {
            await registry.kill();
            await rm(registry.storageDir, { recursive: true, force: true });
          }
        },
      );
      if (registry) await registry.kill();
      if (ONLY.includes('import')) {
        say({ name: `import ${fmtSize(large.size)} vs skopeo copy oci:DIR (layout unpacked)`, ours, theirs: skopeo, ratio: ours.median / skopeo.median, target: '≤ 1.0' });
        // skopeo's oci-archive path, image by image (it unpacks the whole archive for each).
        registry = await freshRegistry();
        const perImage: number[] = [];
        for (const [i, ref] of large.refs.entries()) {
          perImage.push(await timed(() => execa('skopeo', ['copy', '--quiet', '--preserve-digests', '--dest-tls-verify=false', `oci-archive:${large.bundle}:${ref}`, `docker://${registry?.host}/archive/img${i}:1.0.0`])));
        }
        await registry.kill();
        const total = perImage.reduce((a, b) => a + b, 0);
        say({
          name: `import ${fmtSize(large.size)} vs skopeo copy oci-archive:BUNDLE`,
          ours,
          theirs: { median: total, min: total, max: total },
          ratio: ours.median / total,
          note: `skopeo image by image: ${perImage.map((s) => `${s.toFixed(1)} s`).join(', ')} (one run)`,
        });
      }
      if (ONLY.includes('reimport')) {
        const re = stats(reimports);
        say({ name: 're-import of the same bundle vs first import', ours: re, theirs: ours, ratio: re.median / ours.median, target: '< 0.05', note: 'nothing pushed' });
      }
    }

    if (ONLY.includes('rss') && small !== undefined) {
      const rows: Record<string, { small: number; large: number }> = {};
      for (const [label, ds] of [
        ['small', small],
        ['large', large],
      ] as const) {
        const out = join(base, `rss-${label}.bundle`);
        const buildRss = await peakRss(['build', ds.spec, '-o', out, '--sign', key]);
        await rm(out, { force: true });
        const verifyRss = await peakRss(['verify', ds.bundle, '--trust', trust]);
        const registry = await freshRegistry();
        const state = await mkdtemp(join(base, 'rss-state-'));
        const importRss = await peakRss(['import', ds.bundle, '--trust', trust], { SEABAG_STATE_DIR: state, SEABAG_REGISTRY: registry.host });
        await registry.kill();
        await rm(registry.storageDir, { recursive: true, force: true });
        for (const [cmd, v] of [
          ['build', buildRss],
          ['verify', verifyRss],
          ['import', importRss],
        ] as const) {
          rows[cmd] = { ...(rows[cmd] ?? { small: 0, large: 0 }), [label]: v };
        }
      }
      for (const [cmd, r] of Object.entries(rows)) {
        say({ name: `peak RSS of ${cmd}`, value: `${fmtSize(small.size)}: ${r.small.toFixed(0)} MiB, ${fmtSize(large.size)}: ${r.large.toFixed(0)} MiB, ratio ${(r.large / r.small).toFixed(2)}`, target: '≤ 1.2 and < 200 MiB', ratio: r.large / r.small });
      }
    }

    if (ONLY.includes('delta')) {
      // v2: image 0 gets a new 16 MiB layer on top of its old ones; the rest is unchanged.
      await buildRandomImage(large.layout, 'img0-v2', [Math.floor(LARGE / 8), Math.floor(LARGE / 8), 16 * 1024 * 1024], 'large-0');
      const spec2 = join(large.dir, 'release-2.yaml');
      await writeFile(spec2, (await readFile(large.spec, 'utf8')).replace('version: 1.0.0', 'version: 2.0.0').replace(`${large.layout}:img0\n`, `${large.layout}:img0-v2\n`).replace('bench/img0:1.0.0', 'bench/img0:2.0.0'));
      const full = join(base, 'v2-full.bundle');
      const delta = join(base, 'v2-delta.bundle');
      await bundle(['build', spec2, '-o', full, '--sign', key]);
      await bundle(['build', spec2, '-o', delta, '--sign', key, '--since', large.bundle]);
      const f = (await stat(full)).size;
      const d = (await stat(delta)).size;
      say({ name: 'delta v2 over v1 vs full v2', value: `full ${fmtSize(f)}, delta ${fmtSize(d)} (${((d / f) * 100).toFixed(2)}%)`, note: 'v2 adds one 16 MiB layer to one image', ratio: d / f });
    }
  } finally {
    await rm(base, { recursive: true, force: true });
  }
  const result = { date: new Date().toISOString(), large: LARGE, small: SMALL, runs: RUNS, figures };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', 'latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  await updateReadme(result);
}

function fmtSize(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(0)} MiB`;
}

/** Replaces the table between the README's bench markers. */
async function updateReadme(result: { date: string; runs: number; figures: Figure[] }): Promise<void> {
  const path = join(root, 'README.md');
  const text = await readFile(path, 'utf8');
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  if (!text.includes(start) || !text.includes(end)) return;
  const rows = result.figures.map((f) => {
    const figure = f.ours && f.theirs ? `${f.ours.median.toFixed(2)} s vs ${f.theirs.median.toFixed(2)} s` : (f.value ?? '');
    return `| ${f.name} | ${figure} | ${f.ratio === undefined ? '' : ratioText(f.ratio)} | ${f.target ?? ''} |`;
  });
  const table = [
    start,
    `Measured ${result.date.slice(0, 10)} with \`npm run bench\` (median of ${result.runs} runs; min and max in bench/results/latest.json).`,
    '',
    '| measure | seabag vs peer | ratio | target |',
    '|---|---|---:|---|',
    ...rows,
    end,
  ].join('\n');
  await writeFile(path, text.slice(0, text.indexOf(start)) + table + text.slice(text.indexOf(end) + end.length));
}

if (process.argv.includes('--readme')) {
  // Re-render the README's table from the last results, without measuring again.
  await updateReadme(JSON.parse(await readFile(join(root, 'bench', 'results', 'latest.json'), 'utf8')) as { date: string; runs: number; figures: Figure[] });
} else {
  await main();
}
