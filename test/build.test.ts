/**
 * `bundle build` and `bundle inspect` on the example release, with skopeo reading the bundle as
 * the OCI layout it is, and the real registry as a source.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { parseAllDocuments, parse as parseYAML } from 'yaml';
import { openBundle, type ReleaseDocument } from '../lib/index.js';
import { imageFields } from '../lib/bundle/k8s.js';
import { OciLayout } from '../lib/oci/layout.js';
import { parseImageManifest, parseIndex } from '../lib/oci/descriptor.js';
import { runCli } from './helpers/cli.js';
import { EPOCH, exampleCopy } from './helpers/example.js';
import { startRegistry } from './helpers/registry.js';
import { skopeoCopy, skopeoInspect, skopeoRaw, tempDir } from './helpers/tools.js';

let work: string;
let example: string;

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-build-'));
  example = await exampleCopy(work);
});

test.after.always(async () => {
  await rm(work, { recursive: true, force: true });
});

const env = { SOURCE_DATE_EPOCH: EPOCH };

async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function build(spec: string, out: string, ...extra: string[]): Promise<Awaited<ReturnType<typeof runCli>>> {
  return runCli(['build', spec, '-o', out, '--json', ...(extra.includes('--sign') ? [] : ['--unsigned']), ...extra], env);
}

test('the example builds, and building it twice gives the same sha256', async (t) => {
  const dir = await tempDir(t);
  const spec = join(example, '1.4.0', 'release.yaml');
  const first = await build(spec, join(dir, 'one.bundle'));
  t.is(first.code, 0, first.stderr);
  const second = await build(spec, join(dir, 'two.bundle'));
  t.is(second.code, 0, second.stderr);
  t.is(await sha256File(join(dir, 'one.bundle')), await sha256File(join(dir, 'two.bundle')));
  t.like(first.json, { ok: true, release: { name: 'awareness', version: '1.4.0' } });
  // Written through a temp file: nothing else is left in the folder.
  t.deepEqual((await readdir(dir)).sort(), ['one.bundle', 'two.bundle']);
});

test('entries come in the stated order: oci-layout, index.json, metadata, then layers', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'a.bundle');
  t.is((await build(join(example, '1.4.0', 'release.yaml'), out)).code, 0);
  const bundle = await openBundle(out);
  t.teardown(() => bundle.close());
  const names = bundle.archive.entries.map((e) => e.name);
  t.deepEqual(names.slice(0, 4), ['oci-layout', 'index.json', 'blobs', 'blobs/sha256']);
  const layerDigests = new Set<string>();
  for (const image of bundle.release.images) {
    const walk = async (digest: string, mediaType: string): Promise<void> => {
      const desc = { digest: digest as `sha256:${string}`, mediaType, size: bundle.archive.location(digest as `sha256:${string}`)?.size ?? 0 };
      const bytes = await bundle.archive.readSmall(desc);
      if (mediaType.includes('index')) for (const m of parseIndex(bytes, desc).manifests) await walk(m.digest, m.mediaType);
      else for (const l of parseImageManifest(bytes, desc).layers) layerDigests.add(l.digest);
    };
    await walk(image.digest, image.mediaType);
  }
  const firstLayer = Math.min(...[...layerDigests].map((d) => bundle.archive.location(d as `sha256:${string}`)?.dataOffset ?? Infinity));
  for (const e of bundle.archive.entries) {
    const digest = `sha256:${e.name.slice('blobs/sha256/'.length)}`;
    if (e.type === 'file' && e.name.startsWith('blobs/') && !layerDigests.has(digest)) t.true(e.dataOffset < firstLayer, `${e.name} is metadata and comes before every layer`);
  }
});

test('skopeo copies an image out of the bundle with the digest it had at the source', async (t) => {
  const registry = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const out = join(dir, 'a.bundle');
  t.is((await build(join(example, '1.4.0', 'release.yaml'), out)).code, 0);
  const source = await OciLayout.open(join(example, 'build', 'images'));
  for (const [ref, tag] of [
    ['shore.example.com/groke/fusion:1.4.0', 'fusion-1.4.0'],
    ['shore.example.com/groke/radar:2.0.0', 'radar-2.0.0'],
  ] as const) {
    const expected = (await source.resolve(tag)).digest;
    const dest = `${registry.host}/copied/${tag}:v`;
    await skopeoCopy(`oci-archive:${out}:${ref}`, `docker://${dest}`);
    const raw = await skopeoRaw(dest);
    t.is(`sha256:${createHash('sha256').update(raw).digest('hex')}`, expected, ref);
    t.is((await skopeoInspect(dest)).Digest, expected);
  }
});

test('every image in the carried manifests is pinned and resolves to a manifest in the bundle', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'a.bundle');
  t.is((await build(join(example, '1.4.0', 'release.yaml'), out)).code, 0);
  const bundle = await openBundle(out);
  t.teardown(() => bundle.close());
  let count = 0;
  for (const layer of bundle.releaseManifest.layers) {
    const text = (await bundle.archive.readSmall(layer)).toString();
    for (const doc of parseAllDocuments(text)) {
      for (const { image } of imageFields(doc.toJS())) {
        count += 1;
        const m = /^(.+)@(sha256:[a-f0-9]{64})$/.exec(String(image));
        t.truthy(m, `${String(image)} is pinned`);
        const digest = (m?.[2] ?? '') as `sha256:${string}`;
        t.truthy(bundle.archive.location(digest), `${digest} is in the bundle`);
        t.true(bundle.release.images.some((i) => i.digest === digest));
      }
    }
  }
  // fusion + its initContainer, radar, two Akri brokers.
  t.is(count, 5);
  const fusion = (await bundle.archive.readSmall(bundle.releaseManifest.layers[0]!)).toString();
  t.regex(fusion, /image: groke\/toolbox@sha256:[a-f0-9]{64}/, 'the name is kept as written, with the digest');
  t.regex(fusion, /# Sensor fusion runs on the central unit/, 'comments survive pinning');
});

test('device profiles become Akri Configurations with pinned brokers and node selection', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'a.bundle');
  t.is((await build(join(example, '1.4.0', 'release.yaml'), out)).code, 0);
  const bundle = await openBundle(out);
  t.teardown(() => bundle.close());
  const profiles = bundle.releaseManifest.layers.filter((l) => l.mediaType === 'application/vnd.seabag.akri.configuration.v1+yaml');
  t.is(profiles.length, 2);
  const [bow, mast] = await Promise.all(profiles.map(async (l) => parseYAML((await bundle.archive.readSmall(l)).toString()) as Record<string, any>));
  t.like(bow, { apiVersion: 'akri.sh/v0', kind: 'Configuration', metadata: { name: 'bow-camera' }, spec: { capacity: 1, discoveryHandler: { name: 'udev' } } });
  t.deepEqual(parseYAML(bow?.['spec'].discoveryHandler.discoveryDetails), { udevRules: ['SUBSYSTEM=="video4linux", ATTR{index}=="0"'] });
  t.deepEqual(bow?.['spec'].brokerSpec.brokerPodSpec.nodeSelector, { 'kubernetes.io/hostname': 'sensor-unit' });
  t.regex(bow?.['spec'].brokerSpec.brokerPodSpec.containers[0].image, /^shore\.example\.com\/groke\/camera-broker@sha256:/);
  t.like(mast, { metadata: { name: 'mast-camera' }, spec: { capacity: 2, discoveryHandler: { name: 'onvif' } } });
  t.deepEqual(parseYAML(mast?.['spec'].discoveryHandler.discoveryDetails), { ipAddresses: { action: 'Include', items: ['10.0.0.20'] }, discoveryTimeoutSeconds: 2 });
  t.is(mast?.['spec'].brokerSpec.brokerPodSpec.nodeSelector, undefined);
});

test('a manifest naming an image outside the release: exit 2, E_IMAGE_NOT_IN_RELEASE, naming file, document and path', async (t) => {
  const dir = await tempDir(t);
  const copy = join(dir, 'ex');
  await cp(example, copy, { recursive: true });
  await writeFile(
    join(copy, '1.4.0', 'k8s', 'extra.yaml'),
    'apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly\nspec:\n  schedule: "0 3 * * *"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n            - name: x\n              image: shore.example.com/groke/unknown:9.9\n',
  );
  const out = join(dir, 'a.bundle');
  const r = await build(join(copy, '1.4.0', 'release.yaml'), out);
  t.is(r.code, 2);
  t.is(r.json.error?.code, 'E_IMAGE_NOT_IN_RELEASE');
  t.regex(r.json.error?.message ?? '', /k8s\/extra\.yaml:\d+: document 1 \(CronJob nightly\) spec\.jobTemplate\.spec\.template\.spec\.containers\[0\]\.image: image "shore\.example\.com\/groke\/unknown:9\.9" is not in the release/);
  await t.throwsAsync(readFile(out));
});

test('an invalid spec fails with every problem listed, with lines', async (t) => {
  const dir = await tempDir(t);
  const spec = join(dir, 'release.yaml');
  await writeFile(
    spec,
    ['apiVersion: seabag.dev/v1', 'kind: Release', 'name: Bad_Name', 'version: 1.4', 'targets: class-a', 'expires: 2027-13-45', 'images:', '  - ref: groke/UPPER', '    from: ftp:x', 'extra: 1', ''].join('\n'),
  );
  const r = await runCli(['build', spec, '-o', join(dir, 'x.bundle'), '--unsigned'], env);
  t.is(r.code, 2);
  t.regex(r.stderr, /^error\[E_SPEC_INVALID\]: .*has \d+ problems/m);
  for (const expected of [
    /release\.yaml:3: name: must be lower-case letters and digits, joined by \. _ or - \(like awareness\)/,
    /release\.yaml:4: version: must be a version like 1\.4\.0/,
    /release\.yaml:5: targets: must be a list \(like \[a, b\]\)/,
    /release\.yaml:6: expires: must be a date \(2027-06-01\) or an RFC 3339 time/,
    /release\.yaml:9: images\[0\]\.from: must start with oci:, oci-archive:, docker-archive: or docker:\/\//,
    /release\.yaml:10: extra: is not a known field \(known here: apiVersion, kind, name, version/,
  ]) {
    t.regex(r.stderr, expected);
  }
});

test('a source blob whose bytes do not match its digest stops the build, leaving no output', async (t) => {
  const dir = await tempDir(t);
  const copy = join(dir, 'ex');
  await cp(example, copy, { recursive: true });
  const layout = await OciLayout.open(join(copy, 'build', 'images'));
  const fusion = await layout.resolve('fusion-1.4.0');
  const manifest = parseImageManifest(await readFile(layout.path(fusion)), fusion);
  const layer = manifest.layers.at(-1)!;
  const handle = await open(layout.path(layer), 'r+');
  await handle.write(Buffer.from([0x00]), 0, 1, 20);
  await handle.close();
  const out = join(dir, 'a.bundle');
  const r = await build(join(copy, '1.4.0', 'release.yaml'), out);
  t.is(r.code, 1);
  t.is(r.json.error?.code, 'E_DIGEST_MISMATCH');
  t.is(r.json.error?.details['expected'], layer.digest);
  t.deepEqual(await readdir(dir), ['ex'], 'no bundle and no temp file');
});

test('building from a registry with basic auth from a docker config, keeping only linux/arm64', async (t) => {
  const registry = await startRegistry({ auth: { username: 'shore', password: 'p4ss' } }, t.teardown.bind(t));
  const dir = await tempDir(t);
  const authfile = join(dir, 'auth.json');
  const docker = join(dir, 'docker');
  await mkdir(docker);
  const auth = { auths: { [registry.host]: { auth: Buffer.from('shore:p4ss').toString('base64') } } };
  await writeFile(authfile, JSON.stringify(auth));
  await writeFile(join(docker, 'config.json'), JSON.stringify(auth));
  const layoutDir = join(example, 'build', 'images');
  const { execa } = await import('execa');
  await execa('skopeo', ['copy', '--quiet', '--preserve-digests', '--multi-arch', 'all', '--dest-tls-verify=false', '--dest-authfile', authfile, `oci:${layoutDir}:radar-2.0.0`, `docker://${registry.host}/groke/radar:2.0.0`]);
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: radar\nversion: 2.0.0\nimages:\n  - ref: ${registry.host}/groke/radar:2.0.0\n`);
  const out = join(dir, 'r.bundle');
  const r = await runCli(['build', spec, '-o', out, '--platform', 'linux/arm64', '--json', '--unsigned'], { ...env, DOCKER_CONFIG: docker });
  t.is(r.code, 0, r.stderr);
  const layout = await OciLayout.open(layoutDir);
  const arm = await layout.resolve('radar-arm64');
  const amd = await layout.resolve('radar-amd64');
  const bundle = await openBundle(out);
  t.teardown(() => bundle.close());
  const image = bundle.release.images[0] as ReleaseDocument['images'][number];
  t.is(image.digest, arm.digest, 'the arm64 manifest itself is carried');
  t.deepEqual(image.platforms, ['linux/arm64']);
  t.truthy(bundle.archive.location(arm.digest));
  t.falsy(bundle.archive.location(amd.digest), 'the amd64 manifest is left behind');
  const amdOnly = parseImageManifest(await readFile(layout.path(amd)), amd).layers.at(-1)!;
  t.falsy(bundle.archive.location(amdOnly.digest), 'and so is its own layer');

  const noAuth = await runCli(['build', spec, '-o', join(dir, 'x.bundle'), '--json', '--unsigned'], { ...env, DOCKER_CONFIG: join(dir, 'empty') });
  t.is(noAuth.code, 3);
  t.is(noAuth.json.error?.code, 'E_AUTH');
});

test('docker-archive and oci-archive sources convert deterministically and keep digests', async (t) => {
  const dir = await tempDir(t);
  const layoutDir = join(example, 'build', 'images');
  const { execa } = await import('execa');
  await execa('skopeo', ['copy', '--quiet', `oci:${layoutDir}:toolbox-1.0.0`, `docker-archive:${join(dir, 'toolbox.tar')}:groke/toolbox:1.0.0`]);
  await execa('skopeo', ['copy', '--quiet', `oci:${layoutDir}:fusion-1.4.0`, `oci-archive:${join(dir, 'fusion.tar')}:fusion`]);
  const spec = join(dir, 'release.yaml');
  await writeFile(
    spec,
    [
      'apiVersion: seabag.dev/v1',
      'kind: Release',
      'name: archives',
      'version: 1.0.0',
      'images:',
      '  - ref: groke/toolbox:1.0.0',
      '    from: docker-archive:toolbox.tar',
      '  - ref: shore.example.com/groke/fusion:1.4.0',
      '    from: oci-archive:fusion.tar:fusion',
      '',
    ].join('\n'),
  );
  const a = await runCli(['build', spec, '-o', join(dir, 'a.bundle'), '--json', '--unsigned'], env);
  t.is(a.code, 0, a.stderr);
  const b = await runCli(['build', spec, '-o', join(dir, 'b.bundle'), '--json', '--unsigned'], env);
  t.is(await sha256File(join(dir, 'a.bundle')), await sha256File(join(dir, 'b.bundle')));
  const bundle = await openBundle(join(dir, 'a.bundle'));
  t.teardown(() => bundle.close());
  const source = await OciLayout.open(layoutDir);
  const fusion = await source.resolve('fusion-1.4.0');
  t.is(bundle.release.images[1]?.digest, fusion.digest, 'oci-archive keeps the manifest digest');
  const toolboxSrc = parseImageManifest(await readFile(source.path(await source.resolve('toolbox-1.0.0'))), await source.resolve('toolbox-1.0.0'));
  const converted = bundle.release.images[0]!;
  const convertedManifest = parseImageManifest(await bundle.archive.readSmall({ mediaType: converted.mediaType, digest: converted.digest, size: bundle.archive.location(converted.digest)!.size }), {
    mediaType: converted.mediaType,
    digest: converted.digest,
    size: 0,
  });
  // docker save holds uncompressed layers: the config is the source's, the layers are its diff_ids.
  t.is(convertedManifest.config.digest, toolboxSrc.config.digest);
  const config = JSON.parse((await bundle.archive.readSmall(convertedManifest.config)).toString()) as { rootfs: { diff_ids: string[] } };
  t.deepEqual(
    convertedManifest.layers.map((l) => l.digest),
    config.rootfs.diff_ids,
  );
  t.true(convertedManifest.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar'));
  t.is(b.code, 0);
});

test('inspect --json gives release, images, signatures and omitted blobs', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'a.bundle');
  t.is((await build(join(example, '1.4.0', 'release.yaml'), out)).code, 0);
  const r = await runCli(['inspect', out, '--json']);
  t.is(r.code, 0);
  t.like(r.json, { ok: true, release: { name: 'awareness', version: '1.4.0', targets: ['class-a'] }, signatures: [], omittedBlobs: [] });
  const images = r.json['images'] as { ref: string; digest: string; platforms: string[]; size: number }[];
  t.deepEqual(
    images.map((i) => i.ref),
    ['shore.example.com/groke/fusion:1.4.0', 'shore.example.com/groke/radar:2.0.0', 'docker.io/groke/toolbox:1', 'shore.example.com/groke/camera-broker:2.1.0'],
  );
  t.deepEqual(images[1]?.platforms, ['linux/amd64', 'linux/arm64']);
  t.true(images.every((i) => i.size > 1000 && /^sha256:[a-f0-9]{64}$/.test(i.digest)));
  const text = await runCli(['inspect', out]);
  t.regex(text.stdout, /awareness 1\.4\.0/);
  t.regex(text.stdout, /bow-camera \(udev on sensor-unit\)/);
});
