/**
 * Errors a person can act on, through the real CLI: a wrong kind of file is named for what it
 * is; signature problems name the keyids found and expected; a registry given as a URL is
 * refused with what to write; retries show as they happen; import's blob counts add up.
 */
import { createServer } from 'node:net';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import test from 'ava';
import { runCli } from './helpers/cli.js';
import { EPOCH, exampleCopy } from './helpers/example.js';
import { startVessel } from './helpers/vessel.js';

let work: string;
let example: string;
let trust: string;
let v1: string;
let v2: string;
const keyid: Record<string, string> = {};

async function cli(args: string[]): Promise<Awaited<ReturnType<typeof runCli>>> {
  const r = await runCli(args, { SOURCE_DATE_EPOCH: EPOCH });
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r;
}

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-messages-'));
  example = await exampleCopy(work);
  for (const k of ['root', 'release', 'other', 'second']) keyid[k] = (await cli(['keygen', join(work, `${k}.key`)])).stdout.trim();
  trust = join(work, 'trust.json');
  await cli(['trust', 'init', '--root-key', join(work, 'root.key.pub'), '--release-key', join(work, 'release.key.pub'), '--sign', join(work, 'root.key'), '-o', trust]);
  v1 = join(work, 'awareness-1.4.0.bundle');
  v2 = join(work, 'awareness-1.5.0.bundle');
  await cli(['build', join(example, '1.4.0', 'release.yaml'), '-o', v1, '--sign', join(work, 'release.key'), '--no-progress']);
  await cli(['build', join(example, '1.5.0', 'release.yaml'), '-o', v2, '--sign', join(work, 'release.key'), '--no-progress']);
});

test.after.always(async () => {
  await rm(work, { recursive: true, force: true });
});

test('a public key given to --sign: "that is a public key; --sign wants the private key (release.key)"', async (t) => {
  const pub = join(work, 'release.key.pub');
  const r = await runCli(['build', join(example, '1.4.0', 'release.yaml'), '-o', join(work, 'x.bundle'), '--sign', pub]);
  t.is(r.code, 2);
  t.true(r.stderr.includes(`error[E_KEY_INVALID]: ${pub} is a public key; --sign wants the private key (${join(work, 'release.key')})`), r.stderr);
  const init = await runCli(['trust', 'init', '--root-key', pub, '--release-key', pub, '--sign', pub, '-o', join(work, 't.json')]);
  t.regex(init.stderr, /is a public key; --sign wants the private key/);
  const rootAsKey = await runCli(['trust', 'init', '--root-key', trust, '--release-key', pub, '--sign', join(work, 'root.key'), '-o', join(work, 't.json')]);
  t.is(rootAsKey.code, 2);
  t.true(rootAsKey.stderr.includes(`${trust} is a trust root, not a key; --root-key wants a public key`), rootAsKey.stderr);
});

test('a key given as --trust: "that is a key, not a trust root (make one with bundle trust init)"', async (t) => {
  for (const wrong of [join(work, 'root.key.pub'), join(work, 'root.key')]) {
    const r = await runCli(['verify', v1, '--trust', wrong]);
    t.is(r.code, 2);
    t.true(r.stderr.includes(`error[E_TRUST_INVALID]: ${wrong} is a key, not a trust root (make one with \`bundle trust init\`)`), r.stderr);
  }
  const bundleAsRoot = await runCli(['verify', v1, '--trust', v1, '--json']);
  t.like(bundleAsRoot.json, { ok: false, error: { code: 'E_TRUST_INVALID', details: { kind: 'tar' } } });
});

test('inspect, verify and import of a file that is not a bundle name what it is (PEM, JSON, YAML, gzip by their first bytes)', async (t) => {
  const spec = join(example, '1.4.0', 'release.yaml');
  const r = await runCli(['inspect', spec]);
  t.is(r.code, 2);
  t.true(r.stderr.includes(`error[E_FILE_KIND]: ${spec} is a release spec, not a bundle; build it with \`bundle build\``), r.stderr);
  const gz = join(work, 'aw.bundle.gz');
  await writeFile(gz, gzipSync(readFileSync(v1).subarray(0, 65536)));
  const inventory = join(work, 'inventory.json');
  await writeFile(inventory, JSON.stringify({ apiVersion: 'seabag.dev/v1', kind: 'Inventory', releases: [], blobs: [] }));
  const cases: [string, RegExp][] = [
    [join(work, 'release.key'), /is a key, not a bundle/],
    [join(work, 'release.key.pub'), /is a key, not a bundle/],
    [trust, /is a trust root, not a bundle \(it goes with --trust\)/],
    [inventory, /is a vessel's inventory, not a bundle/],
    [gz, /is gzip-compressed; a bundle is an uncompressed tar/],
  ];
  for (const [file, message] of cases) {
    for (const args of [['inspect', file], ['verify', file, '--trust', trust]]) {
      const out = await runCli(args);
      t.is(out.code, 2, `${args.join(' ')}: ${out.stderr}`);
      t.regex(out.stderr, message, args.join(' '));
    }
  }
  const v = await startVessel(t);
  const imported = await v.run(['import', spec, '--trust', trust, '--json']);
  t.like(imported.json, { ok: false, error: { code: 'E_FILE_KIND', details: { kind: 'release-spec' } } });
  // --since takes an inventory or a bundle: a trust root or a key is named for what it is.
  const sinceRoot = await runCli(['build', spec, '-o', join(work, 'd.bundle'), '--sign', join(work, 'release.key'), '--since', trust]);
  t.is(sinceRoot.code, 2);
  t.regex(sinceRoot.stderr, /is a trust root, not an inventory or a bundle; --since wants what `bundle inventory` wrote aboard/);
  const sinceKey = await runCli(['build', spec, '-o', join(work, 'd.bundle'), '--sign', join(work, 'release.key'), '--since', join(work, 'release.key.pub')]);
  t.is(sinceKey.code, 2);
  t.regex(sinceKey.stderr, /is a key, not a bundle/);
  // A bundle still opens, also when it is not named .bundle.
  const renamed = join(work, 'aw-1.4.0.tar');
  await copyFile(v1, renamed);
  t.is((await runCli(['inspect', renamed])).code, 0);
});

test('signature problems name the keyids found and the ones the trust root expects', async (t) => {
  const other = join(work, 'other.bundle');
  await cli(['build', join(example, '1.4.0', 'release.yaml'), '-o', other, '--sign', join(work, 'other.key'), '--no-progress']);
  const r = await runCli(['verify', other, '--trust', trust]);
  t.is(r.code, 1);
  t.true(r.stderr.includes(`error[E_KEY_UNTRUSTED]: the bundle is signed by key ${keyid['other']}, which the trust root does not list for releases; the trust root asks for 1 of the release key ${keyid['release']}`), r.stderr);
  const j = await runCli(['verify', other, '--trust', trust, '--json']);
  t.like(j.json, { error: { details: { found: [keyid['other']], expected: [keyid['release']] } } });

  const two = join(work, 'trust-two.json');
  await cli(['trust', 'init', '--root-key', join(work, 'root.key.pub'), '--release-key', join(work, 'release.key.pub'), '--release-key', join(work, 'second.key.pub'), '--release-threshold', '2', '--sign', join(work, 'root.key'), '-o', two]);
  const short = await runCli(['verify', v1, '--trust', two, '--json']);
  t.is(short.code, 1);
  t.like(short.json, { error: { code: 'E_THRESHOLD_UNMET', details: { valid: [keyid['release']], missing: [keyid['second']], found: [keyid['release']] } } });
  t.regex(short.json.error?.message ?? '', new RegExp(`1 distinct trusted key\\(s\\) signed the release \\(${keyid['release']}\\); the trust root asks for 2 of the release keys`));
});

test('--registry http://host:5000 is refused: give host:port, the scheme goes in --plain-http or --ca-file', async (t) => {
  const v = await startVessel(t);
  for (const url of ['http://127.0.0.1:5000', 'https://registry.example.com:5000/']) {
    const r = await v.run(['import', v1, '--trust', trust, '--target', 'class-a', '--registry', url]);
    t.is(r.code, 2, r.stderr);
    const host = url.replace(/^https?:\/\//, '').replace(/\/$/, '');
    t.true(r.stderr.includes(`error[E_USAGE]: registry "${url}": give host:port (${host}); use --plain-http or --ca-file for the scheme`), r.stderr);
  }
  const path = await v.run(['import', v1, '--trust', trust, '--registry', '127.0.0.1:5000/v2']);
  t.regex(path.stderr, /give HOST\[:PORT\] only/);
});

test('a registry that does not answer: each retry is shown as it happens, then exit 3', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const v = await startVessel(t);
  const r = await runCli(['import', v1, '--trust', trust, '--target', 'class-a', '--registry', `127.0.0.1:${port}`], { SEABAG_STATE_DIR: v.stateDir });
  t.is(r.code, 3, r.stderr);
  const retries = r.stderr.split('\n').filter((l) => l.startsWith('registry '));
  t.is(retries.length, 5, r.stderr);
  retries.forEach((line, i) => t.regex(line, new RegExp(`^registry 127\\.0\\.0\\.1:${port} not answering, retry ${i + 1} of 5 in [\\d.]+ s…$`)));
  t.regex(r.stderr, /error\[E_REGISTRY_UNREACHABLE\]/);
});

test('import counts add up: pushed + mounted + already there (+ left out of a delta) = total, every time', async (t) => {
  const v = await startVessel(t);
  for (const [bundle, extra] of [
    [v1, ['--trust', trust]],
    [v2, []],
    [v2, []],
    [v1, []],
  ] as const) {
    const r = await v.run(['import', bundle, '--target', 'class-a', '--json', ...extra]);
    t.is(r.code, 0, r.stdout);
    const b = r.json['blobs'] as { total: number; pushed: number; mounted: number; skipped: number; omitted: number };
    t.is(b.pushed + b.mounted + b.skipped + b.omitted, b.total, JSON.stringify(b));
    const text = await v.run(['import', bundle, '--target', 'class-a']);
    const m = /blobs +(\d+): (\d+) pushed \([^)]*\), (\d+) mounted, (\d+) already there/.exec(text.stdout);
    t.truthy(m, text.stdout);
    if (m !== null) t.is(Number(m[2]) + Number(m[3]) + Number(m[4]), Number(m[1]), text.stdout);
  }
});

test('push counts add up too: pushed + already there (+ left out) = total, first time and again', async (t) => {
  const v = await startVessel(t);
  for (const [bundle, label] of [
    [v1, 'first push'],
    [v1, 'the same again'],
    [v2, 'a release sharing most blobs'],
  ] as const) {
    const r = await runCli(['push', bundle, `oci://${v.registry.host}/shore/awareness`, '--json', '--no-progress']);
    t.is(r.code, 0, `${label}: ${r.stdout}${r.stderr}`);
    const b = r.json['blobs'] as { total: number; pushed: number; skipped: number; omitted: number };
    t.is(b.pushed + b.skipped + b.omitted, b.total, `${label}: ${JSON.stringify(b)}`);
    if (label === 'the same again') t.is(b.pushed, 0, 'nothing is pushed twice');
  }
});

test('on a terminal, progress names what it works on and leaves no stale line; in a log it is plain lines', async (t) => {
  const { execa } = await import('execa');
  const { BIN } = await import('./helpers/cli.js');
  const out = join(work, 'tty.bundle');
  const line = ['node', BIN, 'build', join(example, '1.5.0', 'release.yaml'), '-o', out, '--sign', join(work, 'release.key')].map((a) => `'${a}'`).join(' ');
  const r = await execa('script', ['-qec', line, '/dev/null'], { env: { TERM: 'xterm' }, extendEnv: true, reject: false });
  t.is(r.exitCode, 0, r.stdout);
  const screen = r.stdout.replace(/\r\n/g, '\n');
  t.regex(screen, /\r\x1b\[2Kresolve shore\.example\.com\/groke\/fusion:1\.5\.0: \d of 4 images/, 'names the image it resolves');
  t.regex(screen, /\r\x1b\[2Kwrite tty\.bundle: [\d.]+ (B|KiB|MiB) of [\d.]+ MiB \(\d+%\)/, 'names the file it writes');
  // Every progress line is wiped before anything else is printed: the first real line starts clean.
  const before = screen.slice(0, screen.indexOf('built awareness 1.5.0'));
  t.true(before.endsWith('\r\x1b[2K'), 'the last progress line was cleared before the result');
  t.false(before.includes('\n'), 'no progress line was left behind on its own line');

  const log = await execa('node', [BIN, 'build', join(example, '1.5.0', 'release.yaml'), '-o', join(work, 'log.bundle'), '--sign', join(work, 'release.key')], { reject: false });
  t.is(log.exitCode, 0, log.stderr);
  t.false(/\r|\x1b/.test(log.stderr), 'no terminal codes in a log');
  t.regex(log.stderr, /^write log\.bundle: .*\(100%\)/m);
});
