/**
 * sha256 over ranges of a bundle on every core: the main thread is one lane, worker threads are
 * the others. One sha256 stream is sequential by nature, so the unit of parallel work is a job
 * (a blob, a part with the blobs inside it): every lane takes the next job, largest first, from
 * one shared counter, so the main thread starts on the largest at once and a thread joins as
 * soon as it is up. Each job is read once, in order, feeding every hash whose range it covers.
 *
 * Reads are synchronous pread()s of 512 KiB into one buffer per lane, hashed while the bytes are
 * still in the core's cache: measured on a cached file, as fast as `openssl dgst`, and faster
 * than reads on another thread (the bytes then cross cores before they are hashed). The main
 * thread hashes in 2 MiB slices and lets the event loop run between them (admission goes on
 * there meanwhile).
 *
 * Threads read through the file descriptors the main thread already holds (threads share them),
 * so what was opened and checked is what is hashed.
 */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { fromSystemError, throwIfAborted } from '../errors.js';
import { workerArgs } from '../util/worker-args.js';
import { CORE, defaultLanes, PARALLEL_MIN_BYTES, takeThreads } from './lane-threads.js';

export { PARALLEL_MIN_BYTES } from './lane-threads.js';
import { truncated, type ByteSource } from './source.js';

/** One hash to compute: the bytes `[start, end)` of the source. */
export interface HashTarget {
  start: number;
  end: number;
}

/**
 * One lane's unit of work: read `[start, end)` once, in order. Progress counts only the bytes of
 * `[start, counted)` (a job may read past its share to finish a blob that crosses into the next).
 */
export interface HashJob {
  start: number;
  end: number;
  counted: number;
  targets: HashTarget[];
}

export interface HashLanesOptions {
  signal?: AbortSignal;
  /** How many lanes at most (default: the cores, at most 4). */
  lanes?: number;
  /** Below this many bytes in all, one lane (default `PARALLEL_MIN_BYTES`). */
  minParallelBytes?: number;
  /** `n` more bytes of job `job` were hashed. */
  onBytes?: (n: number, job: number) => void;
  /**
   * A job's hashes are known. Return true when they show damage: jobs that start after it are
   * then skipped (their result stays undefined), jobs before it still run, so the first damage in
   * file order is always found. Or return which other jobs to skip, as a test on their index.
   */
  onJob?: (job: number, hex: string[]) => boolean | ((other: number) => boolean);
}


/** One read: small enough that the bytes are still in the core's cache when they are hashed. */
const CHUNK = 512 * 1024;
/** The main thread hashes this much, then lets the event loop run (admission's reads go on meanwhile). */
const SLICE = 2 * 1024 * 1024;
/** A worker tells of its progress every this many bytes. */
const REPORT = 4 * 1024 * 1024;


interface LaneState {
  job: HashJob;
  pos: number;
  hex: string[] | undefined;
  short: number | undefined;
}
interface LaneCore {
  readAt(pieces: Piece[], target: Buffer, position: number): number;
  start(job: HashJob): LaneState;
  /** Reads and hashes about `budget` more bytes of the job; returns how many of them count. */
  step(st: LaneState, buf: Buffer, pieces: Piece[], budget: number): number;
}
type Piece = { fd: number; start: number; size: number; path: string };

let core: LaneCore | undefined;
// The same source the workers run, compiled once here.
const laneCore = (): LaneCore => (core ??= new Function('readSync', 'createHash', CORE)(readSync, createHash) as LaneCore);

export { defaultLanes, workerArgs };

interface WorkerMessage {
  job?: number;
  progress?: number;
  hex?: string[];
  short?: number;
  idle?: true;
  error?: { code?: string; message: string; file?: string };
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Hashes every target of every job, on up to `lanes` cores. Returns each job's hex digests in the
 * order of its targets (undefined for a job skipped after damage was found before it).
 *
 * Every lane, the main thread's and each worker's, draws the next job from one shared order
 * (largest first, so the lanes end together): the main thread starts on the largest at once,
 * and a worker joins when it has started, without waiting for anyone to hand it work.
 *
 * @throws E_ARCHIVE_TRUNCATED (a file shorter than opened), E_IO, the signal's reason
 */
export async function hashLanes(source: ByteSource, jobs: readonly HashJob[], options: HashLanesOptions = {}): Promise<(string[] | undefined)[]> {
  const results: (string[] | undefined)[] = jobs.map(() => undefined);
  const bytes = jobs.reduce((sum, j) => sum + (j.end - j.start), 0);
  const pieces = source.descriptors();
  const wanted = Math.min(options.lanes ?? defaultLanes(), jobs.length);
  const job = (i: number): HashJob => jobs[i] as HashJob;
  const floor = options.minParallelBytes ?? PARALLEL_MIN_BYTES;
  // Other lanes can take at most what the largest job leaves (one big layer: nearly nothing).
  const largest = jobs.reduce((max, j) => Math.max(max, j.end - j.start), 0);
  const lanes = bytes < floor || bytes - largest < floor / 4 ? 1 : Math.max(1, wanted);
  // Largest first, so the lanes end together; ties in file order.
  const order = jobs.map((_, i) => i).sort((a, b) => job(b).end - job(b).start - (job(a).end - job(a).start) || job(a).start - job(b).start);
  // ctl[0]: the next place in `order` to take; ctl[1]: stop. skip[i]: job i is not to be run.
  const ctl = new Int32Array(new SharedArrayBuffer(8));
  const skip = new Uint8Array(new SharedArrayBuffer(Math.max(1, jobs.length)));
  const take = (): number | undefined => {
    for (;;) {
      const at = Atomics.add(ctl, 0, 1);
      if (at >= order.length) return undefined;
      const i = order[at] as number;
      if (Atomics.load(skip, i) === 0) return i;
    }
  };
  const finished = (i: number, hex: string[]): void => {
    results[i] = hex;
    const verdict = options.onJob?.(i, hex);
    if (verdict === undefined || verdict === false) return;
    const skips = verdict === true ? (other: number): boolean => job(other).start >= job(i).start : verdict;
    for (let other = 0; other < jobs.length; other += 1) if (other !== i && skips(other)) Atomics.store(skip, other, 1);
  };

  const stop = new AbortController();
  let failure: unknown;
  const fail = (err: unknown): void => {
    failure ??= err;
    stop.abort(err);
  };
  const onAbort = (): void => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  stop.signal.addEventListener('abort', () => Atomics.store(ctl, 1, 1), { once: true });
  const signal = stop.signal;

  const mainLane = async (): Promise<void> => {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, bytes)));
    let sinceYield = 0;
    for (let i = take(); i !== undefined && !signal.aborted; i = take()) {
      const current = i;
      const st = laneCore().start(job(current));
      for (;;) {
        const before = st.pos;
        let counted: number;
        try {
          counted = laneCore().step(st, buf, pieces, Math.max(1, SLICE - sinceYield));
        } catch (err) {
          throw fromSystemError(err, 'read', (err as { file?: string }).file);
        }
        if (counted > 0) options.onBytes?.(counted, current);
        if (st.short !== undefined) throw truncated(source.name, st.short, st.job.end);
        sinceYield += st.pos - before;
        if (sinceYield >= SLICE) {
          // Let the event loop run (admission's reads, the workers' news, a signal), then go on.
          await yieldToLoop();
          sinceYield = 0;
          if (signal.aborted) return;
        }
        if (st.hex !== undefined) break;
      }
      finished(current, st.hex);
    }
  };

  const workerLane = (worker: Worker): Promise<void> =>
    new Promise((resolve) => {
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        signal.removeEventListener('abort', onStop);
        resolve();
      };
      const lost = (err: unknown): void => {
        fail(err);
        cleanup();
      };
      const onStop = (): void => cleanup();
      const onError = (err: unknown): void => lost(err);
      const onExit = (code: number): void => lost(new Error(`a hashing thread stopped (exit ${code})`));
      const onMessage = (m: WorkerMessage): void => {
        if (m.progress !== undefined) options.onBytes?.(m.progress, m.job as number);
        else if (m.hex !== undefined) finished(m.job as number, m.hex);
        else if (m.idle === true) cleanup();
        else if (m.short !== undefined) lost(truncated(source.name, m.short, job(m.job as number).end));
        else if (m.error !== undefined) lost(fromSystemError(Object.assign(new Error(m.error.message), m.error.code === undefined ? {} : { code: m.error.code }), 'read', m.error.file));
      };
      signal.addEventListener('abort', onStop, { once: true });
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage({ pieces, jobs, order, ctl: ctl.buffer, skip: skip.buffer, chunk: CHUNK, report: REPORT });
    });

  const workers: Worker[] = [];
  try {
    const running: Promise<void>[] = [];
    workers.push(...(await takeThreads(lanes - 1)));
    for (const w of workers) running.push(workerLane(w));
    running.push(mainLane().catch(fail));
    await Promise.all(running);
    throwIfAborted(options.signal);
    if (failure !== undefined) throw failure;
    return results;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    stop.abort();
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
