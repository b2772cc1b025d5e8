/**
 * Start-up: the installed program (dist/seabag.mjs) loads the bundled program script with the
 * code cache the build trained (cli/program-loader.ts), initialises only the command that runs,
 * and answers exactly as the TypeScript modules do. How fast is measured in bench/run.ts; here,
 * what would make it slow or different without anyone noticing.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { commandPaths } from '../cli/program.js';
import { BIN, runCli } from './helpers/cli.js';
import { buildRandomImage } from './helpers/images.js';

const root = new URL('..', import.meta.url).pathname;

test('the bundled program runs from its code cache, which V8 accepts (a stale or untrained cache would not be)', async (t) => {
  const probe = `
    const { programScript, runProgramScript } = await import(${JSON.stringify(join(root, 'dist/cli/program-loader.js'))});
    const { file, cache } = programScript();
    const loaded = runProgramScript(file, cache);
    console.log(JSON.stringify({ cached: loaded.cached, commands: loaded.exports.commandPaths().length }));`;
  const r = await execa('node', ['--input-type=module', '-e', probe]);
  t.deepEqual(JSON.parse(r.stdout), { cached: true, commands: commandPaths().length });
});

test('a program script edited in place does not run from the cache of the old one (V8 checks only the length; the cache carries the script\'s sha256)', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'seabag-stale-cache-'));
  try {
    const program = join(work, 'program.cjs');
    const cache = join(work, 'program.cache');
    const source = await readFile(join(root, 'dist/program.cjs'), 'utf8');
    // The same length, one letter changed, in text --help prints.
    const edited = source.replace('Signed, content-addressed release bundles', 'Signed, content-Addressed release bundles');
    t.not(edited, source);
    t.is(edited.length, source.length);
    await writeFile(program, edited);
    await copyFile(join(root, 'dist/program.cache'), cache);
    const probe = `
      const { runProgramScript } = await import(${JSON.stringify(join(root, 'dist/cli/program-loader.js'))});
      const { Writable } = await import('node:stream');
      let out = '';
      const stdout = new Writable({ write(c, _e, cb) { out += c; cb(); } });
      const loaded = runProgramScript(${JSON.stringify(program)}, ${JSON.stringify(cache)});
      await loaded.exports.main(['--help'], { stdout, stderr: stdout, env: {} });
      console.log(JSON.stringify({ cached: loaded.cached, edited: out.includes('content-Addressed') }));`;
    const r = await execa('node', ['--input-type=module', '-e', probe]);
    t.deepEqual(JSON.parse(r.stdout), { cached: false, edited: true });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test('the installed program answers as the modules do: every --help, usage errors, a mistyped command, completion, byte for byte', async (t) => {
  const lines = [[], ['--help'], ...commandPaths().map((p) => [...p, '--help']), ['stauts'], ['trust', 'rotat'], ['status', '--bogus'], ['inspect'], ['completion', 'bash'], ['completion', 'fish'], ['--json', 'bogus']];
  for (const argv of lines) {
    const mine = await runCli(argv);
    const bin = await execa('node', [BIN, ...argv], { reject: false, env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/root' }, extendEnv: false });
    const what = `bundle ${argv.join(' ')}`;
    t.is(bin.exitCode, mine.code, what);
    t.is(bin.stdout, mine.stdout.replace(/\n$/, ''), `${what}: stdout`);
    t.is(bin.stderr, mine.stderr.replace(/\n$/, ''), `${what}: stderr`);
  }
});

test('a command initialises only what it uses: status loads no HTTP, TLS or child-process module, inspect only the release document validator', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'seabag-startup-'));
  const state = join(work, 'state');
  try {
    const status = await execa('node', [BIN, 'status', '--state-dir', state], { env: { NODE_DEBUG: 'module' } });
    t.regex(status.stdout, /no releases held/);
    const builtins = new Set([...status.stderr.matchAll(/load built-in module (\S+)/g)].map((m) => (m[1] as string).replace(/^node:/, '')));
    for (const heavy of ['http', 'https', 'tls', 'net', 'child_process', 'zlib', 'readline', 'assert', 'worker_threads']) t.false(builtins.has(heavy), `status loaded node:${heavy}`);
    t.true(builtins.has('fs'), 'the trace names what loads (NODE_DEBUG=module still works)');
    await buildRandomImage(join(work, 'layout'), 'tiny', [4096], 'tiny');
    await writeFile(join(work, 'release.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: tiny\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/startup/tiny:1.0.0\n    from: oci:${join(work, 'layout')}:tiny\n`);
    t.is((await runCli(['build', join(work, 'release.yaml'), '-o', join(work, 'tiny.bundle'), '--unsigned'])).code, 0);
    const inspect = await execa('node', [BIN, 'inspect', join(work, 'tiny.bundle')], { env: { NODE_DEBUG: 'module' } });
    t.regex(inspect.stdout, /^tiny 1\.0\.0/);
    t.deepEqual([...inspect.stderr.matchAll(/dist\/validators\/([\w-]+)\.cjs/g)].map((m) => m[1]).filter((v, i, a) => a.indexOf(v) === i), ['release-document']);
    t.notRegex(inspect.stderr, /load built-in module node:(https?|tls|child_process)\b/, 'inspect loads no network code');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test('a build reads its YAML with the one yaml script of dist/ (the same package bundled) and its code cache, not yaml\'s ~60 modules one by one: strace sees which files it opens', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'seabag-startup-'));
  try {
    await buildRandomImage(join(work, 'layout'), 'tiny', [4096], 'tiny');
    await writeFile(join(work, 'release.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: tiny\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/startup/tiny:1.0.0\n    from: oci:${join(work, 'layout')}:tiny\n`);
    const build = await execa('strace', ['-f', '-e', 'trace=openat', '-o', join(work, 'trace'), 'node', BIN, 'build', join(work, 'release.yaml'), '-o', join(work, 'tiny.bundle'), '--unsigned', '--no-progress']);
    t.regex(build.stdout, /built tiny 1\.0\.0/);
    const opened = (await readFile(join(work, 'trace'), 'utf8')).split('\n').filter((l) => !/= -1 /.test(l)).join('\n');
    t.regex(opened, /dist\/yaml\.cjs"/, 'the bundled yaml is loaded');
    t.regex(opened, /dist\/yaml\.cache"/, 'with its code cache');
    t.notRegex(opened, /node_modules\/yaml\//, 'none of the package\'s own modules is');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test('the yaml script runs from the code cache the build trained, which V8 accepts, and parses as the package does', async (t) => {
  const probe = `
    const { yamlScript, yaml } = await import(${JSON.stringify(join(root, 'dist/lib/util/lazy.js'))});
    const doc = yaml().parseDocument('a: [1, two]\\nb: {c: true}\\n', { uniqueKeys: true, prettyErrors: false });
    console.log(JSON.stringify({ cached: yamlScript().cached, data: doc.toJS() }));`;
  const r = await execa('node', ['--input-type=module', '-e', probe]);
  t.deepEqual(JSON.parse(r.stdout), { cached: true, data: { a: [1, 'two'], b: { c: true } } });
});

test('a yaml script edited in place, or given another script\'s cache, does not run from that cache (V8 checks only the length; the cache carries the script\'s sha256) and still parses right', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'seabag-stale-cache-'));
  try {
    const source = await readFile(join(root, 'dist/yaml.cjs'), 'utf8');
    // The same length, one word changed, in the message a duplicate key gets.
    const edited = source.replaceAll('Map keys must be unique', 'Map keys must be UNIQUE');
    t.not(edited, source);
    t.is(edited.length, source.length);
    await writeFile(join(work, 'edited.cjs'), edited);
    await copyFile(join(root, 'dist/yaml.cache'), join(work, 'edited.cache'));
    await copyFile(join(root, 'dist/yaml.cjs'), join(work, 'foreign.cjs'));
    await copyFile(join(root, 'dist/program.cache'), join(work, 'foreign.cache'));
    await copyFile(join(root, 'dist/yaml.cjs'), join(work, 'same.cjs'));
    await copyFile(join(root, 'dist/yaml.cache'), join(work, 'same.cache'));
    const probe = `
      const { cacheFileOf, runCachedScript } = await import(${JSON.stringify(join(root, 'dist/lib/util/cached-script.js'))});
      const out = {};
      for (const name of ['edited', 'foreign', 'same']) {
        const file = ${JSON.stringify(work)} + '/' + name + '.cjs';
        const loaded = runCachedScript(file, cacheFileOf(file));
        const doc = loaded.exports.parseDocument('a: 1\\na: 2\\nb: [x]\\n', { uniqueKeys: true, prettyErrors: false });
        out[name] = { cached: loaded.cached, error: doc.errors[0]?.message.split('\\n')[0], b: doc.get('b').toJSON() };
      }
      console.log(JSON.stringify(out));`;
    const r = await execa('node', ['--input-type=module', '-e', probe]);
    t.deepEqual(JSON.parse(r.stdout), {
      edited: { cached: false, error: 'Map keys must be UNIQUE', b: ['x'] },
      foreign: { cached: false, error: 'Map keys must be unique', b: ['x'] },
      same: { cached: true, error: 'Map keys must be unique', b: ['x'] },
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test('a pull from a registry starts without the code cache (its eager code makes V8 mark-compact through a long stream), every other command from it: strace sees which open dist/program.cache', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'seabag-startup-'));
  try {
    // A registry that refuses every request: each command stops at its first one (E_AUTH), after the program has loaded.
    const refusing = createServer((_req, res) => {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"DENIED","message":"startup test"}]}');
    });
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    t.teardown(() => void refusing.close());
    const opensCache = async (args: string[]): Promise<boolean> => {
      const r = await execa('strace', ['-f', '-e', 'trace=openat', '-o', join(work, 'trace'), 'node', BIN, ...args], { reject: false, env: { SEABAG_STATE_DIR: join(work, 'state'), HOME: work } });
      t.not(r.exitCode, 0, `bundle ${args.join(' ')} cannot succeed here`);
      t.notRegex(r.stderr, /E_INTERNAL|TypeError/, `bundle ${args.join(' ')} fails as a command, not as a program`);
      return (await readFile(join(work, 'trace'), 'utf8')).includes('dist/program.cache');
    };
    const nowhere = `127.0.0.1:${(refusing.address() as AddressInfo).port}`;
    t.false(await opensCache(['import', `oci://${nowhere}/releases/app:1.0.0`, '--registry', nowhere]), 'import oci://');
    t.false(await opensCache(['pull', `oci://${nowhere}/releases/app:1.0.0`, '-o', join(work, 'app.bundle')]), 'pull oci://');
    t.true(await opensCache(['import', join(work, 'missing.bundle'), '--registry', nowhere]), 'import FILE');
    t.true(await opensCache(['inspect', join(work, 'missing.bundle')]), 'inspect');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
