/**
 * Writes a bundle: an uncompressed POSIX tar (tar-stream) of an OCI layout, deterministic (fixed
 * order, mtime 0, uid/gid 0, fixed modes, nothing but names and sizes from the layout), into a
 * temp file renamed into place only when complete, or split into parts with a parts file.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import tar from 'tar-stream';
import { fromSystemError, SeabagError, throwIfAborted } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { Progress } from '../oci/store.js';
import { VerifyingStream } from '../oci/verify.js';
import { fsyncDir, tempPathFor, writeJSONAtomic } from '../util/atomic.js';
import { partName, partsFileName, type PartsFile } from './parts.js';

export interface BundleEntry {
  /** `oci-layout`, `index.json`, `blobs/`, `blobs/sha256/<hex>`. */
  name: string;
  type?: 'file' | 'directory';
  /** Content held in memory (metadata). */
  data?: Buffer;
  /** Content streamed from its source and verified against `desc` on the way. */
  desc?: Descriptor;
  open?: () => Promise<Readable>;
}

export interface WriteOptions {
  /** Split into parts of at most this many bytes (NAME.001, … and NAME.parts.json). */
  splitSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

export interface WriteResult {
  /** Bytes of the whole bundle. */
  size: number;
  /** Files written: the bundle, or its parts followed by the parts file. */
  files: string[];
  parts?: PartsFile;
}

function entrySize(e: BundleEntry): number {
  return e.type === 'directory' ? 0 : (e.data?.length ?? e.desc?.size ?? 0);
}

/** Bytes the tar will have: a header per entry, data padded to 512, two zero blocks. */
export function tarSize(entries: readonly BundleEntry[]): number {
  return entries.reduce((sum, e) => sum + 512 + Math.ceil(entrySize(e) / 512) * 512, 0) + 1024;
}

/** Spreads a byte stream over part files of at most `partSize` bytes, hashing each and the whole. */
class PartSink extends Writable {
  readonly #base: string;
  readonly #partSize: number;
  readonly #split: boolean;
  readonly #whole: Hash | undefined;
  #handle: FileHandle | undefined;
  #hash: Hash | undefined;
  #inPart = 0;
  readonly parts: { temp: string; final: string; size: number; sha256: string }[] = [];
  written = 0;
  onBytes: ((n: number) => void) | undefined;

  constructor(path: string, split: number | undefined) {
    super({ highWaterMark: 4 * 1024 * 1024 });
    this.#base = path;
    this.#split = split !== undefined;
    this.#partSize = split ?? Number.POSITIVE_INFINITY;
    this.#whole = this.#split ? createHash('sha256') : undefined;
  }

  async #nextPart(): Promise<void> {
    await this.#closePart();
    const final = this.#split ? partName(this.#base, this.parts.length + 1) : this.#base;
    const temp = tempPathFor(final);
    this.#handle = await open(temp, 'wx', 0o644);
    this.#hash = this.#split ? createHash('sha256') : undefined;
    this.#inPart = 0;
    this.parts.push({ temp, final, size: 0, sha256: '' });
  }

  async #closePart(): Promise<void> {
    const handle = this.#handle;
    if (handle === undefined) return;
    this.#handle = undefined;
    await handle.sync();
    await handle.close();
    const part = this.parts.at(-1);
    if (part !== undefined) {
      part.size = this.#inPart;
      part.sha256 = this.#hash?.digest('hex') ?? '';
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    (async () => {
      let offset = 0;
      while (offset < chunk.length) {
        if (this.#handle === undefined || this.#inPart >= this.#partSize) await this.#nextPart();
        const n = Math.min(chunk.length - offset, this.#partSize - this.#inPart);
        const slice = chunk.subarray(offset, offset + n);
        this.#hash?.update(slice);
        this.#whole?.update(slice);
        let done = 0;
        while (done < n) {
          const { bytesWritten } = await (this.#handle as FileHandle).write(slice, done, n - done);
          done += bytesWritten;
        }
        this.#inPart += n;
        offset += n;
      }
      this.written += chunk.length;
      this.onBytes?.(chunk.length);
    })().then(
      () => callback(),
      (err: unknown) => callback(err as Error),
    );
  }

  override _final(callback: (err?: Error | null) => void): void {
    (async () => {
      if (this.#handle === undefined) await this.#nextPart();
      await this.#closePart();
    })().then(
      () => callback(),
      (err: unknown) => callback(err as Error),
    );
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const handle = this.#handle;
    this.#handle = undefined;
    (handle === undefined ? Promise.resolve() : handle.close().catch(() => undefined)).then(() => callback(err));
  }

  get wholeSha256(): string | undefined {
    return this.#whole?.digest('hex');
  }

  async removeTemps(): Promise<void> {
    await Promise.all(this.parts.map((p) => rm(p.temp, { force: true }).catch(() => undefined)));
  }
}

/**
 * Writes `entries` as a tar to `path` (or its parts). Streamed content is verified against its
 * descriptor as it passes; on any error nothing is left at `path` and temp files are removed.
 *
 * @throws E_DIGEST_MISMATCH, E_SIZE_MISMATCH from sources; E_DISK_FULL, E_IO; E_ABORTED
 */
export async function writeBundle(path: string, entries: readonly BundleEntry[], options: WriteOptions = {}): Promise<WriteResult> {
  const total = tarSize(entries);
  const sink = new PartSink(path, options.splitSize);
  let written = 0;
  sink.onBytes = (n) => {
    written += n;
    options.onProgress?.({ phase: 'write', done: written, total });
  };
  const pack = tar.pack();
  const packed = Readable.from(pack as unknown as AsyncIterable<Buffer>);
  const finished = new Promise<void>((resolve, reject) => {
    sink.once('finish', resolve);
    sink.once('error', reject);
    packed.once('error', reject);
  });
  packed.pipe(sink);
  // Surface a write failure (disk full) to the loop below at once.
  let failure: unknown;
  finished.catch((err: unknown) => (failure ??= err));

  try {
    for (const entry of entries) {
      throwIfAborted(options.signal);
      if (failure !== undefined) throw failure;
      const header = {
        name: entry.name,
        size: entrySize(entry),
        mode: entry.type === 'directory' ? 0o755 : 0o644,
        mtime: new Date(0),
        uid: 0,
        gid: 0,
        uname: '',
        gname: '',
        type: entry.type ?? 'file',
      } as const;
      if (entry.type === 'directory') {
        await new Promise<void>((resolve, reject) => pack.entry(header, (err) => (err ? reject(err) : resolve())));
        continue;
      }
      if (entry.data !== undefined) {
        const data = entry.data;
        await new Promise<void>((resolve, reject) => pack.entry(header, data, (err) => (err ? reject(err) : resolve())));
        continue;
      }
      if (entry.open === undefined || entry.desc === undefined) throw new Error(`bundle entry ${entry.name} has no content`);
      const desc = entry.desc;
      const source = await entry.open();
      await new Promise<void>((resolve, reject) => {
        const target = pack.entry(header, (err) => (err ? reject(err) : resolve()));
        const verifier = new VerifyingStream(desc);
        const fail = (err: unknown): void => {
          source.destroy();
          verifier.destroy();
          reject(err);
        };
        source.once('error', fail);
        verifier.once('error', fail);
        finished.catch(fail);
        source.pipe(verifier).pipe(target as unknown as NodeJS.WritableStream);
      });
    }
    pack.finalize();
    await finished;
  } catch (err) {
    pack.destroy();
    sink.destroy();
    await new Promise((r) => setImmediate(r));
    await sink.removeTemps();
    if (err instanceof SeabagError) throw err;
    throw fromSystemError(err, 'write bundle', path);
  }

  try {
    for (const part of sink.parts) await rename(part.temp, part.final);
    await fsyncDir(dirname(path));
  } catch (err) {
    await sink.removeTemps();
    throw fromSystemError(err, 'write bundle', path);
  }
  if (options.splitSize === undefined) return { size: sink.written, files: [path] };

  const parts: PartsFile = {
    apiVersion: 'seabag.dev/v1',
    kind: 'BundleParts',
    bundle: basename(path),
    size: sink.written,
    sha256: sink.wholeSha256 as string,
    partSize: options.splitSize,
    count: sink.parts.length,
    parts: sink.parts.map((p) => ({ name: basename(p.final), size: p.size, sha256: p.sha256 })),
  };
  const partsPath = join(dirname(path), partsFileName(basename(path)));
  await writeJSONAtomic(partsPath, parts);
  // Parts of an earlier, longer build of the same name would only confuse a reader of the folder.
  for (let n = parts.count + 1; n < parts.count + 1000; n += 1) {
    try {
      await rm(partName(path, n));
    } catch {
      break;
    }
  }
  return { size: sink.written, files: [...sink.parts.map((p) => p.final), partsPath], parts };
}
