/**
 * Verify hashes different blobs on different threads (and a split bundle's parts in the same
 * pass as its blobs). The parallel paths must report exactly what a sequential pass would: the
 * damaged blob by name (the first in file order when there are several), a bad part by name, and
 * progress that counts every byte once and ends at the total. Two lanes are forced, and the size
 * floor below which verify stays on one thread is lifted, so these small bundles take the
 * parallel path.
 */
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import test from 'ava';
import { FileSource, isSeabagError, loadRoot, openBundle, resolveBundleInput, verifyBundle, verifyParts, type PartsFile, type Progress, type TrustRoot } from '../lib/index.js';
import { hashLanes, workerArgs, type HashJob } from '../lib/bundle/hash-lanes.js';
import { prestartHashThreads, takeThreads } from '../lib/bundle/lane-threads.js';
import { runCli, spawnCli } from './helpers/cli.js';
import { flipByte } from './helpers/bundles.js';
import { buildRandomImage } from './helpers/images.js';
import { tempDir } from './helpers/tools.js';

const LANES = { lanes: 2, minParallelBytes: 0 };
const LAYERS = [300_000, 90_000, 520_000, 64_000, 410_000, 150_000, 700_000, 230_000];

let dir: string;
let bundle: string;
let parts: string;
let trust: TrustRoot;
/** A trust root whose release key did not sign the bundle. */
let strangerTrust: TrustRoot;
/** The 8 layer blobs, in file order, with where their bytes sit. */
let layers: { digest: string; offset: number; size: number }[];
/** A bundle of one big layer, and the same split in 1 MiB parts (the layer crosses them all). */
let one: string;
let oneParts: string;
let oneLayer: { digest: string; offset: number; size: number };

/** The shared folder's removal, run once every test is done. */
const cleanups: (() => void | Promise<void>)[] = [];
test.after.always(async () => {
  for (const fn of cleanups) await fn();
});

test.before(async () => {
  dir = await tempDir({ teardown: (fn) => void cleanups.push(fn) }, 'seabag-parallel-');
  const ok = async (args: string[]): Promise<void> => {
    const r = await runCli(args, { SOURCE_DATE_EPOCH: '1790000000' });
    if (r.code !== 0) throw new Error(`bundle ${args.join(' ')}: ${r.stderr}`);
  };
  await ok(['keygen', join(dir, 'root.key')]);
  await ok(['keygen', join(dir, 'release.key')]);
  await ok(['trust', 'init', '--root-key', join(dir, 'root.key.pub'), '--release-key', join(dir, 'release.key.pub'), '--sign', join(dir, 'root.key'), '-o', join(dir, 'trust.json')]);
  await buildRandomImage(join(dir, 'layout'), 'eight', LAYERS, 'parallel');
  await writeFile(join(dir, 'release.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: eight\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/eight:1.0.0\n    from: oci:${join(dir, 'layout')}:eight\n`);
  bundle = join(dir, 'eight.bundle');
  await ok(['build', join(dir, 'release.yaml'), '-o', bundle, '--sign', join(dir, 'release.key')]);
  await mkdir(join(dir, 'split'));
  await ok(['build', join(dir, 'release.yaml'), '-o', join(dir, 'split', 'eight.bundle'), '--sign', join(dir, 'release.key'), '--split', '1M']);
  parts = join(dir, 'split', 'eight.bundle.parts.json');
  trust = (await loadRoot(join(dir, 'trust.json'))).root;
  await ok(['keygen', join(dir, 'stranger.key')]);
  await ok(['trust', 'init', '--root-key', join(dir, 'root.key.pub'), '--release-key', join(dir, 'stranger.key.pub'), '--sign', join(dir, 'root.key'), '-o', join(dir, 'stranger.json')]);
  strangerTrust = (await loadRoot(join(dir, 'stranger.json'))).root;
  await buildRandomImage(join(dir, 'layout'), 'one', [3_600_000], 'one-big-layer');
  await writeFile(join(dir, 'one.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: one\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/one:1.0.0\n    from: oci:${join(dir, 'layout')}:one\n`);
  one = join(dir, 'one.bundle');
  await ok(['build', join(dir, 'one.yaml'), '-o', one, '--sign', join(dir, 'release.key')]);
  await mkdir(join(dir, 'one-split'));
  await ok(['build', join(dir, 'one.yaml'), '-o', join(dir, 'one-split', 'one.bundle'), '--sign', join(dir, 'release.key'), '--split', '1M']);
  oneParts = join(dir, 'one-split', 'one.bundle.parts.json');
  const openedOne = await openBundle(one);
  try {
    const [digest, e] = [...openedOne.archive.blobs.entries()].sort(([, a], [, b]) => b.size - a.size)[0] as [string, { dataOffset: number; size: number }];
    oneLayer = { digest, offset: e.dataOffset, size: e.size };
  } finally {
    await openedOne.archive.close();
  }
  const opened = await openBundle(bundle);
  try {
    layers = [...opened.archive.blobs.entries()]
      .filter(([, e]) => e.size > 64_000)
      .map(([digest, e]) => ({ digest, offset: e.dataOffset, size: e.size }))
      .sort((a, b) => a.offset - b.offset);
  } finally {
    await opened.archive.close();
  }
});

async function damaged(t: { title: string }, offsets: number[]): Promise<string> {
  const copy = join(dir, `${t.title.replace(/\W+/g, '-').slice(0, 60)}-${offsets.join('-')}.bundle`);
  await copyFile(bundle, copy);
  for (const o of offsets) await flipByte(copy, o);
  return copy;
}

test('the 8 layers are the bundle’s large blobs, one per layer', (t) => {
  t.is(layers.length, 8);
  t.deepEqual(new Set(layers.map((l) => l.size)).size, 8);
});

test('a flipped byte in any one of 8 blobs names that blob when blobs are hashed on two threads', async (t) => {
  for (const [i, layer] of layers.entries()) {
    const copy = await damaged(t, [layer.offset + Math.floor((layer.size * (i + 1)) / 10)]);
    const err = await t.throwsAsync(verifyBundle(copy, { trust, ...LANES }));
    t.true(isSeabagError(err) && err.code === 'E_DIGEST_MISMATCH', `blob ${i}: ${String(err)}`);
    t.is((err as { details?: { expected?: string } }).details?.expected, layer.digest, `blob ${i} is named`);
    t.regex(err?.message ?? '', new RegExp(layer.digest.slice(7)));
  }
});

test('with two damaged blobs on different threads, the first in file order is named', async (t) => {
  // The later blob is the larger (so it is handed out first): the earlier one must still win.
  const [a, b] = [layers[1], layers[6]] as [(typeof layers)[number], (typeof layers)[number]];
  const copy = await damaged(t, [a.offset + 10, b.offset + 10]);
  const err = await t.throwsAsync(verifyBundle(copy, { trust, ...LANES }));
  t.is((err as { details?: { expected?: string } }).details?.expected, a.digest);
});

test('progress of two-thread hashing counts every byte once and ends at the total', async (t) => {
  const events: Progress[] = [];
  const report = await verifyBundle(bundle, { trust, ...LANES, onProgress: (p) => events.push(p) });
  const verify = events.filter((p) => p.phase === 'verify');
  const perItem = new Map<string, number>();
  let last = 0;
  for (const p of verify) {
    t.true(p.done >= last, 'progress never goes back');
    t.is(p.total, report.blobs.bytes);
    if (p.item !== undefined) perItem.set(p.item, (perItem.get(p.item) ?? 0) + (p.done - last));
    last = p.done;
  }
  t.is(last, report.blobs.bytes, 'ends at the total');
  for (const layer of layers) t.is(perItem.get(layer.digest), layer.size, `${layer.digest} counted once`);
  t.is(report.blobs.verified, [...(await readFile(bundle)).toString('latin1').matchAll(/blobs\/sha256\/[a-f0-9]{64}\0/g)].length);
});

test('a split bundle is verified with no separate pass over its parts, and progress is the parts’ bytes, once', async (t) => {
  const input = await resolveBundleInput(parts);
  t.true(input.pieces.length >= 3, `${input.pieces.length} parts`);
  const events: Progress[] = [];
  await verifyBundle(parts, { trust, ...LANES, onProgress: (p) => events.push(p) });
  t.false(events.some((p) => p.phase === 'check parts'), 'no separate pass over the parts');
  const verify = events.filter((p) => p.phase === 'verify');
  const size = input.pieces.reduce((s, p) => s + p.size, 0);
  t.is(verify.at(-1)?.done, size);
  let last = 0;
  for (const p of verify) {
    t.true(p.done >= last);
    last = p.done;
  }
});

test('one pass over a split bundle still names the bad part (in a layer, and in a tar header)', async (t) => {
  const input = await resolveBundleInput(parts);
  for (const [i, piece] of input.pieces.entries()) {
    const copyDir = join(dir, `split-bad-${i}`);
    await mkdir(copyDir, { recursive: true });
    for (const p of input.pieces) await copyFile(p.path, join(copyDir, p.path.split('/').at(-1) as string));
    await copyFile(parts, join(copyDir, 'eight.bundle.parts.json'));
    const name = piece.path.split('/').at(-1) as string;
    // Part 1 is damaged in its first tar header (the archive cannot even be read), the others
    // in the middle (inside a layer).
    await flipByte(join(copyDir, name), i === 0 ? 100 : Math.floor(piece.size / 2));
    const err = await t.throwsAsync(verifyBundle(join(copyDir, 'eight.bundle.parts.json'), { trust, ...LANES }));
    t.true(isSeabagError(err) && err.code === 'E_PART_CORRUPT', `part ${name}: ${String(err)}`);
    t.is((err as { details?: { part?: string } }).details?.part, name);
  }
});

test('hashing runs beside admission, yet a bundle refused by admission is reported as refused, not as a damaged blob', async (t) => {
  const layer = layers[7] as (typeof layers)[number];
  const copy = await damaged(t, [layer.offset + 5]);
  const events: Progress[] = [];
  const err = await t.throwsAsync(verifyBundle(copy, { trust: strangerTrust, ...LANES, onProgress: (p) => events.push(p) }));
  t.true(isSeabagError(err) && err.code === 'E_KEY_UNTRUSTED', String(err));
  // With the signer trusted, the same bytes are refused for the damaged blob.
  const err2 = await t.throwsAsync(verifyBundle(copy, { trust, ...LANES }));
  t.is((err2 as { details?: { expected?: string } }).details?.expected, layer.digest);
});

test('import’s check of the parts runs them on two threads and names the first bad part', async (t) => {
  const input = await resolveBundleInput(parts);
  const copyDir = join(dir, 'parts-two-bad');
  await mkdir(copyDir, { recursive: true });
  for (const p of input.pieces) await copyFile(p.path, join(copyDir, p.path.split('/').at(-1) as string));
  await copyFile(parts, join(copyDir, 'eight.bundle.parts.json'));
  const names = input.pieces.map((p) => p.path.split('/').at(-1) as string);
  // The last part and the second are damaged: the second is named, whichever thread ends first.
  await flipByte(join(copyDir, names.at(-1) as string), 7);
  await flipByte(join(copyDir, names[1] as string), 7);
  const copied = await resolveBundleInput(join(copyDir, 'eight.bundle.parts.json'));
  const events: Progress[] = [];
  const err = await t.throwsAsync(verifyParts(copied, { ...LANES, onProgress: (p) => events.push(p) }));
  t.true(isSeabagError(err) && err.code === 'E_PART_CORRUPT');
  t.is((err as { details?: { part?: string } }).details?.part, names[1]);
  // Intact parts: progress ends at the bundle's size, counted once.
  const ok: Progress[] = [];
  await verifyParts(input, { ...LANES, onProgress: (p) => ok.push(p) });
  t.is(ok.at(-1)?.done, input.parts?.size);
  t.true(ok.every((p, i) => i === 0 || p.done >= (ok[i - 1] as Progress).done));
});

/** A copy of a split bundle's folder, to damage. */
async function copySplit(partsFile: string, name: string): Promise<{ parts: string; pieces: string[] }> {
  const input = await resolveBundleInput(partsFile);
  const copyDir = join(dir, name);
  await mkdir(copyDir, { recursive: true });
  const pieces: string[] = [];
  for (const p of input.pieces) {
    pieces.push(join(copyDir, basename(p.path)));
    await copyFile(p.path, pieces.at(-1) as string);
  }
  await copyFile(partsFile, join(copyDir, basename(partsFile)));
  return { parts: join(copyDir, basename(partsFile)), pieces };
}

test('one big layer: a flipped byte in it is named, on one thread and with a second thread beside it', async (t) => {
  const copy = join(dir, 'one-flipped.bundle');
  await copyFile(one, copy);
  await flipByte(copy, oneLayer.offset + Math.floor(oneLayer.size * 0.7));
  for (const options of [{}, LANES]) {
    const err = await t.throwsAsync(verifyBundle(copy, { trust, ...options }));
    t.true(isSeabagError(err) && err.code === 'E_DIGEST_MISMATCH', String(err));
    t.like((err as { details?: object }).details, { expected: oneLayer.digest, file: copy, offset: oneLayer.offset });
  }
  const report = await verifyBundle(one, { trust, ...LANES });
  t.is(report.blobs.bytes >= oneLayer.size, true);
});

test('a split one-layer bundle: parts and the layer crossing them are hashed on two threads; progress rises to the size, once', async (t) => {
  const input = await resolveBundleInput(oneParts);
  t.true(input.pieces.length >= 4, `${input.pieces.length} parts`);
  const size = input.pieces.reduce((s, p) => s + p.size, 0);
  const events: Progress[] = [];
  const report = await verifyBundle(oneParts, { trust, ...LANES, onProgress: (p) => events.push(p) });
  t.is(report.blobs.verified, (await verifyBundle(one, { trust })).blobs.verified);
  const verify = events.filter((p) => p.phase === 'verify');
  t.false(events.some((p) => p.phase === 'check parts'), 'no separate pass over the parts');
  t.true(verify.every((p, i) => p.total === size && (i === 0 || p.done >= (verify[i - 1] as Progress).done)), 'monotonic, out of the size');
  t.is(verify.at(-1)?.done, size);
});

test('a split one-layer bundle with a bad part names that part, not the layer it damaged, whichever part it is', async (t) => {
  const { pieces } = await copySplit(oneParts, 'one-split-names');
  for (const [i, piece] of pieces.entries()) {
    if (i === 0) continue; // part 1 holds the tar headers (the tar-header case is tested above)
    const { parts, pieces: damaged } = await copySplit(oneParts, `one-split-bad-${i}`);
    await flipByte(damaged[i] as string, 1000);
    const err = await t.throwsAsync(verifyBundle(parts, { trust, ...LANES }));
    t.true(isSeabagError(err) && err.code === 'E_PART_CORRUPT', `part ${i + 1}: ${String(err)}`);
    t.is((err as { details?: { part?: string } }).details?.part, basename(piece));
  }
  // Two bad parts, both inside the layer: the first is named.
  const { parts, pieces: two } = await copySplit(oneParts, 'one-split-two-bad');
  await flipByte(two.at(-1) as string, 10);
  await flipByte(two[1] as string, 10);
  const err = await t.throwsAsync(verifyBundle(parts, { trust, ...LANES }));
  t.is((err as { details?: { part?: string } }).details?.part, basename(two[1] as string));
});

test('a split bundle whose parts match their sums but whose layer does not: the layer is named, with the part and offset where it starts', async (t) => {
  // The parts file is rewritten to the damaged part's sha256 (a bundle damaged before it was split).
  const { parts, pieces } = await copySplit(oneParts, 'one-split-bad-blob');
  const victim = pieces[2] as string;
  await flipByte(victim, 4096);
  const doc = JSON.parse(await readFile(parts, 'utf8')) as PartsFile;
  (doc.parts[2] as PartsFile['parts'][number]).sha256 = createHash('sha256').update(await readFile(victim)).digest('hex');
  await writeFile(parts, JSON.stringify(doc));
  const err = await t.throwsAsync(verifyBundle(parts, { trust, ...LANES }));
  t.true(isSeabagError(err) && err.code === 'E_DIGEST_MISMATCH', String(err));
  t.like((err as { details?: object }).details, { expected: oneLayer.digest, file: pieces[0], offset: oneLayer.offset });
});

const MIB = 1024 * 1024;

/** A job hashing `[start, end)` as one target, all of it counted. */
const wholeRange = (start: number, end: number): HashJob => ({ start, end, counted: end, targets: [{ start, end }] });

test('a file cut short after it was opened: E_ARCHIVE_TRUNCATED from whichever thread reads past its end', async (t) => {
  // A sparse 64 MiB file: the main thread takes the big job, a thread the small ones past the cut.
  const path = join(dir, 'cut.bin');
  await writeFile(path, '');
  await truncate(path, 64 * 1024 * 1024);
  const source = await FileSource.open(path, [path]);
  try {
    await truncate(path, 40 * 1024 * 1024);
    const jobs = [wholeRange(0, 32 * MIB), ...[0, 1, 2, 3].map((i) => wholeRange(48 * MIB + i * 4 * MIB, 52 * MIB + i * 4 * MIB))];
    const err = await t.throwsAsync(hashLanes(source, jobs, LANES));
    t.true(isSeabagError(err) && err.code === 'E_ARCHIVE_TRUNCATED', String(err));
  } finally {
    await source.close();
  }
});

test('an abort while every thread hashes stops them all: E_ABORTED, and no job is reported after it', async (t) => {
  const path = join(dir, 'abort.bin');
  await writeFile(path, '');
  await truncate(path, 64 * 1024 * 1024);
  const source = await FileSource.open(path, [path]);
  try {
    const jobs = Array.from({ length: 8 }, (_, i) => wholeRange(i * 8 * MIB, (i + 1) * 8 * MIB));
    const controller = new AbortController();
    let after = 0;
    const err = await t.throwsAsync(
      hashLanes(source, jobs, {
        ...LANES,
        signal: controller.signal,
        onBytes: () => controller.abort(new Error('stop')),
        onJob: () => {
          if (controller.signal.aborted) after += 1;
          return false;
        },
      }),
    );
    t.true(isSeabagError(err) && err.code === 'E_ABORTED', String(err));
    t.true(after <= 1, `${after} jobs reported after the abort`);
  } finally {
    await source.close();
  }
});

test('hashing threads get the profiling flags with their values, and none of the parent’s loaders', (t) => {
  // `node --cpu-prof-dir D --cpu-prof-interval 200` once made every thread fail to start.
  t.deepEqual(workerArgs(['--import', 'tsx', '--cpu-prof', '--cpu-prof-dir', '/tmp/p', '--cpu-prof-interval', '200', '--cpu-prof-name=x.cpuprofile']), [
    '--cpu-prof',
    '--cpu-prof-dir',
    '/tmp/p',
    '--cpu-prof-interval',
    '200',
    '--cpu-prof-name=x.cpuprofile',
  ]);
  t.deepEqual(workerArgs(['--import', 'tsx', '--enable-source-maps']), []);
});

const PRESTARTED = Symbol.for('seabag.hashThreads.prestarted');

test.serial('threads started ahead are taken by the next hashing, which gives the digests a sequential pass would', async (t) => {
  const path = join(dir, 'ahead.bin');
  await writeFile(path, Buffer.from(Array.from({ length: 3 * MIB }, (_, i) => (i * 7919) % 251)));
  const bytes = await readFile(path);
  const source = await FileSource.open(path, [path]);
  try {
    prestartHashThreads(2);
    t.not((globalThis as Record<symbol, unknown>)[PRESTARTED], undefined);
    const jobs = [wholeRange(0, 2 * MIB), wholeRange(2 * MIB, 3 * MIB), wholeRange(MIB, 3 * MIB)];
    const results = await hashLanes(source, jobs, LANES);
    t.is((globalThis as Record<symbol, unknown>)[PRESTARTED], undefined, 'taken (the one not needed is stopped)');
    t.deepEqual(
      results,
      jobs.map((j) => [createHash('sha256').update(bytes.subarray(j.start, j.end)).digest('hex')]),
    );
  } finally {
    await source.close();
  }
});

test.serial('a hashing that needs no thread stops those started ahead, and one that needs more starts the rest', async (t) => {
  prestartHashThreads(1);
  t.deepEqual(await takeThreads(0), []);
  t.is((globalThis as Record<symbol, unknown>)[PRESTARTED], undefined);
  prestartHashThreads(1);
  const threads = await takeThreads(2);
  try {
    t.is(threads.length, 2);
    t.true(threads.every((w) => w.threadId > 0));
  } finally {
    await Promise.all(threads.map((w) => w.terminate()));
  }
});

test.serial('a thread asked for ahead is made at once, while the caller still runs (the program loads synchronously after asking), not once it is done', async (t) => {
  const before = readdirSync('/proc/self/task').length;
  prestartHashThreads(1);
  // Counted before this test yields: an import() of node:worker_threads would only make the thread after.
  const counted = readdirSync('/proc/self/task').length;
  t.is(counted, before + 1, 'one more thread in the process as soon as it is asked for');
  t.deepEqual(await takeThreads(0), []);
});

test('the executable starts a split bundle’s hashing thread ahead: a whole bundle passes, a bad part is named, and an unneeded thread does not hold the process open', async (t) => {
  // Big enough (30 MB in 5 parts: the layer and the parts, 60 MB of hashing) for verify to take a
  // second thread, through dist/seabag.mjs, whose entry starts it before the program loads.
  await buildRandomImage(join(dir, 'layout'), 'ahead', [30_000_000], 'ahead-layer');
  await writeFile(join(dir, 'ahead.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: ahead\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/ahead:1.0.0\n    from: oci:${join(dir, 'layout')}:ahead\n`);
  await mkdir(join(dir, 'ahead-split'));
  const built = await runCli(['build', join(dir, 'ahead.yaml'), '-o', join(dir, 'ahead-split', 'ahead.bundle'), '--sign', join(dir, 'release.key'), '--split', '7M'], { SOURCE_DATE_EPOCH: '1790000000' });
  t.is(built.code, 0, built.stderr);
  const aheadParts = join(dir, 'ahead-split', 'ahead.bundle.parts.json');
  const trustFile = join(dir, 'trust.json');
  const whole = await spawnCli(['verify', aheadParts, '--trust', trustFile, '--no-progress']);
  t.is(whole.exitCode, 0, whole.all);
  const { parts: bad, pieces } = await copySplit(aheadParts, 'ahead-bad');
  await flipByte(pieces[2] as string, 5000);
  const refused = await spawnCli(['verify', bad, '--trust', trustFile, '--no-progress', '--json']);
  t.is(refused.exitCode, 1, refused.all);
  t.like(JSON.parse(refused.stdout) as object, { error: { code: 'E_PART_CORRUPT', details: { part: basename(pieces[2] as string) } } });
  // Too small for a second thread (and named by a part, not the parts file): the thread started
  // ahead is stopped unused. A part missing: refused before any hashing, and the thread started
  // ahead, never taken, does not hold the process open (else these would hang).
  const small = await spawnCli(['verify', `${oneParts.slice(0, -'.parts.json'.length)}.001`, '--trust', trustFile, '--no-progress']);
  t.is(small.exitCode, 0, small.all);
  await rm(pieces[3] as string);
  const missing = await spawnCli(['verify', bad, '--trust', trustFile, '--no-progress', '--json']);
  t.is(missing.exitCode, 1, missing.all);
  t.like(JSON.parse(missing.stdout) as object, { error: { code: 'E_PART_MISSING' } });
});
