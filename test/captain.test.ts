/**
 * The captain's view: apply, rollback and prune preview what they will change (--dry-run, the
 * same list and JSON as the real run, nothing changed), ask `Proceed? [y/N]` on a terminal
 * (driven here through a real pseudo-terminal: util-linux `script`), never ask a script, and
 * status names what a rollback returns to and what an apply would change.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { BIN } from './helpers/cli.js';
import { exampleBundles } from './helpers/example.js';
import { startVessel, type TestVessel } from './helpers/vessel.js';

let work: string;
let trust: string;
let v1: string;
let v2: string;

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-captain-'));
  ({ trust, v1, v2 } = await exampleBundles(work));
});

test.after.always(async () => {
  await rm(work, { recursive: true, force: true });
});

async function ok(v: TestVessel, args: string[]): Promise<Record<string, unknown>> {
  const r = await v.run([...args, '--json']);
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.json;
}

/** 1.4.0 active, 1.5.0 staged. */
async function vesselWithTwo(t: Parameters<typeof startVessel>[0]): Promise<TestVessel> {
  const v = await startVessel(t);
  await ok(v, ['import', v1, '--trust', trust, '--target', 'class-a']);
  await ok(v, ['apply', 'awareness@1.4.0']);
  await ok(v, ['import', v2, '--target', 'class-a']);
  return v;
}

/** Every file of the state folder and of the registry's storage, with its sha256. */
async function snapshot(v: TestVessel): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [label, dir] of [
    ['state', v.stateDir],
    ['registry', v.registry.storageDir],
  ] as const) {
    for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || entry.name === 'lock') continue;
      const path = join(entry.parentPath, entry.name);
      out[`${label}:${path.slice(dir.length)}`] = createHash('sha256').update(await readFile(path)).digest('hex');
    }
  }
  return out;
}

/** Runs `bundle ARGS` on a pseudo-terminal (util-linux `script`), typing `input`. */
async function onTerminal(v: TestVessel, args: string[], input: string): Promise<{ code: number; output: string }> {
  const line = ['node', BIN, ...args, '--no-progress'].map((a) => `'${a}'`).join(' ');
  const r = await execa('script', ['-qec', line, '/dev/null'], { input, env: { ...v.env, TERM: 'dumb' }, extendEnv: true, reject: false });
  return { code: r.exitCode ?? -1, output: r.stdout.replace(/\r/g, '') };
}

test('apply --dry-run prints the same tag moves and JSON as the real apply, and changes no byte of state or registry', async (t) => {
  const v = await vesselWithTwo(t);
  const before = await snapshot(v);
  const dry = await v.run(['apply', 'awareness@1.5.0', '--dry-run', '--json']);
  t.is(dry.code, 0, dry.stdout + dry.stderr);
  t.true(dry.json['dryRun']);
  const text = await v.run(['apply', 'awareness@1.5.0', '--dry-run']);
  t.regex(text.stdout, /^apply awareness 1\.5\.0 \(running now: 1\.4\.0\) moves \d+ tags:$/m);
  t.regex(text.stdout, /^  groke\/toolbox:1  sha256:[0-9a-f]{12} → sha256:[0-9a-f]{12}$/m);
  t.regex(text.stdout, /^  seabag\/awareness:current  sha256:[0-9a-f]{12} → sha256:[0-9a-f]{12}$/m);
  t.regex(text.stdout, /dry run: nothing changed/);
  t.deepEqual(await snapshot(v), before, 'state.json and the registry are byte-identical');

  const real = await v.run(['apply', 'awareness@1.5.0', '--json']);
  t.is(real.code, 0);
  t.deepEqual(real.json['tags'], dry.json['tags'], 'the dry run listed exactly the moves the real run made');
  t.deepEqual(real.json['from'], dry.json['from']);
  t.deepEqual(real.json['release'], dry.json['release']);
  const realText = (await v.run(['rollback', 'awareness', '--dry-run'])).stdout;
  t.regex(realText, /^roll back to awareness 1\.4\.0 \(running now: 1\.5\.0\) moves/m);
});

test('rollback and prune --dry-run list what would change and change nothing', async (t) => {
  const v = await vesselWithTwo(t);
  await ok(v, ['apply', 'awareness@1.5.0']);
  const before = await snapshot(v);
  const back = await v.run(['rollback', 'awareness', '--dry-run', '--json']);
  t.is(back.code, 0);
  t.like(back.json, { ok: true, dryRun: true, op: 'rollback', release: { version: '1.4.0' }, from: { version: '1.5.0' } });
  t.true((back.json['tags'] as unknown[]).length >= 2);
  // 1.4.0 is the rollback target now: only --force prunes it (issue 12).
  const prune = await v.run(['prune', '--keep', '1', '--force', '--dry-run', '--json']);
  t.is(prune.code, 0, prune.stdout);
  t.like(prune.json, { ok: true, dryRun: true, manifestsDeleted: 0 });
  const pruneText = await v.run(['prune', '--keep', '1', '--force', '--dry-run']);
  t.regex(pruneText.stdout, /^prune removes 1 release:\n  awareness 1\.4\.0  sha256:[0-9a-f]{12}\nand keeps awareness 1\.5\.0 \(active\)\ndry run: nothing changed$/m);
  t.deepEqual(await snapshot(v), before, 'state.json and the registry are byte-identical');
  const real = await v.run(['prune', '--keep', '1', '--force', '--json']);
  t.deepEqual(real.json['removed'], prune.json['removed'], 'the dry run named exactly what the real prune removed');
});

test('on a terminal apply shows the moves and asks; no leaves everything as it was (E_DECLINED), yes applies', async (t) => {
  const v = await vesselWithTwo(t);
  const before = await snapshot(v);
  const no = await onTerminal(v, ['apply', 'awareness@1.5.0'], 'n\n');
  t.is(no.code, 1, no.output);
  t.regex(no.output, /apply awareness 1\.5\.0 \(running now: 1\.4\.0\) moves \d+ tags:\n(  .+ → .+\n)+Proceed\? \[y\/N\] /);
  t.regex(no.output, /error\[E_DECLINED\]: apply awareness 1\.5\.0: not done, the answer was no; nothing changed/);
  t.deepEqual(await snapshot(v), before, 'no changed nothing');
  const empty = await onTerminal(v, ['apply', 'awareness@1.5.0'], '\n');
  t.is(empty.code, 1, 'Enter alone is no');

  const yes = await onTerminal(v, ['apply', 'awareness@1.5.0'], 'y\n');
  t.is(yes.code, 0, yes.output);
  t.regex(yes.output, /Proceed\? \[y\/N\] /);
  t.regex(yes.output, /applied awareness 1\.5\.0 \(was 1\.4\.0\): \d+ tag\(s\) moved as shown/);
  t.is((await v.run(['status', '--json'])).json['releases'] instanceof Array, true);
  t.like(((await v.run(['status', 'awareness', '--json'])).json['releases'] as unknown[]).find((r) => (r as { version: string }).version === '1.5.0'), { state: 'active' });

  const asked = await onTerminal(v, ['rollback', 'awareness', '--yes'], '');
  t.is(asked.code, 0, asked.output);
  t.notRegex(asked.output, /Proceed\?/, '--yes does not ask');
  t.regex(asked.output, /rolled back to awareness 1\.4\.0 \(was 1\.5\.0\)/);
  t.regex(asked.output, /^  groke\/toolbox:1  sha256:[0-9a-f]{12} → sha256:[0-9a-f]{12}$/m, 'unasked, the moves are listed after');
});

test('on a terminal prune shows what it removes and asks; yes removes it', async (t) => {
  const v = await vesselWithTwo(t);
  await ok(v, ['apply', 'awareness@1.5.0']);
  const no = await onTerminal(v, ['prune', '--keep', '1', '--force'], 'no\n');
  t.is(no.code, 1, no.output);
  t.regex(no.output, /error\[E_DECLINED\]: prune: not done/);
  t.is((await v.run(['status', '--json'])).json['releases'] instanceof Array && ((await v.run(['status', '--json'])).json['releases'] as unknown[]).length, 2);
  const prune = await onTerminal(v, ['prune', '--keep', '1', '--force'], 'yes\n');
  t.is(prune.code, 0, prune.output);
  t.regex(prune.output, /prune removes 1 release:\n  awareness 1\.4\.0 .*\nand keeps awareness 1\.5\.0 \(active\)\nProceed\? \[y\/N\] /);
  t.regex(prune.output, /removed 1 release\(s\) as shown/);
  t.is(await v.tag('groke/fusion', '1.4.0'), undefined, 'what it showed is gone');
});

test('a non-terminal is never asked: a script that pipes into apply proceeds as before', async (t) => {
  const v = await vesselWithTwo(t);
  const r = await execa('node', [BIN, 'apply', 'awareness@1.5.0', '--no-progress'], { input: 'n\n', env: v.env, reject: false });
  t.is(r.exitCode, 0, r.stderr);
  t.notRegex(r.stdout + r.stderr, /Proceed\?/);
  t.regex(r.stdout, /^applied awareness 1\.5\.0 \(was 1\.4\.0\)\n  /m);
});

test('status names the release a rollback returns to and the images an apply of each staged release would change', async (t) => {
  const v = await vesselWithTwo(t);
  const before = await v.run(['status']);
  t.is(before.code, 0, before.stderr);
  t.regex(before.stdout, /^awareness: 1\.4\.0 runs; a rollback has nothing to return to/m);
  t.regex(before.stdout, /^  bundle apply awareness@1\.5\.0 would change 2 images:$/m);
  t.regex(before.stdout, /^    groke\/fusion  1\.4\.0 \(sha256:[0-9a-f]{12}\) → 1\.5\.0 \(sha256:[0-9a-f]{12}\)$/m, 'another tag of fusion will run');
  t.regex(before.stdout, /^    groke\/toolbox:1  sha256:[0-9a-f]{12} → sha256:[0-9a-f]{12}$/m, 'the moving tag toolbox:1 moves');
  const json = await v.run(['status', '--json']);
  const staged = (json.json['releases'] as { version: string; changes?: { repository: string; tag?: string; to: string }[] }[]).find((r) => r.version === '1.5.0');
  const predicted = (staged?.changes ?? []).map((c) => `${c.repository}:${c.tag}`).sort();

  const applied = await v.run(['apply', 'awareness@1.5.0', '--json']);
  const moved = (applied.json['tags'] as { repository: string; tag: string }[]).filter((m) => !m.repository.startsWith('seabag/')).map((m) => `${m.repository}:${m.tag}`).sort();
  t.deepEqual(predicted, moved, "status predicted exactly the images apply moved");

  const after = await v.run(['status', 'awareness']);
  t.regex(after.stdout, /^awareness: 1\.5\.0 runs; bundle rollback awareness returns to 1\.4\.0, changing 2 images:$/m);
  t.like((await v.run(['status', '--json'])).json, { rollback: [{ name: 'awareness', version: '1.4.0' }] });
  const back = await v.run(['rollback', 'awareness', '--json']);
  t.like(back.json, { release: { version: '1.4.0' } }, 'the rollback went where status said');
});

test('status NAME for a name not held says so and lists the names held (exit 2)', async (t) => {
  const v = await vesselWithTwo(t);
  const r = await v.run(['status', 'awarenes']);
  t.is(r.code, 2);
  t.regex(r.stderr, /^error\[E_RELEASE_UNKNOWN\]: this vessel holds no release named awarenes; it holds awareness$/m);
  const j = await v.run(['status', 'radar', '--json']);
  t.like(j.json, { ok: false, error: { code: 'E_RELEASE_UNKNOWN', details: { name: 'radar', held: ['awareness'] } } });
});
