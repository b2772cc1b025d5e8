/**
 * Scratch bench for `bundle verify` (not part of `npm run bench`): the cases of bench/run.ts's
 * verify rows, plus the floors that bound them, on data sets kept between runs so an idea can be
 * measured in a minute. Every case is a whole process, run round-robin (A B C A B C …), medians.
 *
 *   node --import tsx bench/verify-lab.ts --size 256M --runs 5 [--cases verify8,openssl8,…] [--dir D]
 *
 * Cases (the bundles: "8" = 4 images of 2 layers, "1" = one layer; split = 4 parts):
 *   verify8 verify1 split8 split1   bundle verify of each bundle
 *   openssl8 openssl1               openssl dgst -sha256 of the bundle (bench's peer)
 *   node0                           node -e 0 (node's own start)
 *   version                         bundle --version (node + the program's entry)
 *   floor-2whole                    two openssl dgst at once, each over the whole bundle "8":
 *                                   every byte hashed twice on two cores (what a split verify must do)
 *   floor-2halves                   two openssl dgst at once, each over half of it (parts 1–2, 3–4):
 *                                   every byte once on two cores (what an unsplit verify must do)
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { parseSize } from '../lib/index.js';
import { buildRandomImage } from '../test/helpers/images.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'dist', 'seabag.mjs');
function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
}
const SIZE_TEXT = arg('size', '256M');
const SIZE = parseSize(SIZE_TEXT);
const RUNS = Number(arg('runs', '5'));
const CASES = arg('cases', 'verify8,openssl8,verify1,openssl1,split8,split1,node0,version,floor-2whole,floor-2halves').split(',');
const DIR = arg('dir', join(tmpdir(), 'seabag-verify-lab', SIZE_TEXT));

async function seabag(args: string[]): Promise<void> {
  await execa('node', [BIN, ...args, '--no-progress'], { env: { SOURCE_DATE_EPOCH: '1790000000' } });
}

async function exists(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined)) !== undefined;
}

/** A signed bundle of `images` × `layers` random layers (about SIZE in all), and its 4-part split. */
async function dataset(name: string, images: number, layers: number): Promise<{ bundle: string; parts: string; partFiles: string[] }> {
  const dir = join(DIR, name);
  const bundle = join(dir, 'bench.bundle');
  const parts = join(dir, 'split', 'bench.bundle.parts.json');
  if (!(await exists(parts))) {
    await mkdir(join(dir, 'split'), { recursive: true });
    const layout = join(dir, 'layout');
    const tags: string[] = [];
    for (let i = 0; i < images; i += 1) {
      await buildRandomImage(layout, `img${i}`, Array.from({ length: layers }, () => Math.floor(SIZE / (images * layers))), `${name}-${i}`);
      tags.push(`img${i}`);
    }
    const spec = join(dir, 'release.yaml');
    await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: bench\nversion: 1.0.0\nimages:\n${tags.map((t) => `  - ref: shore.example.com/bench/${t}:1.0.0\n    from: oci:${layout}:${t}\n`).join('')}`);
    await seabag(['build', spec, '-o', bundle, '--sign', join(DIR, 'release.key')]);
    const size = (await stat(bundle)).size;
    await seabag(['build', spec, '-o', join(dir, 'split', 'bench.bundle'), '--sign', join(DIR, 'release.key'), '--split', String(Math.ceil(size / 4) + 4097)]);
  }
  const partFiles = (await readdir(join(dir, 'split'))).filter((n) => /\.\d{3}$/.test(n)).sort().map((n) => join(dir, 'split', n));
  return { bundle, parts, partFiles };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function main(): Promise<void> {
  await mkdir(DIR, { recursive: true });
  const trust = join(DIR, 'trust.json');
  if (!(await exists(trust))) {
    await seabag(['keygen', join(DIR, 'root.key')]);
    await seabag(['keygen', join(DIR, 'release.key')]);
    await seabag(['trust', 'init', '--root-key', join(DIR, 'root.key.pub'), '--release-key', join(DIR, 'release.key.pub'), '--sign', join(DIR, 'root.key'), '-o', trust]);
  }
  const eight = await dataset('eight', 4, 2);
  const one = await dataset('one', 1, 1);
  // Warm the page cache.
  for (const f of [eight.bundle, one.bundle, ...eight.partFiles, ...one.partFiles]) await execa('cat', [f], { stdout: 'ignore' });
  const half = Math.ceil(eight.partFiles.length / 2);
  const run: Record<string, () => Promise<unknown>> = {
    verify8: () => seabag(['verify', eight.bundle, '--trust', trust]),
    verify1: () => seabag(['verify', one.bundle, '--trust', trust]),
    split8: () => seabag(['verify', eight.parts, '--trust', trust]),
    split1: () => seabag(['verify', one.parts, '--trust', trust]),
    openssl8: () => execa('openssl', ['dgst', '-sha256', eight.bundle]),
    openssl1: () => execa('openssl', ['dgst', '-sha256', one.bundle]),
    node0: () => execa('node', ['-e', '0']),
    version: () => execa('node', [BIN, '--version']),
    'floor-2whole': () => Promise.all([execa('openssl', ['dgst', '-sha256', eight.bundle]), execa('openssl', ['dgst', '-sha256', eight.bundle])]),
    'floor-2halves': () => Promise.all([execa('openssl', ['dgst', '-sha256', ...eight.partFiles.slice(0, half)]), execa('openssl', ['dgst', '-sha256', ...eight.partFiles.slice(half)])]),
  };
  const times = new Map<string, number[]>(CASES.map((c) => [c, []]));
  const load = (): string => execFileSync('cat', ['/proc/loadavg']).toString().split(' ').slice(0, 3).join(' ');
  process.stdout.write(`verify-lab ${SIZE_TEXT} (${(await stat(eight.bundle)).size} bytes), ${RUNS} runs, load ${load()}\n`);
  for (let i = 0; i < RUNS; i += 1) {
    for (const c of CASES) {
      const fn = run[c];
      if (fn === undefined) throw new Error(`no case ${c}`);
      (times.get(c) as number[]).push(await timed(fn));
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  for (const [c, xs] of times) {
    process.stdout.write(`${c.padEnd(14)} median ${median(xs).toFixed(3)} s  (${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})\n`);
  }
  const ratio = (a: string, b: string): void => {
    const xa = times.get(a);
    const xb = times.get(b);
    if (xa === undefined || xb === undefined) return;
    process.stdout.write(`${`${a} ÷ ${b}`.padEnd(28)} ${median(xa.map((x, i) => x / (xb[i] as number))).toFixed(2)}\n`);
  };
  ratio('verify8', 'openssl8');
  ratio('verify1', 'openssl1');
  ratio('split8', 'verify8');
  ratio('split1', 'verify1');
  ratio('floor-2whole', 'floor-2halves');
  ratio('floor-2halves', 'openssl8');
  process.stdout.write(`load ${load()}\n`);
}

await main();
