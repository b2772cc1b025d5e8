import { createHash } from 'node:crypto';
import { constants, createWriteStream, type Stats } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromSystemError, SeabagError, type ErrorCode } from '../errors.js';
import { fsyncDir, tempPathFor } from './atomic.js';
import { BufferPool, COPY_CHUNK, readAhead } from './buffers.js';

/** Reads of 1 MiB: large enough that hashing, not syscalls, sets the pace. */
export const READ_CHUNK = 1024 * 1024;

/** Largest manifest, device profile or `release.yaml` a spec may name. */
export const MAX_SPEC_FILE = 16 * 1024 * 1024;

/** Largest CA bundle read (`--ca-file`): the whole Mozilla store is about 200 KiB. */
export const MAX_CA_FILE = 4 * 1024 * 1024;

/** Largest docker `config.json` read. */
export const MAX_DOCKER_CONFIG = 4 * 1024 * 1024;

/** What a non-regular file is, for messages. */
export function fileKind(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a folder';
  return 'not a regular file';
}

/** E_USAGE: the user named something other than a regular file. */
export function notRegular(path: string, st: Stats, what: string): SeabagError {
  const kind = fileKind(st);
  return new SeabagError('E_USAGE', `${what} ${path} is ${kind}, not a regular file`, {
    details: { file: path, kind },
    hint: 'name a regular file (FIFOs, devices and links to them are never read)',
  });
}

/**
 * Opens a file named from outside (a flag, a spec, a stick) for reading, only if it is a regular
 * file, following symlinks. The open never blocks (`O_NONBLOCK`: a FIFO with no writer would
 * otherwise hang it) and the check is made on the opened handle, so what was checked is what is
 * read.
 *
 * @throws E_USAGE (a FIFO, a device, a socket, a folder, or a link to one), E_FILE_NOT_FOUND, E_IO
 */
export async function openRegularFile(path: string, what = 'file'): Promise<{ handle: FileHandle; stats: Stats }> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw fromSystemError(err, `read ${what}`, path);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw notRegular(path, stats, what);
    return { handle, stats };
  } catch (err) {
    await handle.close();
    throw fromSystemError(err, `read ${what}`, path);
  }
}

/**
 * Reads a whole small file named from outside: a regular file only (see `openRegularFile`), of at
 * most `maxBytes` (checked from its size before reading, and again while reading, in case it grows).
 *
 * Limits: `maxBytes`; regular files only.
 *
 * @throws E_USAGE (not a regular file), `tooLarge` (default E_USAGE) over `maxBytes`,
 *   E_FILE_NOT_FOUND, E_IO
 */
export async function readRegularFile(path: string, options: { maxBytes: number; what?: string; tooLarge?: ErrorCode }): Promise<Buffer> {
  const what = options.what ?? 'file';
  const { handle, stats } = await openRegularFile(path, what);
  const tooLarge = (): SeabagError =>
    new SeabagError(options.tooLarge ?? 'E_USAGE', `${what} ${path} is over the ${options.maxBytes}-byte limit`, {
      details: { file: path, limit: options.maxBytes },
    });
  try {
    if (stats.size > options.maxBytes) throw tooLarge();
    let buf = Buffer.alloc(Math.min(options.maxBytes + 1, stats.size + 1));
    let filled = 0;
    for (;;) {
      if (filled === buf.length) {
        if (filled > options.maxBytes) throw tooLarge();
        const bigger = Buffer.alloc(Math.min(options.maxBytes + 1, buf.length * 2));
        buf.copy(bigger);
        buf = bigger;
      }
      const { bytesRead } = await handle.read(buf, filled, buf.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buf.subarray(0, filled);
  } catch (err) {
    throw fromSystemError(err, `read ${what}`, path);
  } finally {
    await handle.close();
  }
}

/**
 * The hex sha256 of a whole file, reading ahead into two reused buffers while it hashes (the
 * loop verify uses, see `readAhead`).
 *
 * @throws E_FILE_NOT_FOUND, E_IO; E_SIZE_MISMATCH when the file shrinks while it is read
 */
export async function sha256File(path: string, onBytes?: (n: number) => void, signal?: AbortSignal): Promise<string> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw fromSystemError(err, 'read', path);
  }
  try {
    const { size } = await handle.stat();
    const hash = createHash('sha256');
    const pool = new BufferPool(2, Math.min(COPY_CHUNK, Math.max(1, size)));
    await readAhead(
      { read: async (target, at) => (await handle.read(target, 0, target.length, at)).bytesRead },
      size,
      pool,
      (chunk, buffer) => {
        hash.update(chunk);
        onBytes?.(chunk.length);
        pool.give(buffer);
      },
      (at) => new SeabagError('E_SIZE_MISMATCH', `${path} shrank to ${at} bytes while it was read`, { details: { file: path, expected: size, found: at } }),
      signal,
    );
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}

/**
 * Streams `source` through `transforms` into a new file at `path`, all or nothing: temp file,
 * fsync, rename, fsync the directory. On any error the temp file is removed and `path` is left
 * as it was.
 *
 * @throws whatever the source or transforms throw; E_DISK_FULL, E_IO from the file system
 */
export async function streamToFileAtomic(
  source: Readable,
  transforms: Transform[],
  path: string,
  options: { mode?: number; signal?: AbortSignal } = {},
): Promise<void> {
  const temp = tempPathFor(path);
  try {
    // `flush` fsyncs the file before its descriptor is closed.
    const sink = createWriteStream(temp, { flags: 'wx', mode: options.mode ?? 0o644, flush: true, highWaterMark: READ_CHUNK });
    const stages: (Readable | Transform | NodeJS.WritableStream)[] = [source, ...transforms, sink];
    await (pipeline as (...args: unknown[]) => Promise<void>)(...stages, options.signal === undefined ? {} : { signal: options.signal });
    await rename(temp, path);
    await fsyncDir(dirname(path));
  } catch (err) {
    source.destroy();
    await rm(temp, { force: true }).catch(() => undefined);
    if (err instanceof SeabagError) throw err;
    throw fromSystemError(err, 'write', path);
  }
}
