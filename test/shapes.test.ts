/**
 * Every image shape real registries serve, built here (umoci images and hand-written OCI
 * layouts, pushed to a real Distribution registry with skopeo --preserve-digests or through the
 * registry API where skopeo cannot carry the shape), carried through build → import, with skopeo
 * and containerd as witnesses: nested indexes, platform variants, buildx attestation manifests,
 * foreign layers, and the shapes that already worked (Docker lists, zstd layers, 120 layers,
 * artifacts with the empty config, 100 KB annotations and 5 MB configs, digest references).
 */
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { openBundle, type ReleaseDocument } from '../lib/index.js';
import { parseIndex, type Descriptor } from '../lib/oci/descriptor.js';
import { OciLayout } from '../lib/oci/layout.js';
import { copyGraph } from '../lib/oci/graph.js';
import { DOCKER_CONFIG, DOCKER_FOREIGN_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, EMPTY_DIGEST, OCI_EMPTY, OCI_LAYER_GZIP, OCI_LAYER_ZSTD } from '../lib/oci/media-types.js';
import { RegistryClient } from '../lib/registry/client.js';
import { probeForeignLayers } from '../lib/registry/foreign.js';
import type { SeabagError } from '../lib/errors.js';
import { runCli } from './helpers/cli.js';
import { startContainerd } from './helpers/containerd.js';
import { EPOCH } from './helpers/example.js';
import { buildImage, buildIndex, buildRandomImage } from './helpers/images.js';
import { freePort, startRegistry } from './helpers/registry.js';
import { attestationFor, entry, indexOf, manifestOf, putBytes, putJSON, pushGraph, tarGz, tarOf, zstd } from './helpers/shapes.js';
import { skopeoCopy, skopeoRaw, tempDir } from './helpers/tools.js';
import { startVessel, type TestVessel } from './helpers/vessel.js';

let work: string;
let images: string;
let key: string;
let trust: string;
let amd: Descriptor;
let arm: Descriptor;
let ppc: Descriptor;

const env = { SOURCE_DATE_EPOCH: EPOCH };
const ALLOW_URLS = ['validation:', '  manifests:', '    urls:', '      allow:', "        - '^https?://'"];

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-shapes-'));
  const cli = async (args: string[]): Promise<void> => {
    const r = await runCli(args, env);
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stdout}${r.stderr}`);
  };
  await cli(['keygen', join(work, 'root.key')]);
  await cli(['keygen', join(work, 'release.key')]);
  key = join(work, 'release.key');
  trust = join(work, 'trust.json');
  await cli(['trust', 'init', '--root-key', join(work, 'root.key.pub'), '--release-key', join(work, 'release.key.pub'), '--sign', join(work, 'root.key'), '-o', trust]);
  images = join(work, 'images');
  const release = (text: string): Record<string, string> => ({ 'etc/seabag-release': `${text}\n` });
  amd = await buildImage(images, 'amd', { files: release('shapes amd64') });
  arm = await buildImage(images, 'arm', { files: release('shapes arm64'), architecture: 'arm64' });
  ppc = await buildImage(images, 'ppc', { files: release('shapes ppc64le'), architecture: 'ppc64le' });
  await buildIndex(images, 'multi', [
    { tag: 'amd', architecture: 'amd64' },
    { tag: 'arm', architecture: 'arm64' },
  ]);
});

test.after.always(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A test's own copy of the shared images (tests add blobs to their copy only, never to the shared one). */
async function ownLayout(dir: string): Promise<string> {
  const layout = join(dir, 'layout');
  await cp(images, layout, { recursive: true });
  return layout;
}

function sha(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

async function writeSpec(dir: string, name: string, refs: { ref: string; from?: string }[], extra: string[] = []): Promise<string> {
  const path = join(dir, `${name}.yaml`);
  const lines = ['apiVersion: seabag.dev/v1', 'kind: Release', `name: ${name}`, 'version: 1.0.0', ...extra, 'images:'];
  for (const r of refs) lines.push(`  - ref: ${r.ref}`, ...(r.from === undefined ? [] : [`    from: ${r.from}`]));
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

async function build(spec: string, out: string, ...extra: string[]): Promise<Awaited<ReturnType<typeof runCli>>> {
  return runCli(['build', spec, '-o', out, '--sign', key, '--json', '--no-progress', ...extra], env);
}

async function stage(v: TestVessel, bundle: string): Promise<Awaited<ReturnType<typeof runCli>>> {
  return v.run(['import', bundle, '--trust', trust, '--json']);
}

/** The index (or manifest) bytes of a digest inside a bundle. */
async function bundleIndex(path: string, digest: string): Promise<Descriptor[]> {
  const bundle = await openBundle(path);
  try {
    const size = bundle.archive.location(digest as Descriptor['digest'])?.size ?? 0;
    const desc = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: digest as Descriptor['digest'], size };
    return parseIndex(await bundle.archive.readSmall(desc), desc).manifests;
  } finally {
    await bundle.close();
  }
}

async function releaseOf(path: string): Promise<{ release: ReleaseDocument; has: (digest: string) => boolean }> {
  const bundle = await openBundle(path);
  const present = new Set(bundle.archive.entries.map((e) => `sha256:${e.name.slice('blobs/sha256/'.length)}`));
  const release = bundle.release;
  await bundle.close();
  return { release, has: (d) => present.has(d) };
}

test('nested index: --platform linux/arm64 and platforms [linux/amd64, linux/arm64] keep the right manifests, and containerd pulls and runs the amd64 one from the vessel', async (t) => {
  const src = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const images = await ownLayout(dir);
  const inner = await indexOf(images, [entry(amd, { os: 'linux', architecture: 'amd64' }), entry(arm, { os: 'linux', architecture: 'arm64' }), entry(ppc, { os: 'linux', architecture: 'ppc64le' })]);
  const root = await indexOf(images, [entry(inner)]);
  // skopeo does not carry an index of indexes: pushed through the registry API.
  await pushGraph(images, root, src.host, 'groke/nested', '1.0');
  const ref = `${src.host}/groke/nested:1.0`;

  const armOnly = join(dir, 'arm.bundle');
  const a = await build(await writeSpec(dir, 'nested-arm', [{ ref }]), armOnly, '--platform', 'linux/arm64');
  t.is(a.code, 0, a.stderr);
  const armRelease = await releaseOf(armOnly);
  const armImage = armRelease.release.images[0] as ReleaseDocument['images'][number];
  t.is(armImage.sourceDigest, root.digest);
  t.deepEqual(armImage.platforms, ['linux/arm64']);
  const armTop = await bundleIndex(armOnly, armImage.digest);
  t.is(armTop.length, 1, 'the index of indexes keeps its structure');
  t.is(armTop[0]?.mediaType, 'application/vnd.oci.image.index.v1+json');
  t.deepEqual((await bundleIndex(armOnly, armTop[0]?.digest as string)).map((m) => m.digest), [arm.digest]);
  t.false(armRelease.has(amd.digest) || armRelease.has(ppc.digest), 'amd64 and ppc64le are left behind');

  const both = join(dir, 'both.bundle');
  const b = await build(await writeSpec(dir, 'nested-both', [{ ref }], ['platforms: [linux/amd64, linux/arm64]']), both);
  t.is(b.code, 0, b.stderr);
  const bothImage = (await releaseOf(both)).release.images[0] as ReleaseDocument['images'][number];
  t.deepEqual(bothImage.platforms, ['linux/amd64', 'linux/arm64']);
  const bothTop = await bundleIndex(both, bothImage.digest);
  t.deepEqual((await bundleIndex(both, bothTop[0]?.digest as string)).map((m) => m.digest), [amd.digest, arm.digest]);

  const v = await startVessel(t);
  const imported = await stage(v, both);
  t.is(imported.code, 0, imported.stderr);
  const pinned = `${v.registry.host}/groke/nested@${bothImage.digest}`;
  t.is(sha(await skopeoRaw(pinned)), bothImage.digest, 'the vessel serves the filtered index byte for byte');
  const ctr = await startContainerd(t.teardown.bind(t));
  t.is(await ctr.pullAndRun(pinned), 'shapes amd64');
});

test('variants: linux/arm64/v8 selects a variant-less arm64 entry and linux/arm64 an arm64/v8 one, as skopeo --override-variant and ctr --platform do', async (t) => {
  const src = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const images = await ownLayout(dir);
  const plain = await indexOf(images, [entry(amd, { os: 'linux', architecture: 'amd64' }), entry(arm, { os: 'linux', architecture: 'arm64' })]);
  const v8 = await indexOf(images, [entry(amd, { os: 'linux', architecture: 'amd64' }), entry(arm, { os: 'linux', architecture: 'arm64', variant: 'v8' })]);
  await pushGraph(images, plain, src.host, 'groke/plain', '1.0');
  await pushGraph(images, v8, src.host, 'groke/v8', '1.0');

  const one = await build(await writeSpec(dir, 'plain', [{ ref: `${src.host}/groke/plain:1.0` }]), join(dir, 'p.bundle'), '--platform', 'linux/arm64/v8');
  t.is(one.code, 0, one.stderr);
  t.is((one.json['images'] as { digest: string }[])[0]?.digest, arm.digest);
  const two = await build(await writeSpec(dir, 'v8', [{ ref: `${src.host}/groke/v8:1.0` }]), join(dir, 'v.bundle'), '--platform', 'linux/arm64');
  t.is(two.code, 0, two.stderr);
  t.is((two.json['images'] as { digest: string }[])[0]?.digest, arm.digest);

  // skopeo, told arm64/v8, picks the same entry of the variant-less index.
  const picked = join(dir, 'picked');
  await execa('skopeo', ['--override-os', 'linux', '--override-arch', 'arm64', '--override-variant', 'v8', 'copy', '--quiet', '--src-tls-verify=false', `docker://${src.host}/groke/plain:1.0`, `oci:${picked}:x`]);
  t.is((await (await OciLayout.open(picked)).resolve('x')).digest, arm.digest);
  // And so does containerd, told linux/arm64/v8: it fetches that manifest and not the amd64 one.
  const ctr = await startContainerd(t.teardown.bind(t));
  await ctr.ctr('content', 'fetch', '--plain-http', '--platform', 'linux/arm64/v8', `${src.host}/groke/plain:1.0`);
  const content = await ctr.ctr('content', 'ls', '-q');
  t.true(content.includes(arm.digest), 'ctr fetched the variant-less arm64 manifest');
  t.false(content.includes(amd.digest));
});

test('buildx-style index filtered to one platform keeps that platform\'s attestation manifest with digests preserved; skopeo and ctr accept it; inspect shows it; --no-referrers drops it', async (t) => {
  const src = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const layout = await ownLayout(dir);
  const attAmd = await attestationFor(layout, amd, 'groke/buildx');
  const attArm = await attestationFor(layout, arm, 'groke/buildx');
  const idx = await indexOf(layout, [entry(amd, { os: 'linux', architecture: 'amd64' }), entry(arm, { os: 'linux', architecture: 'arm64' }), attAmd, attArm]);
  await (await OciLayout.open(layout)).tag(idx, 'buildx');
  await skopeoCopy(`oci:${layout}:buildx`, `docker://${src.host}/groke/buildx:1.0`);
  t.is(sha(await skopeoRaw(`${src.host}/groke/buildx:1.0`)), idx.digest, 'skopeo carried the buildx index as it is');

  const spec = await writeSpec(dir, 'buildx', [{ ref: `${src.host}/groke/buildx:1.0` }]);
  const out = join(dir, 'b.bundle');
  const r = await build(spec, out, '--platform', 'linux/arm64');
  t.is(r.code, 0, r.stderr);
  const image = (await releaseOf(out)).release.images[0] as ReleaseDocument['images'][number];
  const kept = await bundleIndex(out, image.digest);
  t.deepEqual(kept.map((m) => m.digest), [arm.digest, attArm.digest]);
  t.deepEqual(kept[1]?.annotations, attArm.annotations);
  const inspect = await runCli(['inspect', out, '--json']);
  t.deepEqual((inspect.json['images'] as { attestations?: unknown }[])[0]?.attestations, [{ digest: attArm.digest, subject: arm.digest, platform: 'linux/arm64' }]);
  t.regex((await runCli(['inspect', out])).stdout, /attestations .*\n.*buildx:1\.0 .* for linux\/arm64/);

  const v = await startVessel(t);
  const imported = await stage(v, out);
  t.is(imported.code, 0, imported.stderr);
  const pinned = `${v.registry.host}/groke/buildx@${image.digest}`;
  t.is(sha(await skopeoRaw(pinned)), image.digest);
  t.is(sha(await skopeoRaw(`${v.registry.host}/groke/buildx@${attArm.digest}`)), attArm.digest, 'the attestation manifest keeps its digest');
  await skopeoCopy(`docker://${pinned}`, `oci:${join(dir, 'back')}:x`);
  const ctr = await startContainerd(t.teardown.bind(t));
  await ctr.ctr('images', 'pull', '--plain-http', '--platform', 'linux/arm64', pinned);
  t.regex(await ctr.ctr('images', 'ls', '-q'), new RegExp(image.digest.slice(7)));

  const bare = join(dir, 'bare.bundle');
  const n = await build(spec, bare, '--platform', 'linux/arm64', '--no-referrers');
  t.is(n.code, 0, n.stderr);
  const bareRelease = await releaseOf(bare);
  t.is(bareRelease.release.images[0]?.digest, arm.digest, 'without referrers the arm64 manifest itself is carried');
  t.is(bareRelease.release.images[0]?.attestations, undefined);
  t.false(bareRelease.has(attArm.digest));
});

test('an image without the platform asked for: a warning naming it and its platforms, kept whole; --platform-strict and platformStrict make it exit 2', async (t) => {
  const src = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const images = await ownLayout(dir);
  await skopeoCopy(`oci:${images}:amd`, `docker://${src.host}/groke/amdonly:1.0`);
  const ppcIndex = await indexOf(images, [entry(ppc, { os: 'linux', architecture: 'ppc64le' })]);
  await pushGraph(images, ppcIndex, src.host, 'groke/ppconly', '1.0');
  const refs = [{ ref: `${src.host}/groke/amdonly:1.0` }, { ref: `${src.host}/groke/ppconly:1.0` }];
  const spec = await writeSpec(dir, 'missing', refs);

  const r = await build(spec, join(dir, 'a.bundle'), '--platform', 'linux/arm64');
  t.is(r.code, 0, r.stderr);
  const warnings = r.json['warnings'] as { code: string; image: string; platforms: string[] }[];
  t.deepEqual(warnings.map((w) => [w.code, w.image, w.platforms]), [
    ['platform-missing', `${src.host}/groke/amdonly:1.0`, ['linux/amd64']],
    ['platform-missing', `${src.host}/groke/ppconly:1.0`, ['linux/ppc64le']],
  ]);
  t.deepEqual((r.json['images'] as { digest: string }[]).map((i) => i.digest), [amd.digest, ppcIndex.digest], 'both kept as they are');
  const text = await runCli(['build', spec, '-o', join(dir, 'b.bundle'), '--sign', key, '--platform', 'linux/arm64', '--no-progress'], env);
  t.is(text.code, 0);
  t.regex(text.stderr, /warning: .*groke\/amdonly:1\.0 has none of the platforms asked for \(linux\/arm64\): it has linux\/amd64/);

  const strict = await build(spec, join(dir, 'c.bundle'), '--platform', 'linux/arm64', '--platform-strict');
  t.is(strict.code, 2);
  t.is(strict.json.error?.code, 'E_PLATFORM_UNAVAILABLE');
  t.deepEqual(strict.json.error?.details['platforms'], ['linux/amd64']);
  // Only arm/v7 for linux/arm64: containerd would run it there, so it is kept, with a word.
  const armv7Index = await indexOf(images, [entry(ppc, { os: 'linux', architecture: 'ppc64le' }), entry(arm, { os: 'linux', architecture: 'arm', variant: 'v7' })]);
  await pushGraph(images, armv7Index, src.host, 'groke/armv7', '1.0');
  const fb = await build(await writeSpec(dir, 'fallback', [{ ref: `${src.host}/groke/armv7:1.0` }]), join(dir, 'f.bundle'), '--platform', 'linux/arm64');
  t.is(fb.code, 0, fb.stderr);
  t.is((fb.json['images'] as { digest: string }[])[0]?.digest, arm.digest);
  t.like((fb.json['warnings'] as unknown[])[0], { code: 'platform-fallback', message: `${src.host}/groke/armv7:1.0 has no linux/arm64; kept linux/arm/v7, which containerd runs in its place` });

  const specStrict = await writeSpec(dir, 'missing-strict', refs, ['platforms: [linux/arm64]', 'platformStrict: true']);
  const s2 = await build(specStrict, join(dir, 'd.bundle'));
  t.is(s2.code, 2);
  t.is(s2.json.error?.code, 'E_PLATFORM_UNAVAILABLE');
  t.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.bundle')).sort(), ['a.bundle', 'b.bundle', 'f.bundle'], 'refused builds leave no output');
});

/** A Docker schema2 image with a foreign layer (urls) and an ordinary one, tagged `foreign` in a new layout. */
async function foreignImage(layout: string, withBlob: boolean): Promise<{ manifest: Descriptor; foreign: Descriptor }> {
  const foreignBytes = await tarGz({ 'etc/foreign.txt': 'from a third party\n' });
  const ordinary = await putBytes(layout, await tarGz({ 'etc/seabag-release': 'foreign\n' }), DOCKER_LAYER_GZIP);
  const foreign: Descriptor = withBlob ? await putBytes(layout, foreignBytes, DOCKER_FOREIGN_LAYER) : { mediaType: DOCKER_FOREIGN_LAYER, digest: sha(foreignBytes) as Descriptor['digest'], size: foreignBytes.length };
  foreign.urls = ['https://foreign.example.com/layers/base.tar.gz'];
  const manifest = await manifestOf(layout, { architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] } }, [foreign, ordinary], {}, DOCKER_MANIFEST, DOCKER_CONFIG);
  await (await OciLayout.open(layout)).tag(manifest, 'foreign');
  return { manifest, foreign };
}

test('foreign layer: with its blob at the source it is carried byte for byte to a vessel that allows urls; without it the build says so plainly, exit 2', async (t) => {
  const dir = await tempDir(t);
  const present = await foreignImage(join(dir, 'present'), true);
  const out = join(dir, 'f.bundle');
  const r = await build(await writeSpec(dir, 'foreign', [{ ref: 'shore.example.com/groke/foreign:1.0', from: `oci:${join(dir, 'present')}:foreign` }]), out);
  t.is(r.code, 0, r.stderr);
  t.true((await releaseOf(out)).has(present.foreign.digest), 'the foreign blob is in the bundle');
  const v = await startVessel(t, { extraConfig: ALLOW_URLS });
  const imported = await stage(v, out);
  t.is(imported.code, 0, imported.stderr);
  t.is(sha(await skopeoRaw(`${v.registry.host}/groke/foreign@${present.manifest.digest}`)), present.manifest.digest);
  t.true(await (await v.client()).repository('groke/foreign').exists(present.foreign), 'the vessel holds the foreign blob: nothing is fetched from its urls aboard');

  await foreignImage(join(dir, 'absent'), false);
  const missing = await build(await writeSpec(dir, 'foreign-missing', [{ ref: 'shore.example.com/groke/foreign:1.0', from: `oci:${join(dir, 'absent')}:foreign` }]), join(dir, 'm.bundle'));
  t.is(missing.code, 2);
  t.is(missing.json.error?.code, 'E_FOREIGN_LAYER_MISSING');
  t.regex(missing.json.error?.message ?? '', /foreign .*https:\/\/foreign\.example\.com\/layers\/base\.tar\.gz/);
  t.deepEqual(missing.json.error?.details['urls'], ['https://foreign.example.com/layers/base.tar.gz']);
  const text = await runCli(['build', join(dir, 'foreign-missing.yaml'), '-o', join(dir, 'm2.bundle'), '--sign', key], env);
  t.regex(text.stderr, /^error\[E_FOREIGN_LAYER_MISSING\]: .*is a foreign \(non-distributable\) layer/m);
  t.regex(text.stderr, /download the blob from one of them/);
});

test('a default-config vessel registry refusing foreign layer urls: exit 3 with the plain refusal, one probe request, no blob pushed, no retry', async (t) => {
  const dir = await tempDir(t);
  await foreignImage(join(dir, 'layout'), true);
  const out = join(dir, 'f.bundle');
  t.is((await build(await writeSpec(dir, 'foreign', [{ ref: 'shore.example.com/groke/foreign:1.0', from: `oci:${join(dir, 'layout')}:foreign` }]), out)).code, 0);
  const v = await startVessel(t, { accessLog: true });
  const r = await stage(v, out);
  t.is(r.code, 3);
  t.is(r.json.error?.code, 'E_FOREIGN_LAYERS_REFUSED');
  t.regex(r.json.error?.message ?? '', /the vessel registry .* refuses foreign layer URLs/);
  const human = await v.run(['import', out, '--trust', trust]);
  t.regex(human.stderr, /validation: \{manifests: \{urls: \{allow:/);
  const log = await readFile(v.registry.logFile, 'utf8');
  const requests = log.split('\n').filter((l) => /"(GET|HEAD|PUT|POST|PATCH|DELETE) \/v2\//.test(l));
  t.is(requests.filter((l) => /"PUT \/v2\/[^ ]*\/manifests\//.test(l)).length, 2, 'one probe per import (two imports), never retried');
  t.is(requests.filter((l) => /"(POST|PATCH|PUT) \/v2\/[^ ]*\/blobs\//.test(l)).length, 0, 'no blob was pushed');
  const status = await v.run(['status', '--json']);
  t.deepEqual(status.json['releases'], []);
});

test('a 500 the registry will always answer is not retried: a manifest with foreign urls pushed straight to Distribution fails once with E_FOREIGN_LAYERS_REFUSED', async (t) => {
  const dir = await tempDir(t);
  const { manifest } = await foreignImage(join(dir, 'layout'), true);
  const registry = await startRegistry({}, t.teardown.bind(t));
  const requests: string[] = [];
  let retries = 0;
  const client = await RegistryClient.create(registry.host, { onRequest: (r) => requests.push(`${r.method} ${r.status}`), onRetry: () => (retries += 1) });
  t.teardown(() => client.close());
  const repo = client.repository('groke/foreign');
  const layout = await OciLayout.open(join(dir, 'layout'));
  // Blobs first (as an import does), then the manifest: Distribution answers 500 UNKNOWN.
  await copyGraph(layout, repo, manifest, { manifests: false });
  const err = await t.throwsAsync(repo.putManifest(manifest.digest, await readFile(layout.path(manifest)), manifest.mediaType));
  t.is((err as SeabagError).code, 'E_FOREIGN_LAYERS_REFUSED');
  t.deepEqual(requests.filter((r) => r.startsWith('PUT 500')), ['PUT 500'], 'one attempt');
  t.is(retries, 0);
});

test('source errors are never confused: a missing tag, digest or blob is exit 2 naming it; an unreachable source is exit 3', async (t) => {
  const src = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  await skopeoCopy(`oci:${images}:amd`, `docker://${src.host}/groke/holey:1.0`);
  const absent = `sha256:${'0'.repeat(63)}1`;
  const cases: [string, RegExp][] = [
    [`${src.host}/groke/nothere:1.0`, /groke\/nothere:1\.0: .* has no tag "1\.0"/],
    [`${src.host}/groke/holey@${absent}`, new RegExp(`has no manifest ${absent}`)],
    [`${src.host}/groke/holey:1.0@${absent}`, new RegExp(`groke/holey:1\\.0@${absent}`)],
  ];
  for (const [ref, message] of cases) {
    const r = await build(await writeSpec(dir, 'missing', [{ ref }]), join(dir, 'x.bundle'));
    t.is(r.code, 2, ref);
    t.is(r.json.error?.code, 'E_NOT_FOUND', ref);
    t.regex(r.json.error?.message ?? '', message);
  }
  // A layer blob the registry no longer has (deleted through the API): the build names it.
  const layers = (JSON.parse((await skopeoRaw(`${src.host}/groke/holey:1.0`)).toString()) as { layers: Descriptor[] }).layers;
  const gone = layers.at(-1) as Descriptor;
  const client = await RegistryClient.create(src.host);
  await client.repository('groke/holey').deleteBlob(gone.digest);
  client.close();
  const holey = await build(await writeSpec(dir, 'holey', [{ ref: `${src.host}/groke/holey:1.0` }]), join(dir, 'h.bundle'));
  t.is(holey.code, 2, holey.stderr);
  t.is(holey.json.error?.code, 'E_NOT_FOUND');
  t.regex(holey.json.error?.message ?? '', new RegExp(`says .*${gone.digest} does not exist`));

  // The same from an OCI layout whose layer file is gone.
  const holeyLayout = await ownLayout(dir);
  const amdLayers = (JSON.parse(await readFile(join(holeyLayout, 'blobs', 'sha256', amd.digest.slice(7)), 'utf8')) as { layers: Descriptor[] }).layers;
  const lost = amdLayers.at(-1) as Descriptor;
  await rm(join(holeyLayout, 'blobs', 'sha256', lost.digest.slice(7)));
  const fromLayout = await build(await writeSpec(dir, 'holey-layout', [{ ref: 'groke/holey:1.0', from: `oci:${holeyLayout}:amd` }]), join(dir, 'l.bundle'));
  t.is(fromLayout.code, 2, fromLayout.stderr);
  t.is(fromLayout.json.error?.code, 'E_NOT_FOUND');
  t.regex(fromLayout.json.error?.message ?? '', new RegExp(`groke/holey:1\\.0: oci:.* says .*${lost.digest} does not exist`));

  const port = await freePort();
  const down = await build(await writeSpec(dir, 'down', [{ ref: `127.0.0.1:${port}/groke/x:1.0` }]), join(dir, 'd.bundle'));
  t.is(down.code, 3);
  t.is(down.json.error?.code, 'E_REGISTRY_UNREACHABLE');
  t.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.bundle')), []);
});

test('shapes that already worked stay carried byte for byte: Docker list, zstd layers, 120 layers, Helm chart, empty-config artifact, 100 KB annotations with a 5 MB config, repo@sha256 and repo:tag@sha256', async (t) => {
  const src = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const layout = await ownLayout(dir);
  // Docker schema2 list: skopeo converts the OCI index as it pushes.
  await execa('skopeo', ['copy', '--quiet', '--multi-arch', 'all', '--format', 'v2s2', '--dest-tls-verify=false', `oci:${layout}:multi`, `docker://${src.host}/groke/dockerlist:1.0`]);
  const dockerList = JSON.parse((await skopeoRaw(`${src.host}/groke/dockerlist:1.0`)).toString()) as { mediaType: string };
  t.is(dockerList.mediaType, 'application/vnd.docker.distribution.manifest.list.v2+json');

  const zstdLayer = await putBytes(layout, await zstd(await tarOf({ 'etc/zstd.txt': 'zstd layer\n' })), OCI_LAYER_ZSTD);
  const zstdImage = await manifestOf(layout, { architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] } }, [zstdLayer]);
  await pushGraph(layout, zstdImage, src.host, 'groke/zstd', '1.0');

  const many = await buildRandomImage(layout, 'many', Array.from({ length: 120 }, () => 600));
  await pushGraph(layout, many, src.host, 'groke/many', '1.0');

  const chart = await putBytes(layout, await tarGz({ 'mychart/Chart.yaml': 'apiVersion: v2\nname: mychart\nversion: 0.1.0\n' }), 'application/vnd.cncf.helm.chart.content.v1.tar+gzip');
  const helm = await manifestOf(layout, { name: 'mychart', version: '0.1.0', apiVersion: 'v2' }, [chart], {}, undefined, 'application/vnd.cncf.helm.config.v1+json');
  await pushGraph(layout, helm, src.host, 'charts/mychart', '0.1.0');

  const empty = await putBytes(layout, Buffer.from('{}'), OCI_EMPTY);
  t.is(empty.digest, EMPTY_DIGEST);
  const payload = await putBytes(layout, Buffer.from('artifact payload\n'), 'application/vnd.example.payload.v1');
  const artifact = await putJSON(layout, { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/vnd.example.thing.v1', config: empty, layers: [payload] }, 'application/vnd.oci.image.manifest.v1+json');
  await pushGraph(layout, artifact, src.host, 'groke/artifact', '1.0');

  const bigLayer = await putBytes(layout, await tarGz({ 'etc/big.txt': 'big\n' }), OCI_LAYER_GZIP);
  const bigConfig = await putJSON(layout, { architecture: 'amd64', os: 'linux', config: { Labels: { blob: 'x'.repeat(5 * 1024 * 1024) } }, rootfs: { type: 'layers', diff_ids: [] } }, 'application/vnd.oci.image.config.v1+json');
  t.true(bigConfig.size > 5 * 1024 * 1024);
  const big = await putJSON(layout, { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: bigConfig, layers: [bigLayer], annotations: { 'org.example.notes': 'n'.repeat(100 * 1024) } }, 'application/vnd.oci.image.manifest.v1+json');
  await pushGraph(layout, big, src.host, 'groke/big', '1.0');

  await skopeoCopy(`oci:${layout}:amd`, `docker://${src.host}/groke/pinned:1.0`);
  const refs = [
    `${src.host}/groke/dockerlist:1.0`,
    `${src.host}/groke/zstd:1.0`,
    `${src.host}/groke/many:1.0`,
    `${src.host}/charts/mychart:0.1.0`,
    `${src.host}/groke/artifact:1.0`,
    `${src.host}/groke/big:1.0`,
    `${src.host}/groke/pinned@${amd.digest}`,
    `${src.host}/groke/pinned:1.0@${amd.digest}`,
  ];
  // skopeo does not take repo:tag@digest: it reads that one by digest alone.
  const sourceDigests = await Promise.all(refs.map(async (r) => sha(await skopeoRaw(r.replace(/:1\.0@/, '@')))));
  const out = join(dir, 's.bundle');
  const r = await build(await writeSpec(dir, 'shapes', refs.map((ref) => ({ ref }))), out);
  t.is(r.code, 0, r.stderr);
  t.deepEqual((r.json['images'] as { digest: string }[]).map((i) => i.digest), sourceDigests, 'every image keeps its source digest');
  const v = await startVessel(t);
  const imported = await stage(v, out);
  t.is(imported.code, 0, imported.stderr);
  const repos = ['groke/dockerlist', 'groke/zstd', 'groke/many', 'charts/mychart', 'groke/artifact', 'groke/big', 'groke/pinned', 'groke/pinned'];
  for (const [i, repo] of repos.entries()) {
    const digest = sourceDigests[i] as string;
    t.is(sha(await skopeoRaw(`${v.registry.host}/${repo}@${digest}`)), digest, `${refs[i]} is carried byte for byte`);
  }
  t.is(sourceDigests[1], zstdImage.digest);
  t.is(sourceDigests[2], many.digest);
});

test('an erroring source (Distribution answering 500 UNKNOWN for a tag whose storage is corrupt) is exit 3 E_REGISTRY, not "not found"', async (t) => {
  const src = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  await skopeoCopy(`oci:${images}:amd`, `docker://${src.host}/groke/broken:1.0`);
  await writeFile(join(src.storageDir, 'docker/registry/v2/repositories/groke/broken/_manifests/tags/1.0/current/link'), 'not a digest');
  const r = await build(await writeSpec(dir, 'broken', [{ ref: `${src.host}/groke/broken:1.0` }]), join(dir, 'b.bundle'));
  t.is(r.code, 3);
  t.is(r.json.error?.code, 'E_REGISTRY');
  t.is(r.json.error?.details['status'], 500);
});

test('the foreign-url probe judges every kind of foreign layer the way Distribution does, storing nothing: Docker foreign, OCI non-distributable, a plain layer with urls', async (t) => {
  const strict = await startRegistry({}, t.teardown.bind(t));
  const open = await startRegistry({ extraConfig: ALLOW_URLS }, t.teardown.bind(t));
  const urls = ['https://foreign.example.com/l.tar.gz'];
  const layer = (mediaType: string): Descriptor => ({ mediaType, digest: sha(Buffer.from(mediaType)) as Descriptor['digest'], size: 3, urls });
  const kinds: [string, Descriptor][] = [
    [DOCKER_MANIFEST, layer(DOCKER_FOREIGN_LAYER)],
    ['application/vnd.oci.image.manifest.v1+json', layer('application/vnd.oci.image.layer.nondistributable.v1.tar+gzip')],
    ['application/vnd.oci.image.manifest.v1+json', layer(OCI_LAYER_GZIP)],
  ];
  for (const [host, accepted] of [
    [strict.host, false],
    [open.host, true],
  ] as const) {
    const client = await RegistryClient.create(host);
    t.teardown(() => client.close());
    const repo = client.repository('groke/probe');
    for (const [manifestType, l] of kinds) {
      const probe = await probeForeignLayers(repo, manifestType, [l]);
      t.is(probe.accepted, accepted, `${l.mediaType} at ${accepted ? 'an allowing' : 'a default'} registry`);
    }
    t.deepEqual(await repo.listTags(), [], 'nothing was stored');
  }
  t.deepEqual(await readdir(strict.storageDir), [], 'the default registry wrote nothing at all');
});
