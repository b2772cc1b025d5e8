/**
 * Writes a bundle: an uncompressed POSIX tar of an OCI layout, deterministic (fixed order, mtime
 * 0, uid/gid 0, fixed modes, nothing but names and sizes from the layout), into a temp file
 * renamed into place only when complete, or split into parts with a parts file.
 *
 * Layers are copied with reads ahead of the hashing and several positional writes in flight,
 * through buffers that are reused, so the disk, the hash and the source all stay busy and memory
 * stays flat whatever the size (a stream-per-layer pipeline left the CPU idle a third of the time
 * and the garbage collector busy the rest). Past `HASH_THREAD_MIN_BYTES` of layers read from
 * files, their sha256 runs on a second thread over the same shared buffers while this one writes
 * (lib/util/hash-thread.ts); every digest is still checked before the bundle gets its name. A
 * bundle written whole from files, with a thread's worth of bytes for each, is written in lanes:
 * one thread per core hashes its own blobs, which go to their places in the file (known from the
 * sizes) out of order, so that one sha256 stream (~1.1 GB/s here) no longer paces the copy.
 * The part is flushed to disk as it grows, so the disk writes beside the copy. Headers are plain
 * ustar, encoded in tar.ts.
 */
import { createHash, type Hash } from 'node:crypto';
import { link, open, rename, rm, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fromSystemError, SeabagError, throwIfAborted } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { Progress, RangeReader } from '../oci/store.js';
import { fsyncDir, tempPathFor, writeFileAtomic, writeJSONAtomic } from '../util/atomic.js';
import { BufferPool, COPY_CHUNK, readAhead } from '../util/buffers.js';
import { HashThread } from '../util/hash-thread.js';
import { defaultLanes } from './lane-threads.js';
import { checkSplit, partName, partsFileName, type PartsFile } from './parts.js';
import { BLOCK, encodeHeader } from './tar.js';

export interface BundleEntry {
  /** `oci-layout`, `index.json`, `blobs/`, `blobs/sha256/<hex>`. */
  name: string;
  type?: 'file' | 'directory';
  /** Content held in memory (metadata). */
  data?: Buffer;
  /** Content from its source, verified against `desc` on the way. */
  desc?: Descriptor;
  /** Random access to the content (preferred: no stream, no copies). */
  reader?: () => Promise<RangeReader>;
  /** The content as a stream (registries). */
  open?: () => Promise<Readable>;
}

export interface WriteOptions {
  /** Split into parts of at most this many bytes (NAME.001, … and NAME.parts.json). */
  splitSize?: number;
  /**
   * fsync each part before its rename, and the folder after (default true). False is for scratch
   * builds only (`bundle build --no-sync`): a power cut or a stick pulled after the command
   * returns can leave a bundle that is short or holds zeros under its final name.
   */
  sync?: boolean;
  /**
   * Never replace a file that exists under a final name (one that appeared while a long write ran,
   * after the caller checked without --force): each file is put in place with link() + unlink()
   * instead of rename(), and an existing one is E_FILE_EXISTS, with nothing of this write left.
   */
  noClobber?: boolean;
  /**
   * Hash source blobs on a second thread, beside the writing, once the blobs read from files add
   * up to at least this many bytes (default `HASH_THREAD_MIN_BYTES`; `Infinity`: never, `0`:
   * always). The bundle is the same byte for byte either way.
   */
  hashThreadFrom?: number;
  /**
   * Threads hashing at once, each its own blobs, when the bundle is written whole from files
   * (default verify's `defaultLanes()`: one per core, at most 4, and no more than the blobs give work
   * for). 1: one thread hashes every blob beside the writes. A split bundle, one with blobs from
   * a registry, or one written to a filesystem not known to keep holes (`keepsHoles`: a FAT stick)
   * is written in order with one thread.
   */
  hashLanes?: number;
  /**
   * Hashing threads the caller started beforehand (`startHashThreads()`), so that their start
   * (~20–35 ms each, on the other core) is hidden behind the caller's own work. Those the write
   * needs are used, more are started if it needs more; all are left running: the caller closes them.
   */
  hashThreads?: readonly Promise<HashThread>[];
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

/** Below this, the thread's start (~30 ms) costs more than hashing beside the writes gives. */
export const HASH_THREAD_MIN_BYTES = 32 * 1024 * 1024;
/**
 * Chunks shared with the hashing thread: small and few, so a chunk is hashed and written while the
 * read that filled it still has it in the CPU's cache (4 MiB × 10 hashed at 1.2 GB/s from memory,
 * 2 MiB × 6 at 1.7 GB/s from cache: 1.46 s against 0.85 s for a build of 800 MiB).
 */
const HASH_THREAD_CHUNK = 2 * 1024 * 1024;
const HASH_THREAD_BUFFERS = 6;

/** `count` hashing threads for `WriteOptions.hashThreads`, started now. */
export function startHashThreads(count: number): Promise<HashThread>[] {
  return Array.from({ length: Math.max(0, count) }, () => HashThread.start(HASH_THREAD_BUFFERS, HASH_THREAD_CHUNK));
}

/** Puts `temp` at `final` unless something is there already (link() fails with EEXIST). */
async function placeNoClobber(temp: string, final: string): Promise<void> {
  try {
    await link(temp, final);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SeabagError('E_FILE_EXISTS', `${final} appeared while it was being written; it is left as it is`, {
        details: { file: final },
        hint: 'choose another -o, or pass --force to overwrite it',
      });
    }
    throw err;
  }
  await unlink(temp);
}

export interface WriteResult {
  /** Bytes of the whole bundle. */
  size: number;
  /** Files written: the bundle, or its parts followed by the parts file. */
  files: string[];
  parts?: PartsFile;
}

/** Writes kept in flight: enough to keep the disk busy while we hash. */
const WRITES_IN_FLIGHT = 4;
/**
 * Bytes between flushes of a part to disk while it is written: the disk writes beside the copy
 * instead of after it (the page cache would otherwise hold gigabytes for the final fsync), and
 * the fsync before the rename finds at most this much left (256 MiB: 1.5× tar + openssl at
 * 800 MiB; 32 MiB: 0.85×, measured with bench/build-lab.ts).
 */
const FLUSH_EVERY = 32 * 1024 * 1024;

function entrySize(e: BundleEntry): number {
  return e.type === 'directory' ? 0 : (e.data?.length ?? e.desc?.size ?? 0);
}

/** Bytes the tar will have: a header per entry, data padded to 512, two zero blocks. */
export function tarSize(entries: readonly BundleEntry[]): number {
  return entries.reduce((sum, e) => sum + BLOCK + Math.ceil(entrySize(e) / BLOCK) * BLOCK, 0) + 2 * BLOCK;
}

interface Part {
  temp: string;
  final: string;
  size: number;
  sha256: string;
  handle: FileHandle | undefined;
  hash: Hash | undefined;
  /** Writes (and flushes) to this part not yet done. */
  pending: Set<Promise<void>>;
  /** Bytes written since the last flush was started. */
  unflushed: number;
}

async function writeFully(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * The output: bytes appended in order (and hashed in order, per part and whole when split),
 * written by positional writes that run several at once.
 */
class PartSink {
  readonly #base: string;
  readonly #partSize: number;
  readonly #split: boolean;
  readonly #whole: Hash | undefined;
  readonly #sync: boolean;
  readonly #inflight = new Set<Promise<void>>();
  #failure: unknown;
  readonly parts: Part[] = [];
  written = 0;

  constructor(path: string, split: number | undefined, sync = true) {
    this.#base = path;
    this.#sync = sync;
    this.#split = split !== undefined;
    this.#partSize = split ?? Number.POSITIVE_INFINITY;
    this.#whole = this.#split ? createHash('sha256') : undefined;
  }

  async #part(index: number): Promise<Part> {
    while (this.parts.length <= index) {
      const final = this.#split ? partName(this.#base, this.parts.length + 1) : this.#base;
      const part: Part = { temp: tempPathFor(final), final, size: 0, sha256: '', handle: undefined, hash: this.#split ? createHash('sha256') : undefined, pending: new Set(), unflushed: 0 };
      this.parts.push(part);
      part.handle = await open(part.temp, 'wx', 0o644);
      const previous = this.parts[this.parts.length - 2];
      if (previous !== undefined) await this.#closePart(previous);
    }
    return this.parts[index] as Part;
  }

  async #closePart(part: Part): Promise<void> {
    const handle = part.handle;
    if (handle === undefined) return;
    part.handle = undefined;
    try {
      await Promise.all(part.pending);
      if (this.#sync) await handle.sync();
    } finally {
      // Closed whatever happened: a descriptor left open would hold the removed temp file's
      // blocks (on a full stick) and keep its file system busy until the process ends.
      await handle.close();
    }
    part.sha256 = part.hash?.digest('hex') ?? '';
  }

  /**
   * Appends `data`; `done` is called once the bytes are on their way to disk no more (the caller
   * may then reuse the buffer). Resolves when another append may start.
   */
  async append(data: Buffer, done?: () => void): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    let offset = 0;
    const writes: Promise<void>[] = [];
    while (offset < data.length) {
      const index = this.#split ? Math.floor(this.written / this.#partSize) : 0;
      const part = await this.#part(index);
      const inPart = this.#split ? this.written - index * this.#partSize : this.written;
      const n = Math.min(data.length - offset, this.#partSize - inPart);
      const slice = data.subarray(offset, offset + n);
      part.hash?.update(slice);
      this.#whole?.update(slice);
      part.size = inPart + n;
      writes.push(this.#write(part, slice, inPart));
      offset += n;
      this.written += n;
    }
    if (done !== undefined) void Promise.all(writes).then(done);
    await this.#room();
  }

  /**
   * Writes `data` at `position` of a bundle written whole (not split), beside other such writes:
   * how the lanes of `writeInLanes` fill their blobs in. `done` as for `append`; `written` and the
   * part's size grow to the furthest byte written.
   */
  async writeAt(data: Buffer, position: number, done?: () => void): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#split) throw new SeabagError('E_INTERNAL', 'a split bundle is written in order');
    const part = await this.#part(0);
    const write = this.#write(part, data, position);
    part.size = Math.max(part.size, position + data.length);
    this.written = part.size;
    if (done !== undefined) void write.then(done);
    await this.#room();
  }

  /** Starts one positional write to `part` (its failure is the sink's), and a flush when one is due. */
  #write(part: Part, data: Buffer, position: number): Promise<void> {
    const write = writeFully(part.handle as FileHandle, data, position).catch((err: unknown) => {
      this.#failure ??= err;
    });
    part.pending.add(write);
    this.#inflight.add(write);
    void write.finally(() => {
      part.pending.delete(write);
      this.#inflight.delete(write);
    });
    part.unflushed += data.length;
    if (this.#sync && part.unflushed >= FLUSH_EVERY) {
      // Flush as we go, so the fsync before the rename finds little left to do.
      part.unflushed = 0;
      const handle = part.handle as FileHandle;
      const flush = Promise.all(part.pending).then(() => handle.datasync()).catch((err: unknown) => {
        this.#failure ??= err;
      });
      part.pending.add(flush);
      void flush.finally(() => part.pending.delete(flush));
    }
    return write;
  }

  /** Resolves once fewer than `WRITES_IN_FLIGHT` writes run; throws the first write's failure. */
  async #room(): Promise<void> {
    while (this.#inflight.size >= WRITES_IN_FLIGHT) await Promise.race(this.#inflight);
    if (this.#failure !== undefined) throw this.#failure;
  }

  async finish(): Promise<void> {
    await this.#part(0);
    await Promise.all(this.#inflight);
    if (this.#failure !== undefined) throw this.#failure;
    for (const part of this.parts) await this.#closePart(part);
    // A flush that failed (its bytes lost on their way to the disk) fails the write, though the
    // fsync after it succeeds: the kernel reports a lost write-back once per open file.
    if (this.#failure !== undefined) throw this.#failure;
  }

  async abort(): Promise<void> {
    await Promise.allSettled(this.#inflight);
    for (const part of this.parts) await part.handle?.close().catch(() => undefined);
    await Promise.all(this.parts.map((p) => rm(p.temp, { force: true }).catch(() => undefined)));
  }

  get wholeSha256(): string | undefined {
    return this.#whole?.digest('hex');
  }
}

function sizeError(desc: Descriptor, found: number | string): SeabagError {
  return new SeabagError('E_SIZE_MISMATCH', `blob ${desc.digest}: ${typeof found === 'number' ? `${found} bytes` : found}, expected ${desc.size}`, {
    details: { digest: desc.digest, expected: desc.size, found },
  });
}

function digestError(desc: Descriptor, found: string): SeabagError {
  return new SeabagError('E_DIGEST_MISMATCH', `blob ${desc.digest}: content does not match its digest (found ${found})`, { details: { expected: desc.digest, found, size: desc.size } });
}

function checkDigest(desc: Descriptor, hash: Hash): void {
  const found = `sha256:${hash.digest('hex')}`;
  if (found !== desc.digest) throw digestError(desc, found);
}

/** Copies one blob from random-access storage: read ahead, hash, write, buffers reused. */
async function copyFromReader(sink: PartSink, pool: BufferPool, reader: RangeReader, desc: Descriptor, onBytes: (n: number) => void, signal?: AbortSignal): Promise<void> {
  const hash = createHash('sha256');
  await readAhead(
    reader,
    desc.size,
    pool,
    async (chunk, buffer) => {
      hash.update(chunk);
      await sink.append(chunk, () => pool.give(buffer));
      onBytes(chunk.length);
    },
    (position) => sizeError(desc, position),
    signal,
  );
  checkDigest(desc, hash);
}

/**
 * Copies one blob from random-access storage with its sha256 on the hashing thread: each chunk is
 * read once into shared memory, then hashed there and written here at the same time. Returns the
 * check of the digest, which settles once the thread has hashed the last chunk (the copy does not
 * wait for it: the next blob is read meanwhile).
 */
async function copyBesideHash(write: (chunk: Buffer, done: () => void) => Promise<void>, thread: HashThread, reader: RangeReader, desc: Descriptor, onBytes: (n: number) => void, signal?: AbortSignal): Promise<{ check: Promise<void> }> {
  if (desc.size === 0) {
    checkDigest(desc, createHash('sha256'));
    return { check: Promise.resolve() };
  }
  let digest: Promise<string | undefined> = Promise.resolve(undefined);
  await readAhead(
    reader,
    desc.size,
    thread,
    async (chunk, buffer, last) => {
      // The buffer is reused once both the thread and the disk are done with it.
      let users = 2;
      const release = (): void => {
        users -= 1;
        if (users === 0) thread.give(buffer);
      };
      const hashed = thread.hash(buffer, chunk.length, last);
      hashed.then(release, () => undefined);
      if (last) digest = hashed;
      await write(chunk, release);
      onBytes(chunk.length);
      if (thread.failure !== undefined) throw thread.failure;
    },
    (position) => sizeError(desc, position),
    signal,
  );
  // Wrapped: an async function's result that is a promise would be awaited with it.
  return {
    check: digest.then((hex) => {
      const found = `sha256:${hex ?? ''}`;
      if (found !== desc.digest) throw digestError(desc, found);
    }),
  };
}

/** Copies one blob from a stream (a registry): hash and size checked as it passes. */
async function copyFromStream(sink: PartSink, stream: Readable, desc: Descriptor, onBytes: (n: number) => void): Promise<void> {
  const hash = createHash('sha256');
  let seen = 0;
  try {
    for await (const chunk of stream) {
      const buf = chunk as Buffer;
      seen += buf.length;
      if (seen > desc.size) throw sizeError(desc, `more than ${desc.size} bytes`);
      hash.update(buf);
      await sink.append(buf);
      onBytes(buf.length);
    }
  } finally {
    stream.destroy();
  }
  if (seen !== desc.size) throw sizeError(desc, seen);
  checkDigest(desc, hash);
}

/** Each of `sizes` (in order) to the lane with the fewest bytes so far: the lane of each. */
function assignLanes(sizes: readonly number[], lanes: number): number[] {
  const load: number[] = Array.from({ length: lanes }, () => 0);
  return sizes.map((size) => {
    const lane = load.indexOf(Math.min(...load));
    load[lane] = (load[lane] as number) + size;
    return lane;
  });
}

/**
 * Hashing threads for blobs of these sizes (in order) from files (see `WriteOptions`): 0 when they
 * hash on the main thread, 1 for a split bundle; by default, only as many lanes as get a thread's
 * worth of bytes each (a bundle of one big layer and small ones hashes on one thread). A caller
 * that starts the threads ahead (`bundle build`) asks this too.
 */
export function hashThreadsFor(sizes: readonly number[], options: Pick<WriteOptions, 'hashThreadFrom' | 'hashLanes' | 'splitSize'>): number {
  const fromFiles = sizes.reduce((sum, size) => sum + size, 0);
  if (fromFiles === 0 || fromFiles < (options.hashThreadFrom ?? HASH_THREAD_MIN_BYTES)) return 0;
  const blobs = sizes.filter((size) => size > 0);
  if (options.splitSize !== undefined || blobs.length < 2) return 1;
  if (options.hashLanes !== undefined) return Math.max(1, Math.min(options.hashLanes, blobs.length));
  // One per core, as verify's lanes: two threads hashing two blobs at once copied 8 blobs of 32 MiB
  // in 0.21 s against 0.25 s for one (one sha256 stream runs at ~1.1 GB/s here from memory).
  const wanted = Math.min(defaultLanes(), blobs.length);
  const laneOf = assignLanes(blobs, wanted);
  const load = Array.from({ length: wanted }, (_, l) => blobs.reduce((sum, size, i) => sum + (laneOf[i] === l ? size : 0), 0));
  return Math.max(1, load.filter((bytes) => bytes >= HASH_THREAD_MIN_BYTES).length);
}

/**
 * Filesystems (statfs's type) known to keep a hole where nothing was written yet, so that a file
 * written out of order (in lanes) costs no more than one written in order: ext2/3/4, xfs, btrfs,
 * tmpfs, f2fs, zfs, overlayfs (over one of those). FAT and exFAT, what a stick usually has, keep
 * no holes: the kernel fills the gap before a write beyond the end with zeros, so a bundle written
 * in lanes would reach the stick twice. There, and on a filesystem not known, a bundle is written
 * in order, hashed on one thread.
 */
const KEEPS_HOLES = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0xf2f52010, 0x2fc12fc1, 0x794c7630]);

/** Whether the filesystem of `dir` is one of `KEEPS_HOLES` (false when it cannot be told). */
export async function keepsHoles(dir: string): Promise<boolean> {
  try {
    return KEEPS_HOLES.has((await statfs(dir)).type);
  } catch {
    return false;
  }
}

/** `hashThreadsFor` these entries: one when some blob is not from a file (a stream is copied in order). */
function laneCount(entries: readonly BundleEntry[], options: WriteOptions): number {
  const wanted = hashThreadsFor(entries.flatMap((e) => (e.reader !== undefined && e.desc !== undefined ? [e.desc.size] : [])), options);
  return entries.some((e) => e.desc !== undefined && e.reader === undefined && e.data === undefined) ? Math.min(wanted, 1) : wanted;
}

/** A blob of a bundle written in lanes: where its bytes go, and which lane copies them. */
interface LaneJob {
  /** Its place among the blobs, in the order of the bundle. */
  index: number;
  entry: BundleEntry & { desc: Descriptor; reader: () => Promise<RangeReader> };
  position: number;
}

/**
 * Writes a whole bundle whose blobs all come from files, its blobs in lanes: each lane copies its
 * own blobs (in the order of the bundle) to their places in the file, hashed by its own thread, so
 * that several sha256 streams run at once; the headers, metadata and padding around them are
 * written first, in runs. Pushes, in the order of the bundle, each blob's outcome onto `outcomes`
 * (its digest check, settled once its thread has hashed it).
 *
 * A lane stops at the first blob after one that failed, and never before it: the first blob
 * that fails in the order of the bundle is always the one found, as in a write in order.
 */
async function writeInLanes(sink: PartSink, entries: readonly BundleEntry[], threads: readonly HashThread[], onBytes: (n: number) => void, outcomes: Promise<void>[], signal?: AbortSignal): Promise<void> {
  const runs: { position: number; bytes: Buffer[] }[] = [];
  const jobs: LaneJob[] = [];
  let position = 0;
  let run: { position: number; bytes: Buffer[] } = { position, bytes: [] };
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const size = entrySize(entry);
    run.bytes.push(encodeHeader(entry.name, size, type));
    position += BLOCK;
    if (type === 'directory') continue;
    if (entry.data !== undefined) {
      run.bytes.push(entry.data);
    } else if (entry.desc !== undefined && entry.reader !== undefined) {
      runs.push(run);
      jobs.push({ index: jobs.length, entry: entry as LaneJob['entry'], position });
      run = { position: position + size, bytes: [] };
    } else {
      throw new SeabagError('E_INTERNAL', `bundle entry ${entry.name} has no content from a file`);
    }
    position += size;
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad > 0) run.bytes.push(Buffer.alloc(pad));
    position += pad;
  }
  run.bytes.push(Buffer.alloc(2 * BLOCK));
  runs.push(run);
  for (const r of runs) {
    if (r.bytes.length === 0) continue;
    const bytes = Buffer.concat(r.bytes);
    await sink.writeAt(bytes, r.position);
    onBytes(bytes.length);
  }

  const lanes: LaneJob[][] = threads.map(() => []);
  const laneOf = assignLanes(jobs.map((j) => j.entry.desc.size), threads.length);
  for (const job of jobs) (lanes[laneOf[job.index] as number] as LaneJob[]).push(job);
  // The first blob (in the order of the bundle) known to have failed.
  let failedAt = Number.POSITIVE_INFINITY;
  const settle: ((outcome: Promise<void>) => void)[] = [];
  for (let i = 0; i < jobs.length; i += 1) {
    const outcome = new Promise<void>((resolve) => {
      settle[i] = (settled) => resolve(settled);
    });
    // Awaited once every lane is done: a blob that fails before then (while another lane still
    // copies) is not a rejection left unhandled, which node would make a crash of the process.
    outcome.catch(() => undefined);
    outcomes.push(outcome);
  }
  const stopped = new SeabagError('E_ABORTED', 'stopped: a blob before it failed');
  const fail = (job: LaneJob, err: unknown): Promise<void> => {
    failedAt = Math.min(failedAt, job.index);
    return Promise.reject(err);
  };
  await Promise.all(
    lanes.map(async (own, l) => {
      const thread = threads[l] as HashThread;
      for (const job of own) {
        const outcome = (settle[job.index] as (o: Promise<void>) => void);
        // A blob after the first that failed is not copied: what the write reports is that failure.
        if (job.index > failedAt) {
          outcome(Promise.resolve());
          continue;
        }
        // Settled once the reader is closed too: a close that fails fails the blob.
        let result: Promise<void>;
        try {
          const reader = await job.entry.reader();
          try {
            let at = job.position;
            const write = (chunk: Buffer, done: () => void): Promise<void> => {
              if (job.index > failedAt) throw stopped;
              const written = sink.writeAt(chunk, at, done);
              at += chunk.length;
              return written;
            };
            const { check } = await copyBesideHash(write, thread, reader, job.entry.desc, onBytes, signal);
            result = check.catch((err: unknown) => fail(job, err));
            result.catch(() => undefined);
          } finally {
            await reader.close();
          }
        } catch (err) {
          result = err === stopped ? Promise.resolve() : fail(job, err);
          result.catch(() => undefined);
        }
        outcome(result);
      }
    }),
  );
  // A blob that failed while copied stops the write here (the caller names the first): no sync for nothing.
  if (failedAt !== Number.POSITIVE_INFINITY) await Promise.all(outcomes);
}

/**
 * Writes `entries` in order through `sink`: blobs hashed on `thread` beside the writes when there is
 * one (their digest checks pushed onto `outcomes`, settling later), else on this thread with `pool`.
 */
async function writeInOrder(sink: PartSink, entries: readonly BundleEntry[], thread: HashThread | undefined, pool: BufferPool | undefined, onBytes: (n: number) => void, outcomes: Promise<void>[], signal?: AbortSignal): Promise<void> {
  let failed: unknown;
  for (const entry of entries) {
    throwIfAborted(signal);
    if (failed !== undefined) throw failed;
    const type = entry.type ?? 'file';
    const size = entrySize(entry);
    await sink.append(encodeHeader(entry.name, size, type));
    onBytes(BLOCK);
    if (type === 'directory') continue;
    if (entry.data !== undefined) {
      await sink.append(entry.data);
      onBytes(entry.data.length);
    } else if (entry.desc !== undefined && entry.reader !== undefined) {
      const reader = await entry.reader();
      try {
        if (thread !== undefined) {
          const { check } = await copyBesideHash((chunk, done) => sink.append(chunk, done), thread, reader, entry.desc, onBytes, signal);
          check.catch((err: unknown) => {
            failed ??= err;
          });
          outcomes.push(check);
        } else {
          await copyFromReader(sink, pool as BufferPool, reader, entry.desc, onBytes, signal);
        }
      } finally {
        await reader.close();
      }
    } else if (entry.desc !== undefined && entry.open !== undefined) {
      await copyFromStream(sink, await entry.open(), entry.desc, onBytes);
    } else {
      throw new SeabagError('E_INTERNAL', `bundle entry ${entry.name} has no content`);
    }
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad > 0) {
      await sink.append(Buffer.alloc(pad));
      onBytes(pad);
    }
  }
  // Counted too, so progress ends at 100% (the total is the whole tar).
  await sink.append(Buffer.alloc(2 * BLOCK));
  onBytes(2 * BLOCK);
}

/**
 * Writes `entries` as a tar to `path` (or its parts). Content from sources is verified against
 * its descriptor as it passes; on any error nothing is left at `path` and temp files are removed.
 *
 * @throws E_DIGEST_MISMATCH, E_SIZE_MISMATCH from sources; E_DISK_FULL, E_IO; E_ABORTED
 */
export async function writeBundle(path: string, entries: readonly BundleEntry[], options: WriteOptions = {}): Promise<WriteResult> {
  const total = tarSize(entries);
  // Before the first byte: a split the reader would refuse is not written.
  if (options.splitSize !== undefined) checkSplit(options.splitSize, total);
  const sink = new PartSink(path, options.splitSize, options.sync !== false);
  const wanted = laneCount(entries, options);
  const lanes = wanted > 1 && !(await keepsHoles(dirname(path))) ? 1 : wanted;
  const given = (options.hashThreads ?? []).slice(0, lanes);
  const own = startHashThreads(lanes - given.length);
  // Digest checks still running on the threads, in the order of the blobs; the first that fails stops the write.
  const checks: Promise<void>[] = [];
  let done = 0;
  const onBytes = (n: number): void => {
    done += n;
    options.onProgress?.({ phase: 'write', done, total, item: basename(path) });
  };
  try {
    // A thread that could not start (a limit on threads, say) leaves its share to the others, or
    // to this thread: the bundle is the same byte for byte, only slower.
    const threads = (await Promise.allSettled([...given, ...own])).flatMap((t) => (t.status === 'fulfilled' ? [t.value] : []));
    if (threads.length > 1) await writeInLanes(sink, entries, threads, onBytes, checks, options.signal);
    else await writeInOrder(sink, entries, threads[0], threads.length === 0 ? new BufferPool(WRITES_IN_FLIGHT + 2, COPY_CHUNK) : undefined, onBytes, checks, options.signal);
    // The last digests are checked while the file is synced; it is named only if both succeed.
    const [checked, finished] = await Promise.allSettled([Promise.all(checks), sink.finish()]);
    if (checked.status === 'rejected') throw checked.reason;
    if (finished.status === 'rejected') throw finished.reason;
  } catch (caught) {
    // A blob whose digest failed on the thread comes before whatever stopped the write after it.
    const settled = await Promise.allSettled(checks);
    const err = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')?.reason ?? caught;
    await sink.abort();
    if (err instanceof SeabagError) throw err;
    throw fromSystemError(err, 'write bundle', path);
  } finally {
    await Promise.all(own.map((t) => t.then((x) => x.close(), () => undefined)));
  }

  const placed: string[] = [];
  try {
    for (const part of sink.parts) {
      if (options.noClobber === true) await placeNoClobber(part.temp, part.final);
      else await rename(part.temp, part.final);
      placed.push(part.final);
    }
    if (options.sync !== false) await fsyncDir(dirname(path));
  } catch (err) {
    await sink.abort();
    if (options.noClobber === true) for (const f of placed) await rm(f, { force: true });
    if (err instanceof SeabagError) throw err;
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
  if (options.noClobber === true) {
    const temp = tempPathFor(partsPath);
    await writeFileAtomic(temp, `${JSON.stringify(parts, null, 2)}\n`);
    try {
      await placeNoClobber(temp, partsPath);
    } catch (err) {
      await rm(temp, { force: true });
      for (const f of placed) await rm(f, { force: true });
      throw err instanceof SeabagError ? err : fromSystemError(err, 'write bundle', partsPath);
    }
  } else {
    await writeJSONAtomic(partsPath, parts);
  }
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
