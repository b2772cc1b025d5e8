/**
 * Scratch lab for `bundle build` speed (not part of `npm run bench`): makes the bench's build
 * data set once (4 images × 2 random layers, about SIZE in all) under /tmp/seabag-build-lab/SIZE,
 * then times, interleaved run by run:
 *   build            bundle build (fsync on)
 *   nosync           bundle build --no-sync
 *   peer             tar cf of the layout + openssl dgst -sha256 of the tar (the bench's peer)
 *   floor-copy       cat of every blob into one file + fsync (read + write + sync, no hash)
 *   floor-hash       openssl dgst of every blob (read + hash, one core)
 *   floor-tar-sync   tar cf + sync of the tar file + openssl dgst (the peer, durable)
 *
 *   build@NAME       bundle build with .scratch/NAME/seabag.mjs (to compare builds of the code
 *                    side by side); build@NAME+VAR=1 sets VAR in its environment. .scratch/NAME
 *                    must be a package of its own: seabag.mjs, package.json, schemas/ (a link
 *                    will do) and dist/ (a copy). The program is found from the package root
 *                    (lib/util/package.ts), so a bare copy of seabag.mjs runs the worktree's own
 *                    dist/program.cjs and every NAME measures the same code.
 *
 *   node --import tsx bench/build-lab.ts --size 256M --runs 5 --cases build,peer,floor-copy
 * Run it under `flock -x /work/cpu.lock`. Every case starts after a `sync`, so none pays for the
 * dirty pages of the one before.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { parseSize } from '../lib/index.js';
import { buildRandomImage } from '../test/helpers/images.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = process.env['SEABAG_BIN'] ?? join(root, 'dist', 'seabag.mjs');
const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
};
const sizeText = arg('size', '256M');
const size = parseSize(sizeText);
const runs = Number(arg('runs', '5'));
const cases = arg('cases', 'build,nosync,peer').split(',');
const base = join('/tmp/seabag-build-lab', sizeText);
const env = { SOURCE_DATE_EPOCH: '1790000000' };

async function dataset(): Promise<{ spec: string; layout: string; key: string }> {
  const layout = join(base, 'layout');
  const spec = join(base, 'release.yaml');
  const key = join(base, 'release.key');
  if (existsSync(spec)) return { spec, layout, key };
  await mkdir(base, { recursive: true });
  const images = 4;
  const layers = 2;
  const layer = Math.floor(size / (images * layers));
  for (let i = 0; i < images; i += 1) await buildRandomImage(layout, `img${i}`, Array.from({ length: layers }, () => layer), `lab-${i}`);
  await execa('node', [BIN, 'keygen', key]);
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: bench\nversion: 1.0.0\nimages:\n${Array.from({ length: images }, (_, i) => `  - ref: shore.example.com/bench/img${i}:1.0.0\n    from: oci:${layout}:img${i}\n`).join('')}`);
  return { spec, layout, key };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function main(): Promise<void> {
  const { spec, layout, key } = await dataset();
  const out = join(base, 'out.bundle');
  const tar = join(base, 'layout.tar');
  const blobs = join(layout, 'blobs', 'sha256');
  const blobFiles = (await readdir(blobs)).map((b) => join(blobs, b));
  const run: Record<string, () => Promise<unknown>> = {
    build: () => execa('node', [BIN, 'build', spec, '-o', out, '--sign', key, '--no-progress'], { env }),
    nosync: () => execa('node', [BIN, 'build', spec, '-o', out, '--sign', key, '--no-progress', '--no-sync'], { env }),
    peer: async () => {
      await execa('tar', ['cf', tar, '-C', layout, '.']);
      await execa('openssl', ['dgst', '-sha256', tar]);
    },
    'floor-copy': () => execa('sh', ['-c', `cat "$@" > ${tar} && sync ${tar}`, 'sh', ...blobFiles]),
    'floor-hash': () => execa('openssl', ['dgst', '-sha256', ...blobFiles]),
    // What bench/run.ts's floor step leaves behind: a synced tar deleted, a second tar written and deleted.
    'bench-floor': async () => {
      await Promise.all([execa('sh', ['-c', 'tar cf "$1" -C "$2" . && sync "$1"', 'sh', tar, layout]), execa('openssl', ['dgst', '-sha256', ...blobFiles])]);
      await rm(tar, { force: true });
      await execa('tar', ['cf', tar, '-C', layout, '.']);
      await execa('openssl', ['dgst', '-sha256', tar]);
    },
    'floor-tar-sync': async () => {
      await execa('tar', ['cf', tar, '-C', layout, '.']);
      await execa('sync', [tar]);
      await execa('openssl', ['dgst', '-sha256', tar]);
    },
  };
  // build@NAME / nosync@NAME: the same with .scratch/NAME/seabag.mjs (a copy of dist/).
  for (const c of cases) {
    // build@NAME+LAB_X=1+LAB_Y=2: environment for lab knobs.
    const [kind, rest] = c.split('@');
    if (rest === undefined) continue;
    const [name, ...vars] = rest.split('+');
    const bin = join(root, '.scratch', name as string, 'seabag.mjs');
    const extra = Object.fromEntries(vars.map((v) => v.split('=') as [string, string]));
    run[c] = () => execa('node', [bin, 'build', spec, '-o', out, '--sign', key, '--no-progress', ...(kind === 'nosync' ? ['--no-sync'] : [])], { env: { ...env, ...extra } });
  }
  const times = new Map<string, number[]>(cases.map((c) => [c, []]));
  for (let i = 0; i < runs; i += 1) {
    for (const c of cases) {
      await rm(out, { force: true });
      await rm(tar, { force: true });
      if (!process.argv.includes('--no-presync')) execFileSync('sync');
      times.get(c)?.push(await timed(run[c] as () => Promise<unknown>));
    }
  }
  await rm(out, { force: true });
  await rm(tar, { force: true });
  const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] as number;
  const peer = times.has('peer') ? median(times.get('peer') as number[]) : undefined;
  process.stdout.write(`${sizeText}, ${runs} runs, load ${execFileSync('cat', ['/proc/loadavg']).toString().split(' ').slice(0, 3).join(' ')}\n`);
  for (const [c, v] of times) {
    const m = median(v);
    process.stdout.write(`${c.padEnd(16)} median ${m.toFixed(3)} s  (${Math.min(...v).toFixed(3)}–${Math.max(...v).toFixed(3)})${peer === undefined ? '' : `  ÷ peer ${(m / peer).toFixed(2)}`}\n`);
  }
}

await main();
