/**
 * The satellite path on real parts: a shore Distribution with htpasswd basic auth and TLS (a CA
 * made for the test), a vessel Distribution of its own, and between the vessel and the shore a TCP
 * proxy that counts the bytes it carries (TLS passes through it untouched) and cuts connections on
 * demand. Releases are pushed with `bundle push`, read back with skopeo, pulled into files and
 * imported straight from the shore.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { openBundle } from '../lib/index.js';
import { runCli } from './helpers/cli.js';
import { EPOCH } from './helpers/example.js';
import { buildRandomImage } from './helpers/images.js';
import { startRegistry, type RegistryHandle } from './helpers/registry.js';
import { skopeoRaw, tempDir } from './helpers/tools.js';
import { startVessel, type TestVessel } from './helpers/vessel.js';
import { startCuttingProxy, type CuttingProxy } from './helpers/web.js';
import { addToLayout, cosignSignature, ecKey, spdxReferrer, tagFor } from './helpers/cosign.js';
import { OciLayout } from '../lib/oci/layout.js';

const MiB = 1024 * 1024;
const USER = { username: 'captain-ashore', password: 'correct horse battery staple' };
const REPO = 'releases/awareness';

let work: string;
let shore: RegistryHandle;
let ca: string;
let certDir: string;
let trust: string;
const bundles: Record<string, string> = {};

/** A Docker config that logs in to each host with the shore's credentials. */
async function dockerConfig(dir: string, hosts: string[], creds = USER): Promise<string> {
  const folder = join(dir, 'docker');
  await mkdir(folder, { recursive: true });
  const auth = Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
  await writeFile(join(folder, 'config.json'), JSON.stringify({ auths: Object.fromEntries(hosts.map((h) => [h, { auth }])) }));
  return folder;
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<Awaited<ReturnType<typeof runCli>>> {
  const r = await runCli([...args, '--no-progress'], { SOURCE_DATE_EPOCH: EPOCH, ...env });
  if (r.code !== 0) throw new Error(`${args.join(' ')} → ${r.code}: ${r.stdout}${r.stderr}`);
  return r;
}

function spec(version: string, app: string, expires = '2030-06-01'): string {
  return [
    'apiVersion: seabag.dev/v1',
    'kind: Release',
    'name: awareness',
    `version: ${version}`,
    `expires: ${expires}`,
    'images:',
    `  - ref: shore.example.com/groke/app:${version}`,
    `    from: oci:images:${app}`,
    '  - ref: shore.example.com/groke/tool:1.0',
    '    from: oci:images:tool-1.0',
    'manifests: [k8s/]',
    '',
  ].join('\n');
}

const deployment = (version: string): string =>
  `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  selector: {matchLabels: {app: app}}\n  template:\n    metadata: {labels: {app: app}}\n    spec:\n      containers: [{name: app, image: 'shore.example.com/groke/app:${version}'}]\n`;

const shoreTeardown: (() => Promise<void>)[] = [];
test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-satellite-'));
  const layout = join(work, 'images');
  // app 1.4.0 and 1.5.0 share a 5 MiB base layer; 1.5.0 changes the 4 MiB app layer.
  await buildRandomImage(layout, 'app-1.4.0', [5 * MiB, 4 * MiB], 'app-1.4.0', ['base', 'app-1.4.0']);
  await buildRandomImage(layout, 'app-1.5.0', [5 * MiB, 4 * MiB], 'app-1.5.0', ['base', 'app-1.5.0']);
  await buildRandomImage(layout, 'app-1.6.0', [5 * MiB, 4 * MiB], 'app-1.6.0', ['base', 'app-1.6.0']);
  await buildRandomImage(layout, 'tool-1.0', [2 * MiB], 'tool-1.0', ['tool']);
  for (const k of ['root', 'release', 'stranger']) await cli(['keygen', join(work, `${k}.key`)]);
  trust = join(work, 'trust.json');
  await cli(['trust', 'init', '--root-key', join(work, 'root.key.pub'), '--release-key', join(work, 'release.key.pub'), '--sign', join(work, 'root.key'), '-o', trust]);
  const release = async (name: string, version: string, app: string, key: string, expires?: string): Promise<void> => {
    const dir = join(work, `spec-${name}`);
    await mkdir(join(dir, 'k8s'), { recursive: true });
    await writeFile(join(dir, 'k8s', 'app.yaml'), deployment(version));
    await writeFile(join(dir, 'release.yaml'), spec(version, app, expires).replace('oci:images:', `oci:${layout}:`).replace('oci:images:', `oci:${layout}:`));
    bundles[name] = join(work, `${name}.bundle`);
    // build refuses an expires already past at build time: the expired one is built "in 2000".
    await cli(['build', join(dir, 'release.yaml'), '-o', bundles[name] as string, '--sign', join(work, `${key}.key`)], expires === undefined ? {} : { SOURCE_DATE_EPOCH: String(Date.UTC(2000, 0, 1) / 1000) });
  };
  await release('1.4.0', '1.4.0', 'app-1.4.0', 'release');
  await release('1.5.0', '1.5.0', 'app-1.5.0', 'release');
  await release('untrusted', '1.6.0', 'app-1.6.0', 'stranger');
  await release('expired', '1.6.0', 'app-1.6.0', 'release', '2001-01-01');
  await release('tampered', '1.6.0', 'app-1.6.0', 'release');

  shore = await startRegistry({ auth: USER, tls: true }, (fn) => void shoreTeardown.push(fn));
  ca = shore.caFile as string;
  certDir = join(work, 'certs');
  await mkdir(certDir);
  await writeFile(join(certDir, 'ca.crt'), await readFile(ca));
  const env = { DOCKER_CONFIG: await dockerConfig(work, [shore.host]) };
  await cli(['push', bundles['1.4.0'] as string, `oci://${shore.host}/${REPO}`, '--ca-file', ca], env);
  await cli(['push', bundles['1.5.0'] as string, `oci://${shore.host}/${REPO}`, '--ca-file', ca], env);
  await cli(['push', bundles['untrusted'] as string, `oci://${shore.host}/${REPO}`, '--ca-file', ca, '--tag', 'untrusted'], env);
  await cli(['push', bundles['expired'] as string, `oci://${shore.host}/${REPO}`, '--ca-file', ca, '--tag', 'expired'], env);
  await cli(['push', bundles['tampered'] as string, `oci://${shore.host}/tampered/awareness`, '--ca-file', ca], env);
});

test.after.always(async () => {
  // Stops the shore and removes its folder (certificates, htpasswd, storage).
  for (const fn of shoreTeardown) await fn();
  await rm(work, { recursive: true, force: true });
});

interface Link {
  proxy: CuttingProxy;
  vessel: TestVessel;
  env: Record<string, string>;
  /** `oci://PROXY/releases/awareness:TAG` */
  at(tag: string, repo?: string): string;
  import(tag: string, ...extra: string[]): Promise<Awaited<ReturnType<typeof runCli>>>;
}

/** A vessel and its link to the shore: a counting, cutting proxy, and credentials for it. */
async function link(t: ExecutionContext, vessel?: TestVessel): Promise<Link> {
  const v = vessel ?? (await startVessel(t));
  const proxy = await startCuttingProxy(t, shore.port);
  const dir = await tempDir(t);
  const env = { ...v.env, DOCKER_CONFIG: await dockerConfig(dir, [`127.0.0.1:${proxy.port}`]) };
  const at = (tag: string, repo = REPO): string => `oci://127.0.0.1:${proxy.port}/${repo}:${tag}`;
  return {
    proxy,
    vessel: v,
    env,
    at,
    import: (tag, ...extra) => runCli(['import', at(tag), '--shore-ca-file', ca, '--trust', trust, '--json', '--no-progress', ...extra], env),
  };
}

/** Blobs of a bundle: the small ones (metadata: manifests, configs, the release, signatures) and the rest. */
async function blobsOf(path: string): Promise<{ small: Map<string, number>; large: Map<string, number>; indexSize: number }> {
  const b = await openBundle(path);
  try {
    const small = new Map<string, number>();
    const large = new Map<string, number>();
    for (const [digest, e] of b.archive.blobs) (e.size < 64 * 1024 ? small : large).set(digest, e.size);
    const indexSize = b.archive.entries.find((e) => e.name === 'index.json')?.size ?? 0;
    return { small, large, indexSize };
  } finally {
    await b.close();
  }
}

const sum = (m: Iterable<number>): number => [...m].reduce((a, b) => a + b, 0);
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

test.serial('push → skopeo inspect --raw shows the bundle index → a pull is byte-identical → import stages and apply switches', async (t) => {
  const raw = JSON.parse((await skopeoRaw(`${shore.host}/${REPO}:1.4.0`, { certDir, authfile: join(work, 'docker', 'config.json') })).toString()) as {
    mediaType: string;
    artifactType: string;
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  t.is(raw.mediaType, 'application/vnd.oci.image.index.v1+json');
  t.is(raw.artifactType, 'application/vnd.seabag.bundle.v1');
  const original = await openBundle(bundles['1.4.0'] as string);
  const indexDigests = original.archive.index.manifests.map((m) => m.digest);
  const app = original.release.images.find((i) => i.repository === 'groke/app');
  await original.close();
  t.deepEqual(raw.manifests.map((m) => m.digest), indexDigests, 'the pushed index lists what the bundle lists');

  // Any image in it can be copied by digest by a standard tool.
  const copied = await tempDir(t);
  await execa('skopeo', ['copy', '--quiet', `--src-cert-dir=${certDir}`, '--src-authfile', join(work, 'docker', 'config.json'), `docker://${shore.host}/${REPO}@${app?.digest}`, `oci:${copied}:app`]);
  t.true((await readdir(join(copied, 'blobs', 'sha256'))).length >= 3);

  // Pushing the same bundle again uploads nothing.
  const env = { DOCKER_CONFIG: join(work, 'docker') };
  const again = await cli(['push', bundles['1.4.0'] as string, `oci://${shore.host}/${REPO}`, '--ca-file', ca, '--json'], env);
  t.like(again.json, { ok: true, blobs: { pushed: 0 }, bytesPushed: 0, reproducible: true });

  // A full pull through the link is the pushed file, byte for byte.
  const l = await link(t);
  const out = join(await tempDir(t), 'pulled.bundle');
  const pulled = await runCli(['pull', l.at('1.4.0'), '-o', out, '--ca-file', ca, '--trust', trust, '--json', '--no-progress'], l.env);
  t.is(pulled.code, 0, pulled.stdout + pulled.stderr);
  t.true(pulled.json['verified'] as boolean);
  t.is(sha256(await readFile(out)), sha256(await readFile(bundles['1.4.0'] as string)), 'byte-identical to the pushed bundle');
  t.false(await stat(`${out}.spool`).then(() => true, () => false), 'the pull removed its spool');

  // …and --split writes the same bytes as parts.
  const partsOut = join(await tempDir(t), 'split.bundle');
  const split = await runCli(['pull', l.at('1.4.0'), '-o', partsOut, '--ca-file', ca, '--split', '3M', '--json', '--no-progress'], l.env);
  t.is(split.code, 0, split.stdout);
  const parts = JSON.parse(await readFile(`${partsOut}.parts.json`, 'utf8')) as { sha256: string; count: number };
  t.is(parts.sha256, sha256(await readFile(bundles['1.4.0'] as string)));
  t.true(parts.count >= 4);

  // Import straight from the shore, then the captain switches.
  const imported = await l.import('1.4.0');
  t.is(imported.code, 0, imported.stdout + imported.stderr);
  t.like(imported.json, { ok: true, release: { name: 'awareness', version: '1.4.0' }, source: l.at('1.4.0') });
  t.true((imported.json['bytesDownloaded'] as number) > 11 * MiB);
  t.is(await l.vessel.tag('seabag/awareness', '1.4.0'), (imported.json['release'] as { digest: string }).digest);
  t.deepEqual(await readdir(join(l.vessel.stateDir, 'spool')).catch(() => []), [], 'a finished import leaves no spool');
  const applied = await l.vessel.run(['apply', 'awareness@1.4.0', '--json']);
  t.is(applied.code, 0, applied.stdout);
  t.is(await l.vessel.tag('groke/app', '1.4.0'), app?.digest);
});

test.serial('delta worked out aboard: a vessel holding 1.4.0 fetches only the changed layer of 1.5.0 and metadata, with no inventory anywhere', async (t) => {
  const first = await link(t);
  t.is((await first.import('1.4.0')).code, 0);
  const l = await link(t, first.vessel);
  const r = await l.import('1.5.0');
  t.is(r.code, 0, r.stdout + r.stderr);
  const old = await blobsOf(bundles['1.4.0'] as string);
  const next = await blobsOf(bundles['1.5.0'] as string);
  const changed = sum([...next.large].filter(([d]) => !old.large.has(d)).map(([, s]) => s));
  const metadata = next.indexSize + sum(next.small.values());
  t.is(changed, 4 * MiB + 1536, 'one 4 MiB layer changed (a tar of one file)');
  const bound = (changed + metadata) * 1.01;
  t.log(`over the link: ${l.proxy.bytesDown} bytes down, ${l.proxy.bytesUp} up; changed ${changed} + metadata ${metadata}; bound ${Math.round(bound)}`);
  t.true(l.proxy.bytesDown <= bound, `${l.proxy.bytesDown} > ${bound}`);
  t.true(l.proxy.bytesDown >= changed, 'the changed layer did come over the link');
  t.like(r.json, { release: { version: '1.5.0' } });
});

test.serial('resume, not restart: five cuts in the middle of blobs, and the bytes over the link stay within 1.05x of what was needed', async (t) => {
  const l = await link(t);
  l.proxy.cutAt([1.3 * MiB, 2.9 * MiB, 4.4 * MiB, 6.1 * MiB, 7.7 * MiB, 9.2 * MiB].map(Math.round));
  const r = await runCli(['import', l.at('1.4.0'), '--shore-ca-file', ca, '--trust', trust, '--json', '--no-progress'], l.env);
  t.is(r.code, 0, r.stdout + r.stderr);
  const breaks = [...r.stderr.matchAll(/broke at byte (\d+) of (\d+)/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
  t.true(l.proxy.cuts >= 5, `cut ${l.proxy.cuts} times`);
  t.true(breaks.filter(([at, of]) => at > 0 && at < of).length >= 5, `mid-blob breaks: ${JSON.stringify(breaks)}`);
  const needed = await blobsOf(bundles['1.4.0'] as string);
  const bytesNeeded = needed.indexSize + sum(needed.small.values()) + sum(needed.large.values());
  t.log(`over the link: ${l.proxy.bytesDown} for ${bytesNeeded} needed (${(l.proxy.bytesDown / bytesNeeded).toFixed(3)}x), ${l.proxy.cuts} cuts`);
  t.true(l.proxy.bytesDown <= 1.05 * bytesNeeded);
  t.deepEqual(await readdir(join(l.vessel.stateDir, 'spool')).catch(() => []), []);
});

test.serial('SIGKILL of the importer mid-blob, then a re-run: it resumes from the spool, and both runs together stay within 1.05x', async (t) => {
  const l = await link(t);
  const args = ['import', l.at('1.4.0'), '--shore-ca-file', ca, '--trust', trust, '--limit-rate', '2M', '--no-progress'];
  const child = l.vessel.spawn(args, l.env);
  while (l.proxy.bytesDown < 4 * MiB && child.exitCode === null) await sleep(10);
  child.kill('SIGKILL');
  await child;
  const killedAt = l.proxy.bytesDown;
  const partials = (await readdir(join(l.vessel.stateDir, 'spool', 'sha256'))).filter((n) => n.endsWith('.partial'));
  t.true(partials.length >= 1, 'the spool kept the blobs it was downloading');
  const kept = (await Promise.all((await readdir(join(l.vessel.stateDir, 'spool', 'sha256'))).map(async (n) => (await stat(join(l.vessel.stateDir, 'spool', 'sha256', n))).size))).reduce((a, b) => a + b, 0);
  t.log(`spool holds ${kept} bytes after the kill at ${killedAt}`);
  const again = await l.vessel.run(['import', l.at('1.4.0'), '--shore-ca-file', ca, '--trust', trust, '--json'], l.env);
  t.is(again.code, 0, again.stdout + again.stderr);
  t.true((again.json['bytesResumed'] as number) > 0, 'the re-run resumed from the spool');
  const needed = await blobsOf(bundles['1.4.0'] as string);
  const bytesNeeded = needed.indexSize + sum(needed.small.values()) + sum(needed.large.values());
  t.log(`killed at ${killedAt}; total ${l.proxy.bytesDown} for ${bytesNeeded} (${(l.proxy.bytesDown / bytesNeeded).toFixed(3)}x)`);
  t.true(l.proxy.bytesDown <= 1.05 * bytesNeeded);
  t.truthy(await l.vessel.tag('seabag/awareness', '1.4.0'));
});

test.serial('SIGKILL mid-blob on an unpaced link, where the spool is written around the page cache: each spool file is a true prefix of its blob, none of it cached, and a re-run resumes from it within 1.05x', async (t) => {
  const l = await link(t);
  const needed = await blobsOf(bundles['1.4.0'] as string);
  const bytesNeeded = needed.indexSize + sum(needed.small.values()) + sum(needed.large.values());
  // No --limit-rate: the link stalls at 8 MiB (the layers are 5, 4 and 2 MiB, moved at once),
  // and the importer is killed there.
  const held = l.proxy.holdAt(8 * MiB);
  const child = l.vessel.spawn(['import', l.at('1.4.0'), '--shore-ca-file', ca, '--trust', trust], l.env);
  child.catch(() => undefined);
  await held;
  const spool = join(l.vessel.stateDir, 'spool', 'sha256');
  const sizes = async (): Promise<Map<string, number>> => {
    const out = new Map<string, number>();
    for (const n of await readdir(spool).catch(() => [] as string[])) {
      // A layer done meanwhile takes its spool entry with it.
      const st = n.endsWith('.partial') ? await stat(join(spool, n)).catch(() => undefined) : undefined;
      if (st !== undefined) out.set(n, st.size);
    }
    return out;
  };
  // What came before the stall reaches the spool within a second (whole 1 MiB batches as it
  // comes, the rest once it is a second old): the spool stops growing, and the importer is killed.
  let last = '';
  for (let still = 0; still < 1500; still += 50) {
    const now = JSON.stringify([...(await sizes())]);
    if (now !== last) still = 0;
    last = now;
    await sleep(50);
  }
  child.kill('SIGKILL');
  await child.catch(() => undefined);
  const killedAt = l.proxy.bytesDown;
  const kept = await sizes();
  // The layers the killed run finished are in the vessel's registry; the re-run needs the rest.
  const vessel = await l.vessel.client();
  let done = 0;
  for (const [digest, size] of needed.large) if ((await vessel.repository('groke/app').has(digest as `sha256:${string}`)) || (await vessel.repository('groke/tool').has(digest as `sha256:${string}`))) done += size;
  t.true(kept.size >= 1, 'the spool kept the blobs it was downloading');
  for (const [name, size] of kept) {
    const path = join(spool, name);
    // Read before anything else touches the file: the import wrote it around the page cache
    // (at most the block short of 4 KiB that a flush writes through it).
    const resident = Number((await execa('fincore', ['--bytes', '--noheadings', '--output', 'RES', path])).stdout.trim());
    t.true(resident <= 4096, `${name}: ${resident} bytes of ${size} in the page cache`);
    const hex = name.slice(0, -'.partial'.length);
    const blob = await readFile(join(shore.storageDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data'));
    t.true(size <= blob.length, `${name}: ${size} bytes of a ${blob.length}-byte blob`);
    t.true((await readFile(path)).equals(blob.subarray(0, size)), `${name}: its ${size} bytes are not the blob's first ${size}`);
  }
  t.log(`killed at ${killedAt} bytes over the link; the spool kept ${[...kept.values()].join(', ')} bytes`);
  l.proxy.release();
  const again = await l.vessel.run(['import', l.at('1.4.0'), '--shore-ca-file', ca, '--trust', trust, '--json'], l.env);
  t.is(again.code, 0, again.stdout + again.stderr);
  t.is(again.json['bytesResumed'], sum(kept.values()), 'the re-run took every byte the spool kept');
  // The re-run asked only for the rest (and the metadata again, with its headers).
  const rest = bytesNeeded - sum(kept.values()) - done;
  t.true(l.proxy.bytesDown - killedAt <= rest + 64 * 1024, `the re-run took ${l.proxy.bytesDown - killedAt} bytes for the ${rest} the spool lacked`);
  t.log(`total ${l.proxy.bytesDown} for ${bytesNeeded} (${(l.proxy.bytesDown / bytesNeeded).toFixed(3)}x)`);
  t.true(l.proxy.bytesDown <= 1.05 * bytesNeeded);
  t.truthy(await l.vessel.tag('seabag/awareness', '1.4.0'));
  t.deepEqual(await readdir(join(l.vessel.stateDir, 'spool')).catch(() => []), []);
});

test.serial('--limit-rate 1M: the link carries 1 MiB/s within 10%, measured by the proxy over 8 MiB', async (t) => {
  const l = await link(t);
  const r = await l.import('1.4.0', '--limit-rate', '1M');
  t.is(r.code, 0, r.stdout + r.stderr);
  // The steady middle of the transfer: past the first MiB (socket buffers filling) and 8 MiB on.
  const at = (bytes: number): number => (l.proxy.timeline.find(([, b]) => b >= bytes) as [number, number])[0];
  const from = 1.5 * MiB;
  const to = from + 8 * MiB;
  t.true(l.proxy.bytesDown > to);
  const rate = (to - from) / ((at(to) - at(from)) / 1000);
  t.log(`${(rate / MiB).toFixed(3)} MiB/s over 8 MiB`);
  t.true(Math.abs(rate - MiB) <= 0.1 * MiB, `${rate} bytes/s`);
});

test.serial('refused before downloading: an untrusted signer, an expired release and a downgrade exit 1 with their codes, cost only metadata, and stage nothing', async (t) => {
  const l = await link(t);
  const refused = async (tag: string, code: string, bundle: string): Promise<void> => {
    const before = l.proxy.bytesDown;
    const r = await l.import(tag);
    t.is(r.code, 1, `${tag}: ${r.stdout}`);
    t.is(r.json.error?.code, code);
    const b = await blobsOf(bundle);
    const metadata = b.indexSize + sum(b.small.values());
    const used = l.proxy.bytesDown - before;
    t.log(`${tag}: ${used} bytes over the link; metadata ${metadata}; smallest layer ${Math.min(...b.large.values())}`);
    // Headers and TLS records on top of the documents themselves; far from any layer.
    t.true(used <= metadata + 16 * 1024, `${tag}: ${used}`);
  };
  await refused('untrusted', 'E_KEY_UNTRUSTED', bundles['untrusted'] as string);
  await refused('expired', 'E_EXPIRED', bundles['expired'] as string);
  t.deepEqual(await l.vessel.tags('seabag/awareness'), []);
  t.deepEqual(await readdir(join(l.vessel.stateDir, 'spool')).catch(() => []), []);
  // Downgrade: the vessel holds 1.5.0 and is offered 1.4.0.
  t.is((await l.import('1.5.0')).code, 0);
  await refused('1.4.0', 'E_DOWNGRADE', bundles['1.4.0'] as string);
  t.deepEqual(await l.vessel.tags('seabag/awareness'), ['1.5.0']);
});

test.serial('tampered at the shore: a blob corrupted in the registry storage, cut mid-way and resumed, is E_DIGEST_MISMATCH naming it; the vessel registry never holds it (HEAD), its upload is cancelled (no session keeps its bytes), its spool entry is gone and nothing is staged', async (t) => {
  const b = await blobsOf(bundles['tampered'] as string);
  const victim = [...b.large].sort((x, y) => y[1] - x[1])[0] as [string, number];
  const data = join(shore.storageDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', victim[0].slice(7, 9), victim[0].slice(7), 'data');
  const original = await readFile(data);
  const bad = Buffer.from(original);
  bad[Math.floor(bad.length / 2)] = (bad[Math.floor(bad.length / 2)] ?? 0) ^ 0xff;
  await writeFile(data, bad);
  t.teardown(() => writeFile(data, original));
  const l = await link(t);
  // Cuts while the blobs stream: the damaged one is resumed with Range, and still found out.
  l.proxy.cutAt([Math.round(1.5 * MiB), Math.round(4.5 * MiB)]);
  const r = await runCli(['import', l.at('1.6.0', 'tampered/awareness'), '--shore-ca-file', ca, '--trust', trust, '--json', '--no-progress'], l.env);
  t.is(r.code, 1, r.stdout);
  t.true(l.proxy.cuts >= 1);
  t.is(r.json.error?.code, 'E_DIGEST_MISMATCH');
  // Each layer streams from the shore straight into an upload on the vessel: the damaged one was
  // never committed there, in any repository, and its upload session is gone.
  const vessel = await l.vessel.client();
  for (const repository of ['groke/app', 'groke/tool']) t.false(await vessel.repository(repository).has(victim[0] as `sha256:${string}`), `${repository} holds ${victim[0]}`);
  // A cancelled session keeps no bytes. (Distribution 2.8 answers the DELETE 204, removes the
  // session, then writes its empty hash state `hashstates/sha256/0` back while closing it.)
  const repositories = join(l.vessel.registry.storageDir, 'docker', 'registry', 'v2', 'repositories');
  for (const repository of ['groke/app', 'groke/tool']) {
    const uploads = join(repositories, repository, '_uploads');
    const kept = [];
    for (const session of await readdir(uploads).catch(() => [] as string[])) {
      for (const file of await readdir(join(uploads, session), { recursive: true })) if (file !== 'hashstates' && !file.startsWith('hashstates/sha256')) kept.push(`${session}/${file}`);
    }
    t.deepEqual(kept, [], `upload sessions left holding bytes in ${repository}`);
  }
  t.is(r.json.error?.details['expected'], victim[0]);
  t.regex(r.json.error?.message ?? '', new RegExp(victim[0]));
  const spool = join(l.vessel.stateDir, 'spool', 'sha256');
  const left = await readdir(spool).catch(() => [] as string[]);
  t.false(left.some((n) => n.startsWith(victim[0].slice(7))), `spool: ${left.join(', ')}`);
  t.deepEqual(await l.vessel.tags('seabag/awareness'), []);
  const state = await readFile(join(l.vessel.stateDir, 'state.json'), 'utf8').catch(() => '{"releases":[]}');
  t.deepEqual((JSON.parse(state) as { releases: unknown[] }).releases, []);
});

test.serial('the shore down before and in the middle: exit 3 with a hint, and a re-run resumes where the link broke (a damaged spool entry is fetched again)', async (t) => {
  const l = await link(t);
  await l.proxy.down();
  const unreachable = await l.import('1.4.0', '--retries', '1');
  t.is(unreachable.code, 3, unreachable.stdout);
  t.is(unreachable.json.error?.code, 'E_REGISTRY_UNREACHABLE');
  t.truthy((unreachable.json.error as { hint?: string }).hint);
  await l.proxy.up();

  // Down mid-pull: the link goes away after 3 MiB and stays away.
  const out = join(await tempDir(t), 'a.bundle');
  const pull = runCli(['pull', l.at('1.4.0'), '-o', out, '--ca-file', ca, '--limit-rate', '4M', '--retries', '1', '--json', '--no-progress'], l.env);
  while (l.proxy.bytesDown < 3 * MiB) await sleep(10);
  await l.proxy.down();
  const broken = await pull;
  t.is(broken.code, 3, broken.stdout);
  t.is(broken.json.error?.code, 'E_REGISTRY_UNREACHABLE');
  t.regex((broken.json.error as { hint?: string }).hint ?? '', /again/);
  const partial = (await readdir(join(`${out}.spool`, 'sha256'))).filter((n) => n.endsWith('.partial'));
  t.true(partial.length >= 1);
  const down = l.proxy.bytesDown;
  // A spool entry damaged while the link was down (a bad disk, a power cut) is checked, not trusted.
  const tool = [...(await blobsOf(bundles['1.4.0'] as string)).large].find(([, size]) => size === 2 * MiB + 1536) as [string, number];
  await writeFile(join(`${out}.spool`, 'sha256', tool[0].slice(7)), Buffer.alloc(tool[1], 1));
  await l.proxy.up();
  const resumed = await runCli(['pull', l.at('1.4.0'), '-o', out, '--ca-file', ca, '--json', '--no-progress'], l.env);
  t.is(resumed.code, 0, resumed.stdout);
  t.true((resumed.json['bytesResumed'] as number) > 0);
  t.is(sha256(await readFile(out)), sha256(await readFile(bundles['1.4.0'] as string)));
  const b = await blobsOf(bundles['1.4.0'] as string);
  const needed = b.indexSize + sum(b.small.values()) + sum(b.large.values());
  t.log(`down at ${down}; total ${l.proxy.bytesDown} for ${needed}`);
  t.true(l.proxy.bytesDown <= 1.05 * needed);
});

test.serial('pull never empties a folder it did not make at OUT.spool, and never replaces a file that appeared at OUT during the pull (without --force)', async (t) => {
  const l = await link(t);
  const dir = await tempDir(t);
  // A folder of someone else's at OUT.spool (no spool marker), and a symlink there to another one:
  // refused before anything moves, both left as they were.
  const out = join(dir, 'a.bundle');
  await mkdir(`${out}.spool`);
  await writeFile(join(`${out}.spool`, 'logbook.txt'), 'precious\n');
  const elsewhere = join(dir, 'charts');
  await mkdir(elsewhere);
  await writeFile(join(elsewhere, 'chart.txt'), 'precious\n');
  const linked = join(dir, 'b.bundle');
  await symlink(elsewhere, `${linked}.spool`);
  for (const [name, target, kept] of [
    ['a folder that is not a spool', out, join(`${out}.spool`, 'logbook.txt')],
    ['a symlink', linked, join(elsewhere, 'chart.txt')],
  ] as const) {
    const r = await runCli(['pull', l.at('1.4.0'), '-o', target, '--ca-file', ca, '--json', '--no-progress'], l.env);
    t.is(r.code, 2, `${name}: ${r.stdout}${r.stderr}`);
    t.is(r.json.error?.code, 'E_FILE_EXISTS', name);
    t.is(await readFile(kept, 'utf8'), 'precious\n', name);
  }

  // A file appears at the output while the blobs come over the link: it stays, the pull says so.
  const late = join(dir, 'c.bundle');
  const pull = runCli(['pull', l.at('1.4.0'), '-o', late, '--ca-file', ca, '--limit-rate', '2M', '--json', '--no-progress'], l.env);
  while (l.proxy.bytesDown < 1024 * 1024) await sleep(10);
  await writeFile(late, 'written by someone else meanwhile\n');
  const r = await pull;
  t.is(r.code, 2, r.stdout + r.stderr);
  t.is(r.json.error?.code, 'E_FILE_EXISTS');
  t.is(await readFile(late, 'utf8'), 'written by someone else meanwhile\n');
  t.deepEqual((await readdir(dir)).filter((n) => n.startsWith('.c.bundle')), [], 'no temporary file left beside it');
  // With --force it is replaced, from the spool the first run left (resumed).
  const forced = await runCli(['pull', l.at('1.4.0'), '-o', late, '--ca-file', ca, '--force', '--json', '--no-progress'], l.env);
  t.is(forced.code, 0, forced.stdout + forced.stderr);
  t.is(sha256(await readFile(late)), sha256(await readFile(bundles['1.4.0'] as string)));
  await t.throwsAsync(stat(`${late}.spool`), undefined, 'the spool is removed after the pull');
});

test.serial('wrong credentials for the shore are E_AUTH (exit 3), and nothing reaches the vessel', async (t) => {
  const l = await link(t);
  const dir = await tempDir(t);
  const env = { ...l.env, DOCKER_CONFIG: await dockerConfig(dir, [`127.0.0.1:${l.proxy.port}`], { username: USER.username, password: 'wrong' }) };
  const r = await runCli(['import', l.at('1.4.0'), '--shore-ca-file', ca, '--trust', trust, '--json', '--no-progress'], env);
  t.is(r.code, 3, r.stdout);
  t.is(r.json.error?.code, 'E_AUTH');
  const pull = await runCli(['pull', l.at('1.4.0'), '-o', join(dir, 'x.bundle'), '--ca-file', ca, '--json', '--no-progress'], env);
  t.is(pull.json.error?.code, 'E_AUTH');
  t.deepEqual(await l.vessel.tags('seabag/awareness'), []);
});

test.serial('a delta bundle is pushed only where the registry has every blob it leaves out (E_BLOBS_MISSING before anything is pushed)', async (t) => {
  const dir = await tempDir(t);
  const delta = join(dir, 'delta.bundle');
  const specDir = join(work, 'spec-1.5.0');
  await cli(['build', join(specDir, 'release.yaml'), '-o', delta, '--sign', join(work, 'release.key'), '--since', bundles['1.4.0'] as string]);
  const env = { DOCKER_CONFIG: join(work, 'docker') };
  const empty = await runCli(['push', delta, `oci://${shore.host}/fresh/awareness`, '--ca-file', ca, '--json'], env);
  t.is(empty.code, 1, empty.stdout);
  t.is(empty.json.error?.code, 'E_BLOBS_MISSING');
  const tags = await runCli(['pull', `oci://${shore.host}/fresh/awareness:1.5.0`, '-o', join(dir, 'x'), '--ca-file', ca, '--json'], env);
  t.is(tags.json.error?.code, 'E_NOT_FOUND', 'nothing was pushed');
  // Where the full 1.4.0 is, the delta goes up, and imports.
  const ok = await runCli(['push', delta, `oci://${shore.host}/${REPO}`, '--ca-file', ca, '--tag', '1.5.0-delta', '--json'], env);
  t.is(ok.code, 0, ok.stdout);
  t.true((ok.json['blobs'] as { omitted: number }).omitted > 0);
});

test.serial('pull --since a vessel inventory writes a delta on the bridge PC: only the changed layer crosses the link, the vessel takes it, an empty vessel refuses it', async (t) => {
  const l = await link(t);
  t.is((await l.import('1.4.0')).code, 0);
  const dir = await tempDir(t);
  const inventory = join(dir, 'inventory.json');
  const inv = await l.vessel.run(['inventory', '-o', inventory, '--json']);
  t.is(inv.code, 0, inv.stdout);
  const before = l.proxy.bytesDown;
  const out = join(dir, 'delta.bundle');
  const r = await runCli(['pull', l.at('1.5.0'), '-o', out, '--ca-file', ca, '--trust', trust, '--since', inventory, '--json', '--no-progress'], l.env);
  t.is(r.code, 0, r.stdout + r.stderr);
  const old = await blobsOf(bundles['1.4.0'] as string);
  const next = await blobsOf(bundles['1.5.0'] as string);
  const changed = sum([...next.large].filter(([d]) => !old.large.has(d)).map(([, s]) => s));
  const used = l.proxy.bytesDown - before;
  t.log(`delta pull: ${used} bytes over the link for ${changed} changed; file ${(await stat(out)).size} bytes`);
  t.true(used <= (changed + next.indexSize + sum(next.small.values())) * 1.01);
  t.true((await stat(out)).size < changed + 256 * 1024, 'the file holds the changed layer and metadata only');
  t.true((r.json['omitted'] as { blobs: number }).blobs >= 2);
  const verified = await runCli(['verify', out, '--trust', trust, '--json']);
  t.is(verified.code, 0, verified.stdout);
  // verify says what it is: a delta whose left-out blobs only the unsigned list names.
  const omitted = (r.json['omitted'] as { blobs: number }).blobs;
  t.like(verified.json, { blobs: { omitted, omittedUnsigned: omitted } });
  const imported = await l.vessel.run(['import', out, '--json']);
  t.is(imported.code, 0, imported.stdout);
  t.like(imported.json, { release: { version: '1.5.0' } });
  const empty = await startVessel(t);
  const refused = await empty.run(['import', out, '--trust', trust, '--json']);
  t.is(refused.code, 1, refused.stdout);
  t.is(refused.json.error?.code, 'E_BLOBS_MISSING');
});

test.serial('a bundle carrying its images\' referrers (a cosign signature, an SBOM) goes up and comes down byte for byte', async (t) => {
  const dir = await tempDir(t);
  const layoutDir = join(dir, 'images');
  const app = await buildRandomImage(layoutDir, 'signed-1.0', [300 * 1024], 'signed-1.0');
  const layout = await OciLayout.open(layoutDir);
  const key = ecKey();
  await addToLayout(layout, cosignSignature('shore.example.com/groke/signed', app.digest, key), tagFor(app.digest, 'sig'));
  await addToLayout(layout, spdxReferrer('signed', app));
  await writeFile(join(dir, 'release.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: signed\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/signed:1.0\n    from: oci:${layoutDir}:signed-1.0\n`);
  const file = join(dir, 'signed.bundle');
  await cli(['build', join(dir, 'release.yaml'), '-o', file, '--sign', join(work, 'release.key')]);
  const built = await openBundle(file);
  const entries = built.archive.index.manifests.length;
  await built.close();
  t.true(entries >= 4, 'the release, its signature, the image and its referrers');
  const env = { DOCKER_CONFIG: join(work, 'docker') };
  const pushed = await cli(['push', file, `oci://${shore.host}/referrers/signed`, '--ca-file', ca, '--json'], env);
  t.like(pushed.json, { ok: true, reproducible: true });
  const out = join(dir, 'pulled.bundle');
  await cli(['pull', `oci://${shore.host}/referrers/signed:1.0.0`, '-o', out, '--ca-file', ca, '--trust', trust, '--json'], env);
  t.is(sha256(await readFile(out)), sha256(await readFile(file)), 'byte-identical, referrers included');
});
