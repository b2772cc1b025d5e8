import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromSystemError, SeabagError } from '../errors.js';
import { fsyncDir, tempPathFor } from './atomic.js';

/** Reads of 1 MiB: large enough that hashing, not syscalls, sets the pace. */
export const READ_CHUNK = 1024 * 1024;

/** A read stream over `[start, start + length)` of a file, in 1 MiB chunks. */
export function readRange(path: string, start: number, length: number): Readable {
  if (length === 0) return createReadStream(path, { start: 0, end: -1, highWaterMark: READ_CHUNK });
  return createReadStream(path, { start, end: start + length - 1, highWaterMark: READ_CHUNK });
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

/** Size of a file, or undefined when there is none. */
export async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, 'stat', path);
  }
}
