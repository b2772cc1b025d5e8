/**
 * CPU profiles (`node --cpu-prof`) of verify and import on a 256 MiB bundle of 8 layers, summarised
 * (top frames by self time, every thread) into bench/results/profile-LABEL.md.
 *
 *   node --import tsx bench/profiles.ts --label after                 # dist/seabag.mjs
 *   node --import tsx bench/profiles.ts --label before --bin OLD.mjs  # an older build
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { buildRandomImage } from '../test/helpers/images.js';
import { startRegistry } from '../test/helpers/registry.js';
import { renderSummary, summarise } from './profile.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
};
const BIN = arg('bin', join(root, 'dist', 'seabag.mjs'));
const LABEL = arg('label', 'after');
const SIZE = 256 * 1024 * 1024;

const base = await mkdtemp(join(tmpdir(), 'seabag-profiles-'));
const env = { SOURCE_DATE_EPOCH: '1790000000' };
const run = (args: string[], extra: Record<string, string> = {}, prof?: string) =>
  execa('node', [...(prof === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${prof}`]), BIN, ...args, '--no-progress'], { env: { ...env, ...extra } });
try {
  await run(['keygen', join(base, 'root.key')]);
  await run(['keygen', join(base, 'release.key')]);
  const trust = join(base, 'trust.json');
  await run(['trust', 'init', '--root-key', join(base, 'root.key.pub'), '--release-key', join(base, 'release.key.pub'), '--sign', join(base, 'root.key'), '-o', trust]);
  const tags: string[] = [];
  for (let i = 0; i < 4; i += 1) {
    await buildRandomImage(join(base, 'layout'), `img${i}`, [SIZE / 8, SIZE / 8], `profile-${i}`);
    tags.push(`img${i}`);
  }
  await writeFile(join(base, 'release.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: bench\nversion: 1.0.0\nimages:\n${tags.map((t) => `  - ref: shore.example.com/bench/${t}:1.0.0\n    from: oci:${join(base, 'layout')}:${t}\n`).join('')}`);
  const bundle = join(base, 'bench.bundle');
  await run(['build', join(base, 'release.yaml'), '-o', bundle, '--sign', join(base, 'release.key')]);

  const sections: string[] = [`# CPU profiles: ${LABEL}`, '', `\`${BIN.replace(root, '')}\`, 256 MiB bundle of 8 layers, ${new Date().toISOString().slice(0, 16)} UTC, load ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}. One file per thread (worker threads hash blobs in parallel).`, ''];
  const summariseDir = async (title: string, dir: string): Promise<void> => {
    for (const f of (await readdir(dir)).sort()) sections.push(renderSummary(`${title} — ${f.includes('.0.0') ? 'main thread' : `thread ${f.split('.').at(-3) ?? ''}`}`, summarise(JSON.parse(await readFile(join(dir, f), 'utf8')), 12)));
  };
  const verifyDir = join(base, 'prof-verify');
  await run(['verify', bundle, '--trust', trust], {}, verifyDir);
  await summariseDir('verify', verifyDir);

  const registry = await startRegistry({});
  try {
    const state = join(base, 'state');
    await mkdir(state);
    const vessel = { SEABAG_STATE_DIR: state, SEABAG_REGISTRY: registry.host };
    const importDir = join(base, 'prof-import');
    await run(['import', bundle, '--trust', trust], vessel, importDir);
    await summariseDir('import', importDir);
    const reDir = join(base, 'prof-reimport');
    await run(['import', bundle], vessel, reDir);
    await summariseDir('re-import', reDir);
  } finally {
    await registry.kill();
    await rm(registry.storageDir, { recursive: true, force: true });
  }
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', `profile-${LABEL}.md`), `${sections.join('\n')}\n`);
  process.stdout.write(`${sections.join('\n')}\n`);
} finally {
  await rm(base, { recursive: true, force: true });
}
