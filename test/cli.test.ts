/**
 * The installed program: `bundle` and `seabag` are the same binary, with help, version and the
 * usage exit status.
 */
import { readFileSync } from 'node:fs';
import test from 'ava';
import { execa } from 'execa';

const BIN = new URL('../dist/seabag.mjs', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string; bin: Record<string, string> };

test('the package installs bundle and seabag as the same program', (t) => {
  t.deepEqual(Object.keys(pkg.bin).sort(), ['bundle', 'seabag']);
  t.is(pkg.bin['bundle'], pkg.bin['seabag']);
  t.is(pkg.bin['bundle'], 'dist/seabag.mjs');
  t.regex(readFileSync(BIN, 'utf8'), /^#!\/usr\/bin\/env node/);
});

test('--version prints the package version and --help explains the exit statuses', async (t) => {
  const v = await execa('node', [BIN, '--version']);
  t.is(v.stdout.trim(), pkg.version);
  const h = await execa('node', [BIN, '--help']);
  t.is(h.exitCode, 0);
  t.regex(h.stdout, /Exit status: 0 done; 1 rejected/);
});

test('an unknown option is a usage error: exit 2 with error[E_USAGE] on stderr', async (t) => {
  const r = await execa('node', [BIN, '--frobnicate'], { reject: false });
  t.is(r.exitCode, 2);
  t.regex(r.stderr, /^error\[E_USAGE\]: /m);
  t.is(r.stdout, '');
  const j = await execa('node', [BIN, '--frobnicate', '--json'], { reject: false });
  t.is(j.exitCode, 2);
  t.like(JSON.parse(j.stdout), { ok: false, error: { code: 'E_USAGE' } });
});
