import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import test from 'ava';
import { SeabagError } from '../lib/errors.js';
import { blobPath, parseDigest, sha256Digest } from '../lib/oci/digest.js';
import { parsePlatformString, platformMatches, type Descriptor } from '../lib/oci/descriptor.js';
import { copyGraph, resolveGraph } from '../lib/oci/graph.js';
import { OciLayout } from '../lib/oci/layout.js';
import { formatReference, isLoopbackRegistry, parseReference } from '../lib/oci/reference.js';
import { readVerified, VerifyingStream } from '../lib/oci/verify.js';
import { buildImage, buildIndex } from './helpers/images.js';

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'seabag-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const HELLO = Buffer.from('hello, sea');
const HELLO_DESC: Descriptor = { mediaType: 'application/octet-stream', digest: sha256Digest(HELLO), size: HELLO.length };

test('digests: only sha256 with 64 lowercase hex becomes a path', (t) => {
  const good = sha256Digest('x');
  t.is(parseDigest(good), good);
  for (const bad of [
    'sha256:' + 'A'.repeat(64),
    'sha256:' + 'a'.repeat(63),
    'sha256:../../etc/passwd',
    'sha512:' + 'a'.repeat(128),
    'md5:abc',
    '',
    'sha256:' + 'a'.repeat(64) + '/x',
  ]) {
    const err = t.throws(() => blobPath('/layout', bad), { instanceOf: SeabagError });
    t.is(err?.code, 'E_DIGEST_INVALID', bad);
  }
  t.regex(t.throws(() => parseDigest('sha512:' + 'a'.repeat(128)))?.message ?? '', /only sha256/);
});

test('verifying stream passes exact content and fails on short, long and wrong content', async (t) => {
  const ok = await readVerified(Readable.from([HELLO.subarray(0, 3), HELLO.subarray(3)]), HELLO_DESC);
  t.deepEqual(ok, HELLO);

  const run = async (chunks: Buffer[]): Promise<SeabagError> => {
    const out: Buffer[] = [];
    const err = await t.throwsAsync(
      pipeline(Readable.from(chunks), new VerifyingStream(HELLO_DESC), async function* (source) {
        for await (const c of source) out.push(c as Buffer);
      }),
    );
    // The consumer never receives the complete bytes of bad content.
    t.true(Buffer.concat(out).length < HELLO.length);
    return err as SeabagError;
  };
  const short = await run([HELLO.subarray(0, 5)]);
  t.is(short.code, 'E_SIZE_MISMATCH');
  t.is(short.details['found'], 5);
  t.is(short.details['expected'], HELLO.length);
  const long = await run([HELLO, Buffer.from('!')]);
  t.is(long.code, 'E_SIZE_MISMATCH');
  const wrong = Buffer.from(HELLO);
  wrong[0] = 0x48;
  const mismatch = await run([wrong]);
  t.is(mismatch.code, 'E_DIGEST_MISMATCH');
  t.is(mismatch.details['expected'], HELLO_DESC.digest);
  t.is(mismatch.details['found'], sha256Digest(wrong));
});

test('references follow Docker defaults and reject malformed names', (t) => {
  t.like(parseReference('nginx'), { registry: 'docker.io', repository: 'library/nginx' });
  t.like(parseReference('groke/ui:1.4.0'), { registry: 'docker.io', repository: 'groke/ui', tag: '1.4.0' });
  t.like(parseReference('shore.example.com/groke/fusion:1.4.0'), { registry: 'shore.example.com', repository: 'groke/fusion', tag: '1.4.0' });
  t.like(parseReference('localhost:5000/a/b'), { registry: 'localhost:5000', repository: 'a/b' });
  t.like(parseReference('127.0.0.1:32000/x@' + sha256Digest('a')), { registry: '127.0.0.1:32000', repository: 'x', digest: sha256Digest('a') });
  t.is(formatReference(parseReference('index.docker.io/library/busybox:1')), 'docker.io/library/busybox:1');
  for (const bad of ['', 'groke/UPPER', 'a//b', 'a:b:c', 'x@sha256:12', 'host.com/-bad', 'a/b:' + 't'.repeat(129)]) {
    t.is(t.throws<SeabagError>(() => parseReference(bad))?.code, 'E_REFERENCE_INVALID', bad);
  }
  t.true(isLoopbackRegistry('127.0.0.1:5000'));
  t.true(isLoopbackRegistry('localhost:32000'));
  t.true(isLoopbackRegistry('[::1]:5000'));
  t.false(isLoopbackRegistry('shore.example.com'));
  t.false(isLoopbackRegistry('127.example.com'));
});

test('platform strings parse and match with optional variant', (t) => {
  const arm = parsePlatformString('linux/arm64');
  t.true(platformMatches({ os: 'linux', architecture: 'arm64', variant: 'v8' }, arm));
  t.false(platformMatches({ os: 'linux', architecture: 'amd64' }, arm));
  t.false(platformMatches(undefined, arm));
  t.throws(() => parsePlatformString('linux'), { message: /os\/arch/ });
});

test('layout store writes blobs whole, verifies them, and keeps no temp files on failure', async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(dir, { create: true });
  await layout.push(HELLO_DESC, async () => Readable.from([HELLO]));
  t.deepEqual(await readFile(layout.path(HELLO_DESC)), HELLO);
  t.true(await layout.exists(HELLO_DESC));

  const other = Buffer.from('other bytes');
  const desc = { ...HELLO_DESC, digest: sha256Digest('something else'), size: other.length };
  const err = await t.throwsAsync(layout.push(desc, async () => Readable.from([other])));
  t.is((err as SeabagError).code, 'E_DIGEST_MISMATCH');
  t.false(await layout.exists(desc));
  const names = await readdir(join(dir, 'blobs', 'sha256'));
  t.deepEqual(names, [HELLO_DESC.digest.slice(7)], 'no temp file or bad blob left behind');

  // A blob file of the right size but wrong content is not taken as present.
  const fake = Buffer.alloc(HELLO.length, 0x41);
  const fakeDesc = { ...HELLO_DESC, digest: sha256Digest('not the fake') };
  await writeFile(layout.path(fakeDesc), fake);
  t.false(await layout.exists(fakeDesc));
});

test('layout tags live in index.json as org.opencontainers.image.ref.name', async (t) => {
  const dir = await tempDir(t);
  const desc = await buildImage(dir, 'v1', { files: { 'etc/seabag-release': 'one\n' } });
  const layout = await OciLayout.open(dir);
  t.deepEqual((await layout.resolve('v1')).digest, desc.digest);
  await layout.tag(desc, 'stable');
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  t.true(index.manifests.some((m) => m.digest === desc.digest && m.annotations?.['org.opencontainers.image.ref.name'] === 'stable'));
});

test('copyGraph between layouts keeps digests, copies children first and skips what is there', async (t) => {
  const src = await tempDir(t);
  const dst = await tempDir(t);
  await buildImage(src, 'amd', { files: { 'etc/seabag-release': 'amd\n' } });
  await buildImage(src, 'arm', { files: { 'etc/seabag-release': 'arm\n' }, architecture: 'arm64' });
  const index = await buildIndex(src, 'multi', [
    { tag: 'amd', architecture: 'amd64' },
    { tag: 'arm', architecture: 'arm64' },
  ]);
  const from = await OciLayout.open(src);
  const to = await OciLayout.open(dst, { create: true });
  const order: string[] = [];
  const first = await copyGraph(from, to, index, { onNode: (d, outcome) => outcome === 'pushed' && order.push(d.digest) });
  t.is(first.root.digest, index.digest);
  t.is(order.at(-1), index.digest, 'the index is pushed last');
  t.is(first.pushed, order.length);
  const again = await copyGraph(from, to, index);
  t.is(again.pushed, 0);
  t.is(again.bytesCopied, 0);

  // A platform filter that leaves one manifest makes that manifest the root.
  const armOnly = await resolveGraph(from, index, { platforms: [parsePlatformString('linux/arm64')] });
  t.is(armOnly.desc.digest, (await from.resolve('arm')).digest);
});
