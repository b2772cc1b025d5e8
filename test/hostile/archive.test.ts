/**
 * Hostile archives: every way a tar on a stick can lie, handed to `bundle import` on a vessel that
 * runs 1.4.0 with 1.5.0 staged. Each must be refused with its code and leave the vessel as it was;
 * the good bundle still imports after. Then seeded bit flips into fresh vessels, and a
 * property-based fuzzer (fast-check) over the offline verifier.
 */
import { copyFile, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import fc from 'fast-check';
import { isSeabagError, loadRoot, openBundle, sha256Digest, verifyBundle } from '../../lib/index.js';
import { MemoryStore } from '../../lib/oci/memory.js';
import { resolveGraph } from '../../lib/oci/graph.js';
import { addBlob, cloneUnpacked, packBundle, resign, unpackBundle, type Unpacked } from '../helpers/bundles.js';
import { startVessel } from '../helpers/vessel.js';
import { header, paxData, tarBytes, writeSparse, type RawEntry } from './craft.js';
import { busyVessel, makeFixture, type Fixture } from './fixture.js';
import { invariantHolds, snapshot } from './invariant.js';
import { outcomeOf, Report } from './report.js';
import { seeded } from '../helpers/web.js';

const SOAK = process.env['SEABAG_SOAK'] === '1';
const report = new Report('archive');
let f: Fixture;
let scratch: string;
let good: Unpacked;
let target: string;

test.before(async () => {
  f = await makeFixture();
  scratch = await mkdtemp(join(tmpdir(), 'seabag-hostile-archive-'));
  // Hostile variants of 1.6.0, a release the vessel does not hold, so every blob must be read.
  target = f.v3;
  good = await unpackBundle(target);
});

test.after.always(async () => {
  await report.write();
  await f?.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

/** The good bundle's entries as raw tar entries (to be edited). */
function rawEntries(): RawEntry[] {
  return good.entries.map((e) => (e.dir === true ? { name: `${e.name}/`, type: '5' } : { name: e.name, data: e.data as Buffer }));
}

function firstBlob(): RawEntry {
  const e = rawEntries().find((x) => x.name.startsWith('blobs/sha256/') && x.type === undefined);
  if (e === undefined) throw new Error('no blob');
  return e;
}

/** The layer only 1.6.0 has (the vessel must read it; it holds every other). */
function uniqueLayer(): string {
  return `blobs/sha256/${f.uniqueLayer.slice(7)}`;
}

interface Case {
  name: string;
  code: string;
  exit?: number;
  make: (path: string) => Promise<void>;
}

const entriesWith = (change: (entries: RawEntry[]) => RawEntry[]): ((path: string) => Promise<void>) => async (path) => writeFile(path, tarBytes(change(rawEntries())));

const CASES: Case[] = [
  { name: 'path traversal ../evil', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e.slice(0, 2), { name: '../evil', data: Buffer.from('x') }, ...e.slice(2)]) },
  { name: 'absolute path /etc/cron.d/evil', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, { name: '/etc/cron.d/evil', data: Buffer.from('* * * * * root sh') }]) },
  { name: 'blobs/sha256/../../x', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, { name: 'blobs/sha256/../../x', data: Buffer.from('x') }]) },
  {
    name: 'symlink in place of a blob',
    code: 'E_ARCHIVE_UNSAFE',
    make: entriesWith((e) => e.map((x) => (x.name === firstBlob().name ? { name: x.name, type: '2', linkname: '/etc/shadow' } : x))),
  },
  { name: 'hard link', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, { name: 'blobs/sha256/' + 'a'.repeat(64), type: '1', linkname: 'index.json' }]) },
  { name: 'character device', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, { name: 'blobs/sha256/' + 'b'.repeat(64), type: '3' }]) },
  { name: 'block device', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, { name: 'blobs/sha256/' + 'c'.repeat(64), type: '4' }]) },
  { name: 'FIFO', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, { name: 'blobs/sha256/' + 'd'.repeat(64), type: '6' }]) },
  { name: 'folder where index.json belongs', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => e.map((x) => (x.name === 'index.json' ? { name: 'index.json/', type: '5' } : x))) },
  { name: 'folder where a blob belongs', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => e.map((x) => (x.name === firstBlob().name ? { name: `${x.name}/`, type: '5' } : x))) },
  { name: 'duplicate index.json', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, { name: 'index.json', data: Buffer.from('{"schemaVersion":2,"manifests":[]}') }]) },
  { name: 'duplicate blob', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, firstBlob()]) },
  {
    name: 'PAX header renaming a blob to index.json',
    code: 'E_ARCHIVE_UNSAFE',
    make: entriesWith((e) => [...e.slice(0, 4), { name: 'PaxHeader', type: 'x', data: paxData({ path: 'index.json' }) }, ...e.slice(4)]),
  },
  {
    name: 'GNU long-name header renaming an entry',
    code: 'E_ARCHIVE_UNSAFE',
    make: entriesWith((e) => [...e.slice(0, 4), { name: '././@LongLink', type: 'L', data: Buffer.from('oci-layout\0'), gnu: true }, ...e.slice(4)]),
  },
  {
    name: 'size field larger than the file',
    code: 'E_ARCHIVE_TRUNCATED',
    make: async (path) => {
      const e = rawEntries();
      const last = e.at(-1) as RawEntry;
      await writeFile(path, Buffer.concat([tarBytes(e.slice(0, -1), { end: false }), header({ ...last, size: (last.data?.length ?? 0) + 10_000_000 }), last.data ?? Buffer.alloc(0)]));
    },
  },
  {
    name: 'truncated mid-header',
    code: 'E_ARCHIVE_TRUNCATED',
    make: async (path) => {
      await copyFile(target, path);
      const bundle = await openBundle(target);
      const entry = bundle.archive.entries[6];
      await bundle.close();
      await truncate(path, (entry?.headerOffset ?? 0) + 200);
    },
  },
  {
    name: 'truncated mid-blob',
    code: 'E_ARCHIVE_TRUNCATED',
    make: async (path) => {
      await copyFile(target, path);
      const bundle = await openBundle(target);
      const entry = [...bundle.archive.blobs.values()].sort((a, b) => b.size - a.size)[0];
      await bundle.close();
      await truncate(path, (entry?.dataOffset ?? 0) + Math.floor((entry?.size ?? 0) / 2));
    },
  },
  { name: 'no end-of-archive marker', code: 'E_ARCHIVE_TRUNCATED', make: async (path) => writeFile(path, tarBytes(rawEntries(), { end: false })) },
  { name: 'trailing garbage after the end', code: 'E_ARCHIVE_UNSAFE', make: async (path) => writeFile(path, Buffer.concat([await readFile(target), Buffer.from('#!/bin/sh\nrm -rf /\n')])) },
  { name: 'non-zero padding after an entry', code: 'E_ARCHIVE_UNSAFE', make: async (path) => {
      const e = rawEntries();
      const bytes = tarBytes(e);
      // The oci-layout entry's data is 30 bytes; its padding follows.
      bytes[512 + 40] = 0x41;
      await writeFile(path, bytes);
    } },
  { name: 'non-zero padding after a layer (a big entry: its padding is read with the next header)', code: 'E_ARCHIVE_UNSAFE', make: async (path) => {
      const e = rawEntries();
      let at = 0;
      let end: number | undefined;
      for (const x of e) {
        const size = x.data?.length ?? 0;
        if (end === undefined && size > 64 * 1024 && size % 512 !== 0) end = at + 512 + size;
        at += 512 + Math.ceil(size / 512) * 512;
      }
      if (end === undefined) throw new Error('no layer with padding');
      const bytes = tarBytes(e);
      bytes[end + 3] = 0x41;
      await writeFile(path, bytes);
    } },
  { name: 'blob name in uppercase hex', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => e.map((x) => (x.name === firstBlob().name ? { ...x, name: x.name.toUpperCase().replace('BLOBS/SHA256/', 'blobs/sha256/') } : x))) },
  { name: 'blob name of 63 hex characters', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, { name: `blobs/sha256/${'e'.repeat(63)}`, data: Buffer.from('x') }]) },
  { name: 'sha512 blob folder', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, { name: `blobs/sha512/${'f'.repeat(128)}`, data: Buffer.from('x') }]) },
  {
    name: 'blob whose content does not match its name',
    code: 'E_DIGEST_MISMATCH',
    make: entriesWith((e) =>
      e.map((x) => {
        if (x.name !== uniqueLayer()) return x;
        const data = Buffer.from(x.data as Buffer);
        data[data.length >> 1] = (data[data.length >> 1] ?? 0) ^ 1;
        return { ...x, data };
      }),
    ),
  },
  { name: 'unknown file README', code: 'E_ARCHIVE_UNSAFE', make: entriesWith((e) => [...e, { name: 'README', data: Buffer.from('hello') }]) },
  {
    name: 'a 100 MB index.json',
    code: 'E_ARCHIVE_UNSAFE',
    make: async (path) => {
      const head = Buffer.concat([tarBytes([rawEntries()[0] as RawEntry], { end: false }), header({ name: 'index.json', size: 100 * 1024 * 1024 })]);
      await writeSparse(path, head, head.length + 100 * 1024 * 1024 + 1024);
    },
  },
  {
    name: 'deeply nested JSON as index.json (3 MiB of [)',
    code: 'E_LAYOUT_INVALID',
    make: entriesWith((e) => e.map((x) => (x.name === 'index.json' ? { name: 'index.json', data: Buffer.from('['.repeat(3 * 1024 * 1024)) } : x))),
  },
  {
    name: 'deeply nested JSON as the release manifest',
    code: 'E_LAYOUT_INVALID',
    make: async (path) => {
      const u = cloneUnpacked(good);
      const nested = Buffer.from(`${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`);
      const desc = addBlob(u, nested, 'application/vnd.oci.image.manifest.v1+json');
      u.index.manifests = u.index.manifests.map((m) => (m.artifactType === 'application/vnd.seabag.release.v1+json' ? { ...m, digest: desc.digest, size: desc.size } : m));
      await packBundle(u, path);
    },
  },
  {
    name: 'a signed release naming a manifest that names itself',
    code: 'E_DIGEST_MISMATCH',
    make: async (path) => {
      // A manifest cannot contain its own digest; the nearest lie is a blob whose name says it is
      // the index it names, signed into the release by a trusted key. Its bytes give it away.
      const u = cloneUnpacked(good);
      const fake = `sha256:${'9'.repeat(64)}` as const;
      const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: fake, size: 200 }] }));
      u.entries.push({ name: `blobs/sha256/${fake.slice(7)}`, data: body });
      const radar = u.index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name']?.includes('radar'));
      if (radar === undefined) throw new Error('no radar');
      Object.assign(radar, { digest: fake, size: body.length });
      await resign(u, f.releaseKey, (release) => {
        const images = release['images'] as { ref: string; digest: string }[];
        for (const i of images) if (i.ref.includes('radar')) i.digest = fake;
      });
      await packBundle(u, path);
    },
  },
  {
    name: 'an index with 100,000 entries (15 MB index.json)',
    code: 'E_ARCHIVE_UNSAFE',
    make: async (path) => {
      const u = cloneUnpacked(good);
      for (let i = 0; i < 100_000; i += 1) u.index.manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256Digest(String(i)), size: 1 });
      await packBundle(u, path);
    },
  },
  {
    name: 'an index with 20,000 entries the release does not list',
    code: 'E_LAYOUT_INVALID',
    make: async (path) => {
      const u = cloneUnpacked(good);
      for (let i = 0; i < 20_000; i += 1) u.index.manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256Digest(String(i)), size: 1 });
      await packBundle(u, path);
    },
  },
  {
    name: 'index.json naming an image under another reference',
    code: 'E_LAYOUT_INVALID',
    make: async (path) => {
      const u = cloneUnpacked(good);
      const m = u.index.manifests.find((x) => x.annotations?.['org.opencontainers.image.ref.name']?.includes('fusion'));
      if (m?.annotations) m.annotations['org.opencontainers.image.ref.name'] = 'shore.example.com/groke/fusion:latest';
      await packBundle(u, path);
    },
  },
];

test.serial('hostile archives are refused with their code, and the vessel keeps what it had', async (t) => {
  const v = await busyVessel(t, f);
  const before = await snapshot(v);
  for (const c of CASES) {
    const path = join(scratch, 'case.bundle');
    await rm(path, { force: true });
    await c.make(path);
    const r = await v.run(['import', path, '--json']);
    const outcome = outcomeOf(r);
    t.is(r.code, c.exit ?? 1, `${c.name}: ${r.stdout}`);
    t.is(r.json.error?.code, c.code, c.name);
    const verified = await v.run(['verify', path, '--trust', f.trust, '--json']);
    t.is(verified.json.error?.code, c.code, `${c.name} (verify)`);
    const held = await invariantHolds(t, v, before, c.name, false);
    report.add('archive', c.name, `exit ${c.exit ?? 1} ${c.code}`, outcome, held ? 'held' : 'n/a');
  }
  // Everything the vessel held is still complete, and the good bundle still imports.
  t.true(await invariantHolds(t, v, before, 'after every case'));
  const good16 = await v.run(['import', target, '--json']);
  t.is(good16.code, 0, good16.stdout);
  t.like(good16.json, { release: { version: '1.6.0' }, alreadyHeld: false });
});

test('manifests forming a cycle are refused, not walked forever', async (t) => {
  // Content addressing makes a real cycle impossible (a manifest cannot hold its own digest), so
  // a store that presents one must be lying about a digest: the walk refuses at the first lie.
  const a = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${'a'.repeat(64)}` as const, size: 0 };
  const b = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${'b'.repeat(64)}` as const, size: 0 };
  const bytesA = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: a.mediaType, manifests: [b] }));
  const bytesB = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: b.mediaType, manifests: [a] }));
  const lying = new MemoryStore().add(a, bytesA).add(b, bytesB);
  const err = (await t.throwsAsync(resolveGraph(lying, { ...a, size: bytesA.length }))) as unknown;
  t.true(isSeabagError(err));
  const code = isSeabagError(err) ? err.code : 'none';
  t.true(['E_LAYOUT_INVALID', 'E_DIGEST_MISMATCH'].includes(code));
  report.add('archive', 'manifests forming a cycle (a store lying about digests)', 'refused, never looped', `refused ${code}`, 'n/a');
});

test('seeded random bit flips: every one is refused on a fresh vessel; none is imported', async (t) => {
  const bytes = await readFile(f.v2);
  const random = seeded(20261126);
  const runs = SOAK ? 2000 : 200;
  // Half anywhere in the file, half in the first 64 KiB where headers and metadata live.
  const offsets = Array.from({ length: runs }, (_, i) => Math.floor(random() * (i % 2 === 0 ? bytes.length : Math.min(bytes.length, 64 * 1024))));
  const codes: Record<string, number> = {};
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next;
      next += 1;
      if (i >= offsets.length) return;
      const offset = offsets[i] as number;
      const flipped = Buffer.from(bytes);
      const bit = 1 << Math.floor(random() * 8);
      flipped[offset] = (flipped[offset] ?? 0) ^ bit;
      const path = join(scratch, `flip-${i}.bundle`);
      await writeFile(path, flipped);
      const v = await startVessel(t);
      const r = await v.run(['import', path, '--trust', f.trust, '--target', 'class-a', '--json']);
      await rm(path, { force: true });
      const outcome = outcomeOf(r);
      codes[outcome] = (codes[outcome] ?? 0) + 1;
      t.is(r.code, 1, `flip at ${offset}: ${r.stdout}`);
      // The first import pins registry, class and trust root before it pushes (so a bare re-run
      // after an interrupt needs no flags); a refused one may leave those pins, never a release.
      const state = await readFile(join(v.stateDir, 'state.json'), 'utf8').catch(() => undefined);
      const held = state === undefined ? [] : (JSON.parse(state) as { releases?: unknown[] }).releases ?? [];
      t.deepEqual(held, [], `flip at ${offset}: nothing was staged`);
      t.deepEqual(await v.tags('seabag/awareness'), [], `flip at ${offset}: no release tag`);
      report.add('bit flips', `one bit flipped at a seeded random offset (${runs} runs)`, 'exit 1, nothing staged', outcome, 'held');
      await v.registry.kill();
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  t.log(`bit flip outcomes: ${JSON.stringify(codes)}`);
});

test('property: whatever is done to the bytes, verify refuses with exit 1 and never crashes', async (t) => {
  const bytes = await readFile(f.v2);
  const { root } = await loadRoot(f.trust);
  const path = join(scratch, 'fuzz.bundle');
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.record({ kind: fc.constant('flips' as const), flips: fc.array(fc.tuple(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }) }),
        fc.record({ kind: fc.constant('truncate' as const), at: fc.nat({ max: bytes.length - 1 }) }),
        fc.record({ kind: fc.constant('append' as const), junk: fc.uint8Array({ minLength: 1, maxLength: 4096 }) }),
        fc.record({ kind: fc.constant('splice' as const), at: fc.nat({ max: bytes.length - 1 }), junk: fc.uint8Array({ minLength: 1, maxLength: 2048 }) }),
      ),
      async (m) => {
        runs += 1;
        let data: Buffer;
        if (m.kind === 'flips') {
          data = Buffer.from(bytes);
          for (const [o, x] of m.flips) data[o] = (data[o] ?? 0) ^ x;
        } else if (m.kind === 'truncate') {
          data = bytes.subarray(0, m.at);
        } else if (m.kind === 'append') {
          data = Buffer.concat([bytes, Buffer.from(m.junk)]);
        } else {
          data = Buffer.concat([bytes.subarray(0, m.at), Buffer.from(m.junk), bytes.subarray(m.at)]);
        }
        await writeFile(path, data);
        try {
          await verifyBundle(path, { trust: root });
        } catch (err) {
          if (isSeabagError(err) && err.exitStatus === 1) {
            report.add('fuzz', `fast-check mutations of the bundle (flips, truncation, appended and spliced junk)`, 'exit 1, never a crash', `exit 1 ${err.code}`, 'n/a');
            return true;
          }
          throw err;
        }
        return false;
      },
    ),
    { seed: 4242, numRuns: SOAK ? 2000 : 150 },
  );
  t.true(runs >= 150);
});
