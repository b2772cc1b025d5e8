/**
 * One admission path, and readers that cannot be blown up (issue 11, items 13 and 6): `verify`
 * and `import` judge a release through the same `admit()`, so they give the same answer; and a
 * small bundle whose metadata names one big blob many times costs that blob once.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { buildBundle, generateKeyPair, makeRootSigned, parsePrivateKey, parsePublicKey, signRoot, type PublicKey, type SigningKey } from '../../lib/index.js';
import { runCli } from '../helpers/cli.js';
import { EPOCH, exampleCopy } from '../helpers/example.js';
import { tempDir } from '../helpers/tools.js';
import { outcomeOf, Report } from './report.js';

const report = new Report('admission');
let work: string;
let example: string;
let rootKeys: { signing: SigningKey; public: PublicKey }[];
let releaseKey: { signing: SigningKey; public: PublicKey };
let bundle: string;
let trust: string;

function key(): { signing: SigningKey; public: PublicKey } {
  const pair = generateKeyPair();
  return { signing: parsePrivateKey(pair.privatePem), public: parsePublicKey(pair.publicPem) };
}

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-admission-'));
  example = await exampleCopy(work);
  rootKeys = [key(), key()];
  releaseKey = key();
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
