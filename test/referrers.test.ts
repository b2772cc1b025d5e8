/**
 * The supply chain travels with the images: cosign signatures (`.sig`), attestations (`.att`),
 * OCI 1.1 referrers (an SPDX SBOM with `subject` set) and referrers of kinds nobody knows, from a
 * real source registry (Distribution 2.8, no referrers API) and from an OCI layout, through a
 * bundle, into a real vessel registry, with skopeo and openssl as outside witnesses.
 *
 * No cosign binary exists on these machines: test/helpers/cosign.ts makes cosign-format artifacts
 * with `node:crypto`, following sigstore/cosign `specs/SIGNATURE_SPEC.md` (simple-signing payload,
 * ECDSA P-256 DER signature in the `dev.cosignproject.cosign/signature` layer annotation).
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { checkCosignSignature, openBundle, parseImageKey, type ReleaseDocument } from '../lib/index.js';
import type { Descriptor } from '../lib/oci/descriptor.js';
import { resolveGraph } from '../lib/oci/graph.js';
import { OciLayout } from '../lib/oci/layout.js';
import { RegistryClient } from '../lib/registry/client.js';
import { packBundle, unpackBundle } from './helpers/bundles.js';
import { runCli } from './helpers/cli.js';
import { addToLayout, cosignAttestation, cosignSignature, ecKey, pushToRegistry, SIGNATURE_ANNOTATION, spdxReferrer, tagFor, unknownReferrer, type Artifact, type EcKey } from './helpers/cosign.js';
import { EPOCH } from './helpers/example.js';
import { buildImage, buildIndex } from './helpers/images.js';
import { startReferrersApi } from './helpers/referrers-api.js';
import { startRegistry, type RegistryHandle } from './helpers/registry.js';
import { skopeoCopy, skopeoRaw, tempDir } from './helpers/tools.js';
import { startVessel, type TestVessel } from './helpers/vessel.js';

const env = { SOURCE_DATE_EPOCH: EPOCH };

interface Fixture {
  work: string;
  trust: string;
  releaseKey: string;
  /** The key images are signed with, and another one. */
  keyA: EcKey;
  keyB: EcKey;
  keyAFile: string;
  keyBFile: string;
  shore: RegistryHandle;
  layout: string;
  radar: { index: Descriptor; arm: Descriptor; amd: Descriptor };
  fusion: Descriptor;
  /** Every artifact made, by a name the tests use. */
  made: Record<string, Artifact>;
  /** The full bundle of radar (registry) and fusion (layout), built once. */
  bundle: string;
  spec: string;
}

let fx: Fixture;
const stops: (() => Promise<void>)[] = [];

function sha(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

async function cli(args: string[]): Promise<void> {
  const r = await runCli([...args, '--no-progress'], env);
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stdout}${r.stderr}`);
}

function specText(name: string, version: string, images: { ref: string; from?: string }[], extra = ''): string {
  const lines = images.map((i) => `  - ref: ${i.ref}\n${i.from ? `    from: ${i.from}\n` : ''}`).join('');
  return `apiVersion: seabag.dev/v1\nkind: Release\nname: ${name}\nversion: ${version}\nimages:\n${lines}${extra}`;
}

test.before(async () => {
  const work = await mkdtemp(join(tmpdir(), 'seabag-referrers-'));
  await cli(['keygen', join(work, 'root.key')]);
  await cli(['keygen', join(work, 'release.key')]);
  const trust = join(work, 'trust.json');
  await cli(['trust', 'init', '--root-key', join(work, 'root.key.pub'), '--release-key', join(work, 'release.key.pub'), '--sign', join(work, 'root.key'), '-o', trust]);
  const keyA = ecKey();
  const keyB = ecKey();
  await writeFile(join(work, 'cosign-a.pub'), keyA.publicPem);
  await writeFile(join(work, 'cosign-b.pub'), keyB.publicPem);

  // Images: fusion (single platform) in an OCI layout; radar (amd64 + arm64) in the shore registry;
  // three more for the image policy: unsigned, signed by another key, signature lifted from fusion.
  const layoutDir = join(work, 'layout');
  const files = (text: string): Record<string, string> => ({ 'etc/seabag-release': `${text}\n` });
  const fusion = await buildImage(layoutDir, 'fusion-1.4.0', { files: files('fusion 1.4.0') });
  await buildImage(layoutDir, 'radar-amd64', { files: files('radar amd64') });
  await buildImage(layoutDir, 'radar-arm64', { files: files('radar arm64'), architecture: 'arm64' });
  const radarIndex = await buildIndex(layoutDir, 'radar-2.0.0', [
    { tag: 'radar-amd64', architecture: 'amd64' },
    { tag: 'radar-arm64', architecture: 'arm64' },
  ]);
  const bare = await buildImage(layoutDir, 'bare-1.0.0', { files: files('bare') });
  const other = await buildImage(layoutDir, 'other-1.0.0', { files: files('other') });
  const lifted = await buildImage(layoutDir, 'lifted-1.0.0', { files: files('lifted') });
  void bare;
  const layout = await OciLayout.open(layoutDir);
  const arm = await layout.resolve('radar-arm64');
  const amd = await layout.resolve('radar-amd64');

  const shore = await startRegistry({}, (fn) => stops.push(fn));
  await skopeoCopy(`oci:${layoutDir}:radar-2.0.0`, `docker://${shore.host}/groke/radar:2.0.0`);

  const made: Record<string, Artifact> = {
    radarSig: cosignSignature(`${shore.host}/groke/radar`, radarIndex.digest, keyA),
    radarAtt: cosignAttestation(`${shore.host}/groke/radar`, radarIndex.digest, keyA),
    radarSbom: spdxReferrer('radar 2.0.0', radarIndex),
    armSig: cosignSignature(`${shore.host}/groke/radar`, arm.digest, keyA),
    armSbom: spdxReferrer('radar arm64', arm),
    amdSig: cosignSignature(`${shore.host}/groke/radar`, amd.digest, keyA),
    amdSbom: spdxReferrer('radar amd64', amd),
    fusionSig: cosignSignature('shore.example.com/groke/fusion', fusion.digest, keyA),
    fusionAtt: cosignAttestation('shore.example.com/groke/fusion', fusion.digest, keyA),
    fusionSbom: spdxReferrer('fusion 1.4.0', fusion),
    fusionMystery: unknownReferrer(fusion),
    otherSig: cosignSignature('shore.example.com/groke/other', other.digest, keyB),
    liftedSig: cosignSignature('shore.example.com/groke/lifted', lifted.digest, keyA, fusion.digest),
  };
  // The shore registry: cosign tags, and the SBOMs as OCI 1.1 referrers. Distribution 2.8 has no
  // referrers API, so they are listed as image-spec 1.1 says a client must: the fallback tag index.
  const client = await RegistryClient.create(shore.host);
  const repo = client.repository('groke/radar');
  await pushToRegistry(repo, made['radarSig'] as Artifact, tagFor(radarIndex.digest, 'sig'));
  await pushToRegistry(repo, made['radarAtt'] as Artifact, tagFor(radarIndex.digest, 'att'));
  await pushToRegistry(repo, made['armSig'] as Artifact, tagFor(arm.digest, 'sig'));
  await pushToRegistry(repo, made['amdSig'] as Artifact, tagFor(amd.digest, 'sig'));
  for (const [name, subject] of [
    ['armSbom', arm],
    ['amdSbom', amd],
    ['radarSbom', radarIndex],
  ] as const) {
    const a = made[name] as Artifact;
    await pushToRegistry(repo, a);
    const fallback = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ ...a.manifest.desc, artifactType: 'application/spdx+json' }] }));
    await repo.putManifest(`sha256-${subject.digest.slice(7)}`, fallback, 'application/vnd.oci.image.index.v1+json');
  }
  client.close();
  // The layout: cosign tags as ref.name (as `skopeo copy … oci:DIR:TAG` writes them), referrers untagged.
  await addToLayout(layout, made['fusionSig'] as Artifact, tagFor(fusion.digest, 'sig'));
  await addToLayout(layout, made['fusionAtt'] as Artifact, tagFor(fusion.digest, 'att'));
  await addToLayout(layout, made['fusionSbom'] as Artifact);
  await addToLayout(layout, made['fusionMystery'] as Artifact);
  await addToLayout(layout, made['otherSig'] as Artifact, tagFor(other.digest, 'sig'));
  await addToLayout(layout, made['liftedSig'] as Artifact, tagFor(lifted.digest, 'sig'));

  const spec = join(work, 'release.yaml');
  await writeFile(
    spec,
    specText('supply', '1.0.0', [{ ref: `${shore.host}/groke/radar:2.0.0` }, { ref: 'shore.example.com/groke/fusion:1.4.0', from: 'oci:./layout:fusion-1.4.0' }]),
  );
  const bundle = join(work, 'supply-1.0.0.bundle');
  await cli(['build', spec, '-o', bundle, '--sign', join(work, 'release.key')]);
  fx = {
    work,
    trust,
    releaseKey: join(work, 'release.key'),
    keyA,
    keyB,
    keyAFile: join(work, 'cosign-a.pub'),
    keyBFile: join(work, 'cosign-b.pub'),
    shore,
    layout: layoutDir,
    radar: { index: radarIndex, arm, amd },
    fusion,
    made,
    bundle,
    spec,
  };
});

test.after.always(async () => {
  for (const stop of stops) await stop().catch(() => undefined);
  if (fx !== undefined) await rm(fx.work, { recursive: true, force: true });
});

function digestOf(name: string): `sha256:${string}` {
  return (fx.made[name] as Artifact).manifest.desc.digest;
}

async function releaseOf(path: string): Promise<ReleaseDocument> {
  const b = await openBundle(path);
  try {
    return b.release;
  } finally {
    await b.close();
  }
}

function image(release: ReleaseDocument, repository: string): ReleaseDocument['images'][number] {
  const found = release.images.find((i) => i.repository === repository);
  if (found === undefined) throw new Error(`no ${repository}`);
  return found;
}

async function importOk(v: TestVessel, bundle: string, ...extra: string[]): Promise<Record<string, unknown>> {
  const r = await v.run(['import', bundle, '--json', ...extra]);
  if (r.code !== 0) throw new Error(`import failed: ${r.stdout}${r.stderr}`);
  return r.json;
}

test('build finds signatures, attestations, SBOM referrers and unknown kinds at a registry and in a layout, and inspect lists them per image', async (t) => {
  const release = await releaseOf(fx.bundle);
  const radar = image(release, 'groke/radar');
  const fusion = image(release, 'groke/fusion');
  const kinds = (i: typeof radar): string[] => (i.referrers ?? []).map((r) => `${r.kind} ${r.digest} of ${r.subject}${r.tag ? ` as ${r.tag}` : ''}`).sort();
  const { index, arm, amd } = fx.radar;
  t.deepEqual(
    kinds(radar),
    [
      `attestation ${digestOf('radarAtt')} of ${index.digest} as ${tagFor(index.digest, 'att')}`,
      `referrer ${digestOf('radarSbom')} of ${index.digest}`,
      `referrer ${digestOf('amdSbom')} of ${amd.digest}`,
      `referrer ${digestOf('armSbom')} of ${arm.digest}`,
      `signature ${digestOf('amdSig')} of ${amd.digest} as ${tagFor(amd.digest, 'sig')}`,
      `signature ${digestOf('armSig')} of ${arm.digest} as ${tagFor(arm.digest, 'sig')}`,
      `signature ${digestOf('radarSig')} of ${index.digest} as ${tagFor(index.digest, 'sig')}`,
    ].sort(),
    'registry: cosign tags of the index and of each platform manifest, and the SBOMs through the fallback tag (Distribution 2.8 has no referrers API)',
  );
  t.deepEqual(
    kinds(fusion),
    [
      `attestation ${digestOf('fusionAtt')} of ${fx.fusion.digest} as ${tagFor(fx.fusion.digest, 'att')}`,
      `referrer ${digestOf('fusionMystery')} of ${fx.fusion.digest}`,
      `referrer ${digestOf('fusionSbom')} of ${fx.fusion.digest}`,
      `signature ${digestOf('fusionSig')} of ${fx.fusion.digest} as ${tagFor(fx.fusion.digest, 'sig')}`,
    ].sort(),
    'layout: cosign tags as ref.name, referrers found by their subject',
  );
  const sbom = fusion.referrers?.find((r) => r.digest === digestOf('fusionSbom'));
  t.is(sbom?.artifactType, 'application/spdx+json');

  const inspect = await runCli(['inspect', fx.bundle, '--json']);
  t.is(inspect.code, 0, inspect.stderr);
  const images = inspect.json['images'] as { ref: string; referrers: { kind: string; digest: string }[] }[];
  t.is(images.find((i) => i.ref.endsWith('groke/fusion:1.4.0'))?.referrers.length, 4);
  t.is(images.find((i) => i.ref.endsWith('groke/radar:2.0.0'))?.referrers.length, 7);
  const text = await runCli(['inspect', fx.bundle]);
  t.regex(text.stdout, /referrers \(signatures, attestations, SBOMs\):/);
  t.regex(text.stdout, new RegExp(`signature\\s+${tagFor(fx.fusion.digest, 'sig').replace('.', '\\.')}`));

  // skopeo reads the bundle as the OCI layout it is: a cosign tag is a name in it.
  const raw = await execa('skopeo', ['inspect', '--raw', `oci-archive:${fx.bundle}:shore.example.com/groke/fusion:${tagFor(fx.fusion.digest, 'sig')}`], { encoding: 'buffer', stripFinalNewline: false });
  t.is(sha(Buffer.from(raw.stdout)), digestOf('fusionSig'));

  // Plain content: any OCI walker (bundle push, skopeo) resolves every index.json entry inside the bundle.
  const b = await openBundle(fx.bundle);
  try {
    for (const d of b.archive.index.manifests) await t.notThrowsAsync(() => resolveGraph(b.archive, d), `${d.digest} resolves within the bundle`);
  } finally {
    await b.close();
  }

  const verify = await runCli(['verify', fx.bundle, '--trust', fx.trust, '--json']);
  t.is(verify.code, 0, verify.stdout + verify.stderr);
});

test('after import the vessel serves .sig, .att and the referrers with identical digests (skopeo), and the signature verifies with openssl against the vessel copy', async (t) => {
  const v = await startVessel(t);
  await importOk(v, fx.bundle, '--trust', fx.trust);
  const at = (repo: string, ref: string): Promise<Buffer> => skopeoRaw(`${v.registry.host}/${repo}${ref.startsWith('sha256:') ? '@' : ':'}${ref}`);
  const { index, arm, amd } = fx.radar;
  for (const [repo, ref, name] of [
    ['groke/radar', tagFor(index.digest, 'sig'), 'radarSig'],
    ['groke/radar', tagFor(index.digest, 'att'), 'radarAtt'],
    ['groke/radar', tagFor(arm.digest, 'sig'), 'armSig'],
    ['groke/radar', tagFor(amd.digest, 'sig'), 'amdSig'],
    ['groke/radar', digestOf('armSbom'), 'armSbom'],
    ['groke/radar', digestOf('radarSbom'), 'radarSbom'],
    ['groke/fusion', tagFor(fx.fusion.digest, 'sig'), 'fusionSig'],
    ['groke/fusion', tagFor(fx.fusion.digest, 'att'), 'fusionAtt'],
    ['groke/fusion', digestOf('fusionSbom'), 'fusionSbom'],
  ] as const) {
    t.is(sha(await at(repo, ref)), digestOf(name), `${repo}:${ref} is ${name}, byte for byte`);
  }
  // An unknown kind: the manifest as written (odd spacing, unknown fields) and its opaque blob.
  const mystery = fx.made['fusionMystery'] as Artifact;
  t.true((await at('groke/fusion', digestOf('fusionMystery'))).equals(mystery.manifest.data), 'the unknown referrer is carried byte for byte');
  const client = await v.client();
  const opaque = mystery.blobs[1] as Artifact['blobs'][number];
  const res = await fetch(`http://${v.registry.host}/v2/groke/fusion/blobs/${opaque.desc.digest}`);
  t.true(Buffer.from(await res.arrayBuffer()).equals(opaque.data), 'and its opaque blob too');

  // No referrers API on Distribution 2.8: the fallback tag index lists the subject's referrers.
  const fallback = JSON.parse((await at('groke/fusion', `sha256-${fx.fusion.digest.slice(7)}`)).toString()) as { manifests: Descriptor[] };
  t.deepEqual(fallback.manifests.map((m) => m.digest).sort(), [digestOf('fusionMystery'), digestOf('fusionSbom')].sort());
  t.is(fallback.manifests.find((m) => m.digest === digestOf('fusionSbom'))?.artifactType, 'application/spdx+json');
  const armFallback = JSON.parse((await at('groke/radar', `sha256-${arm.digest.slice(7)}`)).toString()) as { manifests: Descriptor[] };
  t.deepEqual(armFallback.manifests.map((m) => m.digest), [digestOf('armSbom')]);

  // An outside check of the vessel copy: openssl verifies the ECDSA signature over the payload.
  const dir = await tempDir(t);
  const sigManifest = JSON.parse((await at('groke/fusion', tagFor(fx.fusion.digest, 'sig'))).toString()) as { layers: Descriptor[] };
  const layer = sigManifest.layers[0] as Descriptor;
  const payload = Buffer.from(await (await fetch(`http://${v.registry.host}/v2/groke/fusion/blobs/${layer.digest}`)).arrayBuffer());
  await writeFile(join(dir, 'payload.json'), payload);
  await writeFile(join(dir, 'sig.der'), Buffer.from(layer.annotations?.[SIGNATURE_ANNOTATION] ?? '', 'base64'));
  const verified = await execa('openssl', ['dgst', '-sha256', '-verify', fx.keyAFile, '-signature', join(dir, 'sig.der'), join(dir, 'payload.json')], { reject: false });
  t.is(verified.exitCode, 0, verified.stderr);
  t.regex(verified.stdout, /Verified OK/);
  const named = (JSON.parse(payload.toString()) as { critical: { image: { 'docker-manifest-digest': string } } }).critical.image['docker-manifest-digest'];
  t.is(named, fx.fusion.digest);
  t.is(sha(await at('groke/fusion', named)), named, 'the payload names the image the vessel serves');
  void client;

  // Re-importing changes nothing and sets no tag again.
  const again = await importOk(v, fx.bundle);
  t.like(again, { alreadyHeld: true });
});

test('--no-referrers leaves them out of the bundle and the release', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'bare.bundle');
  const r = await runCli(['build', fx.spec, '-o', out, '--no-referrers', '--json', '--no-progress', '--unsigned'], env);
  t.is(r.code, 0, r.stderr);
  const release = await releaseOf(out);
  t.true(release.images.every((i) => i.referrers === undefined));
  const u = await unpackBundle(out);
  t.is(u.index.manifests.length, 3, 'index.json: the release and its two images, nothing else');
  t.false(u.entries.some((e) => e.name === `blobs/sha256/${digestOf('fusionSig').slice(7)}`));
});

test('--platform linux/arm64 keeps the arm64 manifest\'s referrers and drops amd64\'s', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'arm.bundle');
  const r = await runCli(['build', fx.spec, '-o', out, '--platform', 'linux/arm64', '--json', '--no-progress', '--unsigned'], env);
  t.is(r.code, 0, r.stderr);
  const radar = image(await releaseOf(out), 'groke/radar');
  const { index, arm, amd } = fx.radar;
  t.is(radar.digest, arm.digest);
  t.is(radar.sourceDigest, index.digest);
  const digests = (radar.referrers ?? []).map((x) => x.digest);
  t.true(digests.includes(digestOf('armSig')) && digests.includes(digestOf('armSbom')), 'arm64\'s signature and SBOM are kept');
  t.false(digests.includes(digestOf('amdSig')) || digests.includes(digestOf('amdSbom')), 'amd64\'s are not');
  t.false((radar.referrers ?? []).some((x) => x.subject === amd.digest));
  t.true(digests.includes(digestOf('radarSig')), 'the index\'s signature stays, as the signature of the digest the source named');
  t.false(digests.includes(digestOf('radarSbom')), 'an OCI referrer of the index the filter replaced has no subject in the bundle: left out');
  const u = await unpackBundle(out);
  t.false(u.entries.some((e) => e.name === `blobs/sha256/${digestOf('amdSbom').slice(7)}`), 'amd64\'s SBOM is not in the bundle');
});

test('--image-key refuses an unsigned image, another key\'s signature and a payload naming another digest, each with its code; a good signature passes and verify --images checks it offline', async (t) => {
  const dir = await tempDir(t);
  const one = async (tag: string, ...extra: string[]): Promise<Awaited<ReturnType<typeof runCli>>> => {
    const spec = join(fx.work, `${tag}.yaml`);
    await writeFile(spec, specText(tag, '1.0.0', [{ ref: `shore.example.com/groke/${tag.split('-')[0]}:1.0.0`, from: `oci:./layout:${tag}` }]));
    return runCli(['build', spec, '-o', join(dir, `${tag}.bundle`), '--sign', fx.releaseKey, '--json', '--no-progress', ...extra], env);
  };
  const unsigned = await one('bare-1.0.0', '--image-key', fx.keyAFile);
  t.is(unsigned.code, 1);
  t.is(unsigned.json.error?.code, 'E_IMAGE_UNSIGNED');
  t.regex(unsigned.json.error?.message ?? '', /groke\/bare:1\.0\.0/, 'names the image');

  const otherKey = await one('other-1.0.0', '--image-key', fx.keyAFile);
  t.is(otherKey.code, 1);
  t.is(otherKey.json.error?.code, 'E_IMAGE_SIGNATURE_INVALID');
  t.regex(otherKey.json.error?.message ?? '', /groke\/other:1\.0\.0.*no signature by the key/);
  t.is((await one('other-1.0.0', '--image-key', fx.keyBFile)).code, 0, 'the same image passes with the key that signed it');

  const lifted = await one('lifted-1.0.0', '--image-key', fx.keyAFile);
  t.is(lifted.code, 1);
  t.is(lifted.json.error?.code, 'E_IMAGE_SIGNATURE_INVALID');
  t.regex(lifted.json.error?.message ?? '', new RegExp(`names ${fx.fusion.digest}`), 'a valid signature for another image does not count');
  for (const tag of ['bare-1.0.0', 'lifted-1.0.0']) {
    await t.throwsAsync(() => import('node:fs/promises').then((fs) => fs.stat(join(dir, `${tag}.bundle`))), undefined, `no ${tag} bundle is left`);
  }

  // A good signature: with --image-key, and with imagePolicy in release.yaml (either key may sign).
  const good = await runCli(['build', fx.spec, '-o', join(dir, 'good.bundle'), '--sign', fx.releaseKey, '--image-key', fx.keyAFile, '--json', '--no-progress'], env);
  t.is(good.code, 0, good.stdout + good.stderr);
  const policySpec = join(fx.work, 'policy.yaml');
  await writeFile(
    policySpec,
    specText('supply', '1.0.0', [{ ref: `${fx.shore.host}/groke/radar:2.0.0` }, { ref: 'shore.example.com/groke/fusion:1.4.0', from: 'oci:./layout:fusion-1.4.0' }], 'imagePolicy:\n  keys: [cosign-b.pub, cosign-a.pub]\n'),
  );
  const policy = join(dir, 'policy.bundle');
  const byPolicy = await runCli(['build', policySpec, '-o', policy, '--sign', fx.releaseKey, '--json', '--no-progress'], env);
  t.is(byPolicy.code, 0, byPolicy.stdout + byPolicy.stderr);
  const bareSpec = join(fx.work, 'bare-policy.yaml');
  await writeFile(bareSpec, specText('bare', '1.0.0', [{ ref: 'shore.example.com/groke/bare:1.0.0', from: 'oci:./layout:bare-1.0.0' }], 'imagePolicy:\n  keys: [cosign-a.pub]\n'));
  const refused = await runCli(['build', bareSpec, '-o', join(dir, 'bare-policy.bundle'), '--sign', fx.releaseKey, '--json', '--no-progress'], env);
  t.is(refused.json.error?.code, 'E_IMAGE_UNSIGNED', 'the release spec alone requires signatures');

  // Offline, inside the bundle: the keys the signed release names, or --image-key.
  const checked = await runCli(['verify', policy, '--trust', fx.trust, '--images', '--json']);
  t.is(checked.code, 0, checked.stdout + checked.stderr);
  const reports = checked.json['images'] as { ref: string; signedBy: string[] }[];
  t.is(reports.length, 2);
  t.true(reports.every((x) => x.signedBy.length === 1));
  const noKeys = await runCli(['verify', fx.bundle, '--trust', fx.trust, '--images', '--json']);
  t.is(noKeys.json.error?.code, 'E_USAGE', 'a release without an image policy needs --image-key');
  t.is((await runCli(['verify', fx.bundle, '--trust', fx.trust, '--images', '--image-key', fx.keyAFile, '--json'])).code, 0);
  const wrongKey = await runCli(['verify', fx.bundle, '--trust', fx.trust, '--images', '--image-key', fx.keyBFile, '--json']);
  t.is(wrongKey.code, 1);
  t.is(wrongKey.json.error?.code, 'E_IMAGE_SIGNATURE_INVALID');
});

test('verify --images --image-key accepts only the pinned keys, never an image key the release itself names; without --image-key it uses the release\'s and says so', async (t) => {
  // A release (signed by the release key, which a thief may hold) names keys A and B in its
  // imagePolicy; "other" is signed by B only. The operator pins A.
  const dir = await tempDir(t);
  const spec = join(fx.work, 'brings-own-key.yaml');
  await writeFile(
    spec,
    specText('brings', '1.0.0', [{ ref: 'shore.example.com/groke/fusion:1.4.0', from: 'oci:./layout:fusion-1.4.0' }, { ref: 'shore.example.com/groke/other:1.0.0', from: 'oci:./layout:other-1.0.0' }], 'imagePolicy:\n  keys: [cosign-b.pub, cosign-a.pub]\n'),
  );
  const bundle = join(dir, 'brings.bundle');
  const built = await runCli(['build', spec, '-o', bundle, '--sign', fx.releaseKey, '--json', '--no-progress'], env);
  t.is(built.code, 0, built.stdout + built.stderr);

  const pinned = await runCli(['verify', bundle, '--trust', fx.trust, '--images', '--image-key', fx.keyAFile, '--json']);
  t.is(pinned.code, 1, pinned.stdout + pinned.stderr);
  t.is(pinned.json.error?.code, 'E_IMAGE_SIGNATURE_INVALID');
  t.regex(pinned.json.error?.message ?? '', /groke\/other:1\.0\.0/, 'names the image signed only by the release\'s own key');

  const both = await runCli(['verify', bundle, '--trust', fx.trust, '--images', '--image-key', fx.keyAFile, '--image-key', fx.keyBFile, '--json']);
  t.is(both.code, 0, both.stdout + both.stderr);
  const bothKeys = both.json['imageKeys'] as { source: string; keyids: string[] };
  t.is(bothKeys.source, 'image-key');
  t.is(bothKeys.keyids.length, 2);

  const byRelease = await runCli(['verify', bundle, '--trust', fx.trust, '--images', '--json']);
  t.is(byRelease.code, 0, byRelease.stdout + byRelease.stderr);
  t.is((byRelease.json['imageKeys'] as { source: string }).source, 'release');
  const text = await runCli(['verify', bundle, '--trust', fx.trust, '--images', '--no-progress']);
  t.regex(text.stdout, /image keys: the release's imagePolicy \(no --image-key given\)/);
});

test('a delta bundle carries referrers; blobs the vessel has are left out and the tags still land', async (t) => {
  const v = await startVessel(t);
  const dir = await tempDir(t);
  // 1.0.0 without referrers, then 1.0.1 as a delta against the vessel's inventory: the images are
  // left out, the referrers are new and travel.
  const v1 = join(dir, 'v1.bundle');
  await cli(['build', fx.spec, '-o', v1, '--sign', fx.releaseKey, '--no-referrers']);
  await importOk(v, v1, '--trust', fx.trust);
  t.is(await v.tag('groke/fusion', tagFor(fx.fusion.digest, 'sig')), undefined);
  const inventory = join(dir, 'inventory.json');
  t.is((await v.run(['inventory', '-o', inventory])).code, 0);
  const spec2 = join(fx.work, 'supply-1.0.1.yaml');
  await writeFile(spec2, specText('supply', '1.0.1', [{ ref: `${fx.shore.host}/groke/radar:2.0.0` }, { ref: 'shore.example.com/groke/fusion:1.4.0', from: 'oci:./layout:fusion-1.4.0' }]));
  const v2 = join(dir, 'v2.bundle');
  await cli(['build', spec2, '-o', v2, '--sign', fx.releaseKey, '--since', inventory]);
  const r2 = await releaseOf(v2);
  t.true(r2.omittedBlobs.length > 0, 'a delta');
  t.is(image(r2, 'groke/fusion').referrers?.length, 4);
  await importOk(v, v2);
  t.is(await v.tag('groke/fusion', tagFor(fx.fusion.digest, 'sig')), digestOf('fusionSig'));
  t.is(await v.tag('groke/radar', tagFor(fx.radar.index.digest, 'att')), digestOf('radarAtt'));

  // 1.0.2 against the new inventory: the referrers' blobs are on the vessel now, so they are left out too.
  const inventory2 = join(dir, 'inventory-2.json');
  t.is((await v.run(['inventory', '-o', inventory2])).code, 0);
  const spec3 = join(fx.work, 'supply-1.0.2.yaml');
  await writeFile(spec3, specText('supply', '1.0.2', [{ ref: `${fx.shore.host}/groke/radar:2.0.0` }, { ref: 'shore.example.com/groke/fusion:1.4.0', from: 'oci:./layout:fusion-1.4.0' }]));
  const v3 = join(dir, 'v3.bundle');
  await cli(['build', spec3, '-o', v3, '--sign', fx.releaseKey, '--since', inventory2]);
  const r3 = await releaseOf(v3);
  const payload = ((fx.made['fusionSig'] as Artifact).blobs[1] as Artifact['blobs'][number]).desc.digest;
  t.true(r3.omittedBlobs.includes(payload as `sha256:${string}`), 'the signature payload the vessel holds is left out');
  t.is((await runCli(['verify', v3, '--trust', fx.trust, '--json'])).code, 0);
  await importOk(v, v3);
  t.is(sha(await skopeoRaw(`${v.registry.host}/groke/fusion:${tagFor(fx.fusion.digest, 'sig')}`)), digestOf('fusionSig'));
});

test('index.json naming a referrer the signed release does not list is refused (E_LAYOUT_INVALID), and so is one it leaves out', async (t) => {
  const dir = await tempDir(t);
  const u = await unpackBundle(fx.bundle);
  const extra = structuredClone(u);
  extra.index.manifests.push({ ...(fx.made['otherSig'] as Artifact).manifest.desc, annotations: { 'org.opencontainers.image.ref.name': 'shore.example.com/groke/fusion:sha256-0.sig' } });
  await packBundle(extra, join(dir, 'extra.bundle'));
  const r1 = await runCli(['verify', join(dir, 'extra.bundle'), '--trust', fx.trust, '--json']);
  t.is(r1.code, 1);
  t.is(r1.json.error?.code, 'E_LAYOUT_INVALID');
  const missing = structuredClone(u);
  missing.index.manifests = missing.index.manifests.filter((m) => m.digest !== digestOf('fusionSbom'));
  await packBundle(missing, join(dir, 'missing.bundle'));
  const r2 = await runCli(['verify', join(dir, 'missing.bundle'), '--trust', fx.trust, '--json']);
  t.is(r2.code, 1);
  t.is(r2.json.error?.code, 'E_LAYOUT_INVALID');
  t.regex(r2.json.error?.message ?? '', /does not list the referrer/);
});

test('a referrers list naming a manifest about another image is not carried; over 512 referrers for one image is E_LAYOUT_INVALID naming the limit', async (t) => {
  const dir = await tempDir(t);
  const layoutDir = join(dir, 'layout');
  const lone = await buildImage(layoutDir, 'lone-1.0.0', { files: { 'etc/seabag-release': 'lone\n' } });
  const layout = await OciLayout.open(layoutDir);
  // The fallback tag of `lone` lists an SBOM whose subject is fusion: a lie the build must not carry.
  const stray = spdxReferrer('not lone', fx.fusion);
  await addToLayout(layout, stray);
  const fallback = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [stray.manifest.desc] }));
  const fallbackDesc = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: sha(fallback) as `sha256:${string}`, size: fallback.length };
  await writeFile(layout.path(fallbackDesc), fallback);
  await layout.updateIndex((index) => ({ ...index, manifests: [...index.manifests, { ...fallbackDesc, annotations: { 'org.opencontainers.image.ref.name': `sha256-${lone.digest.slice(7)}` } }] }));
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, specText('lone', '1.0.0', [{ ref: 'shore.example.com/groke/lone:1.0.0', from: 'oci:./layout:lone-1.0.0' }]));
  const ok = await runCli(['build', spec, '-o', join(dir, 'ok.bundle'), '--json', '--no-progress', '--unsigned'], env);
  t.is(ok.code, 0, ok.stdout + ok.stderr);
  t.is(image(await releaseOf(join(dir, 'ok.bundle')), 'groke/lone').referrers, undefined, 'a manifest about another image is no referrer of this one');

  // 513 referrers of one image: written straight into the layout (one index update).
  const many: Descriptor[] = [];
  for (let i = 0; i <= 512; i += 1) {
    const a = spdxReferrer(`lone ${i}`, lone);
    for (const b of [...a.blobs, a.manifest]) await writeFile(layout.path(b.desc), b.data);
    many.push(a.manifest.desc);
  }
  await layout.updateIndex((index) => ({ ...index, manifests: [...index.manifests, ...many] }));
  const over = await runCli(['build', spec, '-o', join(dir, 'over.bundle'), '--json', '--no-progress', '--unsigned'], env);
  t.is(over.code, 1);
  t.is(over.json.error?.code, 'E_LAYOUT_INVALID');
  t.is(over.json.error?.details['limit'], 512);
  const bare = await runCli(['build', spec, '-o', join(dir, 'bare.bundle'), '--no-referrers', '--json', '--no-progress', '--unsigned'], env);
  t.is(bare.code, 0, 'the hint holds: --no-referrers builds it');
});

test('where a registry has the referrers API (a stand-in proxy over Distribution, which has none), build asks it and import leaves the fallback tag to the registry', async (t) => {
  const dir = await tempDir(t);
  const source = await startReferrersApi(fx.shore, t.teardown.bind(t));
  const { arm } = fx.radar;
  // An SBOM pushed by digest through the API registry: no fallback tag anywhere, only the API lists it.
  const viaApi = spdxReferrer('radar arm64, listed by the API', arm);
  const client = await RegistryClient.create(source.host);
  t.teardown(() => client.close());
  await pushToRegistry(client.repository('groke/radar'), viaApi);
  t.is(source.listed('groke/radar', arm.digest).length, 1);

  const spec = join(dir, 'release.yaml');
  await writeFile(spec, specText('api', '1.0.0', [{ ref: `${source.host}/groke/radar:2.0.0` }]));
  const out = join(dir, 'api.bundle');
  const built = await runCli(['build', spec, '-o', out, '--sign', fx.releaseKey, '--json', '--no-progress'], env);
  t.is(built.code, 0, built.stdout + built.stderr);
  t.true(source.asked.includes(`groke/radar@${arm.digest}`), 'the build asked the referrers API');
  const digests = (image(await releaseOf(out), 'groke/radar').referrers ?? []).map((r) => r.digest);
  t.true(digests.includes(viaApi.manifest.desc.digest), 'the referrer only the API lists is carried');
  t.true(digests.includes(digestOf('armSbom')), 'and the one the fallback tag lists too');

  const vesselRegistry = await startRegistry({}, t.teardown.bind(t));
  const vessel = await startReferrersApi(vesselRegistry, t.teardown.bind(t));
  const r = await runCli(['import', out, '--trust', fx.trust, '--json', '--no-progress'], { SEABAG_STATE_DIR: join(dir, 'state'), SEABAG_REGISTRY: vessel.host });
  t.is(r.code, 0, r.stdout + r.stderr);
  t.deepEqual(vessel.listed('groke/radar', arm.digest).map((d) => d.digest).sort(), [digestOf('armSbom'), viaApi.manifest.desc.digest].sort(), 'the registry lists both');
  const direct = await RegistryClient.create(vesselRegistry.host);
  t.teardown(() => direct.close());
  t.is(await direct.repository('groke/radar').tagDigest(`sha256-${arm.digest.slice(7)}`), undefined, 'no fallback tag written where the registry keeps the list');
  t.is(await direct.repository('groke/radar').tagDigest(tagFor(arm.digest, 'sig')), digestOf('armSig'));
});

test('an oci-archive: source gives the same referrers as the layout folder; a docker-archive: source has none', async (t) => {
  const dir = await tempDir(t);
  const tarball = join(dir, 'layout.tar');
  await execa('tar', ['-cf', tarball, '-C', fx.layout, 'oci-layout', 'index.json', 'blobs']);
  const dockerArchive = join(dir, 'fusion.docker.tar');
  await execa('skopeo', ['copy', '--quiet', `oci:${fx.layout}:fusion-1.4.0`, `docker-archive:${dockerArchive}:shore.example.com/groke/fusion:1.4.0`]);
  const referrersFrom = async (from: string): Promise<string[]> => {
    const spec = join(dir, `${from.split(':')[0]}.yaml`);
    await writeFile(spec, specText('fusion', '1.4.0', [{ ref: 'shore.example.com/groke/fusion:1.4.0', from }]));
    const out = join(dir, `${from.split(':')[0]}.bundle`);
    const r = await runCli(['build', spec, '-o', out, '--json', '--no-progress', '--unsigned'], env);
    if (r.code !== 0) throw new Error(r.stdout + r.stderr);
    return (image(await releaseOf(out), 'groke/fusion').referrers ?? []).map((x) => `${x.kind} ${x.digest}`).sort();
  };
  const fromFolder = await referrersFrom(`oci:${fx.layout}:fusion-1.4.0`);
  t.is(fromFolder.length, 4);
  t.deepEqual(await referrersFrom(`oci-archive:${tarball}:fusion-1.4.0`), fromFolder);
  t.deepEqual(await referrersFrom(`docker-archive:${dockerArchive}`), []);
});

test('push to a shore registry, then import oci:// and pull: the referrers arrive with identical digests and the pulled bundle is the pushed one byte for byte', async (t) => {
  const dir = await tempDir(t);
  const shore = await startRegistry({}, t.teardown.bind(t));
  const pushed = await runCli(['push', fx.bundle, `oci://${shore.host}/releases/supply`, '--json', '--no-progress'], env);
  t.is(pushed.code, 0, pushed.stdout + pushed.stderr);
  const v = await startVessel(t);
  await importOk(v, `oci://${shore.host}/releases/supply:1.0.0`, '--trust', fx.trust);
  for (const [repo, tag, name] of [
    ['groke/fusion', tagFor(fx.fusion.digest, 'sig'), 'fusionSig'],
    ['groke/fusion', tagFor(fx.fusion.digest, 'att'), 'fusionAtt'],
    ['groke/radar', tagFor(fx.radar.arm.digest, 'sig'), 'armSig'],
  ] as const) {
    t.is(sha(await skopeoRaw(`${v.registry.host}/${repo}:${tag}`)), digestOf(name), `${repo}:${tag}`);
  }
  t.is(sha(await skopeoRaw(`${v.registry.host}/groke/fusion@${digestOf('fusionSbom')}`)), digestOf('fusionSbom'));
  const fallback = JSON.parse((await skopeoRaw(`${v.registry.host}/groke/fusion:sha256-${fx.fusion.digest.slice(7)}`)).toString()) as { manifests: Descriptor[] };
  t.true(fallback.manifests.some((m) => m.digest === digestOf('fusionSbom')));

  const out = join(dir, 'pulled.bundle');
  const pulled = await runCli(['pull', `oci://${shore.host}/releases/supply:1.0.0`, '-o', out, '--json', '--no-progress'], env);
  t.is(pulled.code, 0, pulled.stdout + pulled.stderr);
  const hash = async (p: string): Promise<string> => sha(await import('node:fs/promises').then((fs) => fs.readFile(p)));
  t.is(await hash(out), await hash(fx.bundle), 'byte-identical');
});

test('image keys: Ed25519 verifies as ECDSA P-256 does; RSA and P-384 keys are E_KEY_INVALID; a payload of another type or a forged signature does not count', (t) => {
  const payload = Buffer.from(JSON.stringify({ critical: { identity: { 'docker-reference': 'x' }, image: { 'docker-manifest-digest': fx.fusion.digest }, type: 'cosign container image signature' }, optional: null }));
  const ed = generateKeyPairSync('ed25519');
  const edKey = parseImageKey(ed.publicKey.export({ type: 'spki', format: 'pem' }));
  t.is(edKey.algorithm, 'ed25519');
  t.like(checkCosignSignature(payload, sign(null, payload, ed.privateKey).toString('base64'), [edKey], fx.fusion.digest), { valid: true, keyid: edKey.keyid });
  const ecKeyA = parseImageKey(fx.keyA.publicPem);
  const good = sign('sha256', payload, fx.keyA.privateKey).toString('base64');
  t.like(checkCosignSignature(payload, good, [edKey, ecKeyA], fx.fusion.digest), { valid: true, keyid: ecKeyA.keyid });
  t.like(checkCosignSignature(payload, good, [edKey], fx.fusion.digest), { valid: false, fault: 'key' });
  const flipped = Buffer.from(good, 'base64');
  flipped.writeUInt8((flipped.at(-1) ?? 0) ^ 1, flipped.length - 1);
  t.like(checkCosignSignature(payload, flipped.toString('base64'), [ecKeyA], fx.fusion.digest), { valid: false, fault: 'key' });
  const other = Buffer.from(payload.toString().replace('cosign container image signature', 'atomic container signature'));
  t.like(checkCosignSignature(other, sign('sha256', other, fx.keyA.privateKey).toString('base64'), [ecKeyA], fx.fusion.digest), { valid: false, fault: 'payload' });
  for (const [type, opts] of [
    ['rsa', { modulusLength: 2048 }],
    ['ec', { namedCurve: 'P-384' }],
  ] as const) {
    const { publicKey } = generateKeyPairSync(type as 'rsa', opts as { modulusLength: number });
    const err = t.throws(() => parseImageKey(publicKey.export({ type: 'spki', format: 'pem' })));
    t.is((err as { code?: string }).code, 'E_KEY_INVALID', type);
  }
});
