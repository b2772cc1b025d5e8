/**
 * One admission path, and readers that cannot be blown up (issue 11, items 13 and 6): `verify`
 * and `import` judge a release through the same `admit()`, so they give the same answer; and a
 * small bundle whose metadata names one big blob many times costs that blob once.
 */
import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, open, readdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { buildBundle, generateKeyPair, makeRootSigned, parsePrivateKey, parsePublicKey, signRoot, type PublicKey, type SigningKey } from '../../lib/index.js';
import { execa } from 'execa';
import { admit, isSeabagError, loadRoot, METADATA_LIMITS, verifyBundle, sha256Digest, type Descriptor, type ImageIndex, type MetadataSource } from '../../lib/index.js';
import { DSSE_ENVELOPE, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, SEABAG_RELEASE, SEABAG_RELEASE_CONFIG, SEABAG_SIGNATURE, SEABAG_TRUST_CHAIN, SEABAG_TRUST_ROOT } from '../../lib/oci/media-types.js';
import { MemoryStore } from '../../lib/oci/memory.js';
import { addBlob, blob, cloneUnpacked, envelopeOf, packBundle, releaseOf, replaceSignature, resign, unpackBundle, type Unpacked } from '../helpers/bundles.js';
import { UNSIGNED_OMITTED } from '../../lib/release/admit.js';
import { REF_NAME } from '../../lib/oci/descriptor.js';
import { parseReference, referenceName } from '../../lib/oci/reference.js';
import { cosignTag, referrerIndexEntry } from '../../lib/oci/referrers.js';
import type { Digest } from '../../lib/oci/digest.js';
import { MAX_ENVELOPE_SIGNATURES } from '../../lib/trust/dsse.js';
import { MAX_ROOT_KEYS, MAX_ROOT_SIGNATURES } from '../../lib/trust/root.js';
import { BIN, runCli } from '../helpers/cli.js';
import { EPOCH, exampleCopy } from '../helpers/example.js';
import { tempDir } from '../helpers/tools.js';
import { BUNDLE_POLICY } from '../../lib/bundle/archive.js';
import { FileSource } from '../../lib/bundle/source.js';
import { MAX_TAR_ENTRIES, scanTar } from '../../lib/bundle/tar.js';
import { MAX_SPEC_FILE } from '../../lib/util/files.js';
import { tarBytes, type RawEntry } from './craft.js';
import { outcomeOf, Report } from './report.js';

const report = new Report('admission');
let work: string;
let example: string;
let rootKeys: { signing: SigningKey; public: PublicKey }[];
let releaseKey: { signing: SigningKey; public: PublicKey };
let releaseKeyFile: string;
let bundle: string;
let trust: string;

function key(): { signing: SigningKey; public: PublicKey; pem: string } {
  const pair = generateKeyPair();
  return { signing: parsePrivateKey(pair.privatePem), public: parsePublicKey(pair.publicPem), pem: pair.privatePem };
}

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-admission-'));
  example = await exampleCopy(work);
  rootKeys = [key(), key()];
  const release = key();
  releaseKey = release;
  releaseKeyFile = join(work, 'release.key');
  await writeFile(releaseKeyFile, release.pem, { mode: 0o600 });
  trust = join(work, 'trust.json');
  await writeFile(trust, JSON.stringify(rootOf({ signers: rootKeys })));
  bundle = join(work, 'awareness-1.4.0.bundle');
  await buildBundle(join(example, '1.4.0', 'release.yaml'), { output: bundle, signers: [releaseKey.signing], created: new Date(Number(EPOCH) * 1000) });
});

test.after.always(async () => {
  await report.write();
  await rm(work, { recursive: true, force: true });
});

function rootOf(o: { signers: { signing: SigningKey }[]; rootThreshold?: number }): ReturnType<typeof signRoot> {
  const signed = makeRootSigned({
    version: 1,
    expires: new Date(Date.now() + 365 * 86_400_000),
    rootKeys: rootKeys.map((k) => k.public),
    rootThreshold: o.rootThreshold ?? 2,
    releaseKeys: [releaseKey.public],
    releaseThreshold: 1,
  });
  return signRoot(signed, o.signers.map((k) => k.signing));
}

test('a good bundle is valid for verify and admitted by import (the baseline of the cases below)', async (t) => {
  const r = await runCli(['verify', bundle, '--trust', trust, '--json']);
  t.is(r.code, 0, r.stdout);
});

test('verify and import give the same code for a trust root whose own signatures are broken or too few', async (t) => {
  const dir = await tempDir(t);
  const good = rootOf({ signers: rootKeys });
  const cases: { name: string; doc: unknown }[] = [
    { name: 'one of its two root signatures damaged', doc: { ...good, signatures: good.signatures.map((s, i) => (i === 0 ? { ...s, sig: Buffer.alloc(64, 7).toString('base64') } : s)) } },
    { name: 'signed by one root key, threshold two', doc: rootOf({ signers: [rootKeys[0]!] }) },
    { name: 'no signatures at all', doc: { ...good, signatures: [] } },
    { name: 'one root key signing twice under two keyids', doc: { ...good, signatures: [good.signatures[0]!, { ...good.signatures[0]!, keyid: good.signatures[1]!.keyid }] } },
  ];
  for (const c of cases) {
    const file = join(dir, `${cases.indexOf(c)}.json`);
    await writeFile(file, JSON.stringify(c.doc));
    const verified = await runCli(['verify', bundle, '--trust', file, '--json']);
    const imported = await runCli(['import', bundle, '--trust', file, '--json', '--no-progress', '--state-dir', join(dir, `state-${cases.indexOf(c)}`), '--registry', '127.0.0.1:9']);
    report.add('trust', `trust root with ${c.name}: verify and import agree`, 'exit 2 E_TRUST_INVALID from both', `verify ${outcomeOf(verified)}, import ${outcomeOf(imported)}`, 'n/a');
    t.is(verified.json.error?.code, 'E_TRUST_INVALID', `${c.name}: verify ${verified.stdout}`);
    t.is(imported.json.error?.code, 'E_TRUST_INVALID', `${c.name}: import ${imported.stdout}`);
    t.is(verified.code, 2);
    t.is(imported.code, verified.code);
  }
});

test('lib/trust depends only on the release model, never on lib/bundle', async (t) => {
  const dir = new URL('../../lib/trust/', import.meta.url);
  for (const name of await readdir(dir)) {
    const text = await readFile(new URL(name, dir), 'utf8');
    t.false(/from '\.\.\/bundle\//.test(text), `lib/trust/${name} imports from lib/bundle`);
  }
  const bundleVerify = await readFile(new URL('../../lib/bundle/verify.ts', import.meta.url), 'utf8');
  const vesselImport = await readFile(new URL('../../lib/vessel/import.ts', import.meta.url), 'utf8');
  for (const [name, text] of [
    ['bundle/verify.ts', bundleVerify],
    ['vessel/import.ts', vesselImport],
  ] as const) {
    t.regex(text, /await admit\(/, `${name} admits through admit()`);
    t.notRegex(text, /verifyReleaseSignatures|effectiveRoot\(/, `${name} checks signatures itself`);
  }
});

// --- Item 6: metadata amplification

const MiB = 1024 * 1024;

/** A 4 MiB DSSE-shaped JSON document (a payload type nobody signs): big, valid JSON, and worthless. */
function bigEnvelope(): Buffer {
  const head = '{"payloadType":"application/x-amplify","signatures":[],"payload":"';
  const tail = '"}';
  return Buffer.from(`${head}${'A'.repeat(4 * MiB - head.length - tail.length)}${tail}`);
}

/** Runs the built CLI in a child and returns its exit code, error code and peak RSS in MiB (`/usr/bin/time -f %M`, KiB). */
async function peak(args: string[]): Promise<{ code: number; error: string | undefined; rssMiB: number }> {
  const r = await execa('/usr/bin/time', ['-f', 'maxrss_kib=%M', process.execPath, BIN, ...args, '--json'], { reject: false });
  const m = /maxrss_kib=(\d+)/.exec(r.stderr);
  if (m === null) throw new Error(`no peak RSS in: ${r.stderr}`);
  let error: string | undefined;
  try {
    error = (JSON.parse(r.stdout) as { error?: { code: string } }).error?.code;
  } catch {
    error = undefined;
  }
  return { code: r.exitCode ?? -1, error, rssMiB: Number(m[1]) / 1024 };
}

test('a small bundle whose manifests name one 4 MiB blob hundreds of times keeps verify, import and inspect under 200 MiB', async (t) => {
  const dir = await tempDir(t);
  const good = await unpackBundle(bundle);
  const big = bigEnvelope();
  const COPIES = 400;
  const variants: { name: string; expect: string; make: () => Promise<string> }[] = [
    {
      name: `${COPIES} signature artifacts sharing one 4 MiB envelope`,
      expect: 'E_SIGNATURE_INVALID',
      make: async () => {
        const u = cloneUnpacked(good);
        replaceSignature(u, undefined);
        const env = addBlob(u, big, DSSE_ENVELOPE);
        const empty = addBlob(u, Buffer.from('{}'), OCI_EMPTY);
        const release = releaseOf(u);
        for (let i = 0; i < COPIES; i += 1) {
          const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: SEABAG_SIGNATURE, config: empty, layers: [env], subject: { mediaType: release.mediaType, digest: release.digest, size: release.size }, annotations: { n: String(i) } }));
          u.index.manifests.push({ ...addBlob(u, m, OCI_MANIFEST), artifactType: SEABAG_SIGNATURE });
        }
        const path = join(dir, 'signatures.bundle');
        await packBundle(u, path);
        return path;
      },
    },
    {
      name: `a trust chain naming one 4 MiB blob ${COPIES} times, listed ${COPIES} times in index.json`,
      expect: 'E_ROOT_CHAIN_INVALID',
      make: async () => {
        const u = cloneUnpacked(good);
        const root = addBlob(u, big, SEABAG_TRUST_ROOT);
        const empty = addBlob(u, Buffer.from('{}'), OCI_EMPTY);
        const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: SEABAG_TRUST_CHAIN, config: empty, layers: Array.from({ length: COPIES }, () => root) }));
        const chain = addBlob(u, m, OCI_MANIFEST);
        for (let i = 0; i < COPIES; i += 1) u.index.manifests.push({ ...chain, artifactType: SEABAG_TRUST_CHAIN });
        const path = join(dir, 'chain.bundle');
        await packBundle(u, path);
        return path;
      },
    },
  ];
  for (const v of variants) {
    const path = await v.make();
    const runs = {
      verify: await peak(['verify', path, '--trust', trust]),
      import: await peak(['import', path, '--trust', trust, '--no-progress', '--state-dir', join(dir, `state-${variants.indexOf(v)}`), '--registry', '127.0.0.1:9']),
      inspect: await peak(['inspect', path]),
    };
    for (const [command, r] of Object.entries(runs)) {
      report.add('limits', `${v.name}: ${command}`, `peak RSS < 200 MiB${command === 'inspect' ? '' : `, exit 1 ${v.expect}`}`, `${r.code === 0 ? 'exit 0' : `exit ${r.code} ${r.error}`}, peak ${r.rssMiB < 200 ? '< 200' : Math.round(r.rssMiB)} MiB`, 'n/a');
      t.true(r.rssMiB < 200, `${v.name}: ${command} peaked at ${Math.round(r.rssMiB)} MiB`);
      if (command !== 'inspect') {
        t.is(r.error, v.expect, `${v.name}: ${command}`);
        t.is(r.code, 1);
      }
    }
  }
});

/** A metadata source held in memory (as a registry source would be): only the interface admit() reads. */
function memorySource(index: ImageIndex, blobs: Buffer[]): MetadataSource {
  const store = new MemoryStore();
  for (const b of blobs) store.add({ mediaType: 'x', digest: sha256Digest(b), size: b.length }, b);
  return { name: 'memory', index, fetch: (d) => store.fetch(d), exists: (d) => store.exists(d) };
}

function desc(data: Buffer, mediaType: string): Descriptor {
  return { mediaType, digest: sha256Digest(data), size: data.length };
}

/** A release manifest and its config, as the first blobs of a metadata source. */
function releaseBlobs(): { index: ImageIndex['manifests']; blobs: Buffer[]; release: Descriptor } {
  const config = Buffer.from(JSON.stringify({ apiVersion: 'seabag.dev/v1', kind: 'ReleaseDocument', name: 'x', version: '1.0.0', created: '2026-01-01T00:00:00Z', targets: [], images: [], manifests: [], deviceProfiles: [], omittedBlobs: [] }));
  const empty = Buffer.from('{}');
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: SEABAG_RELEASE, config: desc(config, SEABAG_RELEASE_CONFIG), layers: [] }));
  const release = desc(manifest, OCI_MANIFEST);
  return { index: [{ ...release, artifactType: SEABAG_RELEASE }], blobs: [config, empty, manifest], release };
}

test('admission refuses more than 64 MiB of distinct metadata before any signature is checked', async (t) => {
  const { index, blobs, release } = releaseBlobs();
  const empty = desc(Buffer.from('{}'), OCI_EMPTY);
  const count = Math.ceil(METADATA_LIMITS.maxTotalBytes / (4 * MiB)) + 1;
  for (let i = 0; i < count; i += 1) {
    const env = Buffer.alloc(4 * MiB, 0x20);
    env.write(`{"n":${i}}`);
    const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: SEABAG_SIGNATURE, config: empty, layers: [desc(env, DSSE_ENVELOPE)], subject: release }));
    blobs.push(env, m);
    index.push({ ...desc(m, OCI_MANIFEST), artifactType: SEABAG_SIGNATURE });
  }
  const source = memorySource({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: index }, blobs);
  const err = await t.throwsAsync(admit(source, { trust: rootOf({ signers: rootKeys }) }));
  report.add('limits', `${count} distinct 4 MiB signature envelopes (over 64 MiB of metadata)`, 'exit 1 E_LAYOUT_INVALID before the signature check', `exit 1 ${(err as { code?: string }).code}`, 'n/a');
  t.is((err as { code?: string }).code, 'E_LAYOUT_INVALID');
  t.is((err as { details?: Record<string, unknown> }).details?.['limit'], METADATA_LIMITS.maxTotalBytes);
});

test('admission refuses more than 100,000 descriptors before any signature is checked', async (t) => {
  const { index, blobs } = releaseBlobs();
  const root = Buffer.from('{}');
  const empty = desc(root, OCI_EMPTY);
  const layer = desc(root, SEABAG_TRUST_ROOT);
  const perManifest = 25_000;
  for (let i = 0; i < Math.ceil(METADATA_LIMITS.maxDescriptors / perManifest) + 1; i += 1) {
    const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: SEABAG_TRUST_CHAIN, config: empty, layers: Array.from({ length: perManifest }, () => layer), annotations: { n: String(i) } }));
    blobs.push(m);
    index.push({ ...desc(m, OCI_MANIFEST), artifactType: SEABAG_TRUST_CHAIN });
  }
  const source = memorySource({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: index }, blobs);
  const err = await t.throwsAsync(admit(source, { trust: rootOf({ signers: rootKeys }) }));
  report.add('limits', 'trust chains naming over 100,000 descriptors', 'exit 1 E_LAYOUT_INVALID before the signature check', `exit 1 ${(err as { code?: string }).code}`, 'n/a');
  t.is((err as { code?: string }).code, 'E_LAYOUT_INVALID');
  t.is((err as { details?: Record<string, unknown> }).details?.['limit'], METADATA_LIMITS.maxDescriptors);
});

// --- Item 7: entry counts, file sizes, regular files only

test('a bundle of more than 100,000 tar entries is refused at the 100,001st header', async (t) => {
  const dir = await tempDir(t);
  const good = await unpackBundle(bundle);
  const entries: RawEntry[] = [
    { name: 'oci-layout', data: good.entries.find((e) => e.name === 'oci-layout')?.data as Buffer },
    { name: 'index.json', data: good.entries.find((e) => e.name === 'index.json')?.data as Buffer },
  ];
  for (let i = 0; i < MAX_TAR_ENTRIES; i += 1) entries.push({ name: `blobs/sha256/${i.toString(16).padStart(64, '0')}`, data: Buffer.alloc(0) });
  const path = join(dir, 'many.bundle');
  await writeFile(path, tarBytes(entries));
  const r = await runCli(['verify', path, '--trust', trust, '--json']);
  report.add('limits', `${MAX_TAR_ENTRIES + 2} tar entries`, 'exit 1 E_ARCHIVE_UNSAFE at the 100,001st header', outcomeOf(r), 'n/a');
  t.is(r.code, 1);
  t.is(r.json.error?.code, 'E_ARCHIVE_UNSAFE');
  t.is(r.json.error?.details['limit'], MAX_TAR_ENTRIES);
});

test('a spec file over 16 MiB is refused before it is parsed', async (t) => {
  const dir = await tempDir(t);
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `# ${'x'.repeat(MAX_SPEC_FILE)}\n`);
  const r = await runCli(['build', spec, '-o', join(dir, 'out.bundle'), '--unsigned', '--json', '--no-progress']);
  report.add('limits', 'release.yaml over 16 MiB', 'exit 2 E_SPEC_INVALID', outcomeOf(r), 'n/a');
  t.is(r.code, 2);
  t.is(r.json.error?.code, 'E_SPEC_INVALID');
  t.is(r.json.error?.details['limit'], MAX_SPEC_FILE);
});

/** A copy of the example's 1.4.0 spec folder beside it (so its `../build` images resolve), to add a file to. */
async function specCopy(name: string): Promise<string> {
  const target = join(example, name);
  await cp(join(example, '1.4.0'), target, { recursive: true });
  return target;
}

test('a manifest or a device profile over 16 MiB is refused before it is read', async (t) => {
  const dir = await tempDir(t);
  for (const [folder, what] of [
    ['k8s', 'manifest'],
    ['devices', 'device profile'],
  ] as const) {
    const spec = await specCopy(`big-${folder}`);
    t.teardown(() => rm(spec, { recursive: true, force: true }));
    // Sparse: 16 MiB and one byte on paper, nothing on disk; the size alone refuses it.
    await writeFile(join(spec, folder, 'zz-big.yaml'), '');
    await truncate(join(spec, folder, 'zz-big.yaml'), MAX_SPEC_FILE + 1);
    const r = await runCli(['build', join(spec, 'release.yaml'), '-o', join(dir, `${folder}.bundle`), '--unsigned', '--json', '--no-progress']);
    report.add('limits', `a ${what} over 16 MiB`, 'exit 2 E_SPEC_INVALID', outcomeOf(r), 'n/a');
    t.is(r.json.error?.code, 'E_SPEC_INVALID', `${what}: ${r.stdout}`);
    t.is(r.json.error?.details['limit'], MAX_SPEC_FILE);
    t.is(r.code, 2);
  }
});

/** Makes a FIFO (no writer ever opens it: reading it would block forever). */
async function fifo(path: string): Promise<string> {
  await execa('mkfifo', [path]);
  return path;
}

test('FIFOs, devices and links to /dev/zero named as bundles, parts, trust, keys, specs and inventories are E_USAGE at once, and import takes no lock', async (t) => {
  const dir = await tempDir(t);
  const zero = join(dir, 'zero');
  await symlink('/dev/zero', zero);
  const fifoBundle = await fifo(join(dir, 'stick.bundle'));
  const fifoTrust = await fifo(join(dir, 'trust-fifo.json'));
  const fifoKey = await fifo(join(dir, 'release-fifo.key'));
  const fifoSpec = await fifo(join(dir, 'release.yaml'));
  const fifoInventory = await fifo(join(dir, 'inventory.json'));
  // A split bundle whose parts file is fine and whose one part is a FIFO; and a FIFO parts file.
  const partsDir = join(dir, 'parts');
  await mkdir(partsDir);
  await writeFile(
    join(partsDir, 'split.bundle.parts.json'),
    JSON.stringify({ apiVersion: 'seabag.dev/v1', kind: 'BundleParts', bundle: 'split.bundle', size: 1024, sha256: '0'.repeat(64), partSize: 1024, count: 1, parts: [{ name: 'split.bundle.001', size: 1024, sha256: '0'.repeat(64) }] }),
  );
  await fifo(join(partsDir, 'split.bundle.001'));
  const fifoParts = await fifo(join(dir, 'other.bundle.parts.json'));
  const manifestSpec = await specCopy('fifo-manifest');
  const deviceSpec = await specCopy('fifo-device');
  t.teardown(() => Promise.all([manifestSpec, deviceSpec].map((d) => rm(d, { recursive: true, force: true }))));
  await fifo(join(manifestSpec, 'k8s', 'zz-fifo.yaml'));
  await fifo(join(deviceSpec, 'devices', 'zz-fifo.yaml'));
  const zeroSpec = join(dir, 'zero-spec');
  await mkdir(zeroSpec);
  await symlink('/dev/zero', join(zeroSpec, 'release.yaml'));
  const state = join(dir, 'state');
  const importArgs = ['--state-dir', state, '--registry', '127.0.0.1:9', '--no-progress', '--json'];

  const cases: { name: string; args: string[] }[] = [
    { name: 'a FIFO named *.bundle, to import', args: ['import', fifoBundle, '--trust', trust, ...importArgs] },
    { name: 'a FIFO named *.bundle, to verify', args: ['verify', fifoBundle, '--trust', trust, '--json'] },
    { name: 'a FIFO named *.bundle, to inspect', args: ['inspect', fifoBundle, '--json'] },
    { name: '/dev/zero (a link to it) as the bundle', args: ['verify', zero, '--trust', trust, '--json'] },
    { name: '/dev/null as the bundle', args: ['inspect', '/dev/null', '--json'] },
    { name: 'a part that is a FIFO', args: ['import', join(partsDir, 'split.bundle.parts.json'), '--trust', trust, ...importArgs] },
    { name: 'a parts file that is a FIFO', args: ['verify', fifoParts, '--trust', trust, '--json'] },
    { name: 'a FIFO as --trust, to import', args: ['import', bundle, '--trust', fifoTrust, ...importArgs] },
    { name: '/dev/zero (a link to it) as --trust, to verify', args: ['verify', bundle, '--trust', zero, '--json'] },
    { name: 'a FIFO as the signing key', args: ['build', join(example, '1.4.0', 'release.yaml'), '-o', join(dir, 'k.bundle'), '--sign', fifoKey, '--json', '--no-progress'] },
    { name: '/dev/zero (a link to it) as the signing key', args: ['build', join(example, '1.4.0', 'release.yaml'), '-o', join(dir, 'z.bundle'), '--sign', zero, '--json', '--no-progress'] },
    { name: 'a FIFO as release.yaml', args: ['build', fifoSpec, '-o', join(dir, 's.bundle'), '--unsigned', '--json', '--no-progress'] },
    { name: '/dev/zero (a link to it) as release.yaml', args: ['build', join(zeroSpec, 'release.yaml'), '-o', join(dir, 'r.bundle'), '--unsigned', '--json', '--no-progress'] },
    { name: 'a FIFO among the manifests of a spec', args: ['build', join(manifestSpec, 'release.yaml'), '-o', join(dir, 'm.bundle'), '--unsigned', '--json', '--no-progress'] },
    { name: 'a FIFO among the device profiles of a spec', args: ['build', join(deviceSpec, 'release.yaml'), '-o', join(dir, 'p.bundle'), '--unsigned', '--json', '--no-progress'] },
    { name: 'a FIFO as --since', args: ['build', join(example, '1.5.0', 'release.yaml'), '-o', join(dir, 'd.bundle'), '--since', fifoInventory, '--unsigned', '--json', '--no-progress'] },
  ];
  for (const c of cases) {
    const r = await runCli(c.args);
    report.add('limits', c.name, 'exit 2 E_USAGE at once', outcomeOf(r), 'n/a');
    t.is(r.json.error?.code, 'E_USAGE', `${c.name}: ${r.stdout}${r.stderr}`);
    t.is(r.code, 2, c.name);
  }
  // Refused before the vessel lock was taken: no state folder, no lock.
  t.false(existsSync(join(state, 'lock')), 'import took the vessel lock');
});

// --- Item 8: canonical tar headers only

test('every single-bit flip in a tar header of a real bundle is refused (all 4096 bits of the headers of index.json, the first blob and the last layer)', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'flip.bundle');
  await copyFile(bundle, path);
  const source = await FileSource.open(path, [path]);
  const entries = await scanTar(source, BUNDLE_POLICY).finally(() => source.close());
  const blobs = entries.filter((e) => e.type === 'file' && e.name.startsWith('blobs/'));
  const headers = [
    { what: 'index.json', entry: entries.find((e) => e.name === 'index.json') },
    { what: 'the first blob (metadata)', entry: blobs[0] },
    { what: 'the last blob (a layer)', entry: blobs.at(-1) },
  ];
  const root = (await loadRoot(trust)).root;
  const handle = await open(path, 'r+');
  try {
    for (const { what, entry } of headers) {
      if (entry === undefined) throw new Error(`no ${what}`);
      const outcomes: Record<string, number> = {};
      for (let bit = 0; bit < 512 * 8; bit += 1) {
        const at = entry.headerOffset + (bit >> 3);
        const byte = Buffer.alloc(1);
        await handle.read(byte, 0, 1, at);
        await handle.write(Buffer.from([(byte[0] as number) ^ (1 << (bit & 7))]), 0, 1, at);
        let outcome: string;
        try {
          await verifyBundle(path, { trust: root });
          outcome = 'exit 0';
        } catch (err) {
          outcome = isSeabagError(err) ? `exit ${err.exitStatus} ${err.code}` : `crash ${String(err)}`;
        }
        await handle.write(byte, 0, 1, at);
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        report.add('bit flips', `one bit of the tar header of ${what} flipped (every bit)`, 'exit 1, never imported', outcome, 'n/a');
      }
      t.log(what, JSON.stringify(outcomes));
      t.is(outcomes['exit 0'], undefined, `${what}: ${outcomes['exit 0']} flips verified`);
      t.true(Object.keys(outcomes).every((o) => o.startsWith('exit 1 ')), `${what}: ${JSON.stringify(outcomes)}`);
    }
  } finally {
    await handle.close();
  }
  // The file is whole again: the good bundle still verifies.
  await t.notThrowsAsync(verifyBundle(path, { trust: root }));
});

// --- Issue 21: what the signature does not cover cannot change what the release is

/** The image entries of a bundle's index.json (neither the release nor its signatures, chains or referrers). */
function imageEntries(u: Unpacked): Unpacked['index']['manifests'] {
  const release = JSON.parse(blob(u, JSON.parse(blob(u, releaseOf(u).digest).toString()).config.digest).toString()) as { images: { digest: string }[] };
  return u.index.manifests.filter((m) => release.images.some((i) => i.digest === m.digest));
}

/** An image manifest of the bundle (the first platform's, when the image is an index) and its layers. */
function someImageManifest(u: Unpacked): { desc: Descriptor; config: Descriptor; layers: Descriptor[] } {
  let d: Descriptor = imageEntries(u)[0] as Descriptor;
  let doc = JSON.parse(blob(u, d.digest).toString()) as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
  if (doc.manifests !== undefined) {
    d = doc.manifests[0] as Descriptor;
    doc = JSON.parse(blob(u, d.digest).toString()) as typeof doc;
  }
  return { desc: d, config: doc.config as Descriptor, layers: doc.layers ?? [] };
}

/** `u` with `digests` named in the unsigned omitted list, and their blobs taken out (unless `keep`). */
function withoutBlobs(u: Unpacked, digests: readonly string[], keep = false): Unpacked {
  const out = cloneUnpacked(u);
  if (!keep) out.entries = out.entries.filter((e) => !digests.some((d) => e.name === `blobs/sha256/${d.slice(7)}`));
  (out.index as { annotations?: Record<string, string> }).annotations = { [UNSIGNED_OMITTED]: [...digests].sort().join(',') };
  return out;
}

async function verdict(path: string): Promise<{ outcome: string; code?: string; details?: Record<string, unknown> }> {
  try {
    const r = await verifyBundle(path, { trust: (await loadRoot(trust)).root });
    return { outcome: `exit 0, omitted ${r.blobs.omitted} (unsigned ${r.blobs.omittedUnsigned})` };
  } catch (err) {
    if (!isSeabagError(err)) throw err;
    return { outcome: `exit ${err.exitStatus} ${err.code}`, code: err.code, details: err.details };
  }
}

test('the unsigned omitted list of a full signed bundle cannot strip the release, its manifests or anything it does not hold (E_LAYOUT_INVALID)', async (t) => {
  const dir = await tempDir(t);
  const good = await unpackBundle(bundle);
  const releaseManifest = JSON.parse(blob(good, releaseOf(good).digest).toString()) as { config: Descriptor; layers: Descriptor[] };
  const image = someImageManifest(good);
  const top = imageEntries(good)[0] as Descriptor;
  // The release manifest and its config are listed but kept (without them nothing can be judged at all).
  const cases: { name: string; digests: string[]; keep?: boolean }[] = [
    { name: 'the release manifest', digests: [releaseOf(good).digest], keep: true },
    { name: "the release's config (the signed release document)", digests: [releaseManifest.config.digest], keep: true },
    { name: "the release's layers (its Kubernetes manifests)", digests: releaseManifest.layers.map((l) => l.digest) },
    { name: "an image's top manifest or index", digests: [top.digest] },
    { name: "an image's platform manifest (with its layers)", digests: [image.desc.digest, ...image.layers.map((l) => l.digest)] },
    { name: 'a digest no image of the release holds', digests: [sha256Digest(Buffer.from('not in this release'))] },
  ];
  for (const c of cases) {
    const path = join(dir, `${cases.indexOf(c)}.bundle`);
    await packBundle(withoutBlobs(good, [...new Set(c.digests)], c.keep === true), path);
    const v = await verdict(path);
    report.add('delta', `unsigned ${UNSIGNED_OMITTED} names ${c.name}${c.keep === true ? '' : ', its blobs stripped'}`, 'exit 1 E_LAYOUT_INVALID', v.outcome, 'n/a');
    t.is(v.code, 'E_LAYOUT_INVALID', `${c.name}: ${v.outcome}`);
  }
});

test('verify reports a bundle whose layers an unsigned list leaves out as a delta: omitted and omittedUnsigned count them, and the text says where it imports', async (t) => {
  const dir = await tempDir(t);
  const good = await unpackBundle(bundle);
  const image = someImageManifest(good);
  const left = [...new Set(image.layers.map((l) => l.digest))];
  t.true(left.length > 0);
  const path = join(dir, 'stripped.bundle');
  await packBundle(withoutBlobs(good, left), path);
  const r = await runCli(['verify', path, '--trust', trust, '--json']);
  const text = await runCli(['verify', path, '--trust', trust]);
  const blobs = r.json['blobs'] as { omitted: number; omittedUnsigned: number } | undefined;
  report.add('delta', `a full signed bundle with ${left.length} layer(s) stripped and named in ${UNSIGNED_OMITTED}`, `exit 0, omitted ${left.length}, omittedUnsigned ${left.length}, "a delta pulled against a vessel inventory"`, `${outcomeOf(r)}, omitted ${blobs?.omitted}, omittedUnsigned ${blobs?.omittedUnsigned}`, 'n/a');
  t.is(r.code, 0, r.stdout);
  t.is(blobs?.omitted, left.length);
  t.is(blobs?.omittedUnsigned, left.length);
  t.regex(text.stdout, /a delta pulled against a vessel inventory: \d+ of its blobs are left out by an unsigned list; it imports only where those blobs are held/);
  const full = await runCli(['verify', bundle, '--trust', trust, '--json']);
  t.like(full.json, { blobs: { omitted: 0, omittedUnsigned: 0 } });
});

test("a signed image's repository and tag must be the ones its reference gives, never under seabag/ (E_LAYOUT_INVALID)", async (t) => {
  const dir = await tempDir(t);
  const good = await unpackBundle(bundle);
  type Img = { ref: string; repository: string; tag?: string };
  const cases: { name: string; change: (image: Img) => void }[] = [
    { name: 'repository seabag/awareness (where the vessel keeps releases)', change: (i) => void (i.repository = 'seabag/awareness') },
    { name: 'repository of another image', change: (i) => void (i.repository = 'groke/other') },
    { name: 'tag other than the reference', change: (i) => void (i.tag = 'latest-evil') },
    { name: 'reference and repository both under seabag/', change: (i) => void ((i.ref = 'shore.example.com/seabag/awareness:1.4.0'), (i.repository = 'seabag/awareness'), (i.tag = '1.4.0')) },
  ];
  for (const c of cases) {
    const u = cloneUnpacked(good);
    let changedRef: string | undefined;
    await resign(u, releaseKeyFile, (release) => {
      const image = (release['images'] as Img[])[0] as Img;
      const before = image.ref;
      c.change(image);
      if (image.ref !== before) changedRef = image.ref;
    });
    if (changedRef !== undefined) {
      const first = imageEntries(good)[0] as Descriptor & { annotations?: Record<string, string> };
      u.index.manifests = u.index.manifests.map((m) => (m.digest === first.digest ? { ...m, annotations: { ...m.annotations, [REF_NAME]: changedRef as string } } : m));
    }
    const path = join(dir, `${cases.indexOf(c)}.bundle`);
    await packBundle(u, path);
    const v = await verdict(path);
    report.add('names', `re-signed release whose first image has ${c.name}`, 'exit 1 E_LAYOUT_INVALID', v.outcome, 'n/a');
    t.is(v.code, 'E_LAYOUT_INVALID', `${c.name}: ${v.outcome}`);
  }
});

test("a referrer's cosign tag must name its own subject, and its subject must be in its image (E_LAYOUT_INVALID)", async (t) => {
  const dir = await tempDir(t);
  const good = await unpackBundle(bundle);
  const entries = imageEntries(good);
  const [first, second] = entries as [Descriptor & { annotations?: Record<string, string> }, Descriptor & { annotations?: Record<string, string> }];
  t.truthy(second, 'the example has two images');
  const empty = desc(Buffer.from('{}'), OCI_EMPTY);
  const cases: { name: string; subject: string; tagFor: string; ok: boolean }[] = [
    { name: 'a signature of the image, tagged as its own subject (baseline)', subject: first.digest, tagFor: first.digest, ok: true },
    { name: "a signature of the image, tagged as another image's signature", subject: first.digest, tagFor: second.digest, ok: false },
    { name: 'a signature whose subject is another image of the release', subject: second.digest, tagFor: second.digest, ok: false },
  ];
  for (const c of cases) {
    const u = cloneUnpacked(good);
    const sig = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: addBlob(u, Buffer.from('{}'), OCI_EMPTY), layers: [empty], annotations: { case: c.name } }));
    const d = addBlob(u, sig, OCI_MANIFEST);
    const record = { kind: 'signature', subject: c.subject, digest: d.digest, mediaType: OCI_MANIFEST, size: d.size, tag: cosignTag(c.tagFor as Digest, 'sig') };
    let name = '';
    await resign(u, releaseKeyFile, (release) => {
      const image = (release['images'] as { ref: string; digest: string; referrers?: unknown[] }[]).find((i) => i.digest === first.digest) as { ref: string; referrers?: unknown[] };
      image.referrers = [...(image.referrers ?? []), record];
      name = referenceName(parseReference(image.ref));
    });
    u.index.manifests.push(referrerIndexEntry(record as never, name));
    const path = join(dir, `${cases.indexOf(c)}.bundle`);
    await packBundle(u, path);
    const v = await verdict(path);
    report.add('names', `re-signed release carrying ${c.name}`, c.ok ? 'exit 0' : 'exit 1 E_LAYOUT_INVALID', v.outcome, 'n/a');
    if (c.ok) t.is(v.code, undefined, `${c.name}: ${v.outcome}`);
    else t.is(v.code, 'E_LAYOUT_INVALID', `${c.name}: ${v.outcome}`);
  }
});

test('signatures and keys are capped before any signature is verified: 65 in a DSSE envelope (E_LAYOUT_INVALID), 65 on a trust root or 257 keys in it (E_TRUST_INVALID)', async (t) => {
  const dir = await tempDir(t);
  const good = await unpackBundle(bundle);
  const envelope = JSON.parse((envelopeOf(good) as Buffer).toString()) as { signatures: { keyid: string; sig: string }[] };
  const many = { ...envelope, signatures: Array.from({ length: MAX_ENVELOPE_SIGNATURES + 1 }, (_, i) => ({ keyid: `k${i}`, sig: Buffer.alloc(64, i).toString('base64') })) };
  const u = cloneUnpacked(good);
  replaceSignature(u, Buffer.from(JSON.stringify(many)));
  const path = join(dir, 'many-signatures.bundle');
  await packBundle(u, path);
  const v = await verdict(path);
  report.add('limits', `a DSSE envelope with ${MAX_ENVELOPE_SIGNATURES + 1} signatures`, `exit 1 E_LAYOUT_INVALID (limit ${MAX_ENVELOPE_SIGNATURES})`, v.outcome, 'n/a');
  t.is(v.code, 'E_LAYOUT_INVALID');
  t.is(v.details?.['limit'], MAX_ENVELOPE_SIGNATURES);

  const root = rootOf({ signers: rootKeys });
  const padded = { ...root, signatures: [...root.signatures, ...Array.from({ length: MAX_ROOT_SIGNATURES + 1 - root.signatures.length }, (_, i) => ({ keyid: `pad${i}`, sig: Buffer.alloc(64, i).toString('base64') }))] };
  const file = join(dir, 'padded-trust.json');
  await writeFile(file, JSON.stringify(padded));
  const r = await runCli(['verify', bundle, '--trust', file, '--json']);
  report.add('limits', `a trust root with ${MAX_ROOT_SIGNATURES + 1} signatures`, `exit 2 E_TRUST_INVALID (limit ${MAX_ROOT_SIGNATURES})`, outcomeOf(r), 'n/a');
  t.is(r.json.error?.code, 'E_TRUST_INVALID', r.stdout);
  t.is(r.json.error?.details['limit'], MAX_ROOT_SIGNATURES);
  t.is(r.code, 2);

  const keys: Record<string, unknown> = { ...root.signed.keys };
  for (let i = 0; Object.keys(keys).length <= MAX_ROOT_KEYS; i += 1) keys[i.toString(16).padStart(64, '0')] = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: `-----BEGIN PUBLIC KEY-----${i}` } };
  const crowded = join(dir, 'crowded-trust.json');
  await writeFile(crowded, JSON.stringify({ ...root, signed: { ...root.signed, keys } }));
  const k = await runCli(['verify', bundle, '--trust', crowded, '--json']);
  report.add('limits', `a trust root listing ${MAX_ROOT_KEYS + 1} keys`, `exit 2 E_TRUST_INVALID (limit ${MAX_ROOT_KEYS})`, outcomeOf(k), 'n/a');
  t.is(k.json.error?.code, 'E_TRUST_INVALID', k.stdout);
  t.is(k.json.error?.details['limit'], MAX_ROOT_KEYS);
  t.is(k.code, 2);
});

test('build refuses an image whose repository would be under seabag/, where the vessel keeps its releases (E_SPEC_INVALID)', async (t) => {
  const dir = await tempDir(t);
  const spec = await specCopy('seabag-repository');
  t.teardown(() => rm(spec, { recursive: true, force: true }));
  const file = join(spec, 'release.yaml');
  await writeFile(file, (await readFile(file, 'utf8')).replace('ref: shore.example.com/groke/radar:2.0.0', 'ref: shore.example.com/seabag/awareness:2.0.0'));
  const r = await runCli(['build', file, '-o', join(dir, 'out.bundle'), '--unsigned', '--json', '--no-progress']);
  report.add('names', 'a spec image named shore.example.com/seabag/awareness:2.0.0', 'exit 2 E_SPEC_INVALID', outcomeOf(r), 'n/a');
  t.is(r.json.error?.code, 'E_SPEC_INVALID', r.stdout);
  t.regex(r.stdout, /under seabag\//);
  t.is(r.code, 2);
});
