/**
 * sha256 over ranges of a bundle on every core: the main thread is one lane, worker threads are
 * the others. One sha256 stream is sequential by nature, so the unit of parallel work is a job
 * (a blob, or a run of parts): jobs are handed out largest first to whichever lane is free, and
 * each job is read once, in order, feeding every hash whose range it covers (a part's sha256 and
 * the blobs inside it in the same pass).
 *
 * Workers read through the file descriptors the main thread already holds (threads share them),
 * so what was opened and checked is what is hashed.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { fromSystemError, throwIfAborted } from '../errors.js';
import { BufferPool, COPY_CHUNK, readAhead } from '../util/buffers.js';
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
   * A job's hashes are known; return true when they show damage: jobs that start after it are
   * then skipped (their result stays undefined), jobs before it still run, so the first damage in
   * file order is always found.
   */
  onJob?: (job: number, hex: string[]) => boolean;
}

/** Below this, a worker's start (a few tens of ms) costs more than the second core gives. */
export const PARALLEL_MIN_BYTES = 48 * 1024 * 1024;

// The worker: plain CommonJS, evaluated from this string so the single-file CLI needs no second
// file. Reads with pread on the inherited descriptors, one 4 MiB buffer, no promises.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { readSync } = require('node:fs');
const { createHash } = require('node:crypto');
const pieces = workerData.pieces;
const buf = Buffer.allocUnsafe(workerData.chunk);
function readAt(target, position) {
  let done = 0;
  for (const p of pieces) {
    if (done >= target.length) break;
    const at = position + done;
    if (at >= p.start + p.size || at < p.start) continue;
    const want = Math.min(target.length - done, p.start + p.size - at);
    let got = 0;
    while (got < want) {
      const n = readSync(p.fd, target, done + got, want - got, at - p.start + got);
      if (n === 0) return done + got;
      got += n;
    }
    done += got;
  }
  return done;
}
function fileAt(position) {
  for (const p of pieces) if (position < p.start + p.size) return p.path;
  return pieces.length === 0 ? '' : pieces[pieces.length - 1].path;
}
parentPort.on('message', (job) => {
  let pos = job.start;
  try {
    const hashes = job.targets.map(() => createHash('sha256'));
    while (pos < job.end) {
      const n = readAt(buf.subarray(0, Math.min(buf.length, job.end - pos)), pos);
      if (n === 0) { parentPort.postMessage({ short: pos }); return; }
      const chunkEnd = pos + n;
      for (let i = 0; i < job.targets.length; i += 1) {
        const t = job.targets[i];
        const a = Math.max(t.start, pos);
        const b = Math.min(t.end, chunkEnd);
        if (a < b) hashes[i].update(buf.subarray(a - pos, b - pos));
      }
      const counted = Math.max(0, Math.min(chunkEnd, job.counted) - pos);
      pos = chunkEnd;
      if (counted > 0) parentPort.postMessage({ progress: counted });
    }
    parentPort.postMessage({ hex: hashes.map((h) => h.digest('hex')) });
  } catch (err) {
    parentPort.postMessage({ error: { code: err && err.code, message: String(err && err.message), file: fileAt(pos) } });
  }
});
`;

/** Not the parent's loaders (tsx in tests): only its profiling flags, so `--cpu-prof` covers the workers too. */
const WORKER_ARGS = (): string[] => process.execArgv.filter((a) => a.startsWith('--cpu-prof'));

interface WorkerMessage {
  progress?: number;
  hex?: string[];
  short?: number;
  error?: { code?: string; message: string; file: string };
}

/** A job run on the main thread: the same pass, with the read of the next chunk ahead of the hash. */
async function runHere(source: ByteSource, job: HashJob, onBytes: (n: number) => void, signal?: AbortSignal): Promise<string[]> {
  const hashes = job.targets.map(() => createHash('sha256'));
  const length = job.end - job.start;
  const pool = new BufferPool(2, Math.min(COPY_CHUNK, Math.max(1, length)));
  let pos = job.start;
  await readAhead(
    { read: (target, at) => source.readInto(target, job.start + at) },
    length,
    pool,
    (chunk, buffer) => {
      const chunkEnd = pos + chunk.length;
      for (const [i, t] of job.targets.entries()) {
        const a = Math.max(t.start, pos);
        const b = Math.min(t.end, chunkEnd);
        if (a < b) (hashes[i] as ReturnType<typeof createHash>).update(chunk.subarray(a - pos, b - pos));
      }
      const counted = Math.max(0, Math.min(chunkEnd, job.counted) - pos);
      pos = chunkEnd;
      pool.give(buffer);
      if (counted > 0) onBytes(counted);
    },
    (at) => truncated(source.name, job.start + at, job.end),
    signal,
  );
  return hashes.map((h) => h.digest('hex'));
}

/**
 * Hashes every target of every job, on up to `lanes` cores. Returns each job's hex digests in the
 * order of its targets (undefined for a job skipped after damage was found before it).
 *
 * @throws E_ARCHIVE_TRUNCATED (a file shorter than opened), E_IO, the signal's reason
 */
export async function hashLanes(source: ByteSource, jobs: readonly HashJob[], options: HashLanesOptions = {}): Promise<(string[] | undefined)[]> {
  const results: (string[] | undefined)[] = jobs.map(() => undefined);
  const bytes = jobs.reduce((sum, j) => sum + (j.end - j.start), 0);
  const pieces = source.descriptors?.();
  const wanted = Math.min(options.lanes ?? Math.min(availableParallelism(), 4), jobs.length);
  const lanes = pieces === undefined || bytes < (options.minParallelBytes ?? PARALLEL_MIN_BYTES) ? 1 : Math.max(1, wanted);
  // Largest first, so the lanes end together; ties in file order.
  const queue = jobs.map((_, i) => i).sort((a, b) => (jobs[b] as HashJob).end - (jobs[b] as HashJob).start - ((jobs[a] as HashJob).end - (jobs[a] as HashJob).start) || (jobs[a] as HashJob).start - (jobs[b] as HashJob).start);
  let cutoff = Infinity;
  const next = (): number | undefined => {
    for (;;) {
      const i = queue.shift();
      if (i === undefined) return undefined;
      if ((jobs[i] as HashJob).start < cutoff) return i;
    }
  };
  const finished = (i: number, hex: string[]): void => {
    results[i] = hex;
    if (options.onJob?.(i, hex) === true) cutoff = Math.min(cutoff, (jobs[i] as HashJob).start);
  };

  const workers: Worker[] = [];
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const signal = stop.signal;

  const mainLane = async (): Promise<void> => {
    for (let i = next(); i !== undefined; i = next()) {
      throwIfAborted(signal);
      const job = i;
      finished(job, await runHere(source, jobs[job] as HashJob, (n) => options.onBytes?.(n, job), signal));
    }
  };

  const workerLane = (worker: Worker): Promise<void> =>
    new Promise((resolve, reject) => {
      let current: number | undefined;
      const fail = (err: unknown): void => {
        stop.abort(err);
        reject(err);
      };
      const dispatch = (): void => {
        current = signal.aborted ? undefined : next();
        if (current === undefined) resolve();
        else worker.postMessage(jobs[current]);
      };
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (current !== undefined) fail(new Error(`a hashing thread stopped (exit ${code})`));
      });
      worker.on('message', (m: WorkerMessage) => {
        if (current === undefined) return;
        const job = jobs[current] as HashJob;
        if (m.progress !== undefined) options.onBytes?.(m.progress, current);
        else if (m.hex !== undefined) {
          finished(current, m.hex);
          dispatch();
        } else if (m.short !== undefined) fail(truncated(source.name, m.short, job.end));
        else if (m.error !== undefined) fail(fromSystemError(Object.assign(new Error(m.error.message), m.error.code === undefined ? {} : { code: m.error.code }), 'read', m.error.file));
      });
      dispatch();
    });

  try {
    const running: Promise<void>[] = [];
    // Loaded only here: node:worker_threads costs every command ~25 ms of start-up otherwise.
    const { Worker } = lanes > 1 ? await import('node:worker_threads') : { Worker: undefined };
    for (let l = 1; l < lanes && Worker !== undefined; l += 1) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: WORKER_ARGS(), workerData: { pieces, chunk: COPY_CHUNK } });
      workers.push(worker);
      running.push(workerLane(worker));
    }
    running.push(mainLane());
    const settled = await Promise.allSettled(running);
    throwIfAborted(options.signal);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    return results;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    stop.abort();
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
