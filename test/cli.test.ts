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

test('progress: one line redrawn on a terminal naming what it works on, with rate and ETA, cleared at the end; one plain line per 10% elsewhere; none with --no-progress', async (t) => {
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
    onTTY.update({ phase: 'push', done: i * 1024 * 1024, total: 8 * 1024 * 1024, item: 'groke/fusion' });
  }
  onTTY.finish();
  t.regex(tty.out.text, /\r\x1b\[2Kpush groke\/fusion: \d+(\.\d)? MiB of 8\.0 MiB \(\d+%\) [\d.]+ [KM]iB\/s ETA \d+s/);
  t.false(tty.out.text.includes('\n'), 'one line, redrawn in place');
  t.true(tty.out.text.endsWith('\r\x1b[2K'), 'the line is wiped when the work ends: nothing stale stays on screen');

  const plain = capture(false);
  const onPipe = new ProgressReporter(plain.io, ProgressReporter.modeFor(plain.io, true));
  for (let i = 1; i <= 100; i += 1) onPipe.update({ phase: 'push', done: i, total: 100, item: 'groke/fusion' });
  const lines = plain.out.text.trim().split('\n');
  t.deepEqual(
    lines.map((l) => /\((\d+)%\)/.exec(l)?.[1]),
    ['1', '10', '20', '30', '40', '50', '60', '70', '80', '90', '100'],
    'the first line, then one per 10% (these updates came faster than 10 s apart)',
  );
  t.regex(lines.at(-1) ?? '', /^push groke\/fusion: 100 B of 100 B \(100%\)/);
  t.false(plain.out.text.includes('\r') || plain.out.text.includes('\x1b'), 'no terminal codes in a log');

  // Slow work (a clock of the test's own): a line at least every 10 s even between 10% steps.
  const slow = capture(false);
  let clock = 1_000_000;
  const onLog = new ProgressReporter(slow.io, 'plain', () => clock);
  for (const [at, done] of [[0, 1], [4, 2], [9, 3], [10, 4], [15, 5], [21, 6], [25, 7]] as const) {
    clock = 1_000_000 + at * 1000;
    onLog.update({ phase: 'push', done: done * 1024, total: 1024 * 1024, item: 'groke/fusion' });
  }
  t.deepEqual(slow.out.text.trim().split('\n').map((l) => /^push groke\/fusion: ([\d.]+) KiB/.exec(l)?.[1]), ['1.0', '4.0', '6.0'], 'lines at 0 s, 10 s and 21 s');

  const off = capture(true);
  const none = new ProgressReporter(off.io, ProgressReporter.modeFor(off.io, false));
  none.update({ phase: 'push', done: 1, total: 2 });
  t.is(off.out.text, '');
});
