/**
 * The vessel never wedges and rollback is always there (issue 12), through the real CLI and the
 * real registry: a repeated apply writes nothing, prune keeps the rollback target, a failed switch
 * is undone (or waits for `bundle recover` when the undo fails too), a lost layer is reported and
 * repaired by re-importing, and locks tell the truth about their holders.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { StateDir } from '../lib/index.js';
import { processStartTicks } from '../lib/vessel/lock.js';
import { blobDataPath } from './helpers/registry-storage.js';
import { skopeoCopy, tempDir } from './helpers/tools.js';
import type { TestVessel } from './helpers/vessel.js';
import { busyVessel, makeFixture, type Fixture } from './hostile/fixture.js';

let f: Fixture;

test.before(async () => {
  f = await makeFixture();
});

test.after.always(async () => {
  await f?.cleanup();
});

async function ok(v: TestVessel, args: string[]): Promise<Record<string, unknown>> {
  const r = await v.run([...args, '--json']);
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.json;
}

async function states(v: TestVessel): Promise<Record<string, string>> {
  const s = await v.run(['status', '--json']);
  return Object.fromEntries((s.json['releases'] as { version: string; state: string }[]).map((r) => [r.version, r.state]));
}

const statePath = (v: TestVessel): string => join(v.stateDir, 'state.json');
const journalExists = async (v: TestVessel): Promise<boolean> => (await stat(join(v.stateDir, 'journal.json')).catch(() => undefined)) !== undefined;

test.serial('a repeated apply of the active release is a no-op: state.json byte-identical and rollback still reaches the previous release', async (t) => {
  const v = await busyVessel(t, f);
  await ok(v, ['apply', 'awareness@1.5.0']);
  t.deepEqual(await states(v), { '1.4.0': 'previous', '1.5.0': 'active' });
  const before = await readFile(statePath(v));
  const again = await v.run(['apply', 'awareness@1.5.0']);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /already active; nothing moved/);
  t.true((await readFile(statePath(v))).equals(before), 'state.json byte-identical');
  t.false(await journalExists(v));
  const back = await v.run(['rollback', 'awareness', '--json']);
  t.is(back.code, 0, back.stdout);
  t.like(back.json, { release: { version: '1.4.0' }, from: { version: '1.5.0' } });
});

test.serial('prune keeps the active and the previous release unless --force, lists what it removes, and rollback still works', async (t) => {
  const v = await busyVessel(t, f);
  await ok(v, ['import', f.v3]);
  await ok(v, ['apply', 'awareness@1.5.0']);
  await ok(v, ['apply', 'awareness@1.6.0']);
  t.deepEqual(await states(v), { '1.4.0': 'staged', '1.5.0': 'previous', '1.6.0': 'active' });
  const pruned = await v.run(['prune', '--keep', '1']);
  t.is(pruned.code, 0, pruned.stderr);
  t.regex(pruned.stdout, /removed 1 release:\n {2}awareness 1\.4\.0 /);
  t.regex(pruned.stdout, /awareness 1\.5\.0 stays: it is the rollback target \(--force removes it\)/);
  const plan = await v.run(['prune', '--keep', '1', '--force', '--dry-run']);
  t.regex(plan.stdout, /prune removes 1 release:\n {2}awareness 1\.5\.0 /, 'the plan lists what --force would remove');
  t.deepEqual(await states(v), { '1.5.0': 'previous', '1.6.0': 'active' });
  t.is(await v.tag('seabag/awareness', '1.4.0'), undefined, '1.4.0 went from the registry');
  const back = await v.run(['rollback', 'awareness', '--json']);
  t.is(back.code, 0, back.stdout);
  t.like(back.json, { release: { version: '1.5.0' } });
  await ok(v, ['apply', 'awareness@1.6.0']);
  const forced = await v.run(['prune', '--keep', '1', '--force', '--json']);
  t.is(forced.code, 0, forced.stdout);
  t.deepEqual((forced.json['removed'] as { version: string }[]).map((r) => r.version), ['1.5.0']);
  t.deepEqual(await states(v), { '1.6.0': 'active' });
});

test.serial('a failed apply (the registry answers wrong bytes) is undone: tags back, no journal, state.json untouched, status finishes nothing', async (t) => {
  const v = await busyVessel(t, f);
  await ok(v, ['apply', 'awareness@1.5.0']);
  const state = await new StateDir(v.stateDir).load();
  const r14 = state.releases.find((r) => r.version === '1.4.0');
  const toolbox15 = await v.tag('groke/toolbox', '1');
  const current15 = await v.tag('seabag/awareness', 'current');
  const before = await readFile(statePath(v));
  // After the first tag moves, the registry starts answering wrong bytes for 1.4.0's release manifest.
  const file = blobDataPath(v.registry, r14?.digest ?? '');
  const original = readFileSync(file);
  let corrupted = false;
  const failed = await v.run(['rollback', 'awareness', '--json'], {}, {
    onStep: (step) => {
      if (step === 'switch:tag' && !corrupted) {
        corrupted = true;
        writeFileSync(file, Buffer.concat([original, Buffer.from('\n')]));
      }
    },
  });
  writeFileSync(file, original);
  t.true(corrupted, 'a tag had moved when the registry went wrong');
  t.is(failed.code, 1, failed.stdout);
  t.like(failed.json.error, { code: 'E_DIGEST_MISMATCH', details: { undone: true, changed: 'nothing that runs has changed' } });
  t.is(await v.tag('groke/toolbox', '1'), toolbox15, 'the moved tag went back');
  t.is(await v.tag('seabag/awareness', 'current'), current15, 'the commit point never moved');
  t.false(await journalExists(v), 'no journal left');
  t.true((await readFile(statePath(v))).equals(before), 'state.json untouched');
  const status = await v.run(['status', '--json']);
  t.is(status.json['pending'], null);
  t.notRegex(status.stderr, /finished/);
  t.deepEqual(await states(v), { '1.4.0': 'previous', '1.5.0': 'active' });
  const again = await v.run(['rollback', 'awareness', '--json']);
  t.is(again.code, 0, again.stdout);
});

test.serial('a failed apply whose undo fails too (registry gone) leaves the journal marked failed: status shows the tags, apply waits, import does not, recover --abort puts them back', async (t) => {
  const v = await busyVessel(t, f);
  await ok(v, ['apply', 'awareness@1.5.0']);
  const toolbox15 = await v.tag('groke/toolbox', '1');
  const current15 = await v.tag('seabag/awareness', 'current');
  let killed = false;
  const failed = await v.run(['rollback', 'awareness', '--json'], {}, {
    onStep: (step) => {
      if (step === 'switch:tag' && !killed) {
        killed = true;
        void v.registry.kill();
      }
    },
  });
  t.true(killed);
  t.is(failed.code, 3, failed.stdout);
  t.is(failed.json.error?.code, 'E_SWITCH_INCOMPLETE');
  t.true(await journalExists(v), 'the journal stays for the captain');
  await v.registry.start();
  const status = await v.run(['status', '--json']);
  t.is(status.code, 0);
  const pending = status.json['pending'] as { op: string; failed?: { code: string }; tags: { repository: string; tag: string; now: string; to: string; from?: string }[] };
  t.like(pending, { op: 'rollback', failed: { code: 'E_REGISTRY_UNREACHABLE' } });
  const toolbox = pending.tags.find((m) => m.repository === 'groke/toolbox');
  t.is(toolbox?.from, toolbox15);
  t.is(toolbox?.now, toolbox?.to, 'status says toolbox:1 moved');
  t.is(await v.tag('seabag/awareness', 'current'), current15);
  t.deepEqual(await states(v), { '1.4.0': 'previous', '1.5.0': 'active' }, 'status finished nothing');
  const text = await v.run(['status']);
  t.regex(text.stdout, /FAILED half-way/);
  t.regex(text.stdout, /groke\/toolbox:1\s+now 1\.4\.0 \(moved\)/);
  t.regex(text.stdout, /bundle recover --abort/);
  const blocked = await v.run(['apply', 'awareness@1.5.0', '--json']);
  t.is(blocked.code, 3);
  t.is(blocked.json.error?.code, 'E_SWITCH_INCOMPLETE');
  const imported = await v.run(['import', f.v3, '--json']);
  t.is(imported.code, 0, `a pending journal does not block importing another release: ${imported.stdout}`);
  t.true(await journalExists(v), 'the import left the pending journal alone');
  const aborted = await v.run(['recover', '--abort']);
  t.is(aborted.code, 0, aborted.stderr);
  t.regex(aborted.stdout, /aborted the rollback of awareness 1\.4\.0: 1 tag\(s\) put back/);
  t.is(await v.tag('groke/toolbox', '1'), toolbox15);
  t.false(await journalExists(v));
  t.is((await v.run(['rollback', 'awareness'])).code, 0);
  t.deepEqual(await states(v), { '1.4.0': 'active', '1.5.0': 'previous', '1.6.0': 'staged' });
});

test.serial('recover --finish completes a switch whose undo failed', async (t) => {
  const v = await busyVessel(t, f);
  let killed = false;
  const failed = await v.run(['apply', 'awareness@1.5.0', '--json'], {}, {
    onStep: (step) => {
      if (step === 'switch:journal' && !killed) {
        killed = true;
        void v.registry.kill();
      }
    },
  });
  t.is(failed.json.error?.code, 'E_SWITCH_INCOMPLETE', failed.stdout);
  await v.registry.start();
  const finished = await v.run(['recover', '--finish']);
  t.is(finished.code, 0, finished.stderr);
  t.regex(finished.stdout, /finished the apply of awareness 1\.5\.0/);
  t.deepEqual(await states(v), { '1.4.0': 'previous', '1.5.0': 'active' });
  t.is(await v.tag('seabag/awareness', 'current'), await v.tag('seabag/awareness', '1.5.0'));
});

test.serial('a layer lost from the registry: status says incomplete, apply refuses before moving anything, re-import pushes what is missing', async (t) => {
  const v = await busyVessel(t, f);
  const state = await new StateDir(v.stateDir).load();
  const [r14, r15] = ['1.4.0', '1.5.0'].map((ver) => state.releases.find((r) => r.version === ver));
  const only15 = (r15?.content['groke/fusion'] ?? []).filter((d) => !(r14?.content['groke/fusion'] ?? []).includes(d));
  const fusion15 = r15?.images.find((i) => i.repository === 'groke/fusion')?.digest;
  // A layer, not a manifest: the manifest stays and still names it.
  const lost = only15.find((d) => d !== fusion15 && !(r15?.images.some((i) => i.digest === d) ?? false));
  t.truthy(lost);
  const data = blobDataPath(v.registry, lost ?? '');
  const size = (await stat(data)).size;
  await rm(data);
  const status = await v.run(['status', '--json']);
  const held = status.json['releases'] as { version: string; complete: boolean | null; missing?: string[] }[];
  t.like(held.find((r) => r.version === '1.5.0'), { complete: false });
  t.true(held.find((r) => r.version === '1.5.0')?.missing?.some((m) => m.endsWith(lost ?? 'x')));
  t.like(held.find((r) => r.version === '1.4.0'), { complete: true });
  t.regex((await v.run(['status'])).stdout, /awareness 1\.5\.0 is INCOMPLETE/);
  const tagsBefore = { toolbox: await v.tag('groke/toolbox', '1'), current: await v.tag('seabag/awareness', 'current') };
  const refused = await v.run(['apply', 'awareness@1.5.0', '--json']);
  t.is(refused.code, 1);
  t.is(refused.json.error?.code, 'E_BLOBS_MISSING');
  t.deepEqual({ toolbox: await v.tag('groke/toolbox', '1'), current: await v.tag('seabag/awareness', 'current') }, tagsBefore, 'nothing moved');
  t.false(await journalExists(v));
  const repaired = await v.run(['import', f.v2, '--json']);
  t.is(repaired.code, 0, repaired.stdout);
  t.like(repaired.json, { alreadyHeld: true });
  t.true((repaired.json['blobs'] as { pushed: number }).pushed >= 1);
  t.true((repaired.json['bytesPushed'] as number) >= size);
  t.like((await v.run(['status', '--json'])).json['releases'] as object, [{ complete: true }, { complete: true }]);
  t.is((await v.run(['apply', 'awareness@1.5.0'])).code, 0);
  await skopeoCopy(`docker://${v.registry.host}/groke/fusion:1.5.0`, `oci:${join(await tempDir(t), 'fusion')}:x`);
});

/** A lock file as a command of ours would leave it, with what the test wants in it. */
async function writeLock(stateDir: string, holder: unknown): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  await writeFile(join(stateDir, 'lock'), typeof holder === 'string' ? holder : JSON.stringify(holder));
}

test('a lock naming a live but unrelated process (its start time differs) is stale and taken over; with the right start time it holds', async (t) => {
  const stateDir = join(await tempDir(t), 'state');
  const other = execa('sleep', ['60'], { reject: false });
  t.teardown(() => void other.kill());
  const pid = other.pid as number;
  const ticks = processStartTicks(pid);
  t.not(ticks, undefined);
  const holder = { pid, host: hostname(), command: 'apply awareness@1.5.0', started: new Date().toISOString() };
  await writeLock(stateDir, { ...holder, startTicks: (ticks ?? 0) + 1 });
  const reused = await runPrune(stateDir);
  t.is(reused.code, 0, reused.stdout);
  t.regex(reused.stderr, /took over the lock of `apply awareness@1\.5\.0`/);
  await writeLock(stateDir, { ...holder, startTicks: ticks });
  const held = await runPrune(stateDir);
  t.is(held.code, 3);
  t.like(held.json.error, { code: 'E_LOCKED', details: { holder: { pid } } });
});

async function runPrune(stateDir: string) {
  const { runCli } = await import('./helpers/cli.js');
  return runCli(['prune', '--json', '--no-progress'], { SEABAG_STATE_DIR: stateDir });
}

test('a lock file holding null, {}, [] , garbage or nothing is stale: taken over, never a crash nor E_LOCKED', async (t) => {
  for (const text of ['null', '{}', '[]', '{"pid":"x"}', 'garbage\u0000\u00ff', '']) {
    const stateDir = join(await tempDir(t), 'state');
    await writeLock(stateDir, text);
    const r = await runPrune(stateDir);
    t.is(r.code, 0, `${JSON.stringify(text)}: ${r.stdout}`);
    t.regex(r.stderr, /took over the lock of `unknown \(not a lock file\)`/, JSON.stringify(text));
    t.is(await stat(join(stateDir, 'lock')).catch(() => undefined), undefined, 'the lock was released');
  }
});

test('temp files a SIGKILL left in the state folder are removed the next time the vessel is opened; a live process’s are not', async (t) => {
  const stateDir = join(await tempDir(t), 'state');
  await mkdir(join(stateDir, 'roots'), { recursive: true });
  const gone = execa('sleep', ['60'], { reject: false });
  const dead = gone.pid as number;
  gone.kill('SIGKILL');
  await gone.catch(() => undefined);
  const left = [
    `.state.json.${dead}.0123456789ab.tmp`,
    `.journal.json.${dead}.0123456789ab.tmp`,
    `lock.${dead}.01234567`,
    `lock.${dead}.01234567.take`,
    `lock.takeover-0123456789abcdef`,
  ];
  for (const name of left) await writeFile(join(stateDir, name), name.startsWith('lock.takeover') ? JSON.stringify({ pid: dead, host: hostname(), command: 'x', started: '' }) : 'partial');
  await writeFile(join(stateDir, 'roots', `.2.root.json.${dead}.0123456789ab.tmp`), '{');
  const live = `.state.json.${process.pid}.ba9876543210.tmp`;
  await writeFile(join(stateDir, live), 'being written');
  const r = await runPrune(stateDir);
  t.is(r.code, 0, r.stdout);
  const names = await readdir(stateDir);
  for (const name of left) t.false(names.includes(name), name);
  t.deepEqual(await readdir(join(stateDir, 'roots')), []);
  t.true(names.includes(live), 'a temp file of a live process stays');
});

/** Starts `n` lock takers (test/helpers/lock-taker.ts), lets them go at once, and returns what each said. */
async function raceForLock(t: Parameters<typeof tempDir>[0], lockPath: string, n: number): Promise<string[]> {
  const dir = await tempDir(t, 'seabag-race-');
  const start = join(dir, 'start');
  const end = join(dir, 'end');
  const script = new URL('./helpers/lock-taker.ts', import.meta.url).pathname;
  const lines: string[][] = [];
  const children = Array.from({ length: n }, (_, i) => {
    lines[i] = [];
    const child = spawn(process.execPath, ['--import', 'tsx', script, lockPath, start, end], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      lines[i]?.push(...parts);
    });
    return new Promise<void>((resolve) => child.once('exit', () => resolve()));
  });
  const until = async (ok: () => boolean): Promise<void> => {
    const deadline = Date.now() + 120_000;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`lock race stuck: ${JSON.stringify(lines)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await until(() => lines.every((l) => l.includes('ready')));
  await writeFile(start, '');
  await until(() => lines.every((l) => l.length >= 2));
  await writeFile(end, '');
  await Promise.all(children);
  return lines.map((l) => l[1] ?? '');
}

test.serial('many takeovers of one stale lock race at once: exactly one proceeds, every other gets E_LOCKED', async (t) => {
  const gone = execa('sleep', ['60'], { reject: false });
  const dead = gone.pid as number;
  gone.kill('SIGKILL');
  await gone;
  const live = execa('sleep', ['60'], { reject: false });
  t.teardown(() => void live.kill());
  const stale: Record<string, string> = {
    'a dead holder': JSON.stringify({ pid: dead, host: hostname(), command: 'import x', started: '' }),
    'a reused pid': JSON.stringify({ pid: live.pid, host: hostname(), command: 'import x', started: '', startTicks: (processStartTicks(live.pid as number) ?? 0) + 7 }),
    'a malformed file': 'null',
  };
  for (const [what, text] of Object.entries(stale)) {
    const stateDir = join(await tempDir(t), 'state');
    await writeLock(stateDir, text);
    const said = await raceForLock(t, join(stateDir, 'lock'), 10);
    t.is(said.filter((s) => s === 'won').length, 1, `${what}: ${said.join(', ')}`);
    t.is(said.filter((s) => s === 'E_LOCKED').length, 9, `${what}: ${said.join(', ')}`);
    const left = (await readdir(stateDir)).filter((n) => n !== 'roots');
    t.deepEqual(left, [], `${what}: no lock, temp file or marker left behind`);
  }
});

test('a closed pipe is not a crash: status, inspect and verify exit 0 quietly when the reader has gone', async (t) => {
  const { BIN } = await import('./helpers/cli.js');
  const stateDir = join(await tempDir(t), 'state');
  for (const args of [['status'], ['inspect', f.v1], ['verify', f.v1, '--trust', f.trust], ['--help']]) {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, SEABAG_STATE_DIR: stateDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    // The reader goes away before the first line: every write the command makes meets EPIPE.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    t.is(code, 0, `${args.join(' ')}: ${stderr}`);
    t.notRegex(stderr, /EPIPE|Error|at .*:\d+:\d+/, `${args.join(' ')} printed nothing about the pipe`);
  }
  // And as a shell runs it: the first line, then head exits.
  const piped = await execa('bash', ['-c', `set -o pipefail; node ${BIN} inspect ${f.v1} --json | head -c 1 >/dev/null`], { reject: false });
  t.is(piped.exitCode, 0, piped.stderr);
});
