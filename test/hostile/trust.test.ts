/**
 * Attacks on trust, each handed to `bundle import` on a vessel running 1.4.0 with 1.5.0 staged:
 * forged and moved signatures, misleading key hints, duplicated signatures, replays, the wrong
 * vessel class, a clock set back, and broken root chains. Every one is refused with its code and
 * the vessel keeps what it had; the good bundle still imports after.
 */
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import {
  generateKeyPair,
  importBundle,
  loadPrivateKey,
  loadPublicKey,
  makeRootSigned,
  parsePrivateKey,
  parsePublicKey,
  signEnvelope,
  signRoot,
  type Envelope,
  type PublicKey,
  type SigningKey,
} from '../../lib/index.js';
import { canonicalBytes } from '../../lib/util/canonical.js';
import { cloneUnpacked, envelopeOf, packBundle, replaceSignature, unpackBundle } from '../helpers/bundles.js';
import { tempDir } from '../helpers/tools.js';
import { startVessel } from '../helpers/vessel.js';
import { busyVessel, buildWith, makeFixture, type Fixture } from './fixture.js';
import { invariantHolds, snapshot } from './invariant.js';
import { outcomeOf, Report } from './report.js';

const report = new Report('trust');
let f: Fixture;

test.before(async () => {
  f = await makeFixture();
});

test.after.always(async () => {
  await report.write();
  await f?.cleanup();
});

function keyPair(): { signing: SigningKey; public: PublicKey; pem: string } {
  const k = generateKeyPair();
  return { signing: parsePrivateKey(k.privatePem), public: parsePublicKey(k.publicPem), pem: k.privatePem };
}

/** A copy of the 1.6.0 spec with a new version (and targets, expiry) for replays and class tests. */
async function variant(dir: string, version: string, edit: (text: string) => string = (x) => x): Promise<string> {
  const target = join(dir, version);
  await cp(join(f.example, '1.6.0'), target, { recursive: true });
  const spec = join(target, 'release.yaml');
  const text = (await readFile(spec, 'utf8')).replace('version: 1.6.0', `version: ${version}`).replace(/\.\.\/build\//g, `${join(f.example, 'build')}/`).replace('../devices/', `${join(f.example, 'devices')}/`);
  await writeFile(spec, edit(text));
  return spec;
}

test.serial('attacks on signatures, replays, class, clock and root chain are refused; the vessel keeps what it had', async (t) => {
  const v = await busyVessel(t, f);
  const before = await snapshot(v);
  const dir = await tempDir(t);
  const stranger = keyPair();
  await writeFile(join(dir, 'stranger.key'), stranger.pem);
  const releaseKey = await loadPrivateKey(f.releaseKey);
  const rootKey = await loadPrivateKey(f.rootKey);
  const rootPublic = await loadPublicKey(`${f.rootKey}.pub`);
  const good = await unpackBundle(f.v3);

  const cases: { name: string; code: string; make: (path: string) => Promise<string[]> }[] = [
    {
      name: 'payload swapped under a valid signature',
      code: 'E_SIGNATURE_INVALID',
      make: async (path) => {
        const u = cloneUnpacked(good);
        const env = JSON.parse((envelopeOf(u) as Buffer).toString()) as Envelope;
        const statement = JSON.parse(Buffer.from(env.payload, 'base64').toString()) as { subject: { digest: { sha256: string } }[] };
        statement.subject.push({ digest: { sha256: 'f'.repeat(64) } } as never);
        env.payload = Buffer.from(JSON.stringify(statement)).toString('base64');
        replaceSignature(u, Buffer.from(JSON.stringify(env)));
        await packBundle(u, path);
        return [];
      },
    },
    {
      name: 'a valid envelope of 1.5.0 attached to 1.6.0 (mix and match)',
      code: 'E_SUBJECT_MISMATCH',
      make: async (path) => {
        const u = cloneUnpacked(good);
        replaceSignature(u, envelopeOf(await unpackBundle(f.v2)));
        await packBundle(u, path);
        return [];
      },
    },
    {
      name: "a keyid hint naming the trusted key on another key's signature",
      code: 'E_SIGNATURE_INVALID',
      make: async (path) => {
        const u = cloneUnpacked(good);
        const env = JSON.parse((envelopeOf(u) as Buffer).toString()) as Envelope;
        const forged = signEnvelope(Buffer.from(env.payload, 'base64'), env.payloadType, [stranger.signing]);
        forged.signatures = forged.signatures.map((s) => ({ ...s, keyid: releaseKey.keyid }));
        replaceSignature(u, canonicalBytes(forged));
        await packBundle(u, path);
        return [];
      },
    },
    {
      name: 'unsigned (signature stripped)',
      code: 'E_UNSIGNED',
      make: async (path) => {
        const u = cloneUnpacked(good);
        replaceSignature(u, undefined);
        await packBundle(u, path);
        return [];
      },
    },
    {
      name: 'signed by a key the vessel does not trust',
      code: 'E_KEY_UNTRUSTED',
      make: async (path) => {
        await buildWith(await variant(dir, '1.6.1'), path, ['--sign', join(dir, 'stranger.key')]);
        return [];
      },
    },
    {
      name: 'a replayed older release, validly signed (1.3.0)',
      code: 'E_DOWNGRADE',
      make: async (path) => {
        await buildWith(await variant(dir, '1.3.0'), path, ['--sign', f.releaseKey]);
        return [];
      },
    },
    {
      name: 'a release for another vessel class',
      code: 'E_TARGET_MISMATCH',
      make: async (path) => {
        await buildWith(await variant(dir, '1.7.0', (x) => x.replace('targets: [class-a]', 'targets: [class-b]')), path, ['--sign', f.releaseKey]);
        return [];
      },
    },
    {
      name: 'a root chain with a gap (1 → 3)',
      code: 'E_ROOT_CHAIN_INVALID',
      make: async (path) => {
        const next = keyPair();
        const three = signRoot(
          makeRootSigned({ version: 3, expires: new Date(Date.now() + 86_400_000 * 30), rootKeys: [next.public], rootThreshold: 1, releaseKeys: [stranger.public], releaseThreshold: 1 }),
          [rootKey, next.signing],
        );
        await writeFile(join(dir, '3.root.json'), JSON.stringify(three));
        await buildWith(await variant(dir, '1.6.2'), path, ['--sign', join(dir, 'stranger.key'), '--trust', join(dir, '3.root.json')]);
        return [];
      },
    },
    {
      name: 'a root chain repeating version 2 with two different roots',
      code: 'E_ROOT_CHAIN_INVALID',
      make: async (path) => {
        const make = (release: PublicKey): object =>
          signRoot(makeRootSigned({ version: 2, expires: new Date(Date.now() + 86_400_000 * 30), rootKeys: [rootPublic], rootThreshold: 1, releaseKeys: [release], releaseThreshold: 1 }), [rootKey]);
        await writeFile(join(dir, 'a.2.json'), JSON.stringify(make(await loadPublicKey(`${f.releaseKey}.pub`))));
        await writeFile(join(dir, 'b.2.json'), JSON.stringify(make(stranger.public)));
        await buildWith(await variant(dir, '1.6.3'), path, ['--sign', f.releaseKey, '--trust', join(dir, 'a.2.json'), '--trust', join(dir, 'b.2.json')]);
        return [];
      },
    },
    {
      name: 'a rotation signed only by the new root keys',
      code: 'E_ROOT_CHAIN_INVALID',
      make: async (path) => {
        const next = keyPair();
        const two = signRoot(
          makeRootSigned({ version: 2, expires: new Date(Date.now() + 86_400_000 * 30), rootKeys: [next.public], rootThreshold: 1, releaseKeys: [stranger.public], releaseThreshold: 1 }),
          [next.signing],
        );
        await writeFile(join(dir, 'new-only.json'), JSON.stringify(two));
        await buildWith(await variant(dir, '1.6.4'), path, ['--sign', join(dir, 'stranger.key'), '--trust', join(dir, 'new-only.json')]);
        return [];
      },
    },
    {
      name: 'a different root under the version the vessel pinned',
      code: 'E_ROOT_CHAIN_INVALID',
      make: async (path) => {
        const other = signRoot(
          makeRootSigned({ version: 1, expires: new Date(Date.now() + 86_400_000 * 30), rootKeys: [rootPublic], rootThreshold: 1, releaseKeys: [stranger.public], releaseThreshold: 1 }),
          [rootKey],
        );
        await writeFile(join(dir, 'other.1.json'), JSON.stringify(other));
        await buildWith(await variant(dir, '1.6.5'), path, ['--sign', join(dir, 'stranger.key'), '--trust', join(dir, 'other.1.json')]);
        return [];
      },
    },
  ];
  for (const c of cases) {
    const path = join(dir, `case-${c.name.replace(/\W+/g, '-')}.bundle`);
    await c.make(path);
    const r = await v.run(['import', path, '--json']);
    t.is(r.code, 1, `${c.name}: ${r.stdout}`);
    t.is(r.json.error?.code, c.code, c.name);
    const held = await invariantHolds(t, v, before, c.name, false);
    report.add('trust', c.name, `exit 1 ${c.code}`, outcomeOf(r), held ? 'held' : 'n/a');
  }
  t.true(await invariantHolds(t, v, before, 'after every case'));
  const ok = await v.run(['import', f.v3, '--json']);
  t.is(ok.code, 0, ok.stdout);
});

test.serial('duplicated signatures count once against a threshold of two', async (t) => {
  const dir = await tempDir(t);
  const a = keyPair();
  const b = keyPair();
  await writeFile(join(dir, 'a.key'), a.pem);
  await writeFile(join(dir, 'b.key'), b.pem);
  const root = signRoot(
    makeRootSigned({ version: 1, expires: new Date(Date.now() + 86_400_000 * 30), rootKeys: [await loadPublicKey(`${f.rootKey}.pub`)], rootThreshold: 1, releaseKeys: [a.public, b.public], releaseThreshold: 2 }),
    [await loadPrivateKey(f.rootKey)],
  );
  await writeFile(join(dir, 'two.json'), JSON.stringify(root));
  const twice = await buildWith(join(f.example, '1.4.0', 'release.yaml'), join(dir, 'twice.bundle'), ['--sign', join(dir, 'a.key'), '--sign', join(dir, 'a.key')]);
  const v = await startVessel(t);
  const r = await v.run(['import', twice, '--trust', join(dir, 'two.json'), '--target', 'class-a', '--json']);
  t.is(r.code, 1);
  t.like(r.json.error, { code: 'E_THRESHOLD_UNMET', details: { valid: [a.public.keyid], threshold: 2 } });
  report.add('trust', 'the same signature twice against a threshold of two', 'exit 1 E_THRESHOLD_UNMET', outcomeOf(r), 'held');
  const both = await buildWith(join(f.example, '1.4.0', 'release.yaml'), join(dir, 'both.bundle'), ['--sign', join(dir, 'a.key'), '--sign', join(dir, 'b.key')]);
  t.is((await v.run(['import', both, '--trust', join(dir, 'two.json'), '--target', 'class-a'])).code, 0, 'two distinct keys pass');
});

test.serial('an expired release is refused even with the vessel clock set back, because the vessel trusted a later time', async (t) => {
  const dir = await tempDir(t);
  // Created 2026-08-01, expires 2026-09-01; the vessel already trusted 1.5.0, made 2026-09-21.
  const spec = await variant(dir, '1.8.0', (x) => x.replace('expires: 2030-06-01', 'expires: 2026-09-01'));
  const expired = await buildWith(spec, join(dir, 'expired.bundle'), ['--sign', f.releaseKey], { SOURCE_DATE_EPOCH: String(Date.UTC(2026, 7, 1) / 1000) });
  const v = await busyVessel(t, f);
  const before = await snapshot(v);
  const clockSetBack = new Date(Date.UTC(2026, 7, 15));
  const err = await t.throwsAsync(importBundle(expired, { stateDir: v.stateDir, registry: v.registry.host, target: 'class-a', now: clockSetBack }));
  t.like(err, { code: 'E_EXPIRED', details: { what: 'release' } });
  const held = await invariantHolds(t, v, before, 'clock set back');
  report.add('trust', 'an expired release with the vessel clock set back before its expiry', 'exit 1 E_EXPIRED', `exit 1 ${(err as { code?: string }).code ?? ''}`, held ? 'held' : 'n/a');
  // The same bundle and the same wrong clock on a vessel that trusted nothing later: accepted, which is
  // why the newest trusted time matters.
  const fresh = await startVessel(t);
  const accepted = await importBundle(expired, { stateDir: fresh.stateDir, registry: fresh.registry.host, target: 'class-a', now: clockSetBack, trust: f.trust });
  t.is(accepted.release.version, '1.8.0');
});
