/**
 * The runtime aboard, with real containerd (no Kubernetes API server can run here, so no kubelet
 * or K3s either): the mirror settings seabag writes make `ctr` pull upstream names from the vessel
 * registry (no other network exists, so a successful pull proves the mirror), K3s's
 * registries.yaml is checked against a schema transcribed from the K3s docs, and the health gate
 * switches a broken release back, with real containers judging it.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { assertSafeHost, mirrorPlan } from '../lib/runtime/mirrors.js';
import { hostsToml } from '../lib/runtime/render.js';
import { runHealthCheck, trimOutput } from '../lib/runtime/check.js';
import { openBundle, type ReleaseDocument } from '../lib/index.js';
import { EPOCH, exampleCopy } from './helpers/example.js';
import { buildImage } from './helpers/images.js';
import { startContainerd, type Containerd } from './helpers/containerd.js';
import { runCli } from './helpers/cli.js';
import { skopeoInspect, skopeoRaw, tempDir } from './helpers/tools.js';
import { sha256Digest } from '../lib/oci/digest.js';
import { startVessel, type TestVessel } from './helpers/vessel.js';

let work: string;
let trust: string;
const bundles: Record<'v1' | 'v2' | 'broken' | 'plain14', string> = { v1: '', v2: '', broken: '', plain14: '' };
const releases: Record<string, ReleaseDocument> = {};

/** The release's check: pull its own fusion image by upstream name through the mirror and run it once. */
const CHECK = [
  '/bin/sh',
  '-c',
  'ctr images pull --hosts-dir "$SEABAG_TEST_HOSTS" "shore.example.com/groke/fusion:$SEABAG_VERSION" >/dev/null && exec ctr run --rm "shore.example.com/groke/fusion:$SEABAG_VERSION" "check-$SEABAG_VERSION-$$"',
];

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-runtime-fixture-'));
  const example = await exampleCopy(work);
  const layout = join(example, 'build', 'images');
  // The broken 1.5.0: the same files, but its entrypoint fails the way a bad release does.
  await buildImage(layout, 'fusion-1.5.0-broken', {
    from: 'fusion-1.4.0',
    files: { 'etc/seabag-release': 'awareness fusion 1.5.0\n' },
    entrypoint: ['/bin/busybox', 'sh', '-c', 'echo "fusion 1.5.0: cannot open /dev/radar0" >&2; exit 3'],
  });
  const cli = async (args: string[]): Promise<void> => {
    const r = await runCli(args, { SOURCE_DATE_EPOCH: EPOCH });
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stdout}${r.stderr}`);
  };
  await cli(['keygen', join(work, 'release.key')]);
  await cli(['keygen', join(work, 'root.key')]);
  trust = join(work, 'trust.json');
  await cli(['trust', 'init', '--root-key', join(work, 'root.key.pub'), '--release-key', join(work, 'release.key.pub'), '--sign', join(work, 'root.key'), '-o', trust]);
  // The example, plus a Docker Hub library image named short (`probe:1`) and a ghcr.io one, so
  // every kind of upstream host is in play; 1.5.0 also carries its own signed check.
  const variant = async (version: string, name: string, edit: (spec: Record<string, unknown>) => void): Promise<string> => {
    const file = join(example, version, 'release.yaml');
    const spec = parseYaml(await readFile(file, 'utf8')) as Record<string, unknown> & { images: { ref: string; from: string }[] };
    const toolbox = version === '1.4.0' ? 'toolbox-1.0.0' : 'toolbox-1.0.1';
    spec.images.push({ ref: 'probe:1', from: `oci:../build/images:${toolbox}` }, { ref: 'ghcr.io/groke/sidecar:1', from: `oci:../build/images:${toolbox}` });
    edit(spec);
    const out = join(example, version, `${name}.yaml`);
    await writeFile(out, stringifyYaml(spec));
    const bundle = join(work, `${name}.bundle`);
    await cli(['build', out, '-o', bundle, '--sign', join(work, 'release.key'), '--no-progress']);
    const opened = await openBundle(bundle);
    releases[name] = opened.release;
    await opened.close();
    return bundle;
  };
  bundles.v1 = await variant('1.4.0', 'v1', () => undefined);
  bundles.v2 = await variant('1.5.0', 'v2', (s) => (s['check'] = { command: CHECK, timeout: '60s' }));
  bundles.broken = await variant('1.5.0', 'broken', (s) => {
    s['check'] = { command: CHECK, timeout: '60s' };
    for (const i of s['images'] as { ref: string; from: string }[]) if (i.ref.includes('/fusion:')) i.from = 'oci:../build/images:fusion-1.5.0-broken';
  });
  bundles.plain14 = join(work, 'plain-1.4.0.bundle');
  await cli(['build', join(example, '1.4.0', 'release.yaml'), '-o', bundles.plain14, '--sign', join(work, 'release.key'), '--no-progress']);
});

test.after.always(async () => {
  await rm(work, { recursive: true, force: true });
});

/** An image of a built release by its vessel repository (`library/probe` for `probe:1`). */
function img(name: string, repository: string): ReleaseDocument['images'][number] {
  const found = releases[name]?.images.find((i) => i.repository === repository);
  if (found === undefined) throw new Error(`no ${repository} in ${name}`);
  return found;
}

async function importOk(v: TestVessel, bundle: string, ...extra: string[]): Promise<Record<string, unknown>> {
  const r = await v.run(['import', bundle, '--json', '--target', 'class-a', ...extra]);
  if (r.code !== 0) throw new Error(`import failed: ${r.stdout}${r.stderr}`);
  return r.json;
}

/** The digest containerd recorded for an image name it pulled. */
async function ctrDigest(ctr: Containerd, name: string): Promise<string | undefined> {
  const lines = (await ctr.ctr('images', 'ls')).split('\n');
  return lines.map((l) => l.split(/\s+/)).find((cols) => cols[0] === name)?.[2];
}

async function pull(ctr: Containerd, hosts: string, name: string): Promise<string | undefined> {
  await ctr.ctr('images', 'pull', '--hosts-dir', hosts, name);
  return ctrDigest(ctr, name);
}

async function states(v: TestVessel): Promise<{ versions: Record<string, string>; json: Record<string, unknown> }> {
  const r = await v.run(['status', '--json']);
  const list = (r.json['releases'] ?? []) as { version: string; state: string }[];
  return { versions: Object.fromEntries(list.map((x) => [x.version, x.state])), json: r.json };
}

test('containerd pulls shore.example.com, docker.io/library (short names) and ghcr.io names from the vessel registry with the release digests; ctr run prints the version; after rollback a pull by tag gives 1.4.0', async (t) => {
  const v = await startVessel(t);
  const ctr = await startContainerd(t.teardown.bind(t));
  const hosts = join(await tempDir(t), 'certs.d');
  await importOk(v, bundles.v1, '--trust', trust);
  t.is((await v.run(['apply', 'awareness@1.4.0'])).code, 0);
  await importOk(v, bundles.v2);
  t.is((await v.run(['apply', 'awareness@1.5.0'])).code, 0);
  const made = await v.run(['runtime-config', '--containerd', '-o', hosts, '--json']);
  t.is(made.code, 0, made.stdout + made.stderr);
  t.deepEqual((await readdir(hosts)).sort(), ['docker.io', 'ghcr.io', 'shore.example.com', v.registry.host].sort(), 'one folder per upstream host, and the vessel itself');

  t.is(await pull(ctr, hosts, 'shore.example.com/groke/fusion:1.5.0'), img('v2', 'groke/fusion').digest);
  t.is((await ctr.ctr('run', '--rm', 'shore.example.com/groke/fusion:1.5.0', `fusion-${process.pid}`)).trim(), 'awareness fusion 1.5.0');
  t.is(await pull(ctr, hosts, 'docker.io/library/probe:1'), img('v2', 'library/probe').digest, 'the short name probe:1 is library/probe on the vessel');
  t.is(await pull(ctr, hosts, 'docker.io/groke/toolbox:1'), img('v2', 'groke/toolbox').digest);
  t.is(await pull(ctr, hosts, 'ghcr.io/groke/sidecar:1'), img('v2', 'groke/sidecar').digest);
  t.is(await pull(ctr, hosts, `${v.registry.host}/groke/fusion:1.5.0`), img('v2', 'groke/fusion').digest, 'names already on the vessel registry work too');
  // ctr, unlike the CRI plugin that kubelet and K3s talk to, does not normalize a short name; CRI
  // turns `probe:1` into `docker.io/library/probe:1`, the name pulled above.
  const short = await execa('ctr', ['--address', ctr.address, 'images', 'pull', '--hosts-dir', hosts, 'probe:1'], { reject: false });
  t.regex(short.stderr, /object required/);

  const back = await v.run(['rollback', 'awareness']);
  t.is(back.code, 0, back.stderr);
  t.is(await pull(ctr, hosts, 'docker.io/groke/toolbox:1'), img('v1', 'groke/toolbox').digest, 'the moving tag gives 1.4.0 again');
  t.is(await pull(ctr, hosts, 'docker.io/library/probe:1'), img('v1', 'library/probe').digest);
  t.is((await ctr.ctr('run', '--rm', 'docker.io/groke/toolbox:1', `toolbox-${process.pid}`)).trim(), 'toolbox 1.0.0');
});

test("the K3s registries.yaml is valid against the K3s docs' schema and names the same hosts and endpoint as the hosts.toml files, for plain HTTP and for TLS with --ca-file", async (t) => {
  const v = await startVessel(t);
  await importOk(v, bundles.v1, '--trust', trust);
  const dir = await tempDir(t);
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  const validate = ajv.compile(JSON.parse(await readFile(new URL('./fixtures/k3s-registries.schema.json', import.meta.url), 'utf8')) as object);
  for (const tls of [false, true]) {
    const ca = join(dir, 'vessel-ca.pem');
    await writeFile(ca, 'not read by runtime-config\n');
    const flags = tls ? ['--ca-file', ca] : [];
    const yamlFile = join(dir, `${tls}`, 'registries.yaml');
    const hostsDir = join(dir, `${tls}`, 'certs.d');
    t.is((await v.run(['runtime-config', '--k3s', '-o', yamlFile, ...flags])).code, 0);
    t.is((await v.run(['runtime-config', '--containerd', '-o', hostsDir, ...flags])).code, 0);
    const doc = parseYaml(await readFile(yamlFile, 'utf8')) as { mirrors: Record<string, { endpoint: string[] }>; configs?: Record<string, { tls: { ca_file: string } }> };
    t.true(validate(doc), JSON.stringify(validate.errors));
    const endpoint = `${tls ? 'https' : 'http'}://${v.registry.host}`;
    t.deepEqual(Object.keys(doc.mirrors).sort(), (await readdir(hostsDir)).sort(), 'the same hosts');
    for (const [host, mirror] of Object.entries(doc.mirrors)) {
      t.deepEqual(mirror.endpoint, [endpoint], host);
      const toml = await readFile(join(hostsDir, host, 'hosts.toml'), 'utf8');
      t.true(toml.includes(`server = "${endpoint}"`), `${host}: hosts.toml sends it to the same endpoint`);
      t.is(toml.includes(`ca = "${ca}"`), tls, `${host}: the CA only with TLS`);
    }
    t.deepEqual(doc.configs, tls ? { [v.registry.host]: { tls: { ca_file: ca } } } : undefined);
    const listed = await v.run(['runtime-config', '--json', ...flags]);
    t.deepEqual(
      (listed.json['hosts'] as { host: string }[]).map((h) => h.host),
      Object.keys(doc.mirrors).sort(),
      '--json lists the same hosts',
    );
    t.like(listed.json, { ok: true, registry: { url: endpoint }, written: [] });
    for (const h of listed.json['hosts'] as { endpoints: string[] }[]) t.deepEqual(h.endpoints, [endpoint]);
  }
  const fallback = await v.run(['runtime-config', '--containerd', '-o', join(dir, 'fb'), '--upstream-fallback']);
  t.is(fallback.code, 0);
  const dockerHub = await readFile(join(dir, 'fb', 'docker.io', 'hosts.toml'), 'utf8');
  t.regex(dockerHub, /^server = "https:\/\/registry-1\.docker\.io"$/m, "Docker Hub's API host is the fallback");
  t.true(dockerHub.includes(`[host."http://${v.registry.host}"]`));
});

test('import --runtime-config remembers where to write and rewrites after each import, so a host new in a release is mirrored; a file seabag did not write is refused (E_FILE_EXISTS) unless --force', async (t) => {
  const v = await startVessel(t);
  const dir = await tempDir(t);
  const hostsDir = join(dir, 'certs.d');
  const k3s = join(dir, 'k3s', 'registries.yaml');
  const first = await importOk(v, bundles.plain14, '--trust', trust, '--runtime-config', `containerd:${hostsDir}`, '--runtime-config', `k3s:${k3s}`);
  t.is((first['runtimeConfig'] as { written: string[] }).written.length, 4);
  t.deepEqual((await readdir(hostsDir)).sort(), ['docker.io', 'shore.example.com', v.registry.host].sort(), 'no ghcr.io yet');
  await importOk(v, bundles.v2);
  t.deepEqual((await readdir(hostsDir)).sort(), ['docker.io', 'ghcr.io', 'shore.example.com', v.registry.host].sort(), 'ghcr.io, new in 1.5.0, was added by the import');
  t.truthy((parseYaml(await readFile(k3s, 'utf8')) as { mirrors: Record<string, unknown> }).mirrors['ghcr.io']);

  const mine = join(dir, 'mine');
  await mkdir(join(mine, 'docker.io'), { recursive: true });
  await writeFile(join(mine, 'docker.io', 'hosts.toml'), 'server = "https://my-own-mirror.example"\n');
  const refused = await v.run(['runtime-config', '--containerd', '-o', mine, '--json']);
  t.is(refused.code, 2);
  t.is(refused.json.error?.code, 'E_FILE_EXISTS');
  t.is(await readFile(join(mine, 'docker.io', 'hosts.toml'), 'utf8'), 'server = "https://my-own-mirror.example"\n', 'left as it was');
  t.deepEqual(await readdir(mine), ['docker.io'], 'nothing else written either');
  t.is((await v.run(['runtime-config', '--containerd', '-o', mine, '--force'])).code, 0);
  t.regex(await readFile(join(mine, 'docker.io', 'hosts.toml'), 'utf8'), /^# Written by seabag/);
  const usage = await v.run(['runtime-config', '--json', '--containerd']);
  t.is(usage.json.error?.code, 'E_USAGE');
  const badTarget = await v.run(['import', bundles.v2, '--runtime-config', 'docker:/tmp/x', '--json']);
  t.is(badTarget.json.error?.code, 'E_USAGE');
});

test('hostile hosts and paths cannot escape the hosts folder or their TOML string', (t) => {
  for (const bad of ['..', '.', 'a/b', '../etc', 'host:port:1', 'x"]\n[host."http://evil"', '']) t.throws(() => assertSafeHost(bad), undefined, JSON.stringify(bad));
  for (const good of ['docker.io', 'shore.example.com:5000', '127.0.0.1:32000', '[::1]:5000']) t.notThrows(() => assertSafeHost(good));
  const toml = hostsToml(
    { endpoint: { host: '127.0.0.1:5000', url: 'https://127.0.0.1:5000', caFile: '/tmp/ca"\n[host."http://evil"]\n.pem' }, hosts: [], upstreamFallback: false, collisions: [] },
    { host: 'docker.io', upstream: 'https://registry-1.docker.io', repositories: [], self: false },
  );
  t.deepEqual(toml.match(/^\[host.*$/gm), ['[host."https://127.0.0.1:5000"]'], 'a quote or newline in the CA path stays inside its string');
  t.true(toml.includes('ca = "/tmp/ca\\"\\n[host.\\"http://evil\\"]\\n.pem"'));
});

test('two upstream hosts sharing a repository path are reported, since on the vessel they are one repository', (t) => {
  const image = (ref: string) => ({ ref, repository: 'x', digest: `sha256:${'0'.repeat(64)}` as const, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1 });
  const state = {
    apiVersion: 'seabag.dev/v1' as const,
    kind: 'VesselState' as const,
    releases: [{ name: 'a', version: '1.0.0', digest: `sha256:${'1'.repeat(64)}` as const, state: 'staged' as const, created: '', importedAt: '', images: [image('ghcr.io/groke/fusion:1'), image('shore.example.com/groke/fusion:1'), image('nginx:1')], content: {}, manifestsRepository: 'seabag/a/manifests' }],
  };
  const plan = mirrorPlan(state, { registry: 'localhost:32000' });
  t.deepEqual(plan.collisions, [{ repository: 'groke/fusion', hosts: ['ghcr.io', 'shore.example.com'] }]);
  t.deepEqual(plan.hosts.map((h) => h.host), ['docker.io', 'ghcr.io', 'localhost:32000', 'shore.example.com']);
  t.is(plan.endpoint.url, 'http://localhost:32000', 'loopback is plain HTTP, as Docker does it');
  t.is(mirrorPlan(state, { registry: 'registry.vessel:5000' }).endpoint.url, 'https://registry.vessel:5000', 'anything else is TLS');
});

test('check output shown in status is trimmed to its tail and stripped of terminal escapes', (t) => {
  const long = Array.from({ length: 100 }, (_, i) => `line ${i}`).join('\n');
  const trimmed = trimOutput(`${long}\n\x1b[2J\x1b]0;owned\x07bad\x1b[31m red\x1b[0m\r\n`);
  t.false(trimmed.includes('\x1b'));
  t.true(trimmed.endsWith('bad red'));
  t.false(trimmed.includes('line 10\n'));
  t.true(trimmed.split('\n').length <= 20);
});

test('a check is bounded: a flood of output keeps only its tail, a missing program fails, and a timeout stops the whole process group', async (t) => {
  const env = { PATH: process.env['PATH'] ?? '' };
  const flood = await runHealthCheck({ command: ['/bin/sh', '-c', 'yes flood | head -c 20000000; echo last words; exit 4'], timeoutSeconds: 60, source: 'cli' }, env);
  t.like(flood, { passed: false, exitCode: 4, timedOut: false });
  t.true(flood.output.length <= 2001 && flood.output.endsWith('last words'), 'only the tail is kept and shown');
  const missing = await runHealthCheck({ command: ['/nonexistent/check'], timeoutSeconds: 5, source: 'release' }, env);
  t.false(missing.passed);
  t.regex(missing.output, /could not start \/nonexistent\/check/);
  const dir = await tempDir(t);
  const pidFile = join(dir, 'grandchild');
  // The check leaves a grandchild behind and never answers: both must be stopped.
  const slow = await runHealthCheck({ command: ['/bin/sh', '-c', `sleep 300 & echo $! > ${pidFile}; wait`], timeoutSeconds: 1, source: 'cli' }, env);
  t.like(slow, { passed: false, timedOut: true });
  const grandchild = Number(await readFile(pidFile, 'utf8'));
  // Gone, or a zombie waiting for init to reap it: either way it no longer runs.
  const stat = await readFile(`/proc/${grandchild}/stat`, 'utf8').catch(() => '');
  t.true(stat === '' || / Z /.test(stat), `the sleep the check started is stopped too: ${stat}`);
});

test('apply --dry-run shows which check would run, and that the release check runs on this host', async (t) => {
  const v = await startVessel(t);
  await importOk(v, bundles.v1, '--trust', trust);
  t.is((await v.run(['apply', 'awareness@1.4.0'])).code, 0);
  await importOk(v, bundles.v2);
  const own = await v.run(['apply', 'awareness@1.5.0', '--dry-run', '--release-check']);
  t.is(own.code, 0);
  t.regex(own.stdout, /then runs the release's own check, on this host \(60s at most; a failure switches back\):\n {2}\/bin\/sh -c .*ctr run/);
  const mine = await v.run(['apply', 'awareness@1.5.0', '--dry-run', '--check', 'curl -f http://fusion/ok', '--json']);
  t.like(mine.json, { ok: true, dryRun: true, gate: { source: 'cli', command: ['/bin/sh', '-c', 'curl -f http://fusion/ok'], timeoutSeconds: 120 } });
  t.deepEqual((await states(v)).versions, { '1.4.0': 'active', '1.5.0': 'staged' });
});

test("with --deploy kubectl a failed check applies the earlier release's manifests again (recording kubectl stand-in: no API server can run here)", async (t) => {
  const v = await startVessel(t);
  const dir = await tempDir(t);
  const kubectl = join(dir, 'kubectl');
  // Records each call's stdin: which release's fusion digest was applied, in order.
  await writeFile(kubectl, `#!/bin/sh\nif [ "$1" = apply ]; then n=$(ls ${dir} | grep -c '^apply-'); cat > ${dir}/apply-$n; fi\nexit 0\n`);
  await execa('chmod', ['755', kubectl]);
  const env = { SEABAG_KUBECTL: kubectl };
  await importOk(v, bundles.v1, '--trust', trust);
  t.is((await v.run(['apply', 'awareness@1.4.0', '--deploy', 'kubectl'], env)).code, 0);
  await importOk(v, bundles.v2);
  const before = (await readdir(dir)).filter((f) => f.startsWith('apply-')).length;
  const failed = await v.run(['apply', 'awareness@1.5.0', '--deploy', 'kubectl', '--check', 'echo fusion answers 503; exit 1', '--json'], env);
  t.is(failed.code, 1);
  t.like(failed.json.error, { code: 'E_HEALTH_CHECK_FAILED', details: { revertedTo: '1.4.0', exitCode: 1, output: 'fusion answers 503' } });
  const applied = (await readdir(dir)).filter((f) => f.startsWith('apply-')).sort((a, b) => Number(a.slice(6)) - Number(b.slice(6))).slice(before);
  const fusionOf = async (f: string): Promise<string | undefined> => /groke\/fusion@(sha256:[a-f0-9]{64})/.exec(await readFile(join(dir, f), 'utf8'))?.[1];
  const digests = (await Promise.all(applied.map(fusionOf))).filter((d): d is string => d !== undefined);
  t.deepEqual([digests[0], digests[digests.length - 1]], [img('v2', 'groke/fusion').digest, img('v1', 'groke/fusion').digest], '1.5.0 applied, then 1.4.0 applied again');
  t.deepEqual((await states(v)).versions, { '1.4.0': 'active', '1.5.0': 'failed' });
});

/** A vessel with 1.4.0 active and `bundle` (a 1.5.0) staged, containerd running, and runtime config written. */
async function gated(t: ExecutionContext, bundle: string): Promise<{ v: TestVessel; ctr: Containerd; env: Record<string, string> }> {
  const v = await startVessel(t);
  const ctr = await startContainerd(t.teardown.bind(t));
  const hosts = join(await tempDir(t), 'certs.d');
  await importOk(v, bundles.v1, '--trust', trust, '--runtime-config', `containerd:${hosts}`);
  t.is((await v.run(['apply', 'awareness@1.4.0'])).code, 0);
  await importOk(v, bundle);
  return { v, ctr, env: { CONTAINERD_ADDRESS: ctr.address, SEABAG_TEST_HOSTS: hosts } };
}

/** The digest skopeo reads for a tag (raw: the release manifest is an artifact, not an image). */
async function skopeoDigest(v: TestVessel, ref: string): Promise<string> {
  return sha256Digest(await skopeoRaw(`${v.registry.host}/${ref}`));
}

async function currentAndTags(v: TestVessel, name: string): Promise<{ current: string; tags: Record<string, string> }> {
  const current = await skopeoDigest(v, 'seabag/awareness:current');
  const tags: Record<string, string> = {};
  for (const i of releases[name]?.images ?? []) if (i.tag !== undefined) tags[`${i.repository}:${i.tag}`] = (await skopeoInspect(`${v.registry.host}/${i.repository}:${i.tag}`)).Digest;
  return { current, tags };
}

function tagsOf(name: string): Record<string, string> {
  return Object.fromEntries((releases[name]?.images ?? []).filter((i) => i.tag !== undefined).map((i) => [`${i.repository}:${i.tag}`, i.digest]));
}

test("a broken 1.5.0 fails its own check (ctr runs its image, whose entrypoint exits 3): apply exits 1 E_HEALTH_CHECK_FAILED, 1.4.0's tags and current are back (skopeo), status shows 1.5.0 failed with the check's output", async (t) => {
  const { v, env } = await gated(t, bundles.broken);
  const v1current = await skopeoDigest(v, 'seabag/awareness:current');
  const applied = await v.run(['apply', 'awareness@1.5.0', '--release-check', '--json'], env);
  t.is(applied.code, 1, applied.stdout);
  t.is(applied.json.error?.code, 'E_HEALTH_CHECK_FAILED');
  t.like(applied.json.error?.details, { release: '1.5.0', revertedTo: '1.4.0', source: 'release', exitCode: 3, timedOut: false });
  t.regex(String(applied.json.error?.details['output']), /cannot open \/dev\/radar0/);
  const now = await currentAndTags(v, 'v1');
  t.is(now.current, v1current, 'current is 1.4.0 again');
  t.deepEqual(now.tags, tagsOf('v1'), "every tag of 1.4.0's images is back on 1.4.0");
  const s = await states(v);
  t.deepEqual(s.versions, { '1.4.0': 'active', '1.5.0': 'failed' });
  t.is(s.json['pending'], null);
  const failure = (s.json['releases'] as { version: string; failure?: string }[]).find((r) => r.version === '1.5.0')?.failure ?? '';
  t.regex(failure, /exited 3/);
  t.regex(failure, /cannot open \/dev\/radar0/);
  const text = await v.run(['status']);
  t.regex(text.stdout, /awareness 1\.5\.0 failed: health check \(the release.s check\) exited 3: [\s\S]*fusion 1\.5\.0: cannot open \/dev\/radar0/);
});

test("a good 1.5.0 passes its own check (ctr runs it through the mirror) and stays active; without --release-check the release's check is not run and a note says so", async (t) => {
  const { v, env } = await gated(t, bundles.v2);
  const shown = await runCli(['inspect', bundles.v2]);
  t.regex(shown.stdout, /health check: \/bin\/sh -c .*ctr run.* \(timeout 60s; runs aboard only with apply --release-check\)/, 'the captain can read the command before consenting');
  t.like(((await states(v)).json['releases'] as { version: string; check?: unknown }[]).find((r) => r.version === '1.5.0'), { check: { command: CHECK, timeoutSeconds: 60 } });
  const skipped = await v.run(['apply', 'awareness@1.5.0'], env);
  t.is(skipped.code, 0, skipped.stderr);
  t.regex(skipped.stderr, /carries a signed health check that was not run: \/bin\/sh -c .*--release-check/);
  t.is((await v.run(['rollback', 'awareness'])).code, 0);
  const applied = await v.run(['apply', 'awareness@1.5.0', '--release-check'], env);
  t.is(applied.code, 0, applied.stdout + applied.stderr);
  t.regex(applied.stdout, /health check passed \(the release's check\): awareness fusion 1\.5\.0/);
  t.deepEqual((await states(v)).versions, { '1.4.0': 'previous', '1.5.0': 'active' });
  t.deepEqual((await currentAndTags(v, 'v2')).tags, tagsOf('v2'));
});

test('--check replaces the release check and gets SEABAG_RELEASE/VERSION/PREVIOUS; a check that times out switches back; rollback takes --check', async (t) => {
  const v = await startVessel(t);
  const dir = await tempDir(t);
  await importOk(v, bundles.v1, '--trust', trust);
  t.is((await v.run(['apply', 'awareness@1.4.0'])).code, 0);
  await importOk(v, bundles.v2);
  const seen = join(dir, 'env');
  const ok = await v.run(['apply', 'awareness@1.5.0', '--release-check', '--check', `echo "$SEABAG_RELEASE $SEABAG_VERSION from $SEABAG_PREVIOUS" > ${seen}`]);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stderr, /carries its own health check .*; --check replaces it/);
  t.is(await readFile(seen, 'utf8'), 'awareness 1.5.0 from 1.4.0\n');

  const slow = await v.run(['rollback', 'awareness', '--check', 'echo waiting; sleep 30', '--check-timeout', '1s', '--json']);
  t.is(slow.code, 1);
  t.like(slow.json.error, { code: 'E_HEALTH_CHECK_FAILED', details: { release: '1.4.0', revertedTo: '1.5.0', timedOut: true } });
  t.deepEqual((await states(v)).versions, { '1.4.0': 'failed', '1.5.0': 'active' }, 'the rollback target failed; 1.5.0 runs on');
  t.is(await skopeoDigest(v, 'seabag/awareness:current'), await skopeoDigest(v, 'seabag/awareness:1.5.0'));

  const again = await v.run(['apply', 'awareness@1.5.0', '--check', 'echo still fine']);
  t.is(again.code, 0);
  t.regex(again.stdout, /already active; nothing moved\n {2}health check passed \(--check\): still fine/, 'an apply of the running release still runs the check');
  const sick = await v.run(['apply', 'awareness@1.5.0', '--check', 'exit 2', '--json']);
  t.like(sick.json.error, { code: 'E_HEALTH_CHECK_FAILED', details: { exitCode: 2 } });
  t.regex(sick.json.error?.message ?? '', /already active, so nothing was switched/);
  t.deepEqual((await states(v)).versions, { '1.4.0': 'failed', '1.5.0': 'active' }, 'nothing to switch back to: it stays as it was');
  const bad = await v.run(['apply', 'awareness@1.5.0', '--check-timeout', 'soon', '--check', 'true', '--json']);
  t.is(bad.code, 2);
  t.is(bad.json.error?.code, 'E_USAGE');
});

test('SIGKILL while the check runs: the next command (status) finishes the journal by switching back, since the check never passed', async (t) => {
  const { v } = await gated(t, bundles.v2);
  const dir = await tempDir(t);
  const pidFile = join(dir, 'check.pid');
  t.teardown(async () => {
    const pid = Number(await readFile(pidFile, 'utf8').catch(() => '0'));
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  const killed = await v.spawn(['apply', 'awareness@1.5.0', '--check', `echo $$ > ${pidFile}; exec sleep 60`], { SEABAG_FAILPOINT: 'check:running' });
  t.is(killed.signal, 'SIGKILL');
  const journal = JSON.parse(await readFile(join(v.stateDir, 'journal.json'), 'utf8')) as { phase: string; check: { source: string } };
  t.like(journal, { phase: 'check', check: { source: 'cli' } });
  const s = await v.run(['status', '--json']);
  t.is(s.code, 0);
  t.regex(s.stderr, /note: the interrupted apply of awareness 1\.5\.0 never passed its health check: switched back to 1\.4\.0/);
  t.is(s.json['pending'], null);
  const list = s.json['releases'] as { version: string; state: string; failure?: string }[];
  t.deepEqual(Object.fromEntries(list.map((r) => [r.version, r.state])), { '1.4.0': 'active', '1.5.0': 'failed' });
  t.regex(list.find((r) => r.version === '1.5.0')?.failure ?? '', /interrupted.*never passed/);
  t.deepEqual((await currentAndTags(v, 'v1')).tags, tagsOf('v1'));
  t.is(await skopeoDigest(v, 'seabag/awareness:current'), await skopeoDigest(v, 'seabag/awareness:1.4.0'));
});
