import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromSystemError, SeabagError } from '../errors.js';
import { fsyncDir, tempPathFor } from './atomic.js';
import { BufferPool, COPY_CHUNK, readAhead } from './buffers.js';

/** Reads of 1 MiB: large enough that hashing, not syscalls, sets the pace. */
export const READ_CHUNK = 1024 * 1024;

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
