/**
 * Thin links: parts for FAT32 sticks, `fetch` over a link that breaks (nginx behind a proxy that
 * cuts connections, and a server that drops them at random), the rate limit, and delta bundles
 * built from a vessel's inventory.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { openBundle, parseSize, parseRate, type PartsFile } from '../lib/index.js';
import { parseImageManifest } from '../lib/oci/descriptor.js';
import { runCli } from './helpers/cli.js';
import { EPOCH, exampleCopy } from './helpers/example.js';
import { buildRandomImage, pseudoRandom } from './helpers/images.js';
import { tempDir } from './helpers/tools.js';
import { startVessel } from './helpers/vessel.js';
import { startCuttingProxy, startFlakyServer, startNginx } from './helpers/web.js';

let work: string;
let example: string;
let trust: string;
let key: string;

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-thin-'));
  example = await exampleCopy(work);
  // Ballast: parts are at least 1 MiB (smaller is refused up front), so the example release gets a
  // 5 MiB image of incompressible bytes, the same in both versions, to split into several parts.
  await buildRandomImage(join(example, 'build', 'images'), 'ballast-1', [5 * 1024 * 1024]);
  for (const version of ['1.4.0', '1.5.0']) {
    const spec = join(example, version, 'release.yaml');
    const text = await readFile(spec, 'utf8');
    await writeFile(spec, text.replace('images:\n', 'images:\n  - ref: shore.example.com/groke/ballast:1\n    from: oci:../build/images:ballast-1\n'));
  }
  key = join(work, 'release.key');
  await runCli(['keygen', join(work, 'root.key')]);
  await runCli(['keygen', key]);
  trust = join(work, 'trust.json');
  await runCli(['trust', 'init', '--root-key', join(work, 'root.key.pub'), '--release-key', `${key}.pub`, '--sign', join(work, 'root.key'), '-o', trust]);
});

test.after.always(async () => {
  await rm(work, { recursive: true, force: true });
});

async function build(version: string, out: string, ...extra: string[]): Promise<Awaited<ReturnType<typeof runCli>>> {
  const r = await runCli(['build', join(example, version, 'release.yaml'), '-o', out, '--sign', key, '--json', '--no-progress', ...extra], { SOURCE_DATE_EPOCH: EPOCH });
  if (r.code !== 0) throw new Error(r.stdout + r.stderr);
  return r;
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

test('sizes parse like split and curl: 500M, 4G, bytes, fat32; rates in powers of 1024', (t) => {
  t.is(parseSize('500M'), 500 * 1024 * 1024);
  t.is(parseSize('4G'), 4 * 1024 ** 3);
  t.is(parseSize('123456'), 123456);
  t.is(parseSize('fat32'), 4_294_967_295);
  t.throws(() => parseSize('lots'), { message: /invalid size/ });
  t.is(parseRate('500K'), 512_000);
  t.is(parseRate('1M'), 1_048_576);
  t.throws(() => parseRate('fast'), { message: /invalid rate/ });
});

test('split at a small size: parts concatenate to the unsplit bundle, none over the limit, and every reader takes them', async (t) => {
  const dir = await tempDir(t);
  const whole = join(dir, 'whole', 'a.bundle');
  await mkdir(join(dir, 'whole'));
  await mkdir(join(dir, 'stick'));
  await build('1.4.0', whole);
  const split = join(dir, 'stick', 'a.bundle');
  const r = await build('1.4.0', split, '--split', '1M');
  const parts = JSON.parse(await readFile(`${split}.parts.json`, 'utf8')) as PartsFile;
  const wholeBytes = await readFile(whole);
  t.true(parts.count >= 4);
  t.is(r.json['parts'], parts.count);
  const joined = Buffer.concat(await Promise.all(parts.parts.map((p) => readFile(join(dir, 'stick', p.name)))));
  t.true(joined.equals(wholeBytes), 'byte for byte the unsplit bundle');
  t.is(parts.sha256, sha256(wholeBytes));
  for (const p of parts.parts) {
    t.true(p.size <= 1024 * 1024);
    t.is(sha256(await readFile(join(dir, 'stick', p.name))), p.sha256);
  }
  t.deepEqual((await readdir(join(dir, 'stick'))).sort(), [...parts.parts.map((p) => p.name), 'a.bundle.parts.json'].sort());
  for (const input of [`${split}.parts.json`, `${split}.002`, join(dir, 'stick')]) {
    const v = await runCli(['verify', input, '--trust', trust, '--json', '--no-progress']);
    t.is(v.code, 0, `${input}: ${v.stdout}`);
    const i = await runCli(['inspect', input, '--json']);
    t.like(i.json, { release: { version: '1.4.0' }, parts: parts.count });
  }
  const vessel = await startVessel(t);
  const imported = await vessel.run(['import', `${split}.001`, '--trust', trust, '--target', 'class-a', '--json']);
  t.is(imported.code, 0, imported.stdout);
});

test('a removed or damaged part is named (exit 1) before anything reaches the registry', async (t) => {
  const dir = await tempDir(t);
  const split = join(dir, 'a.bundle');
  await build('1.4.0', split, '--split', '1M');
  const parts = JSON.parse(await readFile(`${split}.parts.json`, 'utf8')) as PartsFile;
  const third = parts.parts[2]?.name as string;
  const vessel = await startVessel(t);

  const damaged = join(dir, third);
  const original = await readFile(damaged);
  const bad = Buffer.from(original);
  bad[1000] = (bad[1000] ?? 0) ^ 0x20;
  await writeFile(damaged, bad);
  for (const cmd of [['verify', `${split}.parts.json`, '--trust', trust], ['import', `${split}.parts.json`, '--trust', trust, '--target', 'class-a']]) {
    const r = await vessel.run([...cmd, '--json']);
    t.is(r.code, 1, r.stdout);
    t.like(r.json.error, { code: 'E_PART_CORRUPT', details: { part: third } });
    t.regex(r.json.error?.message ?? '', new RegExp(third.replace(/\./g, '\\.')));
  }
  const repositories = join(vessel.registry.storageDir, 'docker', 'registry', 'v2', 'repositories');
  t.false(await stat(repositories).then(() => true, () => false), 'the registry received nothing');

  await writeFile(damaged, original);
  await rm(join(dir, third));
  const missing = await vessel.run(['import', `${split}.parts.json`, '--trust', trust, '--target', 'class-a', '--json']);
  t.is(missing.code, 1);
  t.like(missing.json.error, { code: 'E_PART_MISSING', details: { missing: [third] } });
  const viaPart = await vessel.run(['inspect', `${split}.001`, '--json']);
  t.is(viaPart.json.error?.code, 'E_PART_MISSING');
  t.deepEqual(await vessel.tags('seabag/awareness'), []);
  t.false(await stat(join(vessel.stateDir, 'state.json')).then(() => true, () => false), 'no state was written');
});

test('fetch through nginx with the connection cut several times mid-part: the result is byte-identical and imports', async (t) => {
  const served = await tempDir(t);
  const split = join(served, 'awareness.bundle');
  await build('1.5.0', split, '--split', '1M');
  const nginx = await startNginx(t, served);
  const proxy = await startCuttingProxy(t, nginx.port, { cuts: 6, min: 10_000, max: 150_000, seed: 7 });
  const out = await tempDir(t);
  const retries: string[] = [];
  const { fetchBundle } = await import('../lib/index.js');
  const result = await fetchBundle(`${proxy.url}/awareness.bundle.parts.json`, {
    outDir: out,
    backoff: { minMs: 20, maxMs: 200 },
    onRetry: (r) => retries.push(r.reason),
  });
  t.true(proxy.cuts >= 6, `cut ${proxy.cuts} times`);
  t.true(retries.length >= 6);
  const parts = JSON.parse(await readFile(`${split}.parts.json`, 'utf8')) as PartsFile;
  for (const p of parts.parts) t.true((await readFile(join(out, p.name))).equals(await readFile(join(served, p.name))), p.name);
  t.is(result.bundle, join(out, 'awareness.bundle.parts.json'));
  t.deepEqual((await readdir(out)).filter((n) => n.endsWith('.partial')), []);
  const vessel = await startVessel(t);
  const imported = await vessel.run(['import', result.bundle, '--trust', trust, '--target', 'class-a', '--json']);
  t.is(imported.code, 0, imported.stdout);

  // A single (unsplit) bundle through the same kind of link.
  const whole = join(served, 'whole.bundle');
  await build('1.4.0', whole);
  const proxy2 = await startCuttingProxy(t, nginx.port, { cuts: 4, min: 20_000, max: 200_000, seed: 11 });
  const out2 = await tempDir(t);
  const single = await fetchBundle(`${proxy2.url}/whole.bundle`, { outDir: out2, backoff: { minMs: 20, maxMs: 200 } });
  t.true((await readFile(single.bundle)).equals(await readFile(whole)));
  t.true(proxy2.cuts >= 4);
});

test('fetch killed and started again resumes from its .partial files', async (t) => {
  const served = await tempDir(t);
  await writeFile(join(served, 'big.bundle'), await new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [];
    pseudoRandom('resume', 6 * 1024 * 1024).on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks)));
  }));
  const nginx = await startNginx(t, served);
  const out = await tempDir(t);
  const { spawnCli } = await import('./helpers/cli.js');
  const child = spawnCli(['fetch', `${nginx.url}/big.bundle`, '-o', out, '--limit-rate', '2M', '--no-progress']);
  // Kill it once it has part of the file (not on a timer: a loaded machine starts node slowly).
  const deadline = Date.now() + 20_000;
  while (((await stat(join(out, 'big.bundle.partial')).catch(() => undefined))?.size ?? 0) < 512 * 1024 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  await child;
  const partial = await stat(join(out, 'big.bundle.partial'));
  t.true(partial.size > 0 && partial.size < 6 * 1024 * 1024, `partial has ${partial.size} bytes`);
  const again = await runCli(['fetch', `${nginx.url}/big.bundle`, '-o', out, '--json', '--no-progress']);
  t.is(again.code, 0, again.stdout);
  t.is(again.json['downloaded'], 6 * 1024 * 1024 - partial.size, 'only the rest came over the link');
  t.true((await readFile(join(out, 'big.bundle'))).equals(await readFile(join(served, 'big.bundle'))));
});

test('--limit-rate holds the average within 10% of the rate over several seconds', async (t) => {
  const served = await tempDir(t);
  const size = 4 * 1024 * 1024;
  await writeFile(join(served, 'r.bundle'), Buffer.alloc(size, 7));
  const nginx = await startNginx(t, served);
  const out = await tempDir(t);
  const started = Date.now();
  const r = await runCli(['fetch', `${nginx.url}/r.bundle`, '-o', out, '--limit-rate', '1M', '--json', '--no-progress']);
  const seconds = (Date.now() - started) / 1000;
  t.is(r.code, 0, r.stdout);
  const average = size / seconds;
  t.log(`4 MiB in ${seconds.toFixed(2)} s: ${(average / 1024).toFixed(0)} KiB/s against 1024 KiB/s`);
  t.true(Math.abs(average - 1024 * 1024) / (1024 * 1024) <= 0.1, `average ${average.toFixed(0)} B/s`);
});

test('fetch rides out random drops, an outage, and a damaged part (fetched again alone)', async (t) => {
  const served = await tempDir(t);
  const split = join(served, 'awareness.bundle');
  await build('1.5.0', split, '--split', '1M');
  const server = await startFlakyServer(t, served, { dropRate: 0.5, seed: 42 });
  const parts = JSON.parse(await readFile(`${split}.parts.json`, 'utf8')) as PartsFile;
  server.corruptOnce(parts.parts[1]?.name as string);
  const out = await tempDir(t);
  const { fetchBundle } = await import('../lib/index.js');
  let outage: Promise<void> | undefined;
  const result = await fetchBundle(`${server.url}/awareness.bundle.parts.json`, {
    outDir: out,
    backoff: { minMs: 50, maxMs: 500 },
    retries: 30,
    onProgress: (p) => {
      if (outage === undefined && p.done > parts.size / 2) outage = server.outage(1500);
    },
  });
  await outage;
  t.true(server.drops >= 3, `${server.drops} drops`);
  t.is(result.refetched, 1, 'the damaged part was fetched again');
  for (const p of parts.parts) t.is(sha256(await readFile(join(out, p.name))), p.sha256);
  // Run again: every part is already here and intact; nothing comes over the link.
  const again = await fetchBundle(`${server.url}/awareness.bundle.parts.json`, { outDir: out });
  t.is(again.downloaded, 0);
  t.is(again.reused, parts.count);
  // A server that stays down: a clear E_FETCH after the retries.
  await server.close();
  const down = await runCli(['fetch', `${server.url}/awareness.bundle.parts.json`, '-o', await tempDir(t), '--retries', '1', '--json', '--no-progress']);
  t.is(down.code, 3);
  t.is(down.json.error?.code, 'E_FETCH');
});

test('a delta of 1.5.0 over a vessel holding 1.4.0 carries only the changed layers, imports and applies there, and fails on an empty vessel', async (t) => {
  const dir = await tempDir(t);
  const v1 = join(dir, 'v1.bundle');
  const full2 = join(dir, 'v2.bundle');
  await build('1.4.0', v1);
  await build('1.5.0', full2);
  const vessel = await startVessel(t);
  t.is((await vessel.run(['import', v1, '--trust', trust, '--target', 'class-a'])).code, 0);
  t.is((await vessel.run(['apply', 'awareness@1.4.0'])).code, 0);
  const inventory = join(dir, 'inventory.json');
  const inv = await vessel.run(['inventory', '-o', inventory, '--json']);
  t.is(inv.code, 0, inv.stdout);
  t.true((await stat(inventory)).size < 16 * 1024, 'small enough to mail');

  const delta = join(dir, 'v2-delta.bundle');
  const built = await build('1.5.0', delta, '--since', inventory);
  const fullSize = (await stat(full2)).size;
  const deltaSize = (await stat(delta)).size;
  t.log(`full 1.5.0 bundle ${fullSize} bytes, delta over 1.4.0 ${deltaSize} bytes (${((deltaSize / fullSize) * 100).toFixed(1)}%)`);
  t.true(deltaSize < fullSize / 10);
  t.true((built.json['omittedBlobs'] as string[]).length > 0);

  // The layers in the delta are exactly the ones 1.4.0 does not have.
  const old = await openBundle(v1);
  const fresh = await openBundle(delta);
  t.teardown(async () => {
    await old.close();
    await fresh.close();
  });
  const layersOf = async (b: Awaited<ReturnType<typeof openBundle>>): Promise<Set<string>> => {
    const out = new Set<string>();
    for (const [digest] of b.archive.blobs) {
      const bytes = await b.archive.readSmall({ mediaType: 'x', digest, size: b.archive.location(digest)!.size }).catch(() => undefined);
      if (bytes === undefined) continue;
      try {
        const m = parseImageManifest(bytes, { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: bytes.length });
        for (const l of m.layers) if (l.mediaType.includes('image.layer')) out.add(l.digest);
      } catch {
        // not a manifest
      }
    }
    return out;
  };
  const oldLayers = await layersOf(old);
  const newLayers = await layersOf(fresh);
  const carried = [...newLayers].filter((d) => fresh.archive.location(d as `sha256:${string}`) !== undefined);
  t.true(carried.length === 2, `carries the two changed layers (fusion and toolbox): ${carried.length}`);
  for (const d of carried) t.false(oldLayers.has(d));
  const inspected = await runCli(['inspect', delta, '--json']);
  t.true((inspected.json['omittedBytes'] as number) > 1_000_000, 'inspect shows the saving');
  const text = await runCli(['inspect', delta]);
  t.regex(text.stdout, /delta: \d+ blob\(s\) left out, .* saved/);
  t.is((await runCli(['verify', delta, '--trust', trust, '--json'])).code, 0);

  const imported = await vessel.run(['import', delta, '--json']);
  t.is(imported.code, 0, imported.stdout);
  t.true((imported.json['blobs'] as { omitted: number }).omitted > 0);
  t.is((await vessel.run(['apply', 'awareness@1.5.0'])).code, 0);
  const { skopeoCopy } = await import('./helpers/tools.js');
  await mkdir(join(dir, 'pull'));
  for (const img of fresh.release.images) await skopeoCopy(`docker://${vessel.registry.host}/${img.repository}@${img.digest}`, `oci:${join(dir, 'pull', img.repository.replace('/', '-'))}:x`);

  const empty = await startVessel(t);
  const refused = await empty.run(['import', delta, '--trust', trust, '--target', 'class-a', '--json']);
  t.is(refused.code, 1);
  t.is(refused.json.error?.code, 'E_BLOBS_MISSING');
  t.true((refused.json.error?.details['missing'] as string[]).length > 0);
  t.deepEqual(await empty.tags('seabag/awareness'), []);
  t.false(await stat(join(empty.stateDir, 'state.json')).then(() => true, () => false));

  // --since an older bundle leaves out the same.
  const fromBundle = join(dir, 'v2-delta-b.bundle');
  const b = await build('1.5.0', fromBundle, '--since', v1);
  t.deepEqual(b.json['omittedBlobs'], built.json['omittedBlobs']);
});

test('fetch over HTTPS trusts the CA given with --ca-file, and says what to do without it', async (t) => {
  const { makeCertificates } = await import('./helpers/registry.js');
  const { createServer } = await import('node:https');
  const dir = await tempDir(t);
  const certs = await makeCertificates(dir);
  const payload = Buffer.alloc(300_000, 9);
  const server = createServer({ cert: await readFile(certs.certFile), key: await readFile(certs.keyFile) }, (req, res) => {
    if (req.url !== '/x.bundle') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': payload.length }).end(payload);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as { port: number }).port;
  const out = join(dir, 'out');
  const untrusted = await runCli(['fetch', `https://127.0.0.1:${port}/x.bundle`, '-o', out, '--json', '--no-progress']);
  t.is(untrusted.code, 3);
  t.is(untrusted.json.error?.code, 'E_FETCH');
  t.regex(JSON.stringify(untrusted.json.error), /--ca-file/);
  const ok = await runCli(['fetch', `https://127.0.0.1:${port}/x.bundle`, '-o', out, '--ca-file', certs.caFile, '--json', '--no-progress']);
  t.is(ok.code, 0, ok.stdout);
  t.true((await readFile(join(out, 'x.bundle'))).equals(payload));
});
