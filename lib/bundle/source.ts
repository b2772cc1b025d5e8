/**
 * Random access to the bytes of a bundle, which may be one file or several parts read as one.
 * The files are opened once, so what was checked is what is read, even if a path is replaced
 * meanwhile; a file that shrinks under us (a USB stick pulled) is reported as truncation.
 */
import { type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { fromSystemError, SeabagError } from '../errors.js';
import { openRegularFile, READ_CHUNK } from '../util/files.js';

export interface ByteSource {
  /** What to call this source in messages (the bundle's path). */
  readonly name: string;
  readonly size: number;
  /** Exactly `length` bytes at `position`. @throws E_ARCHIVE_TRUNCATED */
  read(position: number, length: number): Promise<Buffer>;
  /** A stream of exactly `length` bytes at `position`, in 1 MiB chunks. */
  stream(position: number, length: number, signal?: AbortSignal): Readable;
  /** Fills `target` from `position`; returns how many bytes the files gave (short at their end). */
  readInto(target: Buffer, position: number): Promise<number>;
  /** Which file holds `position` (for naming a bad part). */
  locate(position: number): { file: string; offset: number };
  /**
   * The open files behind the source, for hashing (`hashLanes`) to read in place with pread, on
   * the main thread and on other threads (threads share the process's descriptors).
   */
  descriptors(): { fd: number; start: number; size: number; path: string }[];
  close(): Promise<void>;
}

export interface SourcePiece {
  path: string;
  size: number;
}

export function truncated(name: string, position: number, expected: number): SeabagError {
  return new SeabagError('E_ARCHIVE_TRUNCATED', `${name} ends early: needed bytes up to ${expected}, got to ${position} (a file cut short, or a stick pulled?)`, {
    details: { file: name, position, expected },
  });
}

/**
 * One or more files read as one stream of bytes. Each piece's size is fixed when opened; a
 * piece that is shorter when read is truncation.
 */
export class FileSource implements ByteSource {
  readonly name: string;
  readonly size: number;
  readonly #pieces: { path: string; start: number; size: number; handle: FileHandle }[];

  private constructor(name: string, pieces: { path: string; start: number; size: number; handle: FileHandle }[]) {
    this.name = name;
    this.#pieces = pieces;
    this.size = pieces.reduce((sum, p) => sum + p.size, 0);
  }

  /**
   * Opens the pieces (one for a plain bundle) in order: regular files only.
   *
   * @throws E_USAGE (a FIFO, device or folder), E_FILE_NOT_FOUND, E_IO
   */
  static async open(name: string, pieces: readonly (string | SourcePiece)[]): Promise<FileSource> {
    const opened: { path: string; start: number; size: number; handle: FileHandle }[] = [];
    let start = 0;
    try {
      for (const piece of pieces) {
        const path = typeof piece === 'string' ? piece : piece.path;
        // Regular files only, opened without blocking: a FIFO named *.bundle must not hang us.
        const { handle, stats: st } = await openRegularFile(path, 'bundle');
        opened.push({ path, start, size: st.size, handle });
        if (typeof piece !== 'string' && st.size !== piece.size) {
          throw new SeabagError('E_PART_CORRUPT', `${path} is ${st.size} bytes; the parts file says ${piece.size}`, {
            details: { part: path, expected: piece.size, found: st.size },
          });
        }
        start += st.size;
      }
    } catch (err) {
      await Promise.all(opened.map((p) => p.handle.close().catch(() => undefined)));
      throw fromSystemError(err, 'open', typeof pieces[opened.length] === 'string' ? (pieces[opened.length] as string) : (pieces[opened.length] as SourcePiece | undefined)?.path);
    }
    return new FileSource(name, opened);
  }

  locate(position: number): { file: string; offset: number } {
    for (const p of this.#pieces) {
      if (position < p.start + p.size) return { file: p.path, offset: position - p.start };
    }
    const last = this.#pieces.at(-1);
    return { file: last?.path ?? this.name, offset: position - (last?.start ?? 0) };
  }

  descriptors(): { fd: number; start: number; size: number; path: string }[] {
    return this.#pieces.map((p) => ({ fd: p.handle.fd, start: p.start, size: p.size, path: p.path }));
  }

  async readInto(target: Buffer, position: number): Promise<number> {
    let done = 0;
    for (const p of this.#pieces) {
      if (done >= target.length) break;
      const at = position + done;
      if (at >= p.start + p.size || at < p.start) continue;
      const want = Math.min(target.length - done, p.start + p.size - at);
      let got = 0;
      while (got < want) {
        let bytesRead: number;
        try {
          ({ bytesRead } = await p.handle.read(target, done + got, want - got, at - p.start + got));
        } catch (err) {
          throw fromSystemError(err, 'read', p.path);
        }
        if (bytesRead === 0) return done + got;
        got += bytesRead;
      }
      done += got;
    }
    return done;
  }

  async read(position: number, length: number): Promise<Buffer> {
    if (position + length > this.size) throw truncated(this.name, this.size, position + length);
    const buf = Buffer.allocUnsafe(length);
    const got = await this.readInto(buf, position);
    if (got < length) throw truncated(this.name, position + got, position + length);
    return buf;
  }

  stream(position: number, length: number, signal?: AbortSignal): Readable {
    let offset = position;
    const end = position + length;
    const stream: Readable = new Readable({
      highWaterMark: READ_CHUNK,
      ...(signal === undefined ? {} : { signal }),
      read: () => {
        if (offset >= end) {
          stream.push(null);
          return;
        }
        const want = Math.min(READ_CHUNK, end - offset);
        const buf = Buffer.allocUnsafe(want);
        this.readInto(buf, offset).then(
          (got) => {
            if (got < want) throw truncated(this.name, offset + got, end);
            offset += got;
            stream.push(buf);
            if (offset >= end) stream.push(null);
          },
          (err: unknown) => stream.destroy(err as Error),
        ).catch((err: unknown) => stream.destroy(err as Error));
      },
    });
    return stream;
  }

  async close(): Promise<void> {
    await Promise.all(this.#pieces.map((p) => p.handle.close().catch(() => undefined)));
  }
}

