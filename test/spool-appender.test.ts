/**
 * The spool appender (lib/satellite/appender.ts): a download's bytes reach its spool file in
 * batches, around the page cache on Linux. What a kill can leave must always be a true prefix of
 * the download (the resume trusts the file's length), wherever the download resumed (any offset,
 * not only a block boundary) and however it was flushed on the way; `fincore` (util-linux) is the
 * outside witness that the bytes did not go through the page cache.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { isSeabagError } from '../lib/index.js';
import { openAppender, SPOOL_BATCH } from '../lib/satellite/appender.js';
import { seeded } from './helpers/web.js';
import { tempDir } from './helpers/tools.js';

const KiB = 1024;

/** Appends `data` from `start` in chunks of seeded random sizes, flushing at random points; checks the file after each step. */
async function download(t: import('ava').ExecutionContext, options: { direct: boolean; start: number; seed: number }): Promise<{ data: Buffer; path: string; direct: boolean }> {
  const dir = await tempDir(t, 'seabag-appender-');
  const path = join(dir, 'blob.partial');
  const data = randomBytes(5 * SPOOL_BATCH + 12_345);
  await writeFile(path, data.subarray(0, options.start));
  const handle = await open(path, 'r+');
  const random = seeded(options.seed);
  let direct = false;
  try {
    const appender = await openAppender(handle, path, options.start, { direct: options.direct });
    direct = appender.direct;
    let at = options.start;
    while (at < data.length) {
      const n = Math.min(data.length - at, 1 + Math.floor(random() * 200 * KiB));
      await appender.append(Buffer.from(data.subarray(at, at + n)));
      at += n;
      t.is(appender.position, at);
      if (random() < 0.15) {
        await appender.flush();
        t.true((await readFile(path)).equals(data.subarray(0, at)), `after a flush at ${at}, the file is the download's first ${at} bytes`);
      } else if (random() < 0.3) {
        // Between flushes (where a kill may come), the file is some prefix of the download.
        const now = await readFile(path);
        t.true(now.length <= at && now.equals(data.subarray(0, now.length)), `at ${at}: the file's ${now.length} bytes are not a prefix of the download`);
      }
    }
    await appender.close();
  } finally {
    await handle.close();
  }
  t.true((await readFile(path)).equals(data), 'the file is the whole download');
  return { data, path, direct };
}

test('around the page cache on Linux: a download resumed at an unaligned offset and flushed at random points is always a prefix in the file and ends whole', async (t) => {
  for (const [start, seed] of [[12_345, 7], [0, 11], [4096, 5]] as const) {
    const { direct } = await download(t, { direct: true, start, seed });
    t.is(direct, process.platform === 'linux', 'O_DIRECT on Linux, the page cache elsewhere');
  }
});

test('none of a direct download is left in the page cache but the bytes short of the last block (fincore)', async (t) => {
  t.timeout(60_000);
  if (process.platform !== 'linux') return t.pass('O_DIRECT is Linux only');
  const dir = await tempDir(t, 'seabag-appender-');
  const path = join(dir, 'blob.partial');
  const data = randomBytes(8 * SPOOL_BATCH + 100);
  const handle = await open(path, 'w+');
  try {
    const appender = await openAppender(handle, path, 0, { direct: true });
    t.true(appender.direct);
    for (let at = 0; at < data.length; at += 64 * KiB) await appender.append(data.subarray(at, at + 64 * KiB));
    await appender.close();
  } finally {
    await handle.close();
  }
  const resident = Number((await execa('fincore', ['--bytes', '--noheadings', '--output', 'RES', path])).stdout.trim());
  t.true(resident <= 4096, `${resident} bytes of ${data.length} in the page cache`);
  t.true((await readFile(path)).equals(data));
});

test('through the page cache when asked (a paced link, a pull): the same prefix guarantee, and every byte cached', async (t) => {
  const { path, direct } = await download(t, { direct: false, start: 4096 * 3 + 1, seed: 3 });
  t.false(direct);
  if (process.platform === 'linux') {
    const resident = Number((await execa('fincore', ['--bytes', '--noheadings', '--output', 'RES', path])).stdout.trim());
    t.true(resident > 5 * SPOOL_BATCH, `${resident} bytes cached`);
  }
});

test('resuming past the end of the spool file is E_IO, not a file with a hole in it', async (t) => {
  const dir = await tempDir(t, 'seabag-appender-');
  const path = join(dir, 'blob.partial');
  await writeFile(path, Buffer.alloc(5000, 1));
  const handle = await open(path, 'r+');
  try {
    for (const direct of [true, false]) {
      const err = await t.throwsAsync(openAppender(handle, path, 9000, { direct }));
      t.true(isSeabagError(err) && err.code === 'E_IO', String(err));
    }
    t.is((await handle.stat()).size, 5000);
  } finally {
    await handle.close();
  }
});
