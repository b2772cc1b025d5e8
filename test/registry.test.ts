/**
 * The registry client against the real CNCF Distribution 2.8, with skopeo as an outside witness.
 */
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import test from 'ava';
import { SeabagError } from '../lib/errors.js';
import { sha256Digest } from '../lib/oci/digest.js';
import { parseImageManifest, type Descriptor } from '../lib/oci/descriptor.js';
import { copyGraph, resolveGraph, postOrder } from '../lib/oci/graph.js';
import { OciLayout } from '../lib/oci/layout.js';
import { OCI_LAYER } from '../lib/oci/media-types.js';
import { CredentialStore, parseChallenge } from '../lib/registry/auth.js';
import { RegistryClient } from '../lib/registry/client.js';
import { isPermanentAnswer } from '../lib/registry/retry.js';
import { buildImage, buildIndex, buildRandomImage } from './helpers/images.js';
import { startRegistry } from './helpers/registry.js';
import { startTokenServer } from './helpers/token-server.js';
import { skopeoCopy, skopeoInspect, skopeoRaw, tempDir } from './helpers/tools.js';

async function exampleLayout(dir: string): Promise<{ layout: OciLayout; single: Descriptor; index: Descriptor }> {
  const single = await buildImage(dir, 'one', { files: { 'etc/seabag-release': 'one 1.0.0\n' } });
  await buildImage(dir, 'arm', { files: { 'etc/seabag-release': 'arm 1.0.0\n' }, architecture: 'arm64' });
  const index = await buildIndex(dir, 'multi', [
    { tag: 'one', architecture: 'amd64' },
    { tag: 'arm', architecture: 'arm64' },
  ]);
  return { layout: await OciLayout.open(dir), single, index };
}

test('layout → registry → layout keeps every digest, and skopeo agrees both ways', async (t) => {
  const registry = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const { layout, single, index } = await exampleLayout(join(dir, 'src'));
  const client = await RegistryClient.create(registry.host);
  t.teardown(() => client.close());
  const repo = client.repository('groke/fusion');

  for (const [root, tag] of [
    [single, '1.0.0'],
    [index, 'multi'],
  ] as const) {
    await copyGraph(layout, repo, root);
    await repo.tag(root, tag);
    // skopeo reads what we pushed, byte for byte.
    const raw = await skopeoRaw(`${registry.host}/groke/fusion:${tag}`);
    t.is(sha256Digest(raw), root.digest);
  }
  const inspected = await skopeoInspect(`${registry.host}/groke/fusion:1.0.0`);
  t.is(inspected.Digest, single.digest);

  // And back: registry → a new layout, every node with the same digest.
  const back = await OciLayout.open(join(dir, 'back'), { create: true });
  const copied = await copyGraph(repo, back, await repo.resolve('multi'));
  t.is(copied.root.digest, index.digest);
  const nodes = postOrder(await resolveGraph(layout, index));
  for (const node of nodes) t.true(await back.exists(node.desc), node.desc.digest);

  // We read what skopeo pushed.
  await skopeoCopy(`oci:${join(dir, 'src')}:one`, `docker://${registry.host}/other/image:by-skopeo`);
  const fromSkopeo = await client.repository('other/image').resolve('by-skopeo');
  t.is(fromSkopeo.digest, single.digest);
  const graph = await resolveGraph(client.repository('other/image'), fromSkopeo);
  const digestsOf = (root: Awaited<ReturnType<typeof resolveGraph>>): string[] => postOrder(root).map((n) => n.desc.digest);
  t.deepEqual(digestsOf(graph), digestsOf(await resolveGraph(layout, single)));
});

test('a second copy of the same graph uploads nothing: only HEADs, counted', async (t) => {
  const registry = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const { layout, index } = await exampleLayout(dir);
  const requests: string[] = [];
  const client = await RegistryClient.create(registry.host, { onRequest: ({ method }) => requests.push(method) });
  t.teardown(() => client.close());
  const repo = client.repository('groke/radar');
  const first = await copyGraph(layout, repo, index);
  t.true(first.pushed > 0);
  t.true(requests.includes('PUT'));
  requests.length = 0;
  const second = await copyGraph(layout, repo, index);
  t.is(second.pushed, 0);
  t.is(second.bytesCopied, 0);
  t.deepEqual([...new Set(requests)], ['HEAD'], 'the second copy only asks');
  t.is(requests.length, 1, 'the root manifest being there ends the walk');

  // A blob in another repository is mounted, not uploaded.
  requests.length = 0;
  const other = client.repository('groke/other', { mountSources: () => ['groke/radar'] });
  await copyGraph(layout, other, index);
  t.false(requests.includes('PATCH'));
  const puts = requests.filter((m) => m === 'PUT').length;
  t.is(puts, 3, 'only the two manifests and the index are PUT; blobs are mounted');
});

test('basic auth from a docker config works; a wrong password is E_AUTH, not a stack trace', async (t) => {
  const registry = await startRegistry({ auth: { username: 'shore', password: 'right-horse' } }, t.teardown.bind(t));
  const dir = await tempDir(t);
  const { layout, single } = await exampleLayout(join(dir, 'src'));
  const writeConfig = async (name: string, password: string): Promise<CredentialStore> => {
    const configDir = join(dir, name);
    await mkdir(configDir);
    const auth = Buffer.from(`shore:${password}`).toString('base64');
    await writeFile(join(configDir, 'config.json'), JSON.stringify({ auths: { [registry.host]: { auth } } }));
    return new CredentialStore({ env: { DOCKER_CONFIG: configDir } });
  };

  const good = await RegistryClient.create(registry.host, { credentials: await writeConfig('good', 'right-horse') });
  t.teardown(() => good.close());
  await good.ping();
  await copyGraph(layout, good.repository('groke/fusion'), single);
  t.true(await good.repository('groke/fusion').exists(single));

  const bad = await RegistryClient.create(registry.host, { credentials: await writeConfig('bad', 'wrong') });
  t.teardown(() => bad.close());
  const err = await t.throwsAsync(bad.repository('groke/fusion').resolve(single.digest));
  t.true(err instanceof SeabagError);
  t.is((err as SeabagError).code, 'E_AUTH');
  t.regex(err?.message ?? '', /refused the credentials of "shore"/);

  const none = await RegistryClient.create(registry.host, { credentials: new CredentialStore({ env: { DOCKER_CONFIG: join(dir, 'nothing') } }) });
  t.teardown(() => none.close());
  const anonymous = await t.throwsAsync(none.ping());
  t.is((anonymous as SeabagError).code, 'E_AUTH');
});

test('credential helpers from credHelpers are run with the host on stdin', async (t) => {
  const registry = await startRegistry({ auth: { username: 'helper-user', password: 'helper-secret' } }, t.teardown.bind(t));
  const dir = await tempDir(t);
  const bin = join(dir, 'bin');
  await mkdir(bin);
  // A credential helper speaking the docker-credential-helpers protocol: `get`, host on stdin.
  const helper = join(bin, 'docker-credential-seabagtest');
  await writeFile(
    helper,
    `#!/bin/sh\nread host\nif [ "$1" = get ] && [ "$host" = "${registry.host}" ]; then echo '{"ServerURL":"'$host'","Username":"helper-user","Secret":"helper-secret"}'; else echo "credentials not found in native keychain"; exit 1; fi\n`,
  );
  await chmod(helper, 0o755);
  const configDir = join(dir, 'docker');
  await mkdir(configDir);
  await writeFile(join(configDir, 'config.json'), JSON.stringify({ credHelpers: { [registry.host]: 'seabagtest' } }));
  const env = { ...process.env, DOCKER_CONFIG: configDir, PATH: `${bin}:${process.env['PATH'] ?? ''}` };
  const client = await RegistryClient.create(registry.host, { credentials: new CredentialStore({ env }) });
  t.teardown(() => client.close());
  await client.ping();
  t.pass();
});

test('TLS with a CA made for the test works; without the CA it fails clearly', async (t) => {
  const registry = await startRegistry({ tls: true }, t.teardown.bind(t));
  const dir = await tempDir(t);
  const { layout, single } = await exampleLayout(dir);
  // 127.0.0.1 is loopback, so plain HTTP would be the default: ask for HTTPS explicitly.
  const client = await RegistryClient.create(registry.host, { plainHttp: false, caFile: registry.caFile as string });
  t.teardown(() => client.close());
  await copyGraph(layout, client.repository('groke/fusion'), single);
  t.true(await client.repository('groke/fusion').exists(single));

  const untrusting = await RegistryClient.create(registry.host, { plainHttp: false, retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1 } });
  t.teardown(() => untrusting.close());
  const err = (await t.throwsAsync(untrusting.ping())) as SeabagError;
  t.is(err.code, 'E_REGISTRY');
  t.regex(err.hint ?? '', /--ca-file/);
});

test('a corrupted source blob is E_DIGEST_MISMATCH and no manifest naming it reaches the registry', async (t) => {
  const registry = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const { layout, single } = await exampleLayout(dir);
  const manifest = parseImageManifest(await (await import('node:fs/promises')).readFile(layout.path(single)), single);
  const layer = manifest.layers[0] as Descriptor;
  // Flip one byte in the middle of the layer file.
  const { open } = await import('node:fs/promises');
  const handle = await open(layout.path(layer), 'r+');
  const buf = Buffer.alloc(1);
  await handle.read(buf, 0, 1, Math.floor(layer.size / 2));
  buf[0] = (buf[0] ?? 0) ^ 0xff;
  await handle.write(buf, 0, 1, Math.floor(layer.size / 2));
  await handle.close();

  const client = await RegistryClient.create(registry.host);
  t.teardown(() => client.close());
  const repo = client.repository('groke/fusion');
  const err = (await t.throwsAsync(copyGraph(layout, repo, single))) as SeabagError;
  t.is(err.code, 'E_DIGEST_MISMATCH');
  t.is(err.details['expected'], layer.digest);
  t.false(await repo.exists(single), 'the manifest was not pushed');
  t.false(await repo.exists(layer), 'the bad layer was not stored');
});

test('the registry stopped mid-upload and started again: the copy retries and completes', async (t) => {
  const registry = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const image = await buildRandomImage(dir, 'big', [96 * 1024 * 1024], 'restart');
  const layout = await OciLayout.open(dir);
  const retries: string[] = [];
  const client = await RegistryClient.create(registry.host, {
    retry: { retries: 8, minDelayMs: 200, maxDelayMs: 2_000 },
    onRetry: (err) => retries.push(err.code),
  });
  t.teardown(() => client.close());
  let bounced = false;
  const copied = await copyGraph(layout, client.repository('bench/big'), image, {
    onProgress: (p) => {
      if (!bounced && p.done > 16 * 1024 * 1024) {
        bounced = true;
        void (async () => {
          await registry.kill();
          await new Promise((r) => setTimeout(r, 700));
          await registry.start();
        })();
      }
    },
  });
  t.true(bounced);
  t.true(retries.length > 0, 'at least one retry happened');
  t.is(copied.root.digest, image.digest);
  const raw = await skopeoRaw(`${registry.host}/bench/big@${image.digest}`);
  t.is(sha256Digest(raw), image.digest);
});

test('a registry that stays down ends in E_REGISTRY_UNREACHABLE after the retries', async (t) => {
  const registry = await startRegistry({}, t.teardown.bind(t));
  await registry.stop();
  const client = await RegistryClient.create(registry.host, { retry: { retries: 2, minDelayMs: 10, maxDelayMs: 20 } });
  t.teardown(() => client.close());
  const desc: Descriptor = { mediaType: OCI_LAYER, digest: sha256Digest('x'), size: 1 };
  const err = (await t.throwsAsync(client.repository('a/b').push(desc, async () => Readable.from([Buffer.from('x')])))) as SeabagError;
  t.is(err.code, 'E_REGISTRY_UNREACHABLE');
  t.is(err.details['errno'], 'ECONNREFUSED');
});

test('tags are listed across pages, and manifests can be deleted by digest', async (t) => {
  const registry = await startRegistry({}, t.teardown.bind(t));
  const dir = await tempDir(t);
  const { layout, single } = await exampleLayout(dir);
  const client = await RegistryClient.create(registry.host);
  t.teardown(() => client.close());
  const repo = client.repository('groke/tags');
  await copyGraph(layout, repo, single);
  const names = Array.from({ length: 7 }, (_, i) => `t${i}`);
  for (const n of names) await repo.tag(single, n);
  t.deepEqual((await repo.listTags({ pageSize: 3 })).sort(), names);
  await repo.deleteManifest(single.digest);
  t.false(await repo.exists(single));
  t.is(await repo.tagDigest('t0'), undefined);
});

test('WWW-Authenticate challenges parse with quoted commas', (t) => {
  const c = parseChallenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"');
  t.deepEqual(c, {
    scheme: 'bearer',
    params: { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push' },
  });
  t.is(parseChallenge('Basic realm="x"')?.scheme, 'basic');
});

test('an upload left dangling on failure leaves no partial blob in the registry storage', async (t) => {
  const registry = await startRegistry({}, t.teardown.bind(t));
  const client = await RegistryClient.create(registry.host);
  t.teardown(() => client.close());
  const data = Buffer.alloc(3 * 1024 * 1024, 7);
  const desc: Descriptor = { mediaType: OCI_LAYER, digest: sha256Digest(data), size: data.length };
  const wrong = Buffer.from(data);
  wrong[wrong.length - 1] = 8;
  const err = (await t.throwsAsync(client.repository('a/b').push(desc, async () => Readable.from([wrong.subarray(0, 1 << 20), wrong.subarray(1 << 20)])))) as SeabagError;
  t.is(err.code, 'E_DIGEST_MISMATCH');
  t.false(await client.repository('a/b').exists(desc));
  const blobs = await readdir(join(registry.storageDir, 'docker/registry/v2/blobs/sha256')).catch(() => []);
  t.deepEqual(blobs, []);
});

test('bearer token auth: the token server gets our docker-config credentials and the scopes we need', async (t) => {
  const dir = await tempDir(t);
  const tokens = await startTokenServer(dir, { username: 'ci', password: 'token-pass' });
  t.teardown(() => tokens.close());
  const registry = await startRegistry({ token: tokens }, t.teardown.bind(t));
  const { layout, single } = await exampleLayout(join(dir, 'src'));
  const configDir = join(dir, 'docker');
  await mkdir(configDir);
  await writeFile(join(configDir, 'config.json'), JSON.stringify({ auths: { [registry.host]: { username: 'ci', password: 'token-pass' } } }));
  const client = await RegistryClient.create(registry.host, { credentials: new CredentialStore({ env: { DOCKER_CONFIG: configDir } }) });
  t.teardown(() => client.close());
  await copyGraph(layout, client.repository('groke/fusion'), single);
  await client.repository('groke/fusion').tag(single, 'v1');
  t.true(tokens.scopes.includes('repository:groke/fusion:pull,push'));
  t.true(tokens.users.every((u) => u === 'ci'));
  t.is((await client.repository('groke/fusion').resolve('v1')).digest, single.digest);

  const anonymous = await RegistryClient.create(registry.host, { credentials: new CredentialStore({ env: { DOCKER_CONFIG: join(dir, 'none') } }) });
  t.teardown(() => anonymous.close());
  const err = (await t.throwsAsync(anonymous.repository('groke/fusion').resolve('v1'))) as SeabagError;
  t.is(err.code, 'E_AUTH');
});

test('retries are for temporary answers only: 503 and 429 are retried, 400 is not (stand-in server)', async (t) => {
  // Distribution cannot be made to answer 503 or 429 on demand, so a stand-in server does.
  const { createServer } = await import('node:http');
  const answers: number[] = [503, 429, 200];
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const status = req.url === '/v2/bad/tags/list?n=100' ? 400 : (answers.shift() ?? 200);
    res.writeHead(status, { 'content-type': 'application/json', ...(status === 429 ? { 'retry-after': '0' } : {}) });
    res.end(status === 200 ? '{"tags":["a"]}' : JSON.stringify({ errors: [{ code: status === 400 ? 'NAME_INVALID' : 'UNAVAILABLE', message: 'no' }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  const retried: string[] = [];
  const client = await RegistryClient.create(host, { retry: { retries: 3, minDelayMs: 5, maxDelayMs: 10 }, onRetry: (err) => retried.push(String(err.details['status'])) });
  t.teardown(() => client.close());
  t.deepEqual(await client.repository('good').listTags(), ['a']);
  t.deepEqual(retried, ['503', '429']);
  const err = (await t.throwsAsync(client.repository('bad').listTags())) as SeabagError;
  t.like(err, { code: 'E_REGISTRY', details: { status: 400, errors: ['NAME_INVALID'] } });
  t.is(seen.filter((s) => s.startsWith('GET /v2/bad')).length, 1, 'a 400 is not retried');
});

test('a 5xx is permanent when it names a verdict on the request (Distribution\'s 500 for refused layer urls) or is 501/505; a bare 500 UNKNOWN stays temporary', (t) => {
  t.true(isPermanentAnswer(500, ['UNKNOWN', 'UNKNOWN', 'MANIFEST_BLOB_UNKNOWN']));
  t.true(isPermanentAnswer(500, ['MANIFEST_INVALID']));
  t.true(isPermanentAnswer(501, []));
  t.true(isPermanentAnswer(505, []));
  t.false(isPermanentAnswer(500, ['UNKNOWN']));
  t.false(isPermanentAnswer(503, []));
  t.false(isPermanentAnswer(502, ['UNKNOWN']));
  t.false(isPermanentAnswer(400, ['MANIFEST_INVALID']), 'a 4xx is never retried anyway: not a server answer');
});
