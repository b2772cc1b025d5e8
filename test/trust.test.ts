/**
 * Keys, DSSE, trust roots and their rotation, and `bundle verify` as CI runs it.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { canonicalJSON } from '../lib/util/canonical.js';
import {
  buildBundle,
  checkEnvelope,
  generateKeyPair,
  makeRootSigned,
  openBundle,
  pae,
  parsePrivateKey,
  parsePublicKey,
  signEnvelope,
  signRoot,
  type Envelope,
  type PublicKey,
  type SigningKey,
} from '../lib/index.js';
import { envelopeOf, flipByte, packBundle, replaceSignature, swapSignedPayload, unpackBundle } from './helpers/bundles.js';
import { runCli } from './helpers/cli.js';
import { EPOCH, exampleCopy } from './helpers/example.js';
import { tempDir } from './helpers/tools.js';

let work: string;
let example: string;

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-trust-'));
  example = await exampleCopy(work);
});

test.after.always(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Key {
  path: string;
  pub: string;
  keyid: string;
  signing: SigningKey;
  public: PublicKey;
}

async function makeKey(dir: string, name: string): Promise<Key> {
  const pair = generateKeyPair();
  const path = join(dir, `${name}.key`);
  await writeFile(path, pair.privatePem, { mode: 0o600 });
  await writeFile(`${path}.pub`, pair.publicPem);
  return { path, pub: `${path}.pub`, keyid: pair.keyid, signing: parsePrivateKey(pair.privatePem), public: parsePublicKey(pair.publicPem) };
}

async function writeRoot(
  dir: string,
  name: string,
  o: { version: number; root: Key[]; rootThreshold?: number; release: Key[]; releaseThreshold?: number; signers: Key[]; expires?: Date },
): Promise<string> {
  const signed = makeRootSigned({
    version: o.version,
    expires: o.expires ?? new Date(Date.now() + 365 * 86_400_000),
    rootKeys: o.root.map((k) => k.public),
    rootThreshold: o.rootThreshold ?? 1,
    releaseKeys: o.release.map((k) => k.public),
    releaseThreshold: o.releaseThreshold ?? 1,
  });
  const path = join(dir, name);
  await writeFile(path, JSON.stringify(signRoot(signed, o.signers.map((k) => k.signing))));
  return path;
}

async function build(dir: string, name: string, signers: Key[], extra: { roots?: string[]; spec?: string } = {}): Promise<string> {
  const out = join(dir, name);
  await buildBundle(extra.spec ?? join(example, '1.4.0', 'release.yaml'), {
    output: out,
    signers: signers.map((k) => k.signing),
    roots: await Promise.all((extra.roots ?? []).map((r) => readFile(r))),
    created: new Date(Number(EPOCH) * 1000),
  });
  return out;
}

async function verify(bundle: string, trust: string): Promise<Awaited<ReturnType<typeof runCli>>> {
  return runCli(['verify', bundle, '--trust', trust, '--json']);
}

// --- DSSE, against the spec's own vectors (secure-systems-lab/dsse protocol.md, testvectors/vectors.json)

/** An Ed25519 key from a 32-byte seed (RFC 8410 PKCS#8 prefix). */
function seedKey(seedHex: string): { signing: SigningKey; public: PublicKey } {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(seedHex, 'hex')]);
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const pem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  return { signing: parsePrivateKey(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()), public: parsePublicKey(pem) };
}

const KEY_A = seedKey('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
const KEY_B = seedKey('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb');
const STATEMENT = 'eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ==';
const SIG_A = '2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA==';
const SIG_B = 'c1+67/aT0yqEpwx8PsVY3MLHsj9D0CZ014/Fv/QlG59P+9CobUZ7xECJ/V3USG0Ob9CiE5LjReEZUzNF2l7eBw==';

test('DSSE PAE matches the protocol test vector', (t) => {
  t.is(pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(), 'DSSEv1 29 http://example.com/HelloWorld 11 hello world');
  // LEN is the byte length of UTF-8, not the character count.
  t.is(pae('application/vnd.exämple+json', Buffer.alloc(0)).toString('hex'), Buffer.from('DSSEv1 29 application/vnd.exämple+json 0 ').toString('hex'));
});

test('DSSE Ed25519 vectors: our signature is the vector, and thresholds count distinct keys', (t) => {
  const body = Buffer.from(STATEMENT, 'base64');
  const signed = signEnvelope(body, 'application/vnd.in-toto+json', [KEY_A.signing]);
  t.is(signed.signatures[0]?.sig, SIG_A, 'Ed25519 is deterministic: the same signature as the vector');
  const env = (sigs: { sig: string; keyid?: string }[], payloadType = 'application/vnd.in-toto+json'): Envelope => ({ payload: STATEMENT, payloadType, signatures: sigs });
  t.deepEqual(checkEnvelope(env([{ sig: SIG_A, keyid: 'A' }]), [KEY_A.public]).valid, [KEY_A.public.keyid]);
  t.deepEqual(checkEnvelope(env([{ sig: SIG_A }, { sig: SIG_A }]), [KEY_A.public, KEY_B.public]).valid.length, 1, 'one key twice counts once');
  t.deepEqual(checkEnvelope(env([{ sig: SIG_A }, { sig: SIG_B }]), [KEY_A.public, KEY_B.public]).valid.length, 2, 'keyids are optional hints');
  t.is(checkEnvelope(env([{ sig: SIG_A }], 'application/vnd.example.other+json'), [KEY_A.public]).valid.length, 0, 'the payload type is signed');
  const urlSafe: Envelope = {
    payload: '-_-_Pj8=',
    payloadType: 'application/vnd.in-toto+json',
    signatures: [{ sig: 'P-_KHICeR7tI6S_YyejJTRtrXhcQyQ2LYPaL8h90KjC9qN8HU_svOQ6TuDOT1HIrsGW886DbWNWcCmX5twLrAw==', keyid: 'A' }],
  };
  t.is(checkEnvelope(urlSafe, [KEY_A.public]).valid.length, 1, 'URL-safe base64 is accepted');
});

test('canonical JSON sorts keys and drops whitespace (RFC 8785)', (t) => {
  t.is(canonicalJSON({ b: [1, 'x', { d: true, c: null }], a: 1.5, '\u00e9': 'e', A: 0 }), '{"A":0,"a":1.5,"b":[1,"x",{"c":null,"d":true}],"é":"e"}');
});

// --- keys

test('keygen writes a 0600 PKCS#8 key and its SPKI public key, prints the keyid, and never overwrites', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'release.key');
  const r = await runCli(['keygen', file]);
  t.is(r.code, 0);
  const keyid = r.stdout.trim();
  t.regex(keyid, /^[a-f0-9]{64}$/);
  t.is((await stat(file)).mode & 0o777, 0o600);
  t.regex(await readFile(file, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  t.is(parsePublicKey(await readFile(`${file}.pub`)).keyid, keyid);
  const before = await readFile(file, 'utf8');
  const again = await runCli(['keygen', file, '--json']);
  t.is(again.code, 2);
  t.is(again.json.error?.code, 'E_FILE_EXISTS');
  t.is(await readFile(file, 'utf8'), before, 'the key is untouched');
  t.is((await runCli(['keygen', file, '--force'])).code, 0);
  t.not(await readFile(file, 'utf8'), before);
});

test('a key made by openssl signs a bundle that verifies', async (t) => {
  const dir = await tempDir(t);
  const key = join(dir, 'ossl.pem');
  await execa('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', key]);
  await execa('openssl', ['pkey', '-in', key, '-pubout', '-out', `${key}.pub`]);
  const root = await makeKey(dir, 'root');
  t.is((await runCli(['trust', 'init', '--root-key', root.pub, '--release-key', `${key}.pub`, '--sign', root.path, '-o', join(dir, 'trust.json')])).code, 0);
  const out = join(dir, 'a.bundle');
  const built = await runCli(['build', join(example, '1.4.0', 'release.yaml'), '-o', out, '--sign', key, '--json'], { SOURCE_DATE_EPOCH: EPOCH });
  t.is(built.code, 0, built.stdout);
  const r = await verify(out, join(dir, 'trust.json'));
  t.is(r.code, 0, r.stdout);
  t.deepEqual((r.json['signatures'] as { valid: string[] }).valid, [parsePublicKey(await readFile(`${key}.pub`)).keyid]);
});

test('an RSA key is refused with E_KEY_INVALID', async (t) => {
  const dir = await tempDir(t);
  const key = join(dir, 'rsa.pem');
  await execa('openssl', ['genpkey', '-algorithm', 'rsa', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key]);
  const r = await runCli(['build', join(example, '1.4.0', 'release.yaml'), '-o', join(dir, 'x.bundle'), '--sign', key, '--json']);
  t.is(r.code, 2);
  t.is(r.json.error?.code, 'E_KEY_INVALID');
});

// --- verify

test('a bundle signed by the release key verifies: exit 0, valid keyids and threshold in --json', async (t) => {
  const dir = await tempDir(t);
  const root = await makeKey(dir, 'root');
  const rel = await makeKey(dir, 'rel');
  const init = await runCli(['trust', 'init', '--root-key', root.pub, '--release-key', rel.pub, '--sign', root.path, '-o', join(dir, 'trust.json'), '--json']);
  t.is(init.code, 0, init.stdout);
  const bundle = await build(dir, 'a.bundle', [rel]);
  const r = await verify(bundle, join(dir, 'trust.json'));
  t.is(r.code, 0, r.stdout);
  t.like(r.json, { ok: true, release: { name: 'awareness', version: '1.4.0' }, signatures: { valid: [rel.keyid], threshold: 1 }, blobs: { omitted: 0 } });
  t.true((r.json['blobs'] as { verified: number }).verified > 20);
});

test('one flipped byte in any blob: exit 1, E_DIGEST_MISMATCH naming that blob', async (t) => {
  const dir = await tempDir(t);
  const root = await makeKey(dir, 'root');
  const rel = await makeKey(dir, 'rel');
  const trust = await writeRoot(dir, 'trust.json', { version: 1, root: [root], release: [rel], signers: [root] });
  const good = await build(dir, 'good.bundle', [rel]);
  const opened = await openBundle(good);
  const blobs = [...opened.archive.blobs.entries()].map(([digest, e]) => ({ digest, offset: e.dataOffset + Math.floor(e.size / 2) }));
  await opened.close();
  t.true(blobs.length > 20);
  for (const { digest, offset } of blobs) {
    const bad = join(dir, 'bad.bundle');
    await cp(good, bad);
    await flipByte(bad, offset);
    const r = await verify(bad, trust);
    t.is(r.code, 1, `${digest}: ${r.stdout}`);
    t.is(r.json.error?.code, 'E_DIGEST_MISMATCH', digest);
    t.true(JSON.stringify(r.json.error).includes(digest), `the error names ${digest}`);
  }
});

test('unsigned, untrusted key, changed payload, envelope from another release: exit 1 with distinct codes', async (t) => {
  const dir = await tempDir(t);
  const root = await makeKey(dir, 'root');
  const rel = await makeKey(dir, 'rel');
  const stranger = await makeKey(dir, 'stranger');
  const trust = await writeRoot(dir, 'trust.json', { version: 1, root: [root], release: [rel], signers: [root] });
  const good = await build(dir, 'good.bundle', [rel]);
  const codes: string[] = [];

  const unsigned = await build(dir, 'unsigned.bundle', []);
  const u = await verify(unsigned, trust);
  t.is(u.code, 1);
  codes.push(u.json.error?.code ?? '');

  const untrusted = await build(dir, 'untrusted.bundle', [stranger]);
  const k = await verify(untrusted, trust);
  t.is(k.code, 1);
  codes.push(k.json.error?.code ?? '');

  // The payload swapped under the signatures: a different statement, the same signature.
  const swapped = join(dir, 'swapped.bundle');
  await swapSignedPayload(good, swapped);
  const s = await verify(swapped, trust);
  t.is(s.code, 1);
  codes.push(s.json.error?.code ?? '');

  // A valid envelope of release 1.5.0 attached to 1.4.0.
  const other = await build(dir, 'other.bundle', [rel], { spec: join(example, '1.5.0', 'release.yaml') });
  const moved = await unpackBundle(good);
  replaceSignature(moved, envelopeOf(await unpackBundle(other)));
  const movedPath = join(dir, 'moved.bundle');
  await packBundle(moved, movedPath);
  const m = await verify(movedPath, trust);
  t.is(m.code, 1);
  codes.push(m.json.error?.code ?? '');

  t.deepEqual(codes, ['E_UNSIGNED', 'E_KEY_UNTRUSTED', 'E_SIGNATURE_INVALID', 'E_SUBJECT_MISMATCH']);
});

test('threshold 2 of 3: one signature is E_THRESHOLD_UNMET, the same key twice counts once, two keys pass', async (t) => {
  const dir = await tempDir(t);
  const root = await makeKey(dir, 'root');
  const [a, b, c] = [await makeKey(dir, 'a'), await makeKey(dir, 'b'), await makeKey(dir, 'c')];
  const trust = await writeRoot(dir, 'trust.json', { version: 1, root: [root], release: [a, b, c], releaseThreshold: 2, signers: [root] });
  const one = await verify(await build(dir, 'one.bundle', [a]), trust);
  t.is(one.code, 1);
  t.like(one.json.error, { code: 'E_THRESHOLD_UNMET', details: { valid: [a.keyid], threshold: 2 } });
  const twice = await verify(await build(dir, 'twice.bundle', [a, a]), trust);
  t.is(twice.code, 1);
  t.like(twice.json.error, { code: 'E_THRESHOLD_UNMET', details: { valid: [a.keyid] } });
  const two = await verify(await build(dir, 'two.bundle', [a, c]), trust);
  t.is(two.code, 0, two.stdout);
  t.deepEqual((two.json['signatures'] as { valid: string[] }).valid, [a.keyid, c.keyid].sort());
});

test('rotation 1 → 2 signed by old and new root keys is accepted; a removed release key is then rejected', async (t) => {
  const dir = await tempDir(t);
  const [r1, r2, oldRel, newRel] = [await makeKey(dir, 'r1'), await makeKey(dir, 'r2'), await makeKey(dir, 'old'), await makeKey(dir, 'new')];
  const trust1 = await writeRoot(dir, '1.root.json', { version: 1, root: [r1], release: [oldRel], signers: [r1] });
  // The CLI makes the rotation, signed by the old and the new root key.
  const rotate = await runCli(['trust', 'rotate', trust1, '--root-key', r2.pub, '--release-key', newRel.pub, '--sign', r1.path, '--sign', r2.path, '-o', join(dir, '2.root.json'), '--json']);
  t.is(rotate.code, 0, rotate.stdout);
  t.is(rotate.json['version'], 2);
  const bundle = await build(dir, 'rotated.bundle', [newRel], { roots: [join(dir, '2.root.json')] });
  const ok = await verify(bundle, trust1);
  t.is(ok.code, 0, ok.stdout);
  t.like(ok.json, { root: { version: 2, accepted: [2] }, signatures: { valid: [newRel.keyid] } });
  const removed = await verify(await build(dir, 'old-key.bundle', [oldRel], { roots: [join(dir, '2.root.json')] }), trust1);
  t.is(removed.code, 1);
  t.is(removed.json.error?.code, 'E_KEY_UNTRUSTED');
  // Without the rotation carried, the old key is still good against root 1.
  t.is((await verify(await build(dir, 'plain.bundle', [oldRel]), trust1)).code, 0);
});

test('a rotation signed only by the new keys, or a jump from 1 to 3, is E_ROOT_CHAIN_INVALID', async (t) => {
  const dir = await tempDir(t);
  const [r1, r2, r3, rel] = [await makeKey(dir, 'r1'), await makeKey(dir, 'r2'), await makeKey(dir, 'r3'), await makeKey(dir, 'rel')];
  const trust1 = await writeRoot(dir, '1.root.json', { version: 1, root: [r1], release: [rel], signers: [r1] });
  const onlyNew = await writeRoot(dir, 'only-new.json', { version: 2, root: [r2], release: [rel], signers: [r2] });
  const a = await verify(await build(dir, 'a.bundle', [rel], { roots: [onlyNew] }), trust1);
  t.is(a.code, 1);
  t.is(a.json.error?.code, 'E_ROOT_CHAIN_INVALID');
  t.regex(a.json.error?.message ?? '', /version 2 is signed by 0 of version 1's root keys/);

  const three = await writeRoot(dir, 'three.json', { version: 3, root: [r3], release: [rel], signers: [r1, r3] });
  const b = await verify(await build(dir, 'b.bundle', [rel], { roots: [three] }), trust1);
  t.is(b.code, 1);
  t.is(b.json.error?.code, 'E_ROOT_CHAIN_INVALID');
  t.regex(b.json.error?.message ?? '', /does not follow version 1/);

  // The CLI refuses to write a rotation the vessels would refuse.
  const cli = await runCli(['trust', 'rotate', trust1, '--root-key', r2.pub, '--sign', r2.path, '-o', join(dir, 'x.json'), '--json']);
  t.is(cli.code, 1);
  t.is(cli.json.error?.code, 'E_ROOT_CHAIN_INVALID');
});

test('an expired root or an expired release is E_EXPIRED', async (t) => {
  const dir = await tempDir(t);
  const root = await makeKey(dir, 'root');
  const rel = await makeKey(dir, 'rel');
  const expiredRoot = await writeRoot(dir, 'old.json', { version: 1, root: [root], release: [rel], signers: [root], expires: new Date(Date.now() - 86_400_000) });
  const bundle = await build(dir, 'a.bundle', [rel]);
  const r = await verify(bundle, expiredRoot);
  t.is(r.code, 1);
  t.like(r.json.error, { code: 'E_EXPIRED', details: { what: 'root' } });

  const trust = await writeRoot(dir, 'trust.json', { version: 1, root: [root], release: [rel], signers: [root] });
  const copy = join(dir, 'ex');
  await cp(join(example), copy, { recursive: true });
  const spec = join(copy, '1.4.0', 'release.yaml');
  await writeFile(spec, (await readFile(spec, 'utf8')).replace('expires: 2030-06-01', 'expires: 2020-01-01'));
  const stale = await verify(await build(dir, 'stale.bundle', [rel], { spec }), trust);
  t.is(stale.code, 1);
  t.like(stale.json.error, { code: 'E_EXPIRED', details: { what: 'release' } });
});

test('verify without --trust is a usage error; a malformed trust file is E_TRUST_INVALID', async (t) => {
  const dir = await tempDir(t);
  const rel = await makeKey(dir, 'rel');
  const bundle = await build(dir, 'a.bundle', [rel]);
  const none = await runCli(['verify', bundle, '--json']);
  t.is(none.code, 2);
  t.is(none.json.error?.code, 'E_USAGE');
  await writeFile(join(dir, 'bad.json'), JSON.stringify({ signed: { type: 'seabag-root', version: 0 }, signatures: [] }));
  const bad = await verify(bundle, join(dir, 'bad.json'));
  t.is(bad.code, 2);
  t.is(bad.json.error?.code, 'E_TRUST_INVALID');
});

test('the CI example passes a good bundle and fails the pipeline on a bad one', async (t) => {
  const dir = await tempDir(t);
  const root = await makeKey(dir, 'root');
  const rel = await makeKey(dir, 'rel');
  const trust = await writeRoot(dir, 'trust.json', { version: 1, root: [root], release: [rel], signers: [root] });
  const good = await build(dir, 'good.bundle', [rel]);
  const script = new URL('../examples/ci/verify-bundle.sh', import.meta.url).pathname;
  const bin = join(dir, 'bin');
  const { mkdir, symlink } = await import('node:fs/promises');
  await mkdir(bin);
  await symlink(new URL('../dist/seabag.mjs', import.meta.url).pathname, join(bin, 'bundle'));
  const env = { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}`, TRUST_ROOT: trust };
  const ok = await execa('sh', [script, good], { env, reject: false, all: true });
  t.is(ok.exitCode, 0, ok.all);
  const bad = join(dir, 'bad.bundle');
  await cp(good, bad);
  const opened = await openBundle(good);
  const biggest = [...opened.archive.blobs.values()].sort((x, y) => y.size - x.size)[0]!;
  await opened.close();
  await flipByte(bad, biggest.dataOffset + Math.floor(biggest.size / 2));
  const fail = await execa('sh', [script, bad], { env, reject: false, all: true });
  t.is(fail.exitCode, 1, fail.all);
  t.regex(fail.all ?? '', /E_DIGEST_MISMATCH/);
});
