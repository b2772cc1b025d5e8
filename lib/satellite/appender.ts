/**
 * Appending a download to its spool file. The spool exists for resume after a kill, a cut or a
 * power loss, so on a fast link it is written and almost never read: on Linux its bytes go
 * around the page cache (`O_DIRECT`) from page-aligned buffers, in whole 4 KiB blocks.
 *
 * Why: through the page cache, 2 GiB of spool is 2 GiB of fresh dirty pages on top of the
 * vessel registry's own 2 GiB, past the kernel's writeback thresholds; the writer is then
 * throttled and pays for page allocation and writeback (measured: 6–7 s of kernel time for a
 * 2 GiB import, against 2 s; docs/satellite.md). `O_DIRECT` writes cost the disk's bandwidth
 * instead, on libuv's threads, and leave no dirty page behind.
 *
 * What a kill leaves is the same either way: the file always holds a prefix of the blob (writes
 * are issued one at a time, in order, and a block rewritten holds the same bytes), trailing the
 * link by at most `SPOOL_BATCH` bytes or a second (besides a block's worth: bytes short of a whole
 * block reach the file through the page cache when the appender is flushed, and are written again
 * with the block that completes them). A power cut may leave anything: a resumed blob is always
 * checked against its digest, as before.
 *
 * Where `O_DIRECT` cannot be used (not Linux, a filesystem that refuses it such as tmpfs, memory
 * the kernel will not take), the appender writes through the page cache instead, with the same
 * batching: only speed depends on it, never what ends up in the file.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { SeabagError } from '../errors.js';

/** Bytes of the link a spool file may lag behind (besides at most a second of it). */
export const SPOOL_BATCH = 1024 * 1024;

/** Direct writes start and end on this boundary (the filesystem block; a multiple of any device's sector). */
const BLOCK = 4096;

/** 64 KiB WebAssembly pages: a batch, room for the carried-over block, and for one chunk past the batch. */
const STAGING_PAGES = Math.ceil((SPOOL_BATCH + BLOCK) / 65536) + 1;

export interface SpoolAppender {
  /** Where the next byte appended goes. */
  readonly position: number;
  /** Whether bytes go around the page cache (false once the system refused it). */
  readonly direct: boolean;
  /**
   * Takes a chunk (the caller must not change it afterwards); starts writing a batch once one is
   * due. Returns nothing when the chunk was only staged, or a promise to await before the next call
   * (calls are not to overlap).
   */
  append(chunk: Buffer): Promise<void> | undefined;
  /** Waits until every byte appended so far is in the file. */
  flush(): Promise<void>;
  /** Flushes and lets go of what the appender holds (not `handle`, which the caller owns). */
  close(): Promise<void>;
}

/**
 * An appender for `path` (open as `handle`, read-write), from byte `start` on, which the file must
 * already hold up to. `direct: false` (or a system without `O_DIRECT`) writes through the page cache.
 *
 * @throws E_IO when the file holds fewer than `start` bytes
 */
export async function openAppender(handle: FileHandle, path: string, start: number, options: { direct: boolean }): Promise<SpoolAppender> {
  const held = (await handle.stat()).size;
  if (held < start) throw new SeabagError('E_IO', `${path} ends at byte ${held}, before byte ${start} where its download goes on`, { details: { file: path, expected: start, found: held }, temporary: true });
  const flag = (constants as { O_DIRECT?: number }).O_DIRECT;
  if (options.direct && flag !== undefined) {
    const staging = takeStaging();
    if (staging !== undefined) {
      const direct = await open(path, constants.O_WRONLY | flag).catch(() => undefined);
      if (direct !== undefined) {
        try {
          return await DirectAppender.open(handle, direct, path, start, staging);
        } catch (err) {
          await direct.close().catch(() => undefined);
          for (const b of staging) giveStaging(b);
          throw err;
        }
      }
      for (const b of staging) giveStaging(b);
    }
  }
  return new BufferedAppender(handle, start);
}

/** Page-aligned buffers, reused across blobs (at most two per blob in flight). */
const freeStaging: Buffer[] = [];

/**
 * WebAssembly memory is mapped by the runtime at a page boundary, which direct I/O needs of the
 * memory it writes from (Node's own buffers are only 16-byte aligned). None (so: the page cache)
 * when the runtime cannot map one.
 */
function takeStaging(): [Buffer, Buffer] | undefined {
  // Absent under --jitless; not in this project's type libraries.
  const wasm = (globalThis as { WebAssembly?: { Memory: new (pages: { initial: number; maximum: number }) => { buffer: ArrayBuffer } } }).WebAssembly;
  if (wasm === undefined) return undefined;
  const taken: Buffer[] = [];
  try {
    while (taken.length < 2) taken.push(freeStaging.pop() ?? Buffer.from(new wasm.Memory({ initial: STAGING_PAGES, maximum: STAGING_PAGES }).buffer));
    return taken as [Buffer, Buffer];
  } catch {
    for (const b of taken) giveStaging(b);
    return undefined;
  }
}

function giveStaging(b: Buffer): void {
  if (freeStaging.length < 16) freeStaging.push(b);
}

/**
 * Writes what is pending once it is a second old, whether or not more comes: a stalled link still
 * leaves the spool at most a second behind what came over it.
 */
class SecondTimer {
  #timer: NodeJS.Timeout | undefined;
  readonly #fire: () => Promise<void>;

  constructor(fire: () => Promise<void>) {
    this.#fire = fire;
  }

  arm(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // A failed write surfaces at the next append or flush (it is what they wait on).
      this.#fire().catch(() => undefined);
    }, 1000);
    this.#timer.unref();
  }

  disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** Chunks written as they come, in batches (a `writev` of the chunks themselves, no copy). */
class BufferedAppender implements SpoolAppender {
  readonly direct = false;
  readonly #handle: FileHandle;
  #batch: Buffer[] = [];
  #batched = 0;
  #at: number;
  /** The last write queued; each write is queued after the one before it. */
  #writing: Promise<void> = Promise.resolve();
  readonly #timer = new SecondTimer(() => this.flush());

  constructor(handle: FileHandle, start: number) {
    this.#handle = handle;
    this.#at = start;
  }

  get position(): number {
    return this.#at + this.#batched;
  }

  append(chunk: Buffer): Promise<void> | undefined {
    this.#batch.push(chunk);
    this.#batched += chunk.length;
    this.#timer.arm();
    return this.#batched >= SPOOL_BATCH ? this.#write() : undefined;
  }

  /** Queues the batch after the write before it; resolves once that one is done (one write waiting at most). */
  async #write(): Promise<void> {
    if (this.#batched === 0) return;
    const buffers = this.#batch;
    const at = this.#at;
    this.#batch = [];
    this.#at += this.#batched;
    this.#batched = 0;
    this.#timer.disarm();
    const before = this.#writing;
    const w = before.then(() => writevFully(this.#handle, buffers, at));
    w.catch(() => undefined);
    this.#writing = w;
    await before;
  }

  async flush(): Promise<void> {
    await this.#write();
    await this.#writing;
  }

  async close(): Promise<void> {
    this.#timer.disarm();
    await this.flush();
  }
}

/**
 * Chunks copied into a page-aligned staging buffer that starts on a block boundary; each batch's
 * whole blocks are written with `O_DIRECT` from it while the other buffer fills (one write in
 * flight), and the bytes short of a block are carried over to the next. Appends, flushes and the
 * timer's flushes run one at a time (they swap the buffers).
 */
class DirectAppender implements SpoolAppender {
  readonly #handle: FileHandle;
  readonly #fd: FileHandle;
  /** Fills; its byte 0 is the file's byte `#base`. */
  #cur: Buffer;
  /** Free, or being written (then `#writing` settles when it is free). */
  #spare: Buffer;
  #fill: number;
  #base: number;
  /** Bytes staged (from `#base`) that are in the file already: whole blocks written, or a flushed tail. */
  #written: number;
  #writing: Promise<void> = Promise.resolve();
  #turn: Promise<unknown> = Promise.resolve();
  /** Calls waiting for or taking their turn. */
  #queued = 0;
  #direct = true;
  #closed = false;
  readonly #timer = new SecondTimer(() => this.flush());

  private constructor(handle: FileHandle, fd: FileHandle, staging: [Buffer, Buffer], base: number, fill: number) {
    this.#handle = handle;
    this.#fd = fd;
    [this.#cur, this.#spare] = staging;
    this.#base = base;
    this.#fill = fill;
    this.#written = fill;
  }

  static async open(handle: FileHandle, fd: FileHandle, path: string, start: number, staging: [Buffer, Buffer]): Promise<DirectAppender> {
    const base = start - (start % BLOCK);
    const fill = start - base;
    // The bytes before `start` in its block are written again with it: read them back first.
    if (fill > 0) {
      const { bytesRead } = await handle.read(staging[0], 0, fill, base);
      if (bytesRead !== fill) throw new SeabagError('E_IO', `${path} ends at byte ${base + bytesRead}, before byte ${start} where its download goes on`, { details: { file: path, expected: start, found: base + bytesRead }, temporary: true });
    }
    return new DirectAppender(handle, fd, staging, base, fill);
  }

  get position(): number {
    return this.#base + this.#fill;
  }

  get direct(): boolean {
    return this.#direct;
  }

  /** Runs `work` after every call before it has finished. */
  #inTurn<T>(work: () => Promise<T>): Promise<T> {
    this.#queued += 1;
    const run = this.#turn.then(work, work);
    this.#turn = run.then(
      () => (this.#queued -= 1),
      () => (this.#queued -= 1),
    );
    return run;
  }

  append(chunk: Buffer): Promise<void> | undefined {
    if (this.#queued === 0 && this.#fill + chunk.length < SPOOL_BATCH) {
      // Most chunks only fill the staging buffer: no write due, nothing to wait for.
      chunk.copy(this.#cur, this.#fill);
      this.#fill += chunk.length;
      this.#timer.arm();
      return undefined;
    }
    return this.#inTurn(async () => {
      for (let from = 0; from < chunk.length; ) {
        const n = Math.min(chunk.length - from, this.#cur.length - this.#fill);
        chunk.copy(this.#cur, this.#fill, from, from + n);
        this.#fill += n;
        from += n;
        if (this.#fill >= SPOOL_BATCH || this.#fill === this.#cur.length) await this.#writeBlocks();
      }
      if (this.#fill > this.#written) this.#timer.arm();
    });
  }

  /** Starts writing the staged whole blocks (after the write before them); the rest carries over. */
  async #writeBlocks(): Promise<void> {
    const whole = this.#fill - (this.#fill % BLOCK);
    if (whole === 0) return;
    await this.#writing;
    const full = this.#cur;
    const at = this.#base;
    const rest = this.#fill - whole;
    full.copy(this.#spare, 0, whole, this.#fill);
    this.#cur = this.#spare;
    this.#spare = full;
    this.#written = Math.max(0, this.#written - whole);
    this.#fill = rest;
    this.#base += whole;
    const w = this.#write(full.subarray(0, whole), at);
    w.catch(() => undefined);
    this.#writing = w;
  }

  async #write(data: Buffer, at: number): Promise<void> {
    if (this.#direct) {
      try {
        const { bytesWritten } = await this.#fd.write(data, 0, data.length, at);
        if (bytesWritten === data.length) return;
        await writeFully(this.#handle, data.subarray(bytesWritten), at + bytesWritten);
        return;
      } catch (err) {
        // The kernel refused this memory or this file for direct I/O: the page cache from here on.
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        this.#direct = false;
      }
    }
    await writeFully(this.#handle, data, at);
  }

  flush(): Promise<void> {
    return this.#inTurn(async () => {
      this.#timer.disarm();
      await this.#writeBlocks();
      await this.#writing;
      if (this.#fill > this.#written) {
        // The bytes short of a block, through the page cache; they stay staged, to be written again whole.
        await writeFully(this.#handle, this.#cur.subarray(0, this.#fill), this.#base);
        this.#written = this.#fill;
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer.disarm();
    try {
      await this.flush();
    } finally {
      await this.#turn;
      await this.#writing.catch(() => undefined);
      await this.#fd.close().catch(() => undefined);
      giveStaging(this.#cur);
      giveStaging(this.#spare);
    }
  }
}

async function writevFully(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  const total = buffers.reduce((n, b) => n + b.length, 0);
  const { bytesWritten } = await handle.writev(buffers, position);
  if (bytesWritten < total) await writeFully(handle, Buffer.concat(buffers, total).subarray(bytesWritten), position + bytesWritten);
}

async function writeFully(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}
