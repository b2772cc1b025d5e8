/**
 * The vessel side against the real registry: import stages without changing what runs, apply
 * and rollback move the tags and the commit point, containerd pulls and runs what was applied,
 * and crashes at every step are finished by the next command.
 */
import { mkdtemp, readFile, rm, writeFile, chmod, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import test from 'ava';
import { execa } from 'execa';
import { openBundle, parsePrivateKey, signEnvelope, type ReleaseDocument } from '../lib/index.js';
import { envelopeOf, packBundle, replaceSignature, swapSignedPayload, unpackBundle } from './helpers/bundles.js';
import { exampleBundles } from './helpers/example.js';
import { startContainerd } from './helpers/containerd.js';
import { blobDataPath } from './helpers/registry-storage.js';
import { runCli } from './helpers/cli.js';
import { skopeoCopy, skopeoInspect, tempDir } from './helpers/tools.js';
import { startVessel, type TestVessel } from './helpers/vessel.js';

let work: string;
let trust: string;
let v1: string;
let v2: string;
let release1: ReleaseDocument;
let release2: ReleaseDocument;

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-vessel-fixture-'));
  ({ trust, v1, v2 } = await exampleBundles(work));
  for (const [path, set] of [
    [v1, (r: ReleaseDocument) => (release1 = r)],
    [v2, (r: ReleaseDocument) => (release2 = r)],
  ] as const) {
    const b = await openBundle(path);
    set(b.release);
    await b.close();
  }
});

test.after.always(async () => {
  await rm(work, { recursive: true, force: true });
});

function image(release: ReleaseDocument, repository: string): ReleaseDocument['images'][number] {
  const found = release.images.find((i) => i.repository === repository);
  if (found === undefined) throw new Error(`no ${repository}`);
  return found;
}

async function importOk(v: TestVessel, bundle: string, ...extra: string[]): Promise<Record<string, unknown>> {
  const r = await v.run(['import', bundle, '--json', '--target', 'class-a', ...extra]);
  if (r.code !== 0) throw new Error(`import failed: ${r.stdout}${r.stderr}`);
  return r.json;
}

async function statusOf(v: TestVessel): Promise<{ versions: Record<string, string>; json: Record<string, unknown> }> {
  const r = await v.run(['status', '--json']);
  const releases = (r.json['releases'] ?? []) as { version: string; state: string }[];
  return { versions: Object.fromEntries(releases.map((x) => [x.version, x.state])), json: r.json };
}

const WORKLOAD_REPOS = ['groke/fusion', 'groke/radar', 'groke/toolbox', 'groke/camera-broker'];

/** The vessel's state.json, the record of the release it holds first, and a way to write an edited one back. */
async function heldRecord(v: TestVessel): Promise<{ held: { content: Record<string, string[]>; manifests?: string[] }; save: () => Promise<void> }> {
  const path = join(v.stateDir, 'state.json');
  const state = JSON.parse(await readFile(path, 'utf8')) as { releases: { content: Record<string, string[]>; manifests?: string[] }[] };
  const held = state.releases[0];
  if (held === undefined) throw new Error('state.json holds no release');
  return { held, save: () => writeFile(path, JSON.stringify(state, null, 2)) };
}

async function workloadTags(v: TestVessel): Promise<Record<string, Record<string, string | undefined>>> {
  const out: Record<string, Record<string, string | undefined>> = {};
  for (const repo of WORKLOAD_REPOS) {
    out[repo] = {};
    for (const tag of await v.tags(repo)) out[repo][tag] = await v.tag(repo, tag);
  }
  return out;
}

test('import stages every image where skopeo finds it, creates no workload tag, and keeps upstream paths', async (t) => {
  const v = await startVessel(t);
  const result = await importOk(v, v1, '--trust', trust);
  t.like(result, { ok: true, release: { name: 'awareness', version: '1.4.0' }, alreadyHeld: false, rootsPinned: [1] });
  for (const img of release1.images) {
    const found = await skopeoInspect(`${v.registry.host}/${img.repository}@${img.digest}`);
    t.is(found.Digest, img.digest, img.ref);
  }
  t.deepEqual(
    release1.images.map((i) => i.repository).sort(),
    ['groke/camera-broker', 'groke/fusion', 'groke/radar', 'groke/toolbox'],
    'hosts dropped; docker.io/groke/toolbox keeps its path',
  );
  const tags = await workloadTags(v);
  for (const repo of WORKLOAD_REPOS) t.deepEqual(tags[repo], {}, `import created no tag in ${repo}`);
  t.deepEqual(await v.tags('seabag/awareness'), ['1.4.0']);
  t.deepEqual((await statusOf(v)).versions, { '1.4.0': 'staged' });
});

test('apply moves tags then current; containerd runs what was applied; rollback moves them back', async (t) => {
  const v = await startVessel(t);
  const ctr = await startContainerd(t.teardown.bind(t));
  await importOk(v, v1, '--trust', trust);
  const a1 = await v.run(['apply', 'awareness@1.4.0', '--json']);
  t.is(a1.code, 0, a1.stdout);
  t.is(await v.tag('groke/toolbox', '1'), image(release1, 'groke/toolbox').digest);
  t.is(await v.tag('seabag/awareness', 'current'), (a1.json['release'] as { digest: string }).digest);
  t.is(await ctr.pullAndRun(`${v.registry.host}/groke/fusion:1.4.0`), 'awareness fusion 1.4.0');
  t.is(await ctr.pullAndRun(`${v.registry.host}/groke/toolbox:1`), 'toolbox 1.0.0');

  const before = await workloadTags(v);
  await importOk(v, v2);
  t.deepEqual(await workloadTags(v), before, 'importing 1.5.0 moved no workload tag');
  t.deepEqual((await statusOf(v)).versions, { '1.4.0': 'active', '1.5.0': 'staged' });
  t.is(await ctr.pullAndRun(`${v.registry.host}/groke/toolbox:1`), 'toolbox 1.0.0', 'what runs is unchanged');

  const a2 = await v.run(['apply', 'awareness@1.5.0', '--json']);
  t.is(a2.code, 0, a2.stdout);
  t.is(await v.tag('groke/toolbox', '1'), image(release2, 'groke/toolbox').digest);
  t.is(await v.tag('groke/fusion', '1.5.0'), image(release2, 'groke/fusion').digest);
  t.is(await v.tag('seabag/awareness', 'current'), (a2.json['release'] as { digest: string }).digest);
  t.deepEqual((await statusOf(v)).versions, { '1.4.0': 'previous', '1.5.0': 'active' });
  t.is(await ctr.pullAndRun(`${v.registry.host}/groke/fusion:1.5.0`), 'awareness fusion 1.5.0');
  t.is(await ctr.pullAndRun(`${v.registry.host}/groke/toolbox:1`), 'toolbox 1.0.1');

  const back = await v.run(['rollback', 'awareness', '--json']);
  t.is(back.code, 0, back.stdout);
  t.like(back.json, { release: { version: '1.4.0' }, from: { version: '1.5.0' } });
  t.is(await v.tag('groke/toolbox', '1'), image(release1, 'groke/toolbox').digest);
  t.is(await v.tag('seabag/awareness', 'current'), (a1.json['release'] as { digest: string }).digest);
  t.deepEqual((await statusOf(v)).versions, { '1.4.0': 'active', '1.5.0': 'previous' });
  t.is(await ctr.pullAndRun(`${v.registry.host}/groke/toolbox:1`), 'toolbox 1.0.0');
});

test('the manifests are published as a Flux OCI artifact, tagged with the version, and current after apply', async (t) => {
  const v = await startVessel(t);
  await importOk(v, v1, '--trust', trust);
  const repo = (await v.client()).repository('seabag/awareness/manifests');
  const { bytes } = await repo.getManifest('1.4.0');
  const manifest = JSON.parse(bytes.toString()) as { config: { mediaType: string }; layers: { mediaType: string; digest: `sha256:${string}`; size: number }[] };
  t.is(manifest.config.mediaType, 'application/vnd.cncf.flux.config.v1+json');
  t.is(manifest.layers[0]?.mediaType, 'application/vnd.cncf.flux.content.v1.tar+gzip');
  const layer = manifest.layers[0]!;
  const chunks: Buffer[] = [];
  for await (const c of await repo.fetch({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size })) chunks.push(c as Buffer);
  const tarText = gunzipSync(Buffer.concat(chunks)).toString('latin1');
  t.regex(tarText, /k8s\/fusion\.yaml/);
  t.regex(tarText, /devices\/bow-camera\.yaml/);
  t.true(tarText.includes(`image: ${v.registry.host}/groke/fusion@${image(release1, 'groke/fusion').digest}`), 'image hosts point at the vessel registry');
  t.is(await v.tag('seabag/awareness/manifests', 'current'), undefined);
  t.is((await v.run(['apply', 'awareness@1.4.0'])).code, 0);
  t.is(await v.tag('seabag/awareness/manifests', 'current'), await v.tag('seabag/awareness/manifests', '1.4.0'));
});

test('a lower version is E_DOWNGRADE and changes nothing; --allow-downgrade stages it; a wrong class is E_TARGET_MISMATCH', async (t) => {
  const v = await startVessel(t);
  await importOk(v, v2, '--trust', trust);
  const state = await readFile(join(v.stateDir, 'state.json'), 'utf8');
  const down = await v.run(['import', v1, '--json']);
  t.is(down.code, 1);
  t.like(down.json.error, { code: 'E_DOWNGRADE', details: { version: '1.4.0', newest: '1.5.0' } });
  t.is(await readFile(join(v.stateDir, 'state.json'), 'utf8'), state, 'state.json untouched');
  t.is(await v.tag('seabag/awareness', '1.4.0'), undefined, 'nothing reached the registry');
  t.false((await v.tags('groke/fusion')).length > 0);
  const forced = await v.run(['import', v1, '--json', '--allow-downgrade']);
  t.is(forced.code, 0, forced.stdout);
  t.deepEqual((await statusOf(v)).versions, { '1.4.0': 'staged', '1.5.0': 'staged' });

  const other = await startVessel(t);
  const wrong = await other.run(['import', v1, '--json', '--trust', trust, '--target', 'class-b']);
  t.is(wrong.code, 1);
  t.like(wrong.json.error, { code: 'E_TARGET_MISMATCH', details: { targets: ['class-a'], target: 'class-b' } });
  const none = await other.run(['import', v1, '--json', '--trust', trust]);
  t.is(none.json.error?.code, 'E_TARGET_MISMATCH');
  t.deepEqual(await other.tags('seabag/awareness'), []);
});

test('re-importing the same bundle pushes nothing', async (t) => {
  const v = await startVessel(t);
  const first = await importOk(v, v1, '--trust', trust);
  t.true((first['bytesPushed'] as number) > 1_000_000);
  const again = await importOk(v, v1);
  t.like(again, { bytesPushed: 0, alreadyHeld: true, blobs: { pushed: 0, mounted: 0 } });
});

test('a re-import is judged whole before its early HEADs count: the held release under a signature that no longer verifies is refused (exit 1) though the registry holds all of it', async (t) => {
  const v = await startVessel(t);
  await importOk(v, v1, '--trust', trust);
  // The same release manifest (the vessel's record matches, so the re-import's HEADs start while
  // admission runs), with another statement under the signature.
  const forged = join(work, 'forged-reimport.bundle');
  await swapSignedPayload(v1, forged);
  // Spawned: a refused import must also end at once, with no request of the early check left running.
  const r = await v.spawn(['import', forged, '--json', '--target', 'class-a']);
  t.is(r.exitCode, 1, r.all);
  t.is((JSON.parse(r.stdout) as { error: { code: string } }).error.code, 'E_SIGNATURE_INVALID');
  t.like(await importOk(v, v1), { alreadyHeld: true, bytesPushed: 0 });
});

test('the held-release fast path is not fooled by a re-signed bundle: the same release signed by a key the vessel does not trust is refused (exit 1), nothing changes', async (t) => {
  const v = await startVessel(t);
  await importOk(v, v1, '--trust', trust);
  const before = await readFile(join(v.stateDir, 'state.json'));
  const key = join(await tempDir(t), 'stranger.key');
  t.is((await runCli(['keygen', key])).code, 0);
  // The very statement the trusted signer signed (same release manifest), signed by a stranger.
  const parts = await unpackBundle(v1);
  const envelope = JSON.parse((envelopeOf(parts) as Buffer).toString()) as { payload: string; payloadType: string };
  const stranger = signEnvelope(Buffer.from(envelope.payload, 'base64'), envelope.payloadType, [parsePrivateKey(await readFile(key))]);
  replaceSignature(parts, Buffer.from(JSON.stringify(stranger)));
  const resigned = join(await tempDir(t), 'resigned.bundle');
  await packBundle(parts, resigned);
  const r = await v.run(['import', resigned, '--json', '--target', 'class-a']);
  t.is(r.code, 1, r.stdout);
  t.is(r.json.error?.code, 'E_KEY_UNTRUSTED');
  t.deepEqual(await readFile(join(v.stateDir, 'state.json')), before, 'state.json untouched');
});

test('the held-release fast path is not fooled by a state.json whose record leaves out a layer the registry lost: the re-import pushes it again', async (t) => {
  const v = await startVessel(t);
  await importOk(v, v1, '--trust', trust);
  const { held, save } = await heldRecord(v);
  const fusion = image(release1, 'groke/fusion');
  const layer = (held.content['groke/fusion'] ?? []).find((d) => d !== fusion.digest && !(held.manifests ?? []).includes(d));
  if (layer === undefined) throw new Error('no layer to lose');
  // The record forgets the layer (edited by hand, or damaged), and the registry loses it.
  held.content['groke/fusion'] = (held.content['groke/fusion'] ?? []).filter((d) => d !== layer);
  await save();
  await rm(blobDataPath(v.registry, layer));
  const again = await importOk(v, v1);
  t.like(again, { alreadyHeld: true });
  t.true((again['blobs'] as { pushed: number }).pushed >= 1, JSON.stringify(again));
  // The record is whole again, and the image pulls.
  t.true((await heldRecord(v)).held.content['groke/fusion']?.includes(layer));
  await skopeoCopy(`docker://${v.registry.host}/groke/fusion@${fusion.digest}`, `oci:${join(await tempDir(t), 'fusion')}:x`);
  t.like(await importOk(v, v1), { alreadyHeld: true, bytesPushed: 0 });
});

test('which digests state.json calls manifests only saves requests: a record that swaps them is still answered right (status complete, re-import pushes nothing, apply proceeds), and a layer lost is still found', async (t) => {
  const v = await startVessel(t);
  await importOk(v, v1, '--trust', trust);
  const { held, save } = await heldRecord(v);
  const all = [...new Set(Object.values(held.content).flat())];
  const manifests = new Set(held.manifests);
  t.true(manifests.size >= release1.images.length + 2, 'the import records the images\', the release\'s and the Flux artifact\'s manifests');
  for (const i of release1.images) t.true(manifests.has(i.digest), i.ref);
  held.manifests = all.filter((d) => !manifests.has(d)).sort();
  await save();
  const status = await v.run(['status', '--json']);
  t.like((status.json['releases'] as object[])[0], { complete: true });
  t.like(await importOk(v, v1), { alreadyHeld: true, bytesPushed: 0 });
  t.is((await v.run(['apply', 'awareness@1.4.0'])).code, 0);
  // With the swapped record, a layer lost is still missing, by name.
  const fusion = image(release1, 'groke/fusion');
  const layer = (held.content['groke/fusion'] ?? []).find((d) => !manifests.has(d) && d !== fusion.digest);
  await rm(blobDataPath(v.registry, layer ?? ''));
  const after = await v.run(['status', '--json']);
  const shown = (after.json['releases'] as { complete: boolean; missing?: string[] }[])[0];
  t.like(shown, { complete: false });
  t.true(shown?.missing?.some((m) => m === `groke/fusion@${layer ?? ''}`), JSON.stringify(shown));
});

test('import killed with SIGKILL before, during and after the pushes: the re-run completes and 1.4.0 stays active and pullable', async (t) => {
  const points = ['import:verified', 'import:journal', 'import:blob@1', 'import:blob@4', 'import:images', 'import:artifacts', 'import:tagged', 'import:saved'];
  for (const point of points) {
    const v = await startVessel(t);
    await importOk(v, v1, '--trust', trust);
    t.is((await v.run(['apply', 'awareness@1.4.0'])).code, 0);
    const activeTags = await workloadTags(v);
    const killed = await v.spawn(['import', v2, '--target', 'class-a'], { SEABAG_FAILPOINT: point });
    t.is(killed.signal, 'SIGKILL', `${point}: the import was killed (${killed.all ?? ''})`);
    // Throughout, the active release is untouched and pullable.
    t.deepEqual(await workloadTags(v), activeTags, point);
    t.is((await skopeoInspect(`${v.registry.host}/groke/fusion:1.4.0`)).Digest, image(release1, 'groke/fusion').digest);
    const rerun = await v.run(['import', v2, '--json', '--target', 'class-a']);
    t.is(rerun.code, 0, `${point}: ${rerun.stdout}`);
    if (point !== 'import:verified') t.regex(rerun.stderr, /note: an import of awareness 1\.5\.0 (was interrupted|had finished)/, point);
    t.deepEqual((await statusOf(v)).versions, { '1.4.0': 'active', '1.5.0': 'staged' }, point);
    t.deepEqual(await workloadTags(v), activeTags, point);
    for (const img of release2.images) t.is((await skopeoInspect(`${v.registry.host}/${img.repository}@${img.digest}`)).Digest, img.digest);
  }
});

test('apply killed between tag moves is finished by the next command; status never shows a mix', async (t) => {
  for (const point of ['switch:journal', 'switch:tag@1', 'switch:commit@1', 'switch:saved']) {
    const v = await startVessel(t);
    await importOk(v, v1, '--trust', trust);
    t.is((await v.run(['apply', 'awareness@1.4.0'])).code, 0);
    await importOk(v, v2);
    const killed = await v.spawn(['apply', 'awareness@1.5.0'], { SEABAG_FAILPOINT: point });
    t.is(killed.signal, 'SIGKILL', point);
    const s = await v.run(['status', '--json']);
    t.is(s.code, 0);
    t.regex(s.stderr, /note: finished the interrupted apply of awareness 1\.5\.0/, point);
    t.is(s.json['pending'], null);
    t.deepEqual(Object.fromEntries((s.json['releases'] as { version: string; state: string }[]).map((r) => [r.version, r.state])), { '1.4.0': 'previous', '1.5.0': 'active' }, point);
    for (const img of release2.images) if (img.tag !== undefined) t.is(await v.tag(img.repository, img.tag), img.digest, `${point}: ${img.repository}:${img.tag}`);
    t.is(await v.tag('seabag/awareness', 'current'), await v.tag('seabag/awareness', '1.5.0'), point);
  }
});

test('a second import while one runs is E_LOCKED naming the holder; a lock left by a dead process is taken over', async (t) => {
  const v = await startVessel(t);
  await importOk(v, v1, '--trust', trust);
  const holder = execa('sleep', ['30']);
  t.teardown(() => void holder.kill());
  const { hostname } = await import('node:os');
  await writeFile(join(v.stateDir, 'lock'), JSON.stringify({ pid: holder.pid, host: hostname(), command: 'import other.bundle', started: new Date().toISOString() }));
  const locked = await v.run(['import', v2, '--json']);
  t.is(locked.code, 3);
  t.like(locked.json.error, { code: 'E_LOCKED', details: { holder: { command: 'import other.bundle', pid: holder.pid } } });
  holder.kill('SIGKILL');
  await holder.catch(() => undefined);
  const after = await v.run(['import', v2, '--json']);
  t.is(after.code, 0, after.stdout);
  t.regex(after.stderr, /note: took over the lock of `import other.bundle`/);
});

test('the bundle is read while the vessel is locked, yet the vessel\'s refusals come first: a truncated bundle on a locked vessel is E_LOCKED, on a vessel with no trust root E_TRUST_REQUIRED, and nothing is written', async (t) => {
  const cut = join(await tempDir(t), 'cut.bundle');
  const whole = await readFile(v2);
  await writeFile(cut, whole.subarray(0, Math.floor(whole.length / 2)));
  const fresh = await startVessel(t);
  const untrusted = await fresh.run(['import', cut, '--json']);
  t.is(untrusted.code, 2, untrusted.stdout);
  t.is(untrusted.json.error?.code, 'E_TRUST_REQUIRED');
  const v = await startVessel(t);
  await importOk(v, v1, '--trust', trust);
  const before = await readFile(join(v.stateDir, 'state.json'));
  const holder = execa('sleep', ['30']);
  t.teardown(() => void holder.kill());
  const { hostname } = await import('node:os');
  await writeFile(join(v.stateDir, 'lock'), JSON.stringify({ pid: holder.pid, host: hostname(), command: 'import other.bundle', started: new Date().toISOString() }));
  const locked = await v.run(['import', cut, '--json']);
  t.is(locked.code, 3, locked.stdout);
  t.is(locked.json.error?.code, 'E_LOCKED');
  holder.kill('SIGKILL');
  await holder.catch(() => undefined);
  t.deepEqual(await readFile(join(v.stateDir, 'state.json')), before);
  // Unlocked, the same bundle is refused for what it is.
  const refused = await v.run(['import', cut, '--json']);
  t.is(refused.code, 1, refused.stdout);
  t.is(refused.json.error?.code, 'E_ARCHIVE_TRUNCATED');
});

test('staged content survives the registry garbage collection', async (t) => {
  const v = await startVessel(t);
  await importOk(v, v1, '--trust', trust);
  t.is((await v.run(['apply', 'awareness@1.4.0'])).code, 0);
  await importOk(v, v2);
  await v.registry.stop();
  const gc = await v.registry.garbageCollect();
  await v.registry.start();
  t.regex(gc, /blobs marked/);
  const dir = await tempDir(t);
  for (const img of release2.images) {
    // A full copy reads every blob of the image.
    await skopeoCopy(`docker://${v.registry.host}/${img.repository}@${img.digest}`, `oci:${join(dir, img.repository.replace('/', '-'))}:x`);
  }
  const applied = await v.run(['apply', 'awareness@1.5.0', '--json']);
  t.is(applied.code, 0, applied.stdout);
});

test('the kubectl deployer applies manifests pointing at the vessel registry and waits for rollouts (recording stand-in, no API server here)', async (t) => {
  // No Kubernetes API server can run on these machines, so `kubectl` is a stand-in that records
  // each call (arguments and stdin) and fails a rollout when told to.
  const v = await startVessel(t);
  const dir = await tempDir(t);
  const log = join(dir, 'calls.log');
  const kubectl = join(dir, 'kubectl');
  await writeFile(
    kubectl,
    `#!/bin/sh\nn=$(cat ${dir}/count 2>/dev/null || echo 0)\necho $((n + 1)) > ${dir}/count\nf=${dir}/call-$n\necho "$@" > "$f.args"\nif [ "$1" = apply ]; then cat > "$f.stdin"; fi\necho "$@" >> ${log}\nif [ "$1" = rollout ] && [ -n "$FAIL_DIGEST" ] && grep -q "$FAIL_DIGEST" ${dir}/call-*.stdin 2>/dev/null && [ ! -f ${dir}/failed ]; then touch ${dir}/failed; echo "deployment fusion exceeded its progress deadline" >&2; exit 1; fi\n`,
  );
  await chmod(kubectl, 0o755);
  await importOk(v, v1, '--trust', trust);
  const env = { SEABAG_KUBECTL: kubectl };
  const applied = await v.run(['apply', 'awareness@1.4.0', '--deploy', 'kubectl', '--json'], env);
  t.is(applied.code, 0, applied.stdout);
  const calls = (await readFile(log, 'utf8')).trim().split('\n');
  t.deepEqual(calls, [
    'apply -f -',
    'apply -f -',
    'apply -f -',
    'apply -f -',
    'rollout status deployment/fusion -n awareness --timeout=300s',
    'rollout status daemonset/radar-reader -n awareness --timeout=300s',
  ]);
  const applyStdin = (await Promise.all([0, 1, 2, 3].map((i) => readFile(join(dir, `call-${i}.stdin`), 'utf8')))).join('\n');
  t.true(applyStdin.includes(`image: ${v.registry.host}/groke/fusion@${image(release1, 'groke/fusion').digest}`));
  t.true(applyStdin.includes(`image: ${v.registry.host}/groke/toolbox@${image(release1, 'groke/toolbox').digest}`));
  t.true(applyStdin.includes('kind: Configuration'), 'the Akri configurations are applied too');
  t.false(/image: (shore\.example\.com|groke\/)/.test(applyStdin), 'no image is left pointing off the vessel');

  // 1.5.0 fails its rollout: switched back to 1.4.0, 1.5.0 marked failed, exit 3.
  await importOk(v, v2);
  const failed = await v.run(['apply', 'awareness@1.5.0', '--deploy', 'kubectl', '--json'], { ...env, FAIL_DIGEST: image(release2, 'groke/fusion').digest });
  t.is(failed.code, 3);
  t.is(failed.json.error?.code, 'E_ROLLOUT_FAILED');
  t.regex(failed.json.error?.message ?? '', /progress deadline.*switched back to 1\.4\.0/s);
  t.deepEqual((await statusOf(v)).versions, { '1.4.0': 'active', '1.5.0': 'failed' });
  t.is(await v.tag('groke/toolbox', '1'), image(release1, 'groke/toolbox').digest, 'tags moved back');
  t.is(await v.tag('seabag/awareness', 'current'), await v.tag('seabag/awareness', '1.4.0'), 'the commit point never moved');
  const last = (await readFile(log, 'utf8')).trim().split('\n');
  t.true(last.filter((l) => l === 'apply -f -').length >= 12, '1.4.0 was applied again after the failure');
});

test('prune keeps the newest N, the active and (without --force) the previous release, deletes the rest, and GC leaves what is kept pullable', async (t) => {
  const v = await startVessel(t);
  await importOk(v, v1, '--trust', trust);
  await importOk(v, v2);
  t.is((await v.run(['apply', 'awareness@1.4.0'])).code, 0);
  // 1.4.0 is active: kept even though 1.5.0 is newer.
  const keepActive = await v.run(['prune', '--keep', '1', '--json']);
  t.is(keepActive.code, 0, keepActive.stdout);
  t.deepEqual(keepActive.json['removed'], []);
  t.is((await v.run(['apply', 'awareness@1.5.0'])).code, 0);
  const keepPrevious = await v.run(['prune', '--keep', '1', '--json']);
  t.deepEqual(keepPrevious.json['removed'], [], '1.4.0 is the rollback target now');
  const pruned = await v.run(['prune', '--keep', '1', '--force', '--json']);
  t.is(pruned.code, 0, pruned.stdout);
  t.deepEqual((pruned.json['removed'] as { version: string }[]).map((r) => r.version), ['1.4.0']);
  t.regex(String(pruned.json['gc']), /garbage-collect/);
  t.deepEqual((await statusOf(v)).versions, { '1.5.0': 'active' });
  t.is(await v.tag('seabag/awareness', '1.4.0'), undefined);
  t.is(await v.tag('groke/fusion', '1.4.0'), undefined, 'the pruned image and its tag are gone');
  t.is(await v.tag('groke/radar', '2.0.0'), image(release2, 'groke/radar').digest, 'a manifest both releases use stays');
  await v.registry.stop();
  await v.registry.garbageCollect();
  await v.registry.start();
  const dir = await tempDir(t);
  for (const img of release2.images) await skopeoCopy(`docker://${v.registry.host}/${img.repository}@${img.digest}`, `oci:${join(dir, img.repository.replace('/', '-'))}:x`);
  t.pass();
});

test('status --json: releases with name, version, state and digest, and pending null', async (t) => {
  const v = await startVessel(t);
  const empty = await v.run(['status', '--json']);
  t.like(empty.json, { ok: true, releases: [], pending: null });
  await importOk(v, v1, '--trust', trust);
  const s = await v.run(['status', '--json']);
  const [r] = s.json['releases'] as { name: string; version: string; state: string; digest: string }[];
  t.like(r, { name: 'awareness', version: '1.4.0', state: 'staged' });
  t.regex(r?.digest ?? '', /^sha256:[a-f0-9]{64}$/);
  const text = await v.run(['status']);
  t.regex(text.stdout, /awareness\s+1\.4\.0\s+staged/);
});

test('the first import needs --trust; later a different root is refused; apply of an unknown release is E_RELEASE_UNKNOWN', async (t) => {
  const v = await startVessel(t);
  const none = await v.run(['import', v1, '--json', '--target', 'class-a']);
  t.is(none.code, 2);
  t.is(none.json.error?.code, 'E_TRUST_REQUIRED');
  await importOk(v, v1, '--trust', trust);
  const dir = await tempDir(t);
  await mkdir(join(dir, 'k'));
  await runCli(['keygen', join(dir, 'k', 'r')]);
  await runCli(['trust', 'init', '--root-key', join(dir, 'k', 'r.pub'), '--release-key', join(dir, 'k', 'r.pub'), '--sign', join(dir, 'k', 'r'), '-o', join(dir, 'other.json')]);
  const other = await v.run(['import', v2, '--json', '--trust', join(dir, 'other.json')]);
  t.is(other.code, 1);
  t.is(other.json.error?.code, 'E_TRUST_MISMATCH');
  const unknown = await v.run(['apply', 'awareness@9.9.9', '--json']);
  t.is(unknown.code, 2);
  t.is(unknown.json.error?.code, 'E_RELEASE_UNKNOWN');
  t.regex(unknown.json.error?.message ?? '', /holds 1\.4\.0 \(staged\)/);
});

test('a registry with TLS: --ca-file on the first import is remembered for apply', async (t) => {
  const { startRegistry } = await import('./helpers/registry.js');
  const registry = await startRegistry({ tls: true }, t.teardown.bind(t));
  const dir = await tempDir(t);
  const env = { SEABAG_STATE_DIR: join(dir, 'state'), SEABAG_REGISTRY: registry.host };
  const refused = await runCli(['import', v1, '--trust', trust, '--target', 'class-a', '--no-plain-http', '--json', '--no-progress'], env);
  t.is(refused.code, 3, 'without the CA the certificate is not trusted');
  t.is(refused.json.error?.code, 'E_REGISTRY');
  const imported = await runCli(['import', v1, '--trust', trust, '--target', 'class-a', '--ca-file', registry.caFile as string, '--json', '--no-progress'], env);
  t.is(imported.code, 0, imported.stdout);
  const applied = await runCli(['apply', 'awareness@1.4.0', '--json', '--no-progress'], env);
  t.is(applied.code, 0, applied.stdout);
  const state = JSON.parse(await readFile(join(dir, 'state', 'state.json'), 'utf8')) as { registry: { host: string; caFile?: string; plainHttp?: boolean } };
  t.like(state.registry, { host: registry.host, caFile: registry.caFile, plainHttp: false });
});
