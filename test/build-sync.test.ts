/**
 * `bundle build --no-sync`: the same bytes, without the fsyncs (scratch builds only). strace is the
 * outside witness that the default build syncs the bundle before naming it and --no-sync does not.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { closeSync, fdatasyncSync, openSync, readdirSync } from 'node:fs';
import { mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { isSeabagError } from '../lib/index.js';
import { writeBundle, type BundleEntry } from '../lib/bundle/writer.js';
import type { Descriptor } from '../lib/oci/descriptor.js';
import type { RangeReader } from '../lib/oci/store.js';
import { BIN, runCli } from './helpers/cli.js';
import { buildRandomImage } from './helpers/images.js';
import { tempDir } from './helpers/tools.js';

const env = { SOURCE_DATE_EPOCH: '1790000000' };

async function syncCalls(log: string): Promise<number> {
  return (await readFile(log, 'utf8')).split('\n').filter((l) => /\b(fsync|fdatasync)\(/.test(l)).length;
}

test('build fsyncs the bundle by default; --no-sync writes the same bytes with no fsync at all', async (t) => {
  const dir = await tempDir(t);
  await runCli(['keygen', join(dir, 'release.key')]);
  await buildRandomImage(join(dir, 'layout'), 'app', [200_000, 300_000], 'sync');
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: app\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/app:1.0.0\n    from: oci:${join(dir, 'layout')}:app\n`);
  const run = async (name: string, extra: string[]): Promise<number> => {
    const log = join(dir, `${name}.strace`);
    await execa('strace', ['-f', '-qq', '-e', 'trace=fsync,fdatasync', '-o', log, 'node', BIN, 'build', spec, '-o', join(dir, name), '--sign', join(dir, 'release.key'), '--no-progress', ...extra], { env });
    return syncCalls(log);
  };
  t.true((await run('synced.bundle', [])) >= 2, 'the bundle and its folder are synced');
  t.is(await run('scratch.bundle', ['--no-sync']), 0, 'nothing is synced');
  t.deepEqual(await readFile(join(dir, 'scratch.bundle')), await readFile(join(dir, 'synced.bundle')));
});

/** Whether this machine lets us mount a tmpfs and attach a loop device: root with CAP_SYS_ADMIN. */
async function canMountLoop(dir: string): Promise<boolean> {
  try {
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
    await execa('umount', [dir]);
    await execa('losetup', ['-f']);
    return true;
  } catch {
    return false;
  }
}

/** `canMountLoop`, or the test passes with a note that it was skipped. */
async function canMountLoopOrSkip(t: ExecutionContext, dir: string): Promise<boolean> {
  if (await canMountLoop(dir)) return true;
  t.log('skipped: mounting a tmpfs and a loop device needs root with CAP_SYS_ADMIN');
  t.pass();
  return false;
}

/**
 * A stick that holds less than it claims (a fake-capacity stick, or one failing for a while): ext4
 * of 128 MiB on a loop device whose file lives on a tmpfs of 6 MiB. Writes land in the page cache;
 * their write-back past ~5 MiB fails, and the next fdatasync or fsync of the file reports it, once.
 * Remounting `backing` larger gives it room again. The stick is mounted at `dir`/NAME.
 */
async function fakeStick(t: ExecutionContext, dir: string, name: string): Promise<{ mnt: string; backing: string }> {
  const backing = join(dir, `${name}.backing`);
  const mnt = join(dir, name);
  await mkdir(backing);
  await mkdir(mnt);
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', backing]);
  t.teardown(() => execa('umount', ['-l', backing]).catch(() => undefined));
  await execa('truncate', ['-s', '128M', join(backing, 'disk')]);
  const loop = (await execa('losetup', ['-f', '--show', join(backing, 'disk')])).stdout.trim();
  t.teardown(() => execa('losetup', ['-d', loop]).catch(() => undefined));
  await execa('mkfs.ext4', ['-q', '-O', '^has_journal', '-E', 'lazy_itable_init=1,nodiscard', loop]);
  await execa('mount', [loop, mnt]);
  t.teardown(() => execa('umount', ['-l', mnt]).catch(() => undefined));
  return { mnt, backing };
}

/** The entries of a bundle of exactly `total` bytes: a layout marker and `count` blobs from real files in `dir`. */
async function exactBundle(dir: string, total: number, count = 1): Promise<BundleEntry[]> {
  // A header for the marker and for each blob, the marker's block, the two zero blocks at the end.
  const data = total - (4 + count) * 512;
  const each = Math.floor(data / count / 512) * 512;
  const entries: BundleEntry[] = [{ name: 'oci-layout', data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') }];
  for (let i = 0; i < count; i += 1) {
    const size = i === count - 1 ? data - each * (count - 1) : each;
    const bytes = randomBytes(size);
    const path = join(dir, `blob${i}`);
    await writeFile(path, bytes);
    const desc: Descriptor = { mediaType: 'application/octet-stream', digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size };
    entries.push({
      name: `blobs/sha256/${desc.digest.slice(7)}`,
      desc,
      reader: async (): Promise<RangeReader> => {
        const handle = await open(path, 'r');
        return { size, read: async (target, position) => (await handle.read(target, 0, target.length, position)).bytesRead, close: () => handle.close() };
      },
    });
  }
  return entries;
}

/** The bytes between flushes of a bundle while it is written (lib/bundle/writer.ts FLUSH_EVERY). */
const FLUSH_EVERY = 32 * 1024 * 1024;

test.serial('a flush whose write-back failed fails the write, though the fsync after it succeeds (the kernel reports a lost write-back once): nothing is named, nothing left, in order and in lanes', async (t) => {
  const dir = await tempDir(t);
  if (!(await canMountLoopOrSkip(t, dir))) return;
  await mkdir(join(dir, 'one'));
  await mkdir(join(dir, 'two'));
  // Bundles of exactly FLUSH_EVERY bytes: the last write starts the flush.
  const rounds = [
    ['in order', await exactBundle(join(dir, 'one'), FLUSH_EVERY), { hashThreadFrom: Number.POSITIVE_INFINITY }],
    ['in two lanes', await exactBundle(join(dir, 'two'), FLUSH_EVERY, 2), { hashThreadFrom: 0, hashLanes: 2 }],
  ] as const;
  for (const [what, entries, options] of rounds) {
    const { mnt, backing } = await fakeStick(t, dir, what.replace(/ /g, '-'));
    const written = writeBundle(join(mnt, 'release.bundle'), entries, {
      ...options,
      onProgress: (p) => {
        if (p.done !== p.total) return;
        // Every byte is written: the stick loses them on their way (our own sync waits for that
        // write-back), then works again, so the fsync before the rename finds nothing wrong.
        const temp = readdirSync(mnt).find((f) => f.endsWith('.tmp')) as string;
        const fd = openSync(join(mnt, temp), 'r');
        try {
          fdatasyncSync(fd);
        } catch {
          // the loss, reported to this descriptor; the writer's own learns of it at its flush
        } finally {
          closeSync(fd);
        }
        execFileSync('mount', ['-o', 'remount,size=512m', backing]);
      },
    });
    const err = await t.throwsAsync(written, undefined, `${what}: a bundle whose bytes were lost is not named`);
    t.true(isSeabagError(err) && (err.code === 'E_IO' || err.code === 'E_DISK_FULL'), `${what}: ${String(err)}`);
    t.deepEqual((await readdir(mnt)).filter((f) => f !== 'lost+found'), [], `${what}: nothing named, no temp file left`);
  }
});

test.serial('a write whose fsync fails closes the file it wrote: the stick can be unmounted at once, the temp file\'s space is given back', async (t) => {
  const dir = await tempDir(t);
  if (!(await canMountLoopOrSkip(t, dir))) return;
  const entries = await exactBundle(dir, FLUSH_EVERY - 1024 * 1024);
  const { mnt } = await fakeStick(t, dir, 'stick');
  const err = await t.throwsAsync(writeBundle(join(mnt, 'release.bundle'), entries, { hashThreadFrom: Number.POSITIVE_INFINITY }));
  t.true(isSeabagError(err) && (err.code === 'E_IO' || err.code === 'E_DISK_FULL'), String(err));
  t.deepEqual((await readdir(mnt)).filter((f) => f !== 'lost+found'), [], 'nothing named, no temp file left');
  // No descriptor of this process is left on the stick (a leaked one would hold the removed
  // temp file's blocks, and make umount fail with "target is busy").
  await t.notThrowsAsync(execa('umount', [mnt]), 'the stick is not busy');
});
