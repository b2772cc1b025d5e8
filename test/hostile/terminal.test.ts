/**
 * Terminal safety: names and messages from a spec, a registry or a bundle are printed with their
 * control characters escaped (ESC sequences that clear the screen or set the window title, CR that
 * overwrites a line, C1 CSI, bidi overrides), on stderr, in progress lines and in --json, which
 * stays valid JSON and parses back to the same text.
 */
import { createServer } from 'node:http';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import test from 'ava';
import { ProgressReporter } from '../../cli/progress.js';
import { printJSON, reportError } from '../../cli/render.js';
import { SeabagError } from '../../lib/errors.js';
import { runCli } from '../helpers/cli.js';
import { EPOCH, makeExampleImages } from '../helpers/example.js';
import { tempDir } from '../helpers/tools.js';
import { outcomeOf, Report } from './report.js';

const report = new Report('terminal');

test.after.always(async () => {
  await report.write();
});

/** Raw bytes a terminal would obey: C0 (but tab and newline), DEL, C1, bidi controls. */
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const HOSTILE = '\u001b]0;owned\u0007\u001b[2J\r\u009b31m\u202etxt.exe';

class Capture extends Writable {
  text = '';
  isTTY = false;
  columns = 200;
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

test('a manifest file name with terminal escapes is shown escaped; --json stays valid', async (t) => {
  const dir = await tempDir(t);
  const layout = await makeExampleImages(dir);
  const rel = join(dir, 'rel');
  await mkdir(join(rel, 'k8s'), { recursive: true });
  await writeFile(join(rel, 'k8s', `${HOSTILE}.yaml`), 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - {name: a, image: "attacker.example/miner:1"}\n');
  await writeFile(join(rel, 'release.yaml'), ['apiVersion: seabag.dev/v1', 'kind: Release', 'name: a', 'version: 1.0.0', 'images:', '  - ref: groke/toolbox:1', `    from: oci:${layout}:toolbox-1.0.0`, 'manifests: [k8s/]', ''].join('\n'));
  const human = await runCli(['build', join(rel, 'release.yaml'), '-o', join(dir, 'a.bundle'), '--unsigned'], { SOURCE_DATE_EPOCH: EPOCH });
  const json = await runCli(['build', join(rel, 'release.yaml'), '-o', join(dir, 'a.bundle'), '--json', '--unsigned'], { SOURCE_DATE_EPOCH: EPOCH });
  const clean = !RAW.test(human.stderr) && !RAW.test(json.stdout);
  report.add('terminal', 'spec: manifest file name with ESC, CR, C1 and bidi controls', 'exit 2, printed escaped', clean ? outcomeOf(json) : 'raw control characters printed', 'n/a');
  t.is(human.code, 2);
  t.regex(human.stderr, /\\x1b\]0;owned\\x07\\x1b\[2J\\r/);
  t.false(RAW.test(human.stderr), JSON.stringify(human.stderr));
  t.false(RAW.test(json.stdout));
  t.is(json.json.error?.code, 'E_IMAGE_NOT_IN_RELEASE');
  t.true(JSON.stringify(json.json).includes('owned'), 'the JSON parses back to the name');
});

test('a registry error message with terminal escapes is shown escaped (stand-in registry)', async (t) => {
  // Distribution cannot be made to send an arbitrary error message, so a stand-in does.
  const server = createServer((req, res) => {
    if (req.url === '/v2/') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'DENIED', message: `${HOSTILE}\nerror[E_NONE]: all is well` }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as { port: number }).port;
  const dir = await tempDir(t);
  await writeFile(join(dir, 'release.yaml'), ['apiVersion: seabag.dev/v1', 'kind: Release', 'name: a', 'version: 1.0.0', 'images:', `  - ref: 127.0.0.1:${port}/groke/x:1`, ''].join('\n'));
  const human = await runCli(['build', join(dir, 'release.yaml'), '-o', join(dir, 'a.bundle'), '--no-progress', '--unsigned']);
  const json = await runCli(['build', join(dir, 'release.yaml'), '-o', join(dir, 'a.bundle'), '--json', '--unsigned']);
  const clean = !RAW.test(human.stderr) && !RAW.test(json.stdout) && !/^error\[E_NONE\]/m.test(human.stderr);
  report.add('terminal', 'registry error message with ESC, CR, newline, C1 and bidi controls', 'refused, printed escaped', clean ? outcomeOf(json) : 'raw control characters printed', 'n/a');
  t.not(human.code, 0);
  t.false(RAW.test(human.stderr), JSON.stringify(human.stderr));
  t.notRegex(human.stderr, /^error\[E_NONE\]/m, 'a newline in a message cannot fake a line of ours');
  t.false(RAW.test(json.stdout));
  t.is(json.json.error?.code, 'E_REGISTRY', 'the registry answered, and its message was shown');
  t.regex(human.stderr, /owned/);
});

test('progress lines and --json escape what they show; JSON parses back to the same text', (t) => {
  const stderr = new Capture();
  const stdout = new Capture();
  const io = { stdout, stderr, env: {} } as never;
  const progress = new ProgressReporter(io, 'plain');
  progress.update({ phase: 'import', done: 1, total: 1, item: HOSTILE, unit: 'images' });
  stderr.isTTY = true;
  const tty = new ProgressReporter({ stdout, stderr, env: {} } as never, 'tty');
  tty.update({ phase: 'import', done: 1, total: 2, item: HOSTILE, unit: 'images' });
  const shown = stderr.text.replace(/\r\x1b\[2K/g, '');
  report.add('terminal', 'progress line naming an item with terminal escapes', 'printed escaped', RAW.test(shown) ? 'raw control characters printed' : 'escaped', 'n/a');
  t.false(RAW.test(shown), JSON.stringify(shown));
  printJSON(io, { ok: false, name: HOSTILE });
  t.false(RAW.test(stdout.text));
  t.is((JSON.parse(stdout.text) as { name: string }).name, HOSTILE);
  const err = new Capture();
  reportError({ stdout: new Capture(), stderr: err, env: {} } as never, new SeabagError('E_LAYOUT_INVALID', `image ${HOSTILE}`, { hint: HOSTILE }), false);
  t.false(RAW.test(err.text));
});
