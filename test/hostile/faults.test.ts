/**
 * Faults on the vessel: SIGKILL at random points of import and apply (seeded), the registry
 * killed, down, or out of disk mid-import, a read-only state folder, two imports at once, a stale
 * lock, a stick pulled (the bundle truncated under a running import), SIGKILL at each step of a
 * prune, applies that fail half-way (wrong bytes, the registry gone), layers and manifests lost
 * from the registry, and Ctrl-C (SIGINT, SIGTERM) mid-import and mid-apply. After each, the vessel
 * keeps what it had, state.json is valid, and a re-run with good input succeeds.
 */
import { execSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { importBundle, StateDir, isSeabagError } from '../../lib/index.js';
import { buildRandomImage } from '../helpers/images.js';
import { startRegistry } from '../helpers/registry.js';
import { blobDataPath } from '../helpers/registry-storage.js';
import { tempDir } from '../helpers/tools.js';
import { startVessel, type TestVessel } from '../helpers/vessel.js';
import { seeded } from '../helpers/web.js';
import { busyVessel, buildWith, makeFixture, type Fixture } from './fixture.js';
import { invariantHolds, snapshot } from './invariant.js';
import { outcomeOf, Report } from './report.js';

const SOAK = process.env['SEABAG_SOAK'] === '1';
const report = new Report('faults');
let f: Fixture;
/** A release with one 48 MiB layer: long enough to interrupt. */
let cargo: string;

test.before(async () => {
  f = await makeFixture();
  const layout = join(f.work, 'cargo-layout');
  await buildRandomImage(layout, 'cargo-1.0.0', [48 * 1024 * 1024], 'cargo');
  const spec = join(f.work, 'cargo.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: cargo\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/cargo:1.0.0\n    from: oci:${layout}:cargo-1.0.0\n`);
  cargo = await buildWith(spec, join(f.work, 'cargo-1.0.0.bundle'), ['--sign', f.releaseKey]);
});

test.after.always(async () => {
  await report.write();
  await f?.cleanup();
});

/** Whether this machine lets us mount (tmpfs, read-only binds): root with CAP_SYS_ADMIN. */
function canMount(): boolean {
  try {
    // The probe's folder goes whatever the answer (each run left it in /tmp).
    execSync('mkdir -p /tmp/seabag-mount-probe && { mount -t tmpfs -o size=1m tmpfs /tmp/seabag-mount-probe && umount /tmp/seabag-mount-probe; ok=$?; rmdir /tmp/seabag-mount-probe; exit $ok; }', { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function unmount(path: string): void {
  try {
    execSync(`umount -l ${path}`, { stdio: 'ignore' });
  } catch {
    // already unmounted by the test
  }
}

async function vesselRunning14(t: ExecutionContext): Promise<TestVessel> {
  const v = await startVessel(t);
  for (const args of [
    ['import', f.v1, '--trust', f.trust, '--target', 'class-a'],
    ['apply', 'awareness@1.4.0'],
  ]) {
    const r = await v.run(args);
    if (r.code !== 0) throw new Error(r.stdout + r.stderr);
  }
  return v;
}

/** After a crash: the active release as before, state valid, no half-staged release, no mix. */
async function crashInvariant(t: ExecutionContext, v: TestVessel, activeTags: Record<string, string | undefined>, what: string): Promise<boolean> {
  const state = await new StateDir(v.stateDir).load().catch(() => undefined);
  let ok = state !== undefined;
  t.truthy(state, `${what}: state.json valid`);
  const client = await v.client();
  for (const [key, digest] of Object.entries(activeTags)) {
    const [repo, tag] = key.split(':') as [string, string];
    const now = await v.tag(repo, tag);
    if (now !== digest) ok = false;
    t.is(now, digest, `${what}: ${key} unchanged`);
  }
  for (const r of state?.releases ?? []) {
    for (const image of r.images) {
      const pullable = await client.repository(image.repository).getManifest(image.digest).then(
        () => true,
        () => false,
      );
      if (!pullable) ok = false;
      t.true(pullable, `${what}: ${r.version} held in state is complete (${image.repository})`);
    }
  }
  return ok;
}

const IMPORT_POINTS = ['import:verified', 'import:journal', 'import:blob', 'import:blobs', 'import:manifest', 'import:images', 'import:artifacts', 'import:tagged', 'import:saved'];
const SWITCH_POINTS = ['switch:journal', 'switch:tag', 'switch:commit', 'switch:saved'];

test.serial('SIGKILL at seeded random points of import (failpoints and random delays): re-runs complete, 1.4.0 stays active', async (t) => {
  const random = seeded(7);
  const runs = SOAK ? 300 : 30;
  for (let i = 0; i < runs; i += 1) {
    const v = await vesselRunning14(t);
    const activeTags: Record<string, string | undefined> = {};
    for (const repo of ['groke/fusion', 'groke/toolbox', 'seabag/awareness']) for (const tag of await v.tags(repo)) activeTags[`${repo}:${tag}`] = await v.tag(repo, tag);
    let how: string;
    let result;
    if (i % 3 === 2) {
      const delay = Math.floor(random() * 900);
      how = `random delay`;
      const child = v.spawn(['import', f.v2, '--target', 'class-a']);
      await sleep(delay);
      child.kill('SIGKILL');
      result = await child;
    } else {
      const point = IMPORT_POINTS[Math.floor(random() * IMPORT_POINTS.length)] as string;
      const nth = point === 'import:blob' || point === 'import:manifest' ? 1 + Math.floor(random() * 6) : 1;
      how = `failpoint ${point}`;
      result = await v.spawn(['import', f.v2, '--target', 'class-a'], { SEABAG_FAILPOINT: `${point}@${nth}` });
    }
    const killed = result.signal === 'SIGKILL';
    const held = await crashInvariant(t, v, activeTags, `run ${i} (${how})`);
    const rerun = await v.run(['import', f.v2, '--json', '--target', 'class-a']);
    t.is(rerun.code, 0, `run ${i}: ${rerun.stdout}`);
    const status = await v.run(['status', '--json']);
    t.deepEqual(Object.fromEntries((status.json['releases'] as { version: string; state: string }[]).map((r) => [r.version, r.state])), { '1.4.0': 'active', '1.5.0': 'staged' });
    report.add('kills', `SIGKILL during import, ${how === 'random delay' ? 'after a random delay' : 'at a random step'} (seed 7), then import again`, 'killed; re-run exit 0; 1.4.0 active and pullable', `${killed ? 'killed' : 'finished first'}, re-run ${outcomeOf(rerun)}`, held ? 'held' : 'n/a');
    await v.registry.kill();
  }
});

test.serial('SIGKILL at seeded random points of apply: the next command finishes the switch, never a mix', async (t) => {
  const random = seeded(11);
  const runs = SOAK ? 200 : 25;
  const v = await busyVessel(t, f);
  const releases = (await new StateDir(v.stateDir).load()).releases;
  for (let i = 0; i < runs; i += 1) {
    const state = await new StateDir(v.stateDir).load();
    const active = state.releases.find((r) => r.state === 'active');
    const target = releases.find((r) => r.version !== active?.version) as (typeof releases)[number];
    let how: string;
    let result;
    if (i % 4 === 3) {
      how = 'random delay';
      const child = v.spawn(['apply', `awareness@${target.version}`]);
      await sleep(Math.floor(random() * 900));
      child.kill('SIGKILL');
      result = await child;
    } else {
      const point = SWITCH_POINTS[Math.floor(random() * SWITCH_POINTS.length)] as string;
      const nth = point === 'switch:tag' ? 1 + Math.floor(random() * 2) : point === 'switch:commit' ? 1 + Math.floor(random() * 2) : 1;
      how = `failpoint ${point}@${nth}`;
      result = await v.spawn(['apply', `awareness@${target.version}`], { SEABAG_FAILPOINT: `${point}@${nth}` });
    }
    const status = await v.run(['status', '--json']);
    t.is(status.code, 0);
    t.is(status.json['pending'], null, `run ${i}: nothing left pending`);
    const now = await new StateDir(v.stateDir).load();
    const activeNow = now.releases.find((r) => r.state === 'active');
    // Whatever happened, the tags and the commit point all name the release state.json calls active.
    let consistent = activeNow !== undefined;
    for (const image of activeNow?.images ?? []) {
      if (image.tag === undefined) continue;
      const digest = await v.tag(image.repository, image.tag);
      if (digest !== image.digest) consistent = false;
      t.is(digest, image.digest, `run ${i} (${how}): ${image.repository}:${image.tag}`);
    }
    const current = await v.tag('seabag/awareness', 'current');
    if (current !== activeNow?.digest) consistent = false;
    t.is(current, activeNow?.digest, `run ${i}: current names the active release`);
    const killed = result.signal === 'SIGKILL';
    t.true(!killed || activeNow?.version === target.version || how === 'random delay' || how.startsWith('failpoint switch:journal'), `run ${i}: a switch that started was finished`);
    report.add('kills', `SIGKILL during apply, ${how === 'random delay' ? 'after a random delay' : 'at a random step'} (seed 11), then status`, 'the next command finishes the switch; tags and current agree', `${killed ? 'killed' : 'finished first'}, then ${consistent ? 'consistent' : 'MIXED'}`, consistent ? 'held' : 'n/a');
  }
});

test.serial('the registry killed and restarted mid-import: the import completes', async (t) => {
  const v = await vesselRunning14(t);
  const before = await snapshot(v);
  let bounced = false;
  const result = await importBundle(cargo, {
    stateDir: v.stateDir,
    registry: v.registry.host,
    retry: { retries: 8, minDelayMs: 200, maxDelayMs: 2_000 },
    onProgress: (p) => {
      if (!bounced && p.done > 12 * 1024 * 1024) {
        bounced = true;
        void (async () => {
          await v.registry.kill();
          await sleep(800);
          await v.registry.start();
        })();
      }
    },
  });
  t.true(bounced);
  t.is(result.release.name, 'cargo');
  const client = await v.client();
  t.true(await client.repository('groke/cargo').has(result.release.digest) || (await client.repository('seabag/cargo').has(result.release.digest)));
  const held = await invariantHolds(t, v, before, 'registry restarted', true, { newRelease: true });
  report.add('registry', 'the registry killed and restarted mid-import', 'the import retries and completes', 'completed', held ? 'held' : 'n/a');
});

test.serial('the registry down for good mid-import: E_REGISTRY_UNREACHABLE, nothing changed, a re-run completes', async (t) => {
  const v = await vesselRunning14(t);
  const before = await snapshot(v);
  let killed = false;
  const err = await t.throwsAsync(
    importBundle(cargo, {
      stateDir: v.stateDir,
      registry: v.registry.host,
      retry: { retries: 2, minDelayMs: 50, maxDelayMs: 100 },
      onProgress: (p) => {
        if (!killed && p.done > 12 * 1024 * 1024) {
          killed = true;
          void v.registry.kill();
        }
      },
    }),
  );
  t.true(isSeabagError(err, 'E_REGISTRY_UNREACHABLE'), String(err));
  await v.registry.start();
  const held = await invariantHolds(t, v, before, 'registry down');
  report.add('registry', 'the registry killed mid-import and not restarted', 'exit 3 E_REGISTRY_UNREACHABLE', `exit 3 ${(err as { code?: string }).code ?? ''}`, held ? 'held' : 'n/a');
  const rerun = await v.run(['import', cargo, '--json']);
  t.is(rerun.code, 0, rerun.stdout);
});

test.serial("the registry's disk full mid-import: E_DISK_FULL, 1.4.0 intact, the re-run completes once there is room", async (t) => {
  if (!canMount()) {
    report.add('registry', "the registry's disk full (storage on a small tmpfs)", 'exit 3 E_DISK_FULL', 'not run: this machine does not allow mounting a tmpfs', 'n/a');
    t.log('skipped: mounting a tmpfs needs root with CAP_SYS_ADMIN');
    t.pass();
    return;
  }
  const dir = await tempDir(t);
  const storage = join(dir, 'disk');
  await mkdir(storage);
  execSync(`mount -t tmpfs -o size=24m tmpfs ${storage}`);
  t.teardown(() => unmount(storage));
  const registry = await startRegistry({ storageDir: join(storage, 'data') }, t.teardown.bind(t));
  const v: TestVessel = { ...(await startVessel(t)), registry };
  const env = { ...v.env, SEABAG_REGISTRY: registry.host };
  const run = (args: string[]) => v.run(args, env);
  t.is((await run(['import', f.v1, '--trust', f.trust, '--target', 'class-a'])).code, 0);
  t.is((await run(['apply', 'awareness@1.4.0'])).code, 0);
  const { RegistryClient } = await import('../../lib/index.js');
  const client = await RegistryClient.create(registry.host);
  t.teardown(() => client.close());
  const stateBefore = await readFile(join(v.stateDir, 'state.json'), 'utf8');
  const full = await run(['import', cargo, '--json']);
  t.is(full.code, 3, full.stdout);
  t.is(full.json.error?.code, 'E_DISK_FULL');
  t.is(await readFile(join(v.stateDir, 'state.json'), 'utf8'), stateBefore, 'state.json unchanged');
  t.is(await client.repository('groke/fusion').tagDigest('1.4.0'), (await new StateDir(v.stateDir).load()).releases[0]?.images.find((i) => i.repository === 'groke/fusion')?.digest);
  report.add('registry', "the registry's disk full (storage on a 24 MiB tmpfs, a 48 MiB import)", 'exit 3 E_DISK_FULL', outcomeOf(full), 'held');
  execSync(`mount -o remount,size=256m ${storage}`);
  const rerun = await run(['import', cargo, '--json']);
  t.is(rerun.code, 0, rerun.stdout);
});

test.serial('a read-only state folder: E_IO before anything reaches the registry; a re-run completes once writable', async (t) => {
  if (!canMount()) {
    report.add('vessel', 'the state folder read-only', 'exit 3 E_IO', 'not run: this machine does not allow a read-only bind mount', 'n/a');
    t.pass();
    return;
  }
  const v = await vesselRunning14(t);
  const before = await snapshot(v);
  execSync(`mount --bind ${v.stateDir} ${v.stateDir} && mount -o remount,ro,bind ${v.stateDir}`);
  t.teardown(() => unmount(v.stateDir));
  const r = await v.run(['import', f.v2, '--json', '--target', 'class-a']);
  t.is(r.code, 3, r.stdout);
  t.is(r.json.error?.code, 'E_IO');
  t.regex(r.json.error?.message ?? '', /read-only/i);
  t.deepEqual(await v.tags('seabag/awareness'), ['1.4.0', 'current'], 'nothing reached the registry');
  execSync(`umount ${v.stateDir}`);
  const held = await invariantHolds(t, v, before, 'read-only state');
  report.add('vessel', 'the state folder read-only (bind mount)', 'exit 3 E_IO', outcomeOf(r), held ? 'held' : 'n/a');
  t.is((await v.run(['import', f.v2, '--target', 'class-a'])).code, 0);
});

test.serial('two imports at once: the second gets E_LOCKED naming the first, which completes', async (t) => {
  const v = await vesselRunning14(t);
  const first = v.spawn(['import', cargo]);
  const deadline = Date.now() + 20_000;
  while ((await stat(join(v.stateDir, 'lock')).catch(() => undefined)) === undefined && Date.now() < deadline) await sleep(10);
  const second = await v.run(['import', f.v2, '--json', '--target', 'class-a']);
  t.is(second.code, 3, second.stdout);
  t.like(second.json.error, { code: 'E_LOCKED' });
  t.regex(second.json.error?.message ?? '', /import .*cargo-1\.0\.0\.bundle/);
  const done = await first;
  t.is(done.exitCode, 0, done.all);
  report.add('vessel', 'two imports at once', 'the second: exit 3 E_LOCKED; the first completes', `${outcomeOf(second)}; first exit ${done.exitCode}`, 'held');
});

test.serial('a stale lock from a killed import is taken over, and the import finishes', async (t) => {
  const v = await vesselRunning14(t);
  const killed = await v.spawn(['import', cargo], { SEABAG_FAILPOINT: 'import:journal' });
  t.is(killed.signal, 'SIGKILL');
  const lock = JSON.parse(await readFile(join(v.stateDir, 'lock'), 'utf8')) as { pid: number; host: string };
  t.is(lock.host, hostname());
  const r = await v.run(['import', cargo, '--json']);
  t.is(r.code, 0, r.stdout);
  t.regex(r.stderr, /took over the lock/);
  t.regex(r.stderr, /an import of cargo 1\.0\.0 was interrupted/);
  report.add('vessel', 'a stale lock left by a killed import', 'taken over; the import completes', `taken over, ${outcomeOf(r)}`, 'held');
});

test.serial('a stick pulled mid-import (the bundle truncated under it): E_ARCHIVE_TRUNCATED, nothing staged; the full file imports', async (t) => {
  const v = await vesselRunning14(t);
  const before = await snapshot(v);
  const stick = join(await tempDir(t), 'stick.bundle');
  await copyFile(cargo, stick);
  let pulled = false;
  const err = await t.throwsAsync(
    importBundle(stick, {
      stateDir: v.stateDir,
      registry: v.registry.host,
      onProgress: (p) => {
        if (!pulled && p.done > 8 * 1024 * 1024) {
          pulled = true;
          void truncate(stick, 16 * 1024 * 1024);
        }
      },
    }),
  );
  t.true(pulled);
  t.true(isSeabagError(err), String(err));
  const code = (err as { code?: string }).code ?? '';
  t.true(['E_ARCHIVE_TRUNCATED', 'E_SIZE_MISMATCH'].includes(code), code);
  t.is((err as { exitStatus?: number }).exitStatus, 1);
  const held = await invariantHolds(t, v, before, 'stick pulled');
  report.add('vessel', 'a stick pulled mid-import (the bundle truncated under a running import)', 'exit 1 E_ARCHIVE_TRUNCATED', `exit 1 ${code}`, held ? 'held' : 'n/a');
  await rm(stick);
  await copyFile(cargo, stick);
  const rerun = await v.run(['import', stick, '--json']);
  t.is(rerun.code, 0, rerun.stdout);
});

/** Waits until `path` exists (a child process reached a step), or fails after 60 s. */
async function waitFor(path: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await stat(path).catch(() => undefined)) === undefined) {
    if (Date.now() > deadline) throw new Error(`${path} never appeared`);
    await sleep(5);
  }
}

/** States by version, from `status --json`. */
async function statesOf(v: TestVessel): Promise<Record<string, string>> {
  const s = await v.run(['status', '--json']);
  return Object.fromEntries(((s.json['releases'] ?? []) as { version: string; state: string }[]).map((r) => [r.version, r.state]));
}

const PRUNE_POINTS = ['prune:journal', 'prune:saved', 'prune:delete@1', 'prune:delete@3'];

test.serial('SIGKILL at each step of a prune: the next command finishes it; the active and the previous release stay, and rollback works', async (t) => {
  const v = await busyVessel(t, f);
  for (const args of [['import', f.v3], ['apply', 'awareness@1.5.0'], ['apply', 'awareness@1.6.0']]) t.is((await v.run(args)).code, 0, args.join(' '));
  for (const point of PRUNE_POINTS) {
    // 1.4.0 staged, 1.5.0 previous, 1.6.0 active: prune --keep 1 removes 1.4.0 only.
    t.deepEqual(await statesOf(v), { '1.4.0': 'staged', '1.5.0': 'previous', '1.6.0': 'active' }, point);
    const killed = await v.spawn(['prune', '--keep', '1'], { SEABAG_FAILPOINT: point });
    t.is(killed.signal, 'SIGKILL', `${point}: ${killed.all ?? ''}`);
    const status = await v.run(['status', '--json']);
    t.is(status.code, 0, point);
    t.regex(status.stderr, /note: finished the interrupted prune of awareness 1\.4\.0/, point);
    t.is(status.json['pending'], null, point);
    const finished = JSON.stringify(await statesOf(v)) === JSON.stringify({ '1.5.0': 'previous', '1.6.0': 'active' });
    t.true(finished, point);
    t.is(await v.tag('seabag/awareness', '1.4.0'), undefined, `${point}: 1.4.0's manifests were deleted`);
    t.is(await v.tag('groke/fusion', '1.4.0'), undefined, point);
    const back = await v.run(['rollback', 'awareness']);
    t.is(back.code, 0, `${point}: ${back.stderr}`);
    const forth = await v.run(['apply', 'awareness@1.6.0']);
    t.is(forth.code, 0, point);
    const held = finished && back.code === 0 && forth.code === 0;
    report.add('kills', 'SIGKILL at each step of a prune (journal written, state saved, first and third delete), then status', 'the next command finishes the prune; active and previous kept; rollback works', `${killed.signal === 'SIGKILL' ? 'killed' : 'finished first'}, then ${held ? 'finished, rollback ok' : 'NOT finished'}`, held ? 'held' : 'n/a');
    // Stage 1.4.0 again for the next point.
    t.is((await v.run(['import', f.v1, '--allow-downgrade'])).code, 0);
  }
});

test.serial('an apply that fails half-way (the registry answers wrong bytes at each step) is undone: the vessel is exactly as before', async (t) => {
  const v = await busyVessel(t, f);
  t.is((await v.run(['apply', 'awareness@1.5.0'])).code, 0);
  const state = await new StateDir(v.stateDir).load();
  const r14 = state.releases.find((r) => r.version === '1.4.0');
  // A rollback to 1.4.0 moves toolbox:1, then seabag/awareness:current, then the Flux artifact's current.
  const victims: [string, string | undefined][] = [
    ['switch:journal', r14?.images.find((i) => i.repository === 'groke/toolbox')?.digest],
    ['switch:tag', r14?.digest],
    ['switch:commit', r14?.fluxDigest],
  ];
  for (const [point, digest] of victims) {
    const before = await snapshot(v);
    const file = blobDataPath(v.registry, digest ?? '');
    const original = readFileSync(file);
    let hit = false;
    const failed = await v.run(['rollback', 'awareness', '--json'], {}, {
      onStep: (step) => {
        if (step === point && !hit) {
          hit = true;
          writeFileSync(file, Buffer.concat([original, Buffer.from(' ')]));
        }
      },
    });
    writeFileSync(file, original);
    t.true(hit, point);
    t.is(failed.json.error?.code, 'E_DIGEST_MISMATCH', `${point}: ${failed.stdout}`);
    t.is(failed.json.error?.details['undone'], true, point);
    const held = await invariantHolds(t, v, before, `failed at ${point}`);
    report.add('registry', `an apply that fails half-way: the registry answers wrong bytes for the next manifest (after ${point.replace('switch:', '')})`, 'exit 1 E_DIGEST_MISMATCH; every moved tag put back, no journal, state.json unchanged', outcomeOf(failed), held ? 'held' : 'n/a');
  }
  t.is((await v.run(['rollback', 'awareness'])).code, 0, 'the same rollback then succeeds');
});

test.serial('an apply whose registry dies half-way, so the undo fails too: E_SWITCH_INCOMPLETE, status tells each tag, recover --abort restores', async (t) => {
  const v = await busyVessel(t, f);
  t.is((await v.run(['apply', 'awareness@1.5.0'])).code, 0);
  const before = await snapshot(v);
  let killed = false;
  const failed = await v.run(['rollback', 'awareness', '--json'], {}, {
    onStep: (step) => {
      if (step === 'switch:tag' && !killed) {
        killed = true;
        void v.registry.kill();
      }
    },
  });
  await v.registry.start();
  const status = await v.run(['status', '--json']);
  const pending = status.json['pending'] as { failed?: unknown; tags?: unknown[] } | null;
  t.truthy(pending?.failed);
  t.true((pending?.tags?.length ?? 0) >= 1);
  const aborted = await v.run(['recover', '--abort']);
  t.is(aborted.code, 0, aborted.stderr);
  const held = await invariantHolds(t, v, before, 'recover --abort');
  report.add('registry', 'an apply whose registry dies after the first tag move (the undo fails too), then recover --abort', 'exit 3 E_SWITCH_INCOMPLETE; status shows each tag; recover --abort restores all', `${outcomeOf(failed)}; recover exit ${aborted.code}`, held ? 'held' : 'n/a');
});

test.serial('a layer or a manifest lost from the registry: status says incomplete, apply refuses and changes nothing, re-import pushes only what is missing', async (t) => {
  const v = await busyVessel(t, f);
  const state = await new StateDir(v.stateDir).load();
  const [r14, r15] = ['1.4.0', '1.5.0'].map((ver) => state.releases.find((r) => r.version === ver));
  const only15 = (repo: string): string[] => (r15?.content[repo] ?? []).filter((d) => !(r14?.content[repo] ?? []).includes(d));
  const fusion15 = r15?.images.find((i) => i.repository === 'groke/fusion')?.digest;
  const losses: [string, string | undefined][] = [
    ['a layer only 1.5.0 uses', only15('groke/fusion').find((d) => d !== fusion15 && !(r15?.images.some((i) => i.digest === d) ?? false))],
    ["1.5.0's toolbox image manifest", r15?.images.find((i) => i.repository === 'groke/toolbox')?.digest],
  ];
  for (const [what, digest] of losses) {
    t.truthy(digest, what);
    await rm(blobDataPath(v.registry, digest ?? ''));
    const status = await v.run(['status', '--json']);
    const r = (status.json['releases'] as { version: string; complete: boolean | null }[]).find((x) => x.version === '1.5.0');
    t.is(r?.complete, false, what);
    const before = await snapshot(v);
    const refused = await v.run(['apply', 'awareness@1.5.0', '--json']);
    t.is(refused.json.error?.code, 'E_BLOBS_MISSING', what);
    // Nothing moved; only 1.5.0 (not pullable whole) is left out of the pull check.
    const held = await invariantHolds(t, v, { ...before, releases: before.releases.filter((x) => x.version !== '1.5.0') }, `${what} lost`);
    const repaired = await v.run(['import', f.v2, '--json']);
    t.is(repaired.code, 0, repaired.stdout);
    const pushed = (repaired.json['blobs'] as { pushed: number }).pushed;
    t.true(pushed >= 1 && pushed <= 2, `${what}: pushed ${pushed}`);
    const after = (await v.run(['status', '--json'])).json['releases'] as { complete: boolean | null }[];
    t.true(after.every((x) => x.complete === true), what);
    report.add('registry', `${what} lost from the registry (its file deleted, as disk trouble or a careless garbage-collect would)`, 'status: incomplete; apply exit 1 E_BLOBS_MISSING, nothing moved; re-import pushes only what is missing', `${outcomeOf(refused)}; re-import pushed ${pushed}`, held ? 'held' : 'n/a');
  }
  t.is((await v.run(['apply', 'awareness@1.5.0'])).code, 0);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test.serial(`${signal} mid-import stops cleanly: exit 130, "interrupted: nothing that runs has changed", and the same command resumes`, async (t) => {
    const v = await vesselRunning14(t);
    const before = await snapshot(v);
    const child = v.spawn(['import', cargo]);
    await waitFor(join(v.stateDir, 'journal.json'));
    child.kill(signal);
    const result = await child;
    t.is(result.exitCode, 130, result.all);
    t.regex(result.stderr, /^interrupted: nothing that runs has changed; run the same command to resume$/m);
    t.notRegex(result.stderr, /error\[|at .*\.m?js:\d+/, 'no error line, no stack');
    const held = await invariantHolds(t, v, before, signal, false);
    report.add('kills', `${signal} mid-import (as Ctrl-C or a service stop would send)`, 'exit 130 "interrupted: nothing that runs has changed"; the same command resumes', `exit ${result.exitCode ?? result.signal}`, held ? 'held' : 'n/a');
    const again = await v.run(['import', cargo, '--json']);
    t.is(again.code, 0, again.stdout);
  });
}

test.serial('the first import interrupted: registry, class and trust root were pinned together, so a bare re-run needs no flags', async (t) => {
  const v = await startVessel(t);
  const noEnv = { SEABAG_REGISTRY: '' };
  const child = v.spawn(['import', cargo, '--trust', f.trust, '--target', 'class-a', '--registry', v.registry.host], noEnv);
  await waitFor(join(v.stateDir, 'journal.json'));
  child.kill('SIGINT');
  const result = await child;
  t.is(result.exitCode, 130, result.all);
  const bare = await v.run(['import', cargo, '--json'], noEnv);
  t.is(bare.code, 0, bare.stdout);
  const state = await new StateDir(v.stateDir).load();
  t.like(state, { registry: { host: v.registry.host }, target: 'class-a' });
  report.add('kills', 'SIGINT during the first import of a vessel, then the same import with no flags', 'exit 130; the bare re-run finds registry, class and trust root pinned', `exit ${result.exitCode ?? result.signal}, re-run ${outcomeOf(bare)}`, 'held');
});

test.serial('Ctrl-C mid-apply: the moved tags go back, exit 130 with "nothing that runs has changed", and the same apply then works', async (t) => {
  const v = await busyVessel(t, f);
  const before = await snapshot(v);
  const stop = new AbortController();
  const r = await v.run(['apply', 'awareness@1.5.0'], {}, {
    signal: stop.signal,
    onStep: (step) => {
      if (step === 'switch:tag') stop.abort(new Error('interrupted by SIGINT'));
    },
  });
  t.is(r.code, 130, r.stderr);
  t.regex(r.stderr, /^interrupted: nothing that runs has changed \(new tag\(s\) groke\/fusion:1\.5\.0 stay, naming 1\.5\.0\); run the same command to resume$/m);
  const state = await readFile(join(v.stateDir, 'state.json'), 'utf8');
  const held = state === before.state && (await v.tag('groke/toolbox', '1')) === before.tags['groke/toolbox']?.['1'] && (await v.tag('seabag/awareness', 'current')) === before.tags['seabag/awareness']?.['current'];
  t.true(held, 'state.json, toolbox:1 and current as before');
  report.add('kills', 'Ctrl-C mid-apply, after the first tag moved', 'exit 130; the moved tags put back; the same apply then works', `exit ${r.code}`, held ? 'held' : 'n/a');
  t.is((await v.run(['apply', 'awareness@1.5.0'])).code, 0);
});
