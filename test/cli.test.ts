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

test('progress: one line redrawn on a terminal with rate and ETA, a few plain lines elsewhere, none with --no-progress', async (t) => {
  const { Writable } = await import('node:stream');
  const { ProgressReporter } = await import('../cli/progress.js');
  const capture = (tty: boolean) => {
    const out = { text: '' };
    const stream = Object.assign(
      new Writable({
        write(chunk: Buffer, _e, cb) {
          out.text += chunk.toString();
          cb();
        },
      }),
      { isTTY: tty, columns: 100 },
    );
    return { out, io: { stdout: stream, stderr: stream, env: {} } };
  };
  const tty = capture(true);
  const onTTY = new ProgressReporter(tty.io, ProgressReporter.modeFor(tty.io, true));
  const started = Date.now();
  for (let i = 1; i <= 4; i += 1) {
    while (Date.now() - started < i * 120) await new Promise((r) => setTimeout(r, 10));
    onTTY.update({ phase: 'push', done: i * 1024 * 1024, total: 8 * 1024 * 1024 });
  }
  onTTY.finish();
  t.regex(tty.out.text, /\r\x1b\[2Kpush: \d+(\.\d)? MiB of 8\.0 MiB \(\d+%\) [\d.]+ [KM]iB\/s ETA \d+s/);
  t.false(tty.out.text.trimEnd().includes('\n'), 'one line, redrawn in place');

  const plain = capture(false);
  const onPipe = new ProgressReporter(plain.io, ProgressReporter.modeFor(plain.io, true));
  for (let i = 1; i <= 100; i += 1) onPipe.update({ phase: 'push', done: i, total: 100 });
  const lines = plain.out.text.trim().split('\n');
  t.true(lines.length <= 2, `a few plain lines, not ${lines.length}`);
  t.regex(lines.at(-1) ?? '', /push: 100 B of 100 B \(100%\)/);

  const off = capture(true);
  const none = new ProgressReporter(off.io, ProgressReporter.modeFor(off.io, false));
  none.update({ phase: 'push', done: 1, total: 2 });
  t.is(off.out.text, '');
});
