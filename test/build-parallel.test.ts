/**
 * `bundle build` hashes source blobs on a second thread while the main thread writes them. That
 * path must give what the sequential one gives: the same bytes (the bundle is reproducible
 * whichever path ran), progress that ends at the total, and a source blob whose bytes do not match
 * its digest named, with no bundle under the output name (an older one there is left as it was).
 * `hashThreadFrom: 0` forces the thread for these small images, `Infinity` keeps everything on
 * the main thread, `hashLanes` sets how many threads hash blobs at once (each its own, written to
 * their places out of order); the CLI test at the end crosses the default thresholds on its own.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { buildBundle, isSeabagError, type Progress } from '../lib/index.js';
import { parseImageManifest, type Descriptor } from '../lib/oci/descriptor.js';
import { OciLayout } from '../lib/oci/layout.js';
import type { RangeReader } from '../lib/oci/store.js';
import { HASH_THREAD_MIN_BYTES, keepsHoles, startHashThreads, writeBundle, type BundleEntry } from '../lib/bundle/writer.js';
import type { HashThread } from '../lib/util/hash-thread.js';
import { defaultLanes } from '../lib/bundle/lane-threads.js';
import { BIN, runCli } from './helpers/cli.js';
import { buildRandomImage } from './helpers/images.js';
import { tempDir } from './helpers/tools.js';

/** Sizes across the thread's chunk size (2 MiB): one chunk, several, a short last one. */
const EIGHT = [2_500_000, 90_000, 4_300_000, 64_000, 1_100_000, 150_000, 5_200_000, 230_000];

let dir: string;
let layout: string;
let spec: string;

/** The shared folder's removal, run once every test is done. */
const cleanups: (() => void | Promise<void>)[] = [];
test.after.always(async () => {
  for (const fn of cleanups) await fn();
});

test.before(async () => {
  dir = await tempDir({ teardown: (fn) => void cleanups.push(fn) }, 'seabag-build-parallel-');
  layout = join(dir, 'layout');
  await buildRandomImage(layout, 'eight', EIGHT, 'eight');
  // Many small blobs too: a blob's last chunk often lands beside the next blob's first.
  await buildRandomImage(layout, 'many', Array.from({ length: 24 }, (_, i) => 1000 + i * 37_000), 'many');
  spec = join(dir, 'release.yaml');
  await writeRelease(spec, layout);
});

async function writeRelease(path: string, from: string): Promise<void> {
  await writeFile(
    path,
    `apiVersion: seabag.dev/v1\nkind: Release\nname: par\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/eight:1.0.0\n    from: oci:${from}:eight\n  - ref: shore.example.com/groke/many:1.0.0\n    from: oci:${from}:many\n`,
  );
}

/** A copy of the shared layout in `dir`/`name`, for a test that damages its blobs, and its release spec. */
async function ownLayout(name: string): Promise<{ own: string; ownSpec: string }> {
  const own = join(dir, name);
  await cp(layout, join(own, 'layout'), { recursive: true });
  const ownSpec = join(own, 'release.yaml');
  await writeRelease(ownSpec, join(own, 'layout'));
  return { own, ownSpec };
}

/** The layer descriptors of image `tag`, in manifest order. */
async function layersOf(layoutDir: string, tag: string): Promise<Descriptor[]> {
  const l = await OciLayout.open(layoutDir);
  const desc = await l.resolve(tag);
  return parseImageManifest(await readFile(l.path(desc)), desc).layers;
}

const created = new Date('2026-01-01T00:00:00Z');

/** A file's sha256 (ava's deep compare of megabyte buffers is too slow to be useful). */
async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

test('hashed on a second thread, or in 2, 3 or 34 lanes, a build of 34 blobs is byte for byte the build hashed on the main thread, whole and split, and progress ends at the total', async (t) => {
  const out = join(dir, 'out');
  await mkdir(out);
  const progress: Progress[] = [];
  const threaded = await buildBundle(spec, { output: join(out, 'threaded.bundle'), created, hashThreadFrom: 0, onProgress: (p) => progress.push(p) });
  const sequential = await buildBundle(spec, { output: join(out, 'sequential.bundle'), created, hashThreadFrom: Number.POSITIVE_INFINITY });
  t.is(threaded.releaseDigest, sequential.releaseDigest);
  t.is(await sha256(join(out, 'threaded.bundle')), await sha256(join(out, 'sequential.bundle')));
  // In lanes: each thread hashes its own blobs, written to their places in the file out of order.
  const laned: Progress[] = [];
  for (const lanes of [2, 3, 34]) {
    const progressOf = lanes === 3 ? laned : [];
    const r = await buildBundle(spec, { output: join(out, `lanes-${lanes}.bundle`), created, hashThreadFrom: 0, hashLanes: lanes, onProgress: (p) => progressOf.push(p) });
    t.is(r.write.size, sequential.write.size);
    t.is(await sha256(join(out, `lanes-${lanes}.bundle`)), await sha256(join(out, 'sequential.bundle')), `${lanes} lanes`);
  }

  for (const [name, seen] of [['one thread', progress], ['3 lanes', laned]] as const) {
    const writes = seen.filter((p) => p.phase === 'write');
    const last = writes.at(-1) as Progress;
    t.is(last.done, last.total ?? -1, `${name}: progress ends at 100%`);
    t.is(last.total, threaded.write.size);
    t.true(writes.every((p, i) => i === 0 || p.done >= (writes[i - 1] as Progress).done), `${name}: progress never goes back`);
  }

  const split = 3_000_001;
  await mkdir(join(out, 'a'));
  await mkdir(join(out, 'b'));
  // A split bundle is written in order whatever the lanes asked for (each part is hashed as it is written).
  const a = await buildBundle(spec, { output: join(out, 'a', 'x.bundle'), created, hashThreadFrom: 0, hashLanes: 2, splitSize: split });
  const b = await buildBundle(spec, { output: join(out, 'b', 'x.bundle'), created, hashThreadFrom: Number.POSITIVE_INFINITY, splitSize: split });
  t.true((a.write.parts?.count ?? 0) > 3);
  t.deepEqual(a.write.parts, b.write.parts);
  for (const name of (await readdir(join(out, 'a'))).sort()) t.is(await sha256(join(out, 'a', name)), await sha256(join(out, 'b', name)), name);
  t.deepEqual((await readdir(join(out, 'a'))).sort(), (await readdir(join(out, 'b'))).sort());
});

test('a flipped byte in any one of 8 source blobs hashed on the second thread, or in 3 lanes, names that blob; nothing is written under the output name and the bundle already there is left as it was', async (t) => {
  const { own, ownSpec } = await ownLayout('flip');
  const output = join(own, 'out');
  await mkdir(output);
  const bundle = join(output, 'release.bundle');
  await writeFile(bundle, 'the bundle of yesterday\n');
  const layers = await layersOf(join(own, 'layout'), 'eight');
  t.is(layers.length, 8);
  for (const [i, layer] of layers.entries()) {
    // First byte of one, last byte of the next (found only when the blob's last chunk is hashed).
    const at = i % 2 === 0 ? 0 : layer.size - 1;
    const path = join(own, 'layout', 'blobs', 'sha256', layer.digest.slice(7));
    const handle = await open(path, 'r+');
    const original = Buffer.alloc(1);
    await handle.read(original, 0, 1, at);
    await handle.write(Buffer.from([(original[0] ?? 0) ^ 0x01]), 0, 1, at);
    try {
      for (const hashLanes of [1, 3]) {
        const err = await t.throwsAsync(buildBundle(ownSpec, { output: bundle, created, force: true, hashThreadFrom: 0, hashLanes }));
        const what = `layer ${i}, ${hashLanes} lane(s)`;
        t.true(isSeabagError(err) && err.code === 'E_DIGEST_MISMATCH', `${what}: ${String(err)}`);
        t.is(isSeabagError(err) ? err.details['expected'] : undefined, layer.digest, `${what}: the one named`);
        t.regex(err?.message ?? '', new RegExp(layer.digest.slice(7)));
        t.deepEqual(await readdir(output), ['release.bundle'], `${what}: no temp file left`);
        t.is(await readFile(bundle, 'utf8'), 'the bundle of yesterday\n', `${what}: the old bundle is untouched`);
      }
    } finally {
      await handle.write(original, 0, 1, at);
      await handle.close();
    }
  }
  // Restored: the same build now succeeds and replaces it.
  await buildBundle(ownSpec, { output: bundle, created, force: true, hashThreadFrom: 0 });
  t.not(await readFile(bundle, 'utf8'), 'the bundle of yesterday\n');
});

test('in lanes, of two source blobs that fail, the first in the order of the bundle is named, whichever lane finds its failure first; a source cut short is named too', async (t) => {
  const { own, ownSpec } = await ownLayout('two');
  const bundle = join(own, 'release.bundle');
  await buildBundle(ownSpec, { output: bundle, created, hashThreadFrom: 0 });
  // The blobs of 'eight' in the order the bundle holds them (tar is the outside witness).
  const listed = (await execa('tar', ['tf', bundle])).stdout.split('\n');
  const layers = (await layersOf(join(own, 'layout'), 'eight')).sort((a, b) => listed.indexOf(`blobs/sha256/${a.digest.slice(7)}`) - listed.indexOf(`blobs/sha256/${b.digest.slice(7)}`));
  const blobPath = (d: Descriptor): string => join(own, 'layout', 'blobs', 'sha256', d.digest.slice(7));
  for (let i = 0; i + 1 < layers.length; i += 1) {
    const [first, second] = [layers[i] as Descriptor, layers[i + 1] as Descriptor];
    const saved = await Promise.all([first, second].map((d) => readFile(blobPath(d))));
    try {
      // The first loses a byte at its end, the second one at its start.
      await writeFile(blobPath(first), (saved[0] as Buffer).subarray(0, first.size - 1));
      const flipped = Buffer.from(saved[1] as Buffer);
      flipped[0] = (flipped[0] ?? 0) ^ 0x40;
      await writeFile(blobPath(second), flipped);
      for (const hashLanes of [2, 3]) {
        const err = await t.throwsAsync(buildBundle(ownSpec, { output: bundle, created, force: true, hashThreadFrom: 0, hashLanes }));
        t.true(isSeabagError(err) && err.code === 'E_SIZE_MISMATCH', `blobs ${i} and ${i + 1}, ${hashLanes} lanes: ${String(err)}`);
        t.is(isSeabagError(err) ? err.details['digest'] : undefined, first.digest, `blobs ${i} and ${i + 1}, ${hashLanes} lanes: the first is named`);
      }
      // Swapped: the first flipped, the second short.
      await writeFile(blobPath(first), Buffer.from((saved[0] as Buffer).map((b, k) => (k === 0 ? b ^ 0x40 : b))));
      await writeFile(blobPath(second), (saved[1] as Buffer).subarray(0, second.size - 1));
      const err = await t.throwsAsync(buildBundle(ownSpec, { output: bundle, created, force: true, hashThreadFrom: 0, hashLanes: 2 }));
      t.true(isSeabagError(err) && err.code === 'E_DIGEST_MISMATCH' && err.details['expected'] === first.digest, `blobs ${i} and ${i + 1} swapped: ${String(err)}`);
    } finally {
      await writeFile(blobPath(first), saved[0] as Buffer);
      await writeFile(blobPath(second), saved[1] as Buffer);
    }
    t.deepEqual((await readdir(own)).filter((f) => f.includes('.tmp')), [], 'no temp file left');
  }
});

test('a hashing thread that cannot start leaves its blobs to the threads that did, or to the main thread: the bundle is the same byte for byte', async (t) => {
  const source = await OciLayout.open(layout);
  const layers = await layersOf(layout, 'eight');
  const entries: BundleEntry[] = [
    { name: 'oci-layout', data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    ...layers.map((desc) => ({ name: `blobs/sha256/${desc.digest.slice(7)}`, desc, reader: () => source.reader(desc) })),
  ];
  const out = await tempDir(t);
  // A thread refused at its start (as a limit on threads or memory would): root is exempt from
  // RLIMIT_NPROC here, so the refusal is the promise a failed start gives.
  const refused = (): Promise<HashThread> => {
    const p = Promise.reject(new Error('cannot start a thread: limit reached'));
    p.catch(() => undefined);
    return p;
  };
  await writeBundle(join(out, 'main.bundle'), entries, { hashThreadFrom: Number.POSITIVE_INFINITY });
  await writeBundle(join(out, 'none.bundle'), entries, { hashThreadFrom: 0, hashLanes: 1, hashThreads: [refused()] });
  const started = startHashThreads(2);
  try {
    await writeBundle(join(out, 'some.bundle'), entries, { hashThreadFrom: 0, hashLanes: 3, hashThreads: [refused(), ...started] });
  } finally {
    await Promise.all(started.map(async (p) => (await p).close()));
  }
  const expected = await sha256(join(out, 'main.bundle'));
  t.is(await sha256(join(out, 'none.bundle')), expected, 'no thread: hashed on the main thread');
  t.is(await sha256(join(out, 'some.bundle')), expected, 'one of three refused: two lanes');
  t.deepEqual((await readdir(out)).sort(), ['main.bundle', 'none.bundle', 'some.bundle'], 'no temp file left');
});

test('in lanes, a source whose close fails after its blob was copied fails the write: the blobs after it are never left out of a bundle that gets its name', async (t) => {
  const source = await OciLayout.open(layout);
  const layers = await layersOf(layout, 'eight');
  // A reader of the layout whose close fails (a file on a network share can report a write-back
  // error there): the one stand-in of this test, around the real file's reader.
  const failingClose = async (desc: Descriptor): Promise<RangeReader> => {
    const real = await source.reader(desc);
    return { size: real.size, read: (target, position) => real.read(target, position), close: async () => {
      await real.close();
      throw Object.assign(new Error('close failed'), { code: 'EIO' });
    } };
  };
  const out = await tempDir(t);
  for (const bad of [0, 3, 7]) {
    const entries: BundleEntry[] = layers.map((desc, i) => ({ name: `blobs/sha256/${desc.digest.slice(7)}`, desc, reader: () => (i === bad ? failingClose(desc) : source.reader(desc)) }));
    const err = await t.throwsAsync(writeBundle(join(out, 'x.bundle'), entries, { hashThreadFrom: 0, hashLanes: 3 }));
    t.true(isSeabagError(err) && err.code === 'E_IO', `blob ${bad}: ${String(err)}`);
    t.deepEqual(await readdir(out), [], `blob ${bad}: nothing named, no temp file`);
  }
});

test(`the CLI hashes in a lane per core past ${(2 * HASH_THREAD_MIN_BYTES) / 1024 / 1024} MiB of layers: a flipped byte exits 1 naming the blob with nothing left; intact, the bundle is flushed as it is written and fsynced before it is named`, async (t) => {
  const own = await tempDir(t);
  // Two lanes' worth of bytes: 4 layers of just over 16 MiB and a small one.
  const big = Math.ceil(HASH_THREAD_MIN_BYTES / 2) + 1_000_000;
  await buildRandomImage(join(own, 'layout'), 'big', [big, big, big, big, 700_000], 'big');
  const ownSpec = join(own, 'release.yaml');
  await writeFile(ownSpec, `apiVersion: seabag.dev/v1\nkind: Release\nname: big\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/big:1.0.0\n    from: oci:${join(own, 'layout')}:big\n`);
  const layer = (await layersOf(join(own, 'layout'), 'big'))[2] as Descriptor;
  const path = join(own, 'layout', 'blobs', 'sha256', layer.digest.slice(7));
  const handle = await open(path, 'r+');
  const original = Buffer.alloc(1);
  await handle.read(original, 0, 1, 3_000_000);
  await handle.write(Buffer.from([(original[0] ?? 0) ^ 0x80]), 0, 1, 3_000_000);
  const out = join(own, 'out');
  await mkdir(out);
  const env = { SOURCE_DATE_EPOCH: '1790000000' };
  const r = await runCli(['build', ownSpec, '-o', join(out, 'big.bundle'), '--unsigned', '--json'], env);
  t.is(r.code, 1);
  t.is(r.json.error?.code, 'E_DIGEST_MISMATCH');
  t.is(r.json.error?.details['expected'], layer.digest);
  t.deepEqual(await readdir(out), [], 'no bundle and no temp file');

  await handle.write(original, 0, 1, 3_000_000);
  await handle.close();
  // strace is the outside witness of the syncs: flushes while writing (fdatasync), then the file and its folder (fsync).
  const log = join(own, 'sync.strace');
  await execa('strace', ['-f', '-qq', '-e', 'trace=fsync,fdatasync', '-o', log, 'node', BIN, 'build', ownSpec, '-o', join(out, 'big.bundle'), '--unsigned', '--no-progress'], { env });
  const calls = (await readFile(log, 'utf8')).split('\n');
  t.true(calls.filter((l) => /\bfdatasync\(/.test(l)).length >= 1, 'flushed while written');
  t.true(calls.filter((l) => /\bfsync\(/.test(l)).length >= 2, 'the bundle and its folder are synced');
  const sequential = await buildBundle(ownSpec, { output: join(own, 'sequential.bundle'), created: new Date(1790000000 * 1000), hashThreadFrom: Number.POSITIVE_INFINITY });
  t.true(sequential.write.size > HASH_THREAD_MIN_BYTES);
  t.is(await sha256(join(out, 'big.bundle')), await sha256(join(own, 'sequential.bundle')), 'the same bytes as the build hashed on the main thread');
  // Profiled (`--cpu-prof-interval N` is two arguments): the thread starts with the flag's value
  // too, and profiles itself beside the main thread.
  const profiles = join(own, 'profiles');
  await execa('node', ['--cpu-prof', '--cpu-prof-dir', profiles, '--cpu-prof-interval', '500', BIN, 'build', ownSpec, '-o', join(out, 'profiled.bundle'), '--unsigned', '--no-progress'], { env });
  const lanes = Math.min(2, defaultLanes());
  t.is((await readdir(profiles)).filter((f) => f.endsWith('.cpuprofile')).length, 1 + lanes, `the main thread and ${lanes} hashing thread(s) each wrote a profile`);
});

test('the CLI building in lanes, with a layer cut short (found as a lane opens it, while the other lane copies), exits 1 with one JSON error naming that layer, and leaves no temp file: no crash on a rejection not yet awaited', async (t) => {
  const own = await tempDir(t);
  const big = Math.ceil(HASH_THREAD_MIN_BYTES / 2) + 1_000_000;
  await buildRandomImage(join(own, 'layout'), 'big', [big, big, big, big, 700_000], 'cut');
  const ownSpec = join(own, 'release.yaml');
  await writeFile(ownSpec, `apiVersion: seabag.dev/v1\nkind: Release\nname: big\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/big:1.0.0\n    from: oci:${join(own, 'layout')}:big\n`);
  const out = join(own, 'out');
  await mkdir(out);
  for (const which of [1, 3]) {
    const layer = (await layersOf(join(own, 'layout'), 'big'))[which] as Descriptor;
    const path = join(own, 'layout', 'blobs', 'sha256', layer.digest.slice(7));
    const saved = await readFile(path);
    await writeFile(path, saved.subarray(0, layer.size - 1));
    try {
      // The executable itself (node's own handling of a rejection no one awaits is what is tested).
      const r = await execa('node', [BIN, 'build', ownSpec, '-o', join(out, 'big.bundle'), '--unsigned', '--json'], { reject: false, env: { SOURCE_DATE_EPOCH: '1790000000' } });
      t.is(r.exitCode, 1, `layer ${which}: ${r.stderr.slice(0, 300)}`);
      const json = JSON.parse(r.stdout || '{}') as { error?: { code: string; details: Record<string, unknown> } };
      t.is(json.error?.code, 'E_SIZE_MISMATCH', `layer ${which}: ${r.stderr.slice(0, 300)}`);
      t.is(json.error?.details['digest'], layer.digest, `layer ${which}`);
      t.deepEqual(await readdir(out), [], `layer ${which}: no bundle and no temp file`);
    } finally {
      await writeFile(path, saved);
    }
  }
});

test.serial('a bundle written where the filesystem is not known to keep holes (a FAT stick; here a ramfs) is written in order by one hashing thread, the same bytes as in lanes on ext4 and tmpfs', async (t) => {
  t.true(await keepsHoles(dir), 'ext4 keeps holes');
  t.true(await keepsHoles('/dev/shm'), 'tmpfs keeps holes');
  t.false(await keepsHoles('/proc'), 'procfs is not known');
  const own = await tempDir(t);
  const stick = join(own, 'stick');
  await mkdir(stick);
  try {
    await execa('mount', ['-t', 'ramfs', '-o', 'mode=0755', 'ramfs', stick]);
  } catch {
    t.log('skipped the ramfs half: mounting needs root with CAP_SYS_ADMIN');
    return;
  }
  t.teardown(() => execa('umount', ['-l', stick]).catch(() => undefined));
  t.false(await keepsHoles(stick), 'ramfs is not one known to keep holes');
  // Two lanes' worth of layers, as the CLI test above.
  const big = Math.ceil(HASH_THREAD_MIN_BYTES / 2) + 1_000_000;
  await buildRandomImage(join(own, 'layout'), 'big', [big, big, big, big], 'holes');
  const ownSpec = join(own, 'release.yaml');
  await writeFile(ownSpec, `apiVersion: seabag.dev/v1\nkind: Release\nname: big\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/big:1.0.0\n    from: oci:${join(own, 'layout')}:big\n`);
  const env = { SOURCE_DATE_EPOCH: '1790000000' };
  const threads = async (output: string): Promise<number> => {
    const profiles = join(own, `profiles-${basename(dirname(output))}`);
    await execa('node', ['--cpu-prof', '--cpu-prof-dir', profiles, BIN, 'build', ownSpec, '-o', output, '--unsigned', '--no-progress'], { env });
    return (await readdir(profiles)).filter((f) => f.endsWith('.cpuprofile')).length - 1;
  };
  await mkdir(join(own, 'ext4'));
  t.is(await threads(join(own, 'ext4', 'x.bundle')), Math.min(2, defaultLanes()), 'on ext4: a lane per core');
  t.is(await threads(join(stick, 'x.bundle')), 1, 'on the ramfs: one hashing thread, in order');
  t.is(await sha256(join(stick, 'x.bundle')), await sha256(join(own, 'ext4', 'x.bundle')), 'the same bytes');
});

