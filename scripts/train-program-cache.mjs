// Trains the V8 code cache of each program script in dist/program/ (cli/program-loader.ts reads
// them): runs the script's commands as a user would, in this process, on a tiny signed release made
// here (a one-layer OCI layout written by hand), then keeps what V8 compiled. Nothing leaves the
// temporary folder; no network. Commands that need a registry (import, push, pull, apply…) are
// trained on their --help and their refusals only.
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';

const { runProgramScript } = await import('../dist/cli/program-loader.js');

class Sink extends Writable {
  text = '';
  isTTY = false;
  _write(chunk, _enc, cb) {
    this.text += chunk.toString();
    cb();
  }
}

/** Runs one command line through a program's `main`; returns its exit status and output. */
async function run(program, argv, env) {
  const stdout = new Sink();
  const stderr = new Sink();
  const code = await program.main(argv, { stdout, stderr, env: { PATH: process.env.PATH ?? '', HOME: env.HOME, ...env } });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

async function blob(layout, data) {
  const hex = createHash('sha256').update(data).digest('hex');
  await writeFile(join(layout, 'blobs', 'sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

/** A one-image OCI layout: an empty tar layer, its config, the manifest, tagged `tiny`. */
async function tinyLayout(layout) {
  await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
  const tar = Buffer.alloc(1024);
  const layer = await blob(layout, gzipSync(tar));
  const config = await blob(layout, Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${createHash('sha256').update(tar).digest('hex')}`] }, config: {} })));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
  }));
  const m = await blob(layout, manifest);
  await writeFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, annotations: { 'org.opencontainers.image.ref.name': 'tiny' } }] }));
}

/**
 * Trains every dist/program/NAME.cjs: writes NAME.cache. A training command that fails in a way
 * it should not (exit status other than expected) fails the build: the cache would be trained on
 * an error path, and the program is broken anyway.
 */
export async function trainProgramCaches(dir = 'dist/program') {
  const work = await mkdtemp(join(tmpdir(), 'seabag-train-'));
  try {
    const empty = join(work, 'empty-state');
    await mkdir(empty);
    const env = { HOME: work, SEABAG_STATE_DIR: join(work, 'state') };
    const k = (name) => join(work, name);
    // The example release, made with the whole program.
    const all = runProgramScript(join(dir, 'all.cjs')).exports;
    await tinyLayout(k('layout'));
    await writeFile(k('release.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: tiny\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/train/tiny:1.0.0\n    from: oci:${k('layout')}:tiny\n`);
    const setup = [
      ['keygen', k('root.key')],
      ['keygen', k('release.key')],
      ['trust', 'init', '--root-key', k('root.key.pub'), '--release-key', k('release.key.pub'), '--sign', k('root.key'), '-o', k('trust.json')],
      ['build', k('release.yaml'), '-o', k('tiny.bundle'), '--sign', k('release.key')],
    ];
    for (const argv of setup) {
      const r = await run(all, argv, env);
      if (r.code !== 0) throw new Error(`training setup: bundle ${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
    }
    // What each command runs in training, with the exit status it must give.
    const lines = {
      keygen: [[['keygen', k('k2')], 0]],
      trust: [[['trust', 'init', '--root-key', k('root.key.pub'), '--release-key', k('release.key.pub'), '--sign', k('root.key'), '-o', k('trust2.json')], 0]],
      build: [[['build', k('release.yaml'), '-o', k('b2.bundle'), '--sign', k('release.key')], 0]],
      inspect: [[['inspect', k('tiny.bundle')], 0], [['inspect', k('tiny.bundle'), '--json'], 0]],
      verify: [[['verify', k('tiny.bundle'), '--trust', k('trust.json')], 0], [['verify', k('tiny.bundle'), '--trust', k('trust.json'), '--json'], 0]],
      status: [[['status', '--state-dir', empty], 0], [['status', '--state-dir', empty, '--json'], 0]],
      inventory: [[['inventory', '--state-dir', empty, '-o', k('inventory.json')], 0]],
      all: [[['--help'], 0], [['completion', 'bash'], 0]],
    };
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.cjs')).sort()) {
      const name = file.slice(0, -'.cjs'.length);
      const loaded = runProgramScript(join(dir, file));
      const own = name === 'all' ? [] : (await loaded.exports.commandPaths()).filter((p) => p[0] === name);
      const argvs = [...own.map((p) => [[...p, '--help'], 0]), ...(lines[name] ?? [])];
      for (const [argv, expected] of argvs) {
        const r = await run(loaded.exports, argv, env);
        if (r.code !== expected) throw new Error(`training ${file}: bundle ${argv.join(' ')} exited ${r.code}, not ${expected}: ${r.stderr}`);
      }
      await writeFile(join(dir, `${name}.cache`), loaded.script.createCachedData());
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
