import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fromSystemError } from '../errors.js';

/** A temp name beside `path`, so the final rename never crosses a file system. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/** fsyncs a directory so a rename inside it survives a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    // Some file systems (and Windows) refuse to fsync a directory; the rename is still atomic.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw fromSystemError(err, 'sync directory', dir);
  } finally {
    await handle?.close();
  }
}

/**
 * Writes a whole file so that a reader sees the old content or the new, never a mix or an
 * empty file: temp file, fsync, rename, fsync the directory.
 *
 * @throws E_DISK_FULL, E_IO
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const temp = tempPathFor(path);
  let handle: FileHandle | undefined;
  try {
    handle = await open(temp, 'wx', mode);
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temp, path);
    await fsyncDir(dirname(path));
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await rm(temp, { force: true }).catch(() => undefined);
    throw fromSystemError(err, 'write', path);
  }
}

/** `writeFileAtomic` of pretty JSON with a trailing newline. */
export async function writeJSONAtomic(path: string, value: unknown, mode = 0o644): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`, mode);
}
