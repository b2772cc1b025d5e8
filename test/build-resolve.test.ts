/**
 * `bundle build` resolves its images several at once (lib/bundle/build.ts, `resolveImages`) and
 * hands them over in the spec's order: nothing a user sees may depend on which image's reads
 * finished first. Each test builds the same release one image after another
 * (`resolveConcurrency: 1`) and at once, and compares what each gives: the bundle's bytes, the
 * resolve progress, the warnings, and (when images fail) the error, which must be the first
 * failing image's in the spec's order. The sources are real: OCI layouts written by the test
 * helpers and a Distribution registry fed by skopeo.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { buildBundle, CredentialStore, isSeabagError, type BuildWarning, type Progress } from '../lib/index.js';
import { RESOLVE_CONCURRENCY } from '../lib/bundle/build.js';
import { sha256Digest } from '../lib/oci/digest.js';
import type { Descriptor } from '../lib/oci/descriptor.js';
import { OciLayout } from '../lib/oci/layout.js';
import { OCI_MANIFEST } from '../lib/oci/media-types.js';
import { BIN } from './helpers/cli.js';
import { buildIndex, buildRandomImage } from './helpers/images.js';
import { startRegistry, type RegistryHandle } from './helpers/registry.js';
import { startTokenServer, type TokenServer } from './helpers/token-server.js';
import { skopeoCopy, tempDir } from './helpers/tools.js';

const arm64 = [{ os: 'linux', architecture: 'arm64' }];
const created = new Date('2026-01-01T00:00:00Z');

interface Seen {
  resolve: { done: number; total: number; item: string | undefined }[];
  warnings: Pick<BuildWarning, 'code' | 'image'>[];
  sha256?: string;
  error?: { code: string; message: string };
}

/** Builds `spec` with `resolveConcurrency`; what a user would see of it. */
async function watch(spec: string, output: string, resolveConcurrency: number): Promise<Seen> {
  const seen: Seen = { resolve: [], warnings: [] };
  try {
    await buildBundle(spec, {
      output,
      resolveConcurrency,
      platforms: arm64,
      created,
      sync: false,
      onWarning: (w) => seen.warnings.push({ code: w.code, image: w.image }),
      onProgress: (p: Progress) => {
        if (p.phase === 'resolve') seen.resolve.push({ done: p.done, total: p.total ?? -1, item: p.item });
      },
    });
    seen.sha256 = createHash('sha256').update(await readFile(output)).digest('hex');
  } catch (err) {
    seen.error = isSeabagError(err) ? { code: err.code, message: err.message } : { code: 'not a SeabagError', message: String(err) };
  }
  return seen;
}

test('images resolved at once give what one after another gives: the same bundle bytes, resolve progress and warnings in the spec\'s order (a registry image first, then two layouts)', async (t) => {
  const dir = await tempDir(t);
  const registry = await startRegistry({}, t.teardown.bind(t));
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  // Images that share a layer (across layouts and the registry), an index whose only platform is
  // a fallback for arm64 (platform-fallback), and amd64-only images (platform-missing).
  await buildRandomImage(a, 'one', [30_000, 5_000], 'one', ['shared']);
  await buildRandomImage(a, 'two', [40_000], 'two');
  await buildRandomImage(a, 'v7', [20_000], 'v7');
  await buildIndex(a, 'multi', [{ tag: 'v7', architecture: 'arm', variant: 'v7' }]);
  await buildRandomImage(b, 'three', [30_000, 7_000], 'three', ['shared']);
  await buildRandomImage(b, 'four', [9_000], 'four');
  await skopeoCopy(`oci:${a}:two`, `docker://${registry.host}/groke/remote:1.0`);
  const images = [
    // From the registry: HTTP round trips, the slowest to resolve, so images after it finish first.
    `  - ref: ${registry.host}/groke/remote:1.0`,
    `  - ref: shore.example.com/groke/one:1.0\n    from: oci:${a}:one`,
    `  - ref: shore.example.com/groke/multi:1.0\n    from: oci:${a}:multi`,
    `  - ref: shore.example.com/groke/three:1.0\n    from: oci:${b}:three`,
    `  - ref: shore.example.com/groke/two:1.0\n    from: oci:${a}:two`,
    `  - ref: shore.example.com/groke/four:1.0\n    from: oci:${b}:four`,
  ];
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: order\nversion: 1.0.0\nimages:\n${images.join('\n')}\n`);

  const serial = await watch(spec, join(dir, 'serial.bundle'), 1);
  t.is(serial.error, undefined);
  const names = [`${registry.host}/groke/remote:1.0`, ...['one', 'multi', 'three', 'two', 'four'].map((n) => `shore.example.com/groke/${n}:1.0`)];
  t.deepEqual(serial.resolve, names.map((item, done) => ({ done, total: 6, item })));
  t.deepEqual(serial.warnings, names.map((image, i) => ({ code: i === 2 ? 'platform-fallback' : 'platform-missing', image })));
  t.true(RESOLVE_CONCURRENCY >= 6, 'the default resolves every image of this release at once');
  for (const run of [1, 2, 3]) {
    t.deepEqual(await watch(spec, join(dir, `at-once-${run}.bundle`), RESOLVE_CONCURRENCY), serial, `run ${run} at once`);
  }
  t.deepEqual(await watch(spec, join(dir, 'pairs.bundle'), 2), serial, 'two at a time');
});

test('when several images fail, the first in the spec\'s order is the error, after its own warnings only, however fast the others fail; no bundle is left', async (t) => {
  const dir = await tempDir(t);
  const a = join(dir, 'a');
  await buildRandomImage(a, 'one', [30_000], 'one');
  await buildRandomImage(a, 'two', [20_000], 'two');
  const wrong = `sha256:${'0'.repeat(64)}`;
  const images = [
    `  - ref: shore.example.com/groke/good:1.0\n    from: oci:${a}:two`,
    // Fails after its graph is read and its warning given: the source holds another digest.
    `  - ref: shore.example.com/groke/pinned:1.0@${wrong}\n    from: oci:${a}:one`,
    // Fails at its first read (no layout there): almost always before the one above.
    `  - ref: shore.example.com/groke/nowhere:1.0\n    from: oci:${join(dir, 'missing')}:x`,
    `  - ref: shore.example.com/groke/later:1.0\n    from: oci:${a}:two`,
  ];
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: fail\nversion: 1.0.0\nimages:\n${images.join('\n')}\n`);
  const serial = await watch(spec, join(dir, 'serial.bundle'), 1);
  t.like(serial.error, { code: 'E_DIGEST_MISMATCH' });
  t.regex(serial.error?.message ?? '', /groke\/pinned:1\.0/);
  t.deepEqual(serial.resolve.map((r) => r.item), ['shore.example.com/groke/good:1.0', `shore.example.com/groke/pinned:1.0@${wrong}`]);
  t.deepEqual(serial.warnings.map((w) => w.image), ['shore.example.com/groke/good:1.0', `shore.example.com/groke/pinned:1.0@${wrong}`]);
  for (const run of [1, 2, 3]) t.deepEqual(await watch(spec, join(dir, `at-once-${run}.bundle`), RESOLVE_CONCURRENCY), serial, `run ${run} at once`);

  // With the digest fixed, the missing layout is the first failure.
  await writeFile(spec, (await readFile(spec, 'utf8')).replace(`@${wrong}`, ''));
  const second = await watch(spec, join(dir, 'serial2.bundle'), 1);
  t.like(second.error, { code: 'E_FILE_NOT_FOUND' });
  t.deepEqual(await watch(spec, join(dir, 'at-once.bundle'), RESOLVE_CONCURRENCY), second);
  t.deepEqual((await readdir(dir)).sort(), ['a', 'release.yaml'], 'no bundle and no temp file');
});

test('a build of four images from one layout reads its index.json once (strace)', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'layout');
  const images: string[] = [];
  for (const name of ['a', 'b', 'c', 'd']) {
    await buildRandomImage(layout, name, [4096], name);
    images.push(`  - ref: shore.example.com/groke/${name}:1.0\n    from: oci:${layout}:${name}`);
  }
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: once\nversion: 1.0.0\nimages:\n${images.join('\n')}\n`);
  const trace = join(dir, 'trace');
  const r = await execa('strace', ['-f', '-e', 'trace=openat', '-o', trace, 'node', BIN, 'build', spec, '-o', join(dir, 'once.bundle'), '--unsigned', '--no-progress']);
  t.regex(r.stdout, /built once 1\.0\.0/);
  const opens = (await readFile(trace, 'utf8')).split('\n').filter((l) => l.includes(`${layout}/index.json"`) && !/= -1 /.test(l));
  t.is(opens.length, 1, opens.join('\n'));
});

/** A copy of the manifest `of` with a 3.9 MiB annotation (the slowest to read and hash), tagged `big`. */
async function tagBigManifest(store: OciLayout, of: Descriptor): Promise<Descriptor> {
  const manifest = JSON.parse((await readFile(store.path(of))).toString()) as Record<string, unknown>;
  const bytes = Buffer.from(JSON.stringify({ ...manifest, annotations: { pad: 'x'.repeat(3_900_000) } }));
  const big: Descriptor = { mediaType: OCI_MANIFEST, digest: sha256Digest(bytes), size: bytes.length };
  await store.push(big, async () => Readable.from([bytes]));
  await store.tag(big, 'big');
  return big;
}

test('a layout\'s manifests are read at once for their referrers, and the first bad one in index.json\'s order is the error, not the first to fail (a big tampered manifest early, a small one late)', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'layout');
  const first = await buildRandomImage(layout, 'm0', [1000], 'm0');
  // Second in index.json: a manifest of 3.9 MiB (a long annotation), the slowest to read and hash.
  const store = await OciLayout.open(layout);
  const big = await tagBigManifest(store, first);
  const small: Descriptor[] = [];
  for (let i = 1; i < 20; i += 1) small.push(await buildRandomImage(layout, `m${i}`, [1000 + i], `m${i}`));
  // Same size, other bytes: each fails its digest when read.
  const tamper = async (desc: Descriptor): Promise<void> => {
    const path = store.path(desc);
    const bytes = await readFile(path);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 2) ^ 0x01, bytes.length - 2);
    await writeFile(path, bytes);
  };
  await tamper(big);
  await tamper(small[8] as Descriptor);
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: scan\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/m0:1.0\n    from: oci:${layout}:m0\n`);
  // Which read fails first varies from run to run; the error must not.
  for (const run of [1, 2, 3, 4, 5]) {
    const seen = await watch(spec, join(dir, `scan-${run}.bundle`), RESOLVE_CONCURRENCY);
    t.like(seen.error, { code: 'E_DIGEST_MISMATCH' }, `run ${run}`);
    t.true(seen.error?.message.includes(big.digest), `run ${run}: ${seen.error?.message}`);
  }
});

/**
 * A registry behind token auth (user ci), stopped with the test, and a docker config folder under
 * `dir` holding its login: the authfile skopeo pushes with, the folder the build reads.
 */
async function tokenRegistry(t: ExecutionContext, dir: string, options: Parameters<typeof startTokenServer>[3] = {}): Promise<{ tokens: TokenServer; registry: RegistryHandle; docker: string; authfile: string }> {
  const tokens = await startTokenServer(dir, { username: 'ci', password: 'token-pass' }, '127.0.0.1', options);
  t.teardown(() => tokens.close());
  const registry = await startRegistry({ token: tokens }, t.teardown.bind(t));
  const docker = join(dir, 'docker');
  await mkdir(docker);
  const authfile = join(docker, 'config.json');
  await writeFile(authfile, JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from('ci:token-pass').toString('base64') } } }));
  return { tokens, registry, docker, authfile };
}

test('images of one registry behind token auth, resolved at once, share one client: each repository\'s pull token is asked for once, as one after another', async (t) => {
  const dir = await tempDir(t);
  const { tokens, registry, docker, authfile } = await tokenRegistry(t, dir);
  const layout = join(dir, 'layout');
  const refs: string[] = [];
  for (const [repo, tag] of [['groke/a', '1.0'], ['groke/a', '2.0'], ['groke/b', '1.0'], ['groke/b', '2.0']] as const) {
    await buildRandomImage(layout, `${repo.slice(6)}${tag}`, [3000], `${repo}:${tag}`);
    await execa('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--dest-authfile', authfile, `oci:${layout}:${repo.slice(6)}${tag}`, `docker://${registry.host}/${repo}:${tag}`]);
    refs.push(`  - ref: ${registry.host}/${repo}:${tag}`);
  }
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: auth\nversion: 1.0.0\nimages:\n${refs.join('\n')}\n`);
  const pulls = async (resolveConcurrency: number): Promise<{ sha256: string; scopes: string[] }> => {
    tokens.scopes.length = 0;
    const output = join(dir, `c${resolveConcurrency}.bundle`);
    await buildBundle(spec, { output, resolveConcurrency, created, sync: false, credentials: new CredentialStore({ env: { DOCKER_CONFIG: docker } }) });
    return { sha256: createHash('sha256').update(await readFile(output)).digest('hex'), scopes: [...tokens.scopes].sort() };
  };
  const serial = await pulls(1);
  t.deepEqual(serial.scopes, ['repository:groke/a:pull', 'repository:groke/b:pull']);
  t.deepEqual(await pulls(RESOLVE_CONCURRENCY), serial);
});

/** Adds `count` small manifests (no subject: none is a referrer) to the index of `layoutDir`, the last one `tampered`. */
async function addFillers(layoutDir: string, count: number, tampered = false): Promise<Descriptor | undefined> {
  const store = await OciLayout.open(layoutDir);
  const empty = { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256Digest(Buffer.from('{}')), size: 2 };
  await writeFile(store.path(empty), '{}');
  const added: Descriptor[] = [];
  for (let i = 0; i < count; i += 1) {
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/x-filler', config: empty, layers: [empty], annotations: { filler: `${layoutDir} ${i}` } }));
    const desc: Descriptor = { mediaType: OCI_MANIFEST, digest: sha256Digest(bytes), size: bytes.length };
    if (tampered && i === count - 1) bytes.writeUInt8(bytes.readUInt8(bytes.length - 3) ^ 0x01, bytes.length - 3);
    await writeFile(store.path(desc), bytes);
    added.push(desc);
  }
  await store.updateIndex((index) => ({ ...index, manifests: [...index.manifests, ...added] }));
  return tampered ? added.at(-1) : undefined;
}

test('a layout\'s referrer scan shared by images resolved at once is not stopped for all by the stop of the one that began it: the first failing image in the spec\'s order is still the error, not a cancellation', async (t) => {
  const dir = await tempDir(t);
  const shared = join(dir, 'shared');
  const other = join(dir, 'other');
  // Image 0 of the spec: a manifest of 3.9 MiB (a long annotation), so it reaches the shared scan
  // of its layout after image 2, which begins it.
  const small = await buildRandomImage(shared, 'light', [1000], 'light');
  await tagBigManifest(await OciLayout.open(shared), small);
  // Many manifests to scan for referrers: the scan is long.
  await addFillers(shared, 4000);
  // Image 1: another layout whose scan fails, once it has read its 1000 manifests, at the last.
  await buildRandomImage(other, 'broken', [1000], 'broken');
  const bad = await addFillers(other, 1000, true);
  const spec = join(dir, 'release.yaml');
  await writeFile(
    spec,
    `apiVersion: seabag.dev/v1\nkind: Release\nname: shared\nversion: 1.0.0\nimages:\n` +
      `  - ref: shore.example.com/groke/big:1.0\n    from: oci:${shared}:big\n` +
      `  - ref: shore.example.com/groke/broken:1.0\n    from: oci:${other}:broken\n` +
      `  - ref: shore.example.com/groke/light:1.0\n    from: oci:${shared}:light\n`,
  );
  const serial = await watch(spec, join(dir, 'serial.bundle'), 1);
  t.like(serial.error, { code: 'E_DIGEST_MISMATCH' });
  t.true(serial.error?.message.includes(bad?.digest ?? '-'), serial.error?.message);
  // When image 1 fails, image 2 (after it) is stopped; image 0 still waits for the scan image 2 began.
  for (const run of [1, 2]) t.deepEqual(await watch(spec, join(dir, `at-once-${run}.bundle`), RESOLVE_CONCURRENCY), serial, `run ${run}`);
  t.deepEqual((await readdir(dir)).sort(), ['other', 'release.yaml', 'shared'], 'no bundle and no temp file');
});

test('a registry token that images resolved at once wait for is not cancelled for all by the stop of the image that asked for it first: the first failing image in the spec\'s order is still the error', async (t) => {
  const dir = await tempDir(t);
  // A slow identity provider for groke/a, while the images after a failing one are stopped.
  let hold = false;
  let bAnswered!: () => void;
  const bToken = new Promise<void>((resolve) => (bAnswered = resolve));
  const { registry, docker, authfile } = await tokenRegistry(t, dir, {
    answerAfter: async (scopes) => {
      if (scopes.some((s) => s.startsWith('repository:groke/b:'))) bAnswered();
      if (hold && scopes.some((s) => s.startsWith('repository:groke/a:'))) {
        await bToken;
        // By then groke/b's missing tag has failed its image, and the images after it are stopped.
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    },
  });
  const layout = join(dir, 'layout');
  await buildRandomImage(layout, 'a', [3000], 'a');
  for (const [repo, tag] of [['groke/a', '1'], ['groke/a', '2'], ['groke/a', '3'], ['groke/a', '4'], ['groke/b', 'other']] as const) {
    await execa('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--dest-authfile', authfile, `oci:${layout}:a`, `docker://${registry.host}/${repo}:${tag}`]);
  }
  const refs = [`${registry.host}/groke/a:1`, `${registry.host}/groke/b:missing`, `${registry.host}/groke/a:2`, `${registry.host}/groke/a:3`, `${registry.host}/groke/a:4`];
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: auth\nversion: 1.0.0\nimages:\n${refs.map((r) => `  - ref: ${r}`).join('\n')}\n`);
  const build = async (resolveConcurrency: number): Promise<{ code?: string; message?: string }> => {
    try {
      await buildBundle(spec, { output: join(dir, `c${resolveConcurrency}.bundle`), resolveConcurrency, created, sync: false, credentials: new CredentialStore({ env: { DOCKER_CONFIG: docker } }) });
      return {};
    } catch (err) {
      return isSeabagError(err) ? { code: err.code, message: err.message } : { message: String(err) };
    }
  };
  const serial = await build(1);
  t.like(serial, { code: 'E_NOT_FOUND' });
  t.regex(serial.message ?? '', /groke\/b:missing/);
  hold = true;
  // Which image asks for groke/a's token first varies from run to run; the error must not.
  for (const run of [1, 2, 3]) t.deepEqual(await build(RESOLVE_CONCURRENCY), serial, `run ${run}`);
});
