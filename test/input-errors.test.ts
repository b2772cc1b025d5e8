/**
 * Input errors are usage errors (issue 12, items 11–13): a folder where a file is expected, a
 * number that is not one, a YAML alias bomb, a split the reader would refuse: each exit 2 with
 * a stable code, before anything is written or fetched. Unexpected failures are E_INTERNAL with
 * a line asking for a report, and lib/ throws only typed errors and imports without cycles.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { reportError } from '../cli/render.js';
import { writeBundle } from '../lib/bundle/writer.js';
import { MAX_PARTS } from '../lib/index.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/tools.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function fixture(t: Parameters<typeof tempDir>[0]): Promise<{ dir: string; key: string; spec: string; folder: string }> {
  const dir = await tempDir(t);
  const key = join(dir, 'release.key');
  await runCli(['keygen', key]);
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, 'apiVersion: seabag.dev/v1\nkind: Release\nname: a\nversion: 1.0.0\nimages:\n  - ref: example.com/a/b:1.0.0\n    from: oci:./nowhere\n');
  const folder = join(dir, 'folder');
  await mkdir(folder);
  return { dir, key, spec, folder };
}

test('a folder where a file is expected (spec, --sign, --trust, -o) is exit 2, not E_IO', async (t) => {
  const { dir, key, spec, folder } = await fixture(t);
  const cases: [string, string[], string][] = [
    // Files named from outside are opened only if regular (lib/util/files.ts): E_USAGE naming the kind.
    ['spec', ['build', folder, '-o', join(dir, 'x.bundle'), '--sign', key], 'E_USAGE'],
    ['--sign', ['build', spec, '-o', join(dir, 'x.bundle'), '--sign', folder], 'E_USAGE'],
    ['--trust of verify', ['verify', spec, '--trust', folder], 'E_USAGE'],
    ['--trust of import', ['import', spec, '--trust', folder, '--registry', '127.0.0.1:1', '--state-dir', join(dir, 'state')], 'E_USAGE'],
    ['-o of build', ['build', spec, '-o', folder, '--sign', key], 'E_FILE_EXISTS'],
    ['-o of trust init', ['trust', 'init', '--root-key', `${key}.pub`, '--sign', key, '-o', folder], 'E_FILE_EXISTS'],
  ];
  for (const [what, args, code] of cases) {
    const r = await runCli([...args, '--json']);
    t.is(r.code, 2, `${what}: ${r.stdout}`);
    t.is(r.json.error?.code, code, what);
    t.regex(r.json.error?.message ?? '', /folder|exists/, what);
  }
  t.deepEqual(await readdir(folder), [], 'nothing was written into the folder');
});

test('a --timeout or --retries that is not a sane number is exit 2 before any request (it used to retry forever)', async (t) => {
  const dir = await tempDir(t);
  for (const flags of [['--timeout', 'abc'], ['--timeout', '-5'], ['--timeout', '0'], ['--retries', '-1'], ['--retries', '2.5'], ['--retries', 'x']]) {
    const r = await runCli(['fetch', 'http://127.0.0.1:1/a.bundle', '-o', dir, ...flags, '--json', '--no-progress']);
    t.is(r.code, 2, `${flags.join(' ')}: ${r.stdout}`);
    t.is(r.json.error?.code, 'E_USAGE', flags.join(' '));
  }
  const rollout = await runCli(['apply', 'a@1.0.0', '--rollout-timeout', 'soon', '--state-dir', join(dir, 'state'), '--json']);
  t.is(rollout.code, 2, rollout.stdout);
});

test('a YAML alias bomb or an alias without its anchor in a spec is exit 2 E_SPEC_INVALID, not a crash', async (t) => {
  const { dir, key } = await fixture(t);
  const level = (name: string, of: string): string => `${name}: &${name} [${Array(9).fill(`*${of}`).join(', ')}]\n`;
  const bomb = `apiVersion: seabag.dev/v1\nkind: Release\nname: &a a\nversion: 1.0.0\n${level('b', 'a')}${level('c', 'b')}${level('d', 'c')}${level('e', 'd')}${level('f', 'e')}images:\n  - ref: example.com/a/b:1.0.0\n`;
  const dangling = 'apiVersion: seabag.dev/v1\nkind: Release\nname: *nowhere\nversion: 1.0.0\nimages: []\n';
  for (const [what, text] of [['bomb', bomb], ['dangling alias', dangling]] as const) {
    const spec = join(dir, `${what}.yaml`);
    await writeFile(spec, text);
    const r = await runCli(['build', spec, '-o', join(dir, `${what}.bundle`), '--sign', key, '--json', '--no-progress']);
    t.is(r.code, 2, `${what}: ${r.stdout}`);
    t.is(r.json.error?.code, 'E_SPEC_INVALID', what);
  }
});

test('--split below 1 MiB is refused up front; a split into more parts than a reader accepts is refused before a byte is written', async (t) => {
  const { dir, key, spec } = await fixture(t);
  for (const size of ['1', '1000K', '0.5M']) {
    const r = await runCli(['build', spec, '-o', join(dir, 'x.bundle'), '--sign', key, '--split', size, '--json', '--no-progress']);
    t.is(r.code, 2, `${size}: ${r.stdout}`);
    t.is(r.json.error?.code, 'E_USAGE', size);
    t.regex(r.json.error?.message ?? '', /below the smallest part/);
  }
  // A bundle of 10,000 MiB in 1 MiB parts: more than MAX_PARTS. The content is never opened.
  const out = join(dir, 'big.bundle');
  const size = (MAX_PARTS + 1) * 1024 * 1024;
  const err = await t.throwsAsync(
    writeBundle(out, [{ name: `blobs/sha256/${'a'.repeat(64)}`, desc: { mediaType: 'application/octet-stream', digest: `sha256:${'a'.repeat(64)}`, size }, open: async () => { throw new Error('opened'); } }], { splitSize: 1024 * 1024 }),
  );
  t.is((err as { code?: string }).code, 'E_USAGE');
  t.regex(err?.message ?? '', /at most 9999/);
  t.false((await readdir(dir)).some((n) => n.startsWith('big.bundle')), 'nothing written');
});

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

test('an unexpected failure is E_INTERNAL (exit 3) with a line asking for a report; a stray system error keeps its errno code', (t) => {
  const io = () => ({ stdout: new Sink(), stderr: new Sink(), env: {} });
  const bug = io();
  t.is(reportError(bug, new TypeError("Cannot read properties of null (reading 'pid')"), false), 3);
  t.regex(bug.stderr.text, /^error\[E_INTERNAL\]: unexpected failure: Cannot read properties of null/m);
  t.regex(bug.stderr.text, /hint: this is a bug in seabag: please report it/);
  const full = io();
  t.is(reportError(full, Object.assign(new Error('no space'), { code: 'ENOSPC', syscall: 'write' }), true), 3);
  t.regex(full.stdout.text, /"code": "E_DISK_FULL"/);
  const folder = io();
  t.is(reportError(folder, Object.assign(new Error('is a directory'), { code: 'EISDIR', syscall: 'read' }), true), 2);
  t.regex(folder.stdout.text, /"code": "E_NOT_A_FILE"/);
});

/** Every .ts file under a folder of the repository. */
function sources(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) out.push(p);
    }
  };
  walk(join(ROOT, dir));
  return out;
}

test('lib/ throws only typed errors: no plain Error, no error code picked by matching message text', (t) => {
  for (const file of sources('lib')) {
    const text = readFileSync(file, 'utf8');
    t.notRegex(text, /throw new Error\(/, relative(ROOT, file));
    t.notRegex(text, /\.message\.includes\(/, relative(ROOT, file));
  }
});

test('lib/ and cli/ import without cycles (registry: client, repository and upload meet through requester.ts)', (t) => {
  for (const dir of ['lib', 'cli']) {
    const graph = new Map<string, string[]>();
    for (const file of sources(dir)) {
      const deps = [...readFileSync(file, 'utf8').matchAll(/^(?:import|export)[^'"]*?from\s+'(\.[^']+)'/gm)].map((m) => resolve(dirname(file), (m[1] as string).replace(/\.js$/, '.ts')));
      graph.set(resolve(file), deps);
    }
    const cycles: string[] = [];
    const state = new Map<string, number>();
    const stack: string[] = [];
    const visit = (n: string): void => {
      state.set(n, 1);
      stack.push(n);
      for (const d of graph.get(n) ?? []) {
        if (state.get(d) === 1) cycles.push(stack.slice(stack.indexOf(d)).map((x) => relative(ROOT, x)).join(' -> '));
        else if (!state.has(d)) visit(d);
      }
      stack.pop();
      state.set(n, 2);
    };
    for (const n of graph.keys()) if (!state.has(n)) visit(n);
    t.deepEqual(cycles, [], dir);
  }
});
