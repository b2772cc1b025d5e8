/**
 * A hostile release spec: manifests that hide an image behind YAML 1.1 constructs (merge keys,
 * anchors and aliases, merged sequences, nested merges, `!!merge` tags) in every workload kind,
 * and `manifests:`/`deviceProfiles:` entries that reach outside the release folder. Kubernetes
 * reads manifests as YAML 1.1; `bundle build` must check and pin what the cluster will run, and
 * read nothing it was not given (`imagePolicy.keys` included). And nothing is built and signed
 * that a bundle reader would refuse: a manifest over the reader's per-blob metadata cap.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { parseAllDocuments } from 'yaml';
import { generateKeyPair, makeRootSigned, openBundle, parsePrivateKey, parsePublicKey, signRoot } from '../../lib/index.js';
import { METADATA_LIMITS } from '../../lib/release/metadata.js';
import { imageFields } from '../../lib/bundle/k8s.js';
import { fluxArtifact } from '../../lib/vessel/flux.js';
import { SeabagError } from '../../lib/errors.js';
import { runCli } from '../helpers/cli.js';
import { EPOCH, makeExampleImages } from '../helpers/example.js';
import { outcomeOf, Report } from './report.js';

const report = new Report('release-input');
let layout = '';
let work = '';

test.before(async () => {
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  work = await mkdtemp(join(tmpdir(), 'seabag-release-input-'));
  layout = await makeExampleImages(work);
});

test.after.always(async () => {
  await report.write();
  const { rm } = await import('node:fs/promises');
  await rm(work, { recursive: true, force: true });
});

let counter = 0;

/** A release folder with release.yaml (fusion 1.4.0 and toolbox:1) and the given files. */
async function release(files: Record<string, string>, extra = 'manifests: [k8s/]'): Promise<string> {
  counter += 1;
  const dir = join(work, `case-${counter}`);
  await mkdir(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  const spec = join(dir, 'release.yaml');
  await writeFile(
    spec,
    [
      'apiVersion: seabag.dev/v1',
      'kind: Release',
      'name: awareness',
      'version: 1.4.0',
      'images:',
      '  - ref: shore.example.com/groke/fusion:1.4.0',
      `    from: oci:${layout}:fusion-1.4.0`,
      '  - ref: groke/toolbox:1',
      `    from: oci:${layout}:toolbox-1.0.0`,
      extra,
      '',
    ].join('\n'),
  );
  return spec;
}

async function build(spec: string): Promise<Awaited<ReturnType<typeof runCli>>> {
  return runCli(['build', spec, '-o', join(spec, '..', 'out.bundle'), '--json', '--no-progress', '--unsigned'], { SOURCE_DATE_EPOCH: EPOCH });
}

/** A workload of `kind` whose pod spec is `pod` (indented YAML lines of a pod spec). */
function workload(kind: string, pod: string[]): string {
  const indent = (n: number): string[] => pod.map((l) => `${' '.repeat(n)}${l}`);
  const head = ['x-hidden: &evil', '  image: attacker.example/miner:latest', '  name: sidecar', 'x-named: &named', '  name: named'];
  switch (kind) {
    case 'Pod':
      return [...head, 'apiVersion: v1', 'kind: Pod', 'metadata: {name: p}', 'spec:', ...indent(2)].join('\n');
    case 'CronJob':
      return [...head, 'apiVersion: batch/v1', 'kind: CronJob', 'metadata: {name: c}', 'spec:', '  schedule: "* * * * *"', '  jobTemplate:', '    spec:', '      template:', '        spec:', ...indent(10)].join('\n');
    case 'Akri':
      return [...head, 'apiVersion: akri.sh/v0', 'kind: Configuration', 'metadata: {name: a}', 'spec:', '  brokerSpec:', '    brokerPodSpec:', ...indent(6)].join('\n');
    default:
      return [...head, 'apiVersion: apps/v1', `kind: ${kind}`, 'metadata: {name: w}', 'spec:', '  template:', '    spec:', ...indent(6)].join('\n');
  }
}

const KINDS = ['Pod', 'Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job', 'CronJob', 'Akri'];

/** Ways to hide the attacker's image in a container list (pod spec lines). */
const HIDINGS: Record<string, string[]> = {
  'merge key in containers': ['containers:', '  - name: app', '    image: groke/toolbox:1', '  - <<: *evil'],
  'merge key in initContainers': ['containers:', '  - {name: app, image: groke/toolbox:1}', 'initContainers:', '  - <<: *evil'],
  'merge key in ephemeralContainers': ['containers:', '  - {name: app, image: groke/toolbox:1}', 'ephemeralContainers:', '  - <<: *evil'],
  'merge of a sequence of maps': ['containers:', '  - <<: [*named, *evil]'],
  'nested merge': ['containers:', '  - <<: {<<: *evil, name: inner}'],
  '!!merge tag': ['containers:', '  - !!merge <<: *evil'],
  'alias of a whole container': ['containers:', '  - *evil'],
};

test.serial('images hidden behind YAML 1.1 merge keys and aliases in every workload kind are refused (exit 2)', async (t) => {
  for (const kind of KINDS) {
    for (const [how, pod] of Object.entries(HIDINGS)) {
      const r = await build(await release({ 'k8s/app.yaml': `${workload(kind, pod)}\n` }));
      report.add('release input', `unreleased image behind YAML 1.1: ${how}`, 'exit 2 E_IMAGE_NOT_IN_RELEASE', outcomeOf(r), 'n/a');
      t.is(r.code, 2, `${kind}, ${how}: ${r.stdout}`);
      t.is(r.json.error?.code, 'E_IMAGE_NOT_IN_RELEASE', `${kind}, ${how}`);
      t.regex(r.json.error?.message ?? '', /attacker\.example\/miner/);
    }
  }
});

test.serial('a quoted "<<" key, which a YAML 1.1 reader of the output would merge, is refused', async (t) => {
  const r = await build(await release({ 'k8s/app.yaml': `${workload('Deployment', ['containers:', '  - name: app', '    image: groke/toolbox:1', '    "<<": {image: attacker.example/miner:latest}'])}\n` }));
  report.add('release input', 'quoted "<<" key (a merge key once written for YAML 1.1)', 'exit 2 E_SPEC_INVALID', outcomeOf(r), 'n/a');
  t.is(r.code, 2);
  t.is(r.json.error?.code, 'E_SPEC_INVALID');
});

test.serial('released images merged in are pinned, and the signed manifest holds no anchor, alias or merge key', async (t) => {
  const text = [
    'x-base: &base',
    '  image: groke/toolbox:1',
    '  imagePullPolicy: IfNotPresent',
    'x-fusion: &fusion {image: "shore.example.com/groke/fusion:1.4.0"}',
    'apiVersion: apps/v1',
    'kind: Deployment',
    'metadata: {name: fusion}',
    'spec:',
    '  template:',
    '    spec:',
    '      initContainers:',
    '        - <<: *base',
    '          name: prepare',
    '      containers:',
    '        - <<: [*fusion, *base]',
    '          name: fusion',
    '          env: [{name: FLAG, value: "on"}]',
    '',
  ].join('\n');
  const spec = await release({ 'k8s/app.yaml': text });
  const r = await build(spec);
  t.is(r.code, 0, r.stdout);
  const bundle = await openBundle(join(spec, '..', 'out.bundle'));
  t.teardown(() => bundle.close());
  const layers = bundle.releaseManifest.layers.filter((l) => (l.annotations?.['org.opencontainers.image.title'] ?? '').includes('app.yaml'));
  t.is(layers.length, 1);
  const pinned = (await bundle.archive.readSmall(layers[0] as never)).toString('utf8');
  t.notRegex(pinned, /<<|&\w|\*\w/, pinned);
  const [doc] = parseAllDocuments(pinned, { version: '1.1' });
  const data = doc?.toJS() as unknown;
  const fields = imageFields(data).map((f) => f.image as string);
  t.is(fields.length, 2);
  for (const image of fields) t.regex(image, /@sha256:[0-9a-f]{64}$/);
  // containers[0]: the earlier map of a merged sequence wins (YAML 1.1), the fusion image, not toolbox.
  t.regex(fields[0] ?? '', /^shore\.example\.com\/groke\/fusion@/);
  // "on" stays a string for a YAML 1.1 reader.
  t.regex(pinned, /value: "on"/);
});

test.serial('manifests and device profiles outside the release folder are refused; an entry matching nothing is an error', async (t) => {
  const outside = join(work, 'outside');
  await mkdir(outside, { recursive: true });
  await writeFile(join(outside, 'secret.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\ndata: {key: "shore secret"}\n');
  const cases: { name: string; files: Record<string, string>; extra: string; code: string; prepare?: (dir: string) => Promise<void> }[] = [
    { name: 'manifests entry with ..', files: {}, extra: 'manifests: [../outside/]', code: 'E_SPEC_INVALID' },
    { name: 'manifests entry absolute', files: {}, extra: `manifests: [${join(outside, 'secret.yaml')}]`, code: 'E_SPEC_INVALID' },
    { name: 'deviceProfiles entry with ..', files: {}, extra: 'deviceProfiles: [devices/../../outside/]', code: 'E_SPEC_INVALID' },
    {
      name: 'symlinked folder out of the release',
      files: {},
      extra: 'manifests: [k8s/]',
      code: 'E_SPEC_INVALID',
      prepare: async (dir) => symlink(outside, join(dir, 'k8s')),
    },
    {
      name: 'symlinked file inside a manifests folder',
      files: { 'k8s/ok.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n' },
      extra: 'manifests: [k8s/]',
      code: 'E_SPEC_INVALID',
      prepare: async (dir) => symlink(join(outside, 'secret.yaml'), join(dir, 'k8s', 'stolen.yaml')),
    },
    { name: 'manifests folder with no YAML file', files: { 'k8s/README.txt': 'nothing\n' }, extra: 'manifests: [k8s/]', code: 'E_SPEC_INVALID' },
    { name: 'manifests entry that does not exist', files: {}, extra: 'manifests: [k8z/]', code: 'E_FILE_NOT_FOUND' },
  ];
  for (const c of cases) {
    const spec = await release(c.files, c.extra);
    await c.prepare?.(join(spec, '..'));
    const r = await build(spec);
    report.add('release input', `spec path: ${c.name}`, `exit 2 ${c.code}`, outcomeOf(r), 'n/a');
    t.is(r.code, 2, `${c.name}: ${r.stdout}`);
    t.is(r.json.error?.code, c.code, c.name);
    t.notRegex(r.stdout, /shore secret/);
  }
});

test('aboard, a manifest name from a release cannot leave its folder in the Flux artifact', async (t) => {
  for (const name of ['../../etc/cron.d/x.yaml', '/etc/passwd', 'k8s/../../x.yaml', 'k8s//x.yaml', 'a\\..\\b.yaml', 'k8s/\u001b[2Jx.yaml', '']) {
    const err = await t.throwsAsync(fluxArtifact([{ path: name, text: 'a: 1\n' }], {}));
    t.true(err instanceof SeabagError && err.code === 'E_ARCHIVE_UNSAFE', name);
    report.add('release input', 'release names a manifest file outside its folder (Flux tar entry)', 'E_ARCHIVE_UNSAFE', err instanceof SeabagError ? `refused ${err.code}` : 'written', 'n/a');
  }
  await t.notThrowsAsync(fluxArtifact([{ path: 'k8s/fusion.yaml', text: 'a: 1\n' }], {}));
});

/** A ConfigMap manifest of `bytes` bytes in all (one long value: valid YAML, nothing to pin). */
function configMap(bytes: number): string {
  const head = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ballast}\ndata:\n  blob: "';
  const tail = '"\n';
  return `${head}${'x'.repeat(bytes - head.length - tail.length)}${tail}`;
}

test.serial('a manifest or device profile the bundle reader would refuse (over its 4 MiB metadata cap) is refused at build, exit 2; a manifest just under builds, signs and verifies', async (t) => {
  const limit = METADATA_LIMITS.maxBlobBytes;
  const over = await release({ 'k8s/big.yaml': configMap(5 * 1024 * 1024) });
  const r = await build(over);
  report.add('release input', 'manifest of 5 MiB (under the 16 MiB spec-file cap, over the reader\'s 4 MiB blob cap)', 'exit 2 E_SPEC_INVALID', outcomeOf(r), 'n/a');
  t.is(r.code, 2, r.stdout);
  t.is(r.json.error?.code, 'E_SPEC_INVALID');
  t.regex(r.json.error?.message ?? '', /big\.yaml/, 'the file is named');
  t.regex(r.json.error?.message ?? '', new RegExp(`${limit}-byte`), 'the reader\'s limit is named');
  t.regex(r.json.error?.message ?? '', /16 MiB/, 'the spec-file limit is named');
  t.false(existsSync(join(over, '..', 'out.bundle')), 'no output file');

  // A device profile whose rendered Akri Configuration is over the cap (a 5 MiB broker env value).
  const profile = [
    'apiVersion: seabag.dev/v1',
    'kind: DeviceProfile',
    'name: cam',
    'discovery:',
    '  udev:',
    '    rules: [\'SUBSYSTEM=="video4linux"\']',
    'broker:',
    '  image: groke/toolbox:1',
    '  env:',
    `    BALLAST: "${'x'.repeat(5 * 1024 * 1024)}"`,
    '',
  ].join('\n');
  const overProfile = await release({ 'devices/cam.yaml': profile }, 'deviceProfiles: [devices/]');
  const p = await build(overProfile);
  report.add('release input', 'device profile rendering to over the reader\'s 4 MiB blob cap', 'exit 2 E_SPEC_INVALID', outcomeOf(p), 'n/a');
  t.is(p.code, 2, p.stdout);
  t.is(p.json.error?.code, 'E_SPEC_INVALID');
  t.regex(p.json.error?.message ?? '', /cam\.yaml/, 'the profile is named');
  t.regex(p.json.error?.message ?? '', new RegExp(`rendered device profile \\S*cam\\.yaml is \\d+ bytes: over the ${limit}-byte`), 'refused for its size');
  t.false(existsSync(join(overProfile, '..', 'out.bundle')), 'no output file');

  // Just under the cap (pinning leaves a ConfigMap as it is): builds, signs and verifies.
  const pair = generateKeyPair();
  const releaseKey = join(work, 'release.key');
  await writeFile(releaseKey, pair.privatePem);
  const rootPair = generateKeyPair();
  const trust = join(work, 'trust.json');
  const signed = makeRootSigned({
    version: 1,
    expires: new Date(Date.now() + 365 * 86_400_000),
    rootKeys: [parsePublicKey(rootPair.publicPem)],
    rootThreshold: 1,
    releaseKeys: [parsePublicKey(pair.publicPem)],
    releaseThreshold: 1,
  });
  await writeFile(trust, JSON.stringify(signRoot(signed, [parsePrivateKey(rootPair.privatePem)])));
  const under = await release({ 'k8s/big.yaml': configMap(limit - 1024) });
  const out = join(under, '..', 'out.bundle');
  const built = await runCli(['build', under, '-o', out, '--sign', releaseKey, '--json', '--no-progress'], { SOURCE_DATE_EPOCH: EPOCH });
  report.add('release input', 'manifest just under the reader\'s 4 MiB blob cap', 'exit 0, verifies', outcomeOf(built), 'n/a');
  t.is(built.code, 0, built.stdout);
  const verified = await runCli(['verify', out, '--trust', trust, '--json']);
  t.is(verified.code, 0, verified.stdout);
});

test.serial('imagePolicy keys outside the release folder (.., absolute, symlink out) are refused, exit 2; a key inside is read, regular files only', async (t) => {
  const outside = join(work, 'outside-keys');
  await mkdir(outside, { recursive: true });
  const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  await writeFile(join(outside, 'cosign.pub'), pem);
  const policy = (key: string): string => `imagePolicy:\n  keys: [${JSON.stringify(key)}]`;
  const cases: { name: string; files: Record<string, string>; key: string; code: string; prepare?: (dir: string) => Promise<void> }[] = [
    { name: 'imagePolicy key with ..', files: {}, key: '../outside-keys/cosign.pub', code: 'E_SPEC_INVALID' },
    { name: 'imagePolicy key absolute', files: {}, key: join(outside, 'cosign.pub'), code: 'E_SPEC_INVALID' },
    { name: 'imagePolicy key symlinked out', files: {}, key: 'cosign.pub', code: 'E_SPEC_INVALID', prepare: async (dir) => symlink(join(outside, 'cosign.pub'), join(dir, 'cosign.pub')) },
    { name: 'imagePolicy key in a symlinked folder out', files: {}, key: 'keys/cosign.pub', code: 'E_SPEC_INVALID', prepare: async (dir) => symlink(outside, join(dir, 'keys')) },
    { name: 'imagePolicy key that is a FIFO', files: {}, key: 'cosign.pub', code: 'E_USAGE', prepare: async (dir) => void execFileSync('mkfifo', [join(dir, 'cosign.pub')]) },
    // The control: the same key inside the folder is read, and the unsigned images then fail the policy.
    { name: 'imagePolicy key inside the folder (control)', files: { 'keys/cosign.pub': pem }, key: 'keys/cosign.pub', code: 'E_IMAGE_UNSIGNED' },
  ];
  for (const c of cases) {
    const spec = await release(c.files, policy(c.key));
    await c.prepare?.(join(spec, '..'));
    const r = await build(spec);
    report.add('release input', `spec path: ${c.name}`, c.code === 'E_IMAGE_UNSIGNED' ? 'read (then E_IMAGE_UNSIGNED)' : `exit 2 ${c.code}`, outcomeOf(r), 'n/a');
    t.is(r.json.error?.code, c.code, `${c.name}: ${r.stdout}`);
    if (c.code !== 'E_IMAGE_UNSIGNED') t.is(r.code, 2, c.name);
    t.false(existsSync(join(spec, '..', 'out.bundle')), `${c.name}: no output file`);
  }
});
