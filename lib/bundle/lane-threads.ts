/**
 * The hashing threads of `hashLanes` (hash-lanes.ts): the code every lane runs, and the threads
 * themselves, which a command may start before it knows what it will hash (`prestartHashThreads`).
 *
 * A thread takes a few tens of ms to start. With one big layer split into parts, the main thread
 * hashes the layer and the thread hashes the parts, the same number of bytes each: whatever the
 * thread starts late, the verify ends late. Started by the CLI's entry, before the program is
 * loaded, the thread is up when hashing begins.
 *
 * This module loads nothing but node:worker_threads (and that only when a thread is started), so
 * the entry can import it at no start-up cost.
 */
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { withWorkerThreads, workerArgs } from '../util/worker-args.js';

// The hashing itself: plain JavaScript, the body of `(readSync, createHash) => core`, so the main
// thread and the workers (evaluated from a string: the single-file CLI needs no second file) run
// one implementation. Reads with pread on the descriptors the main thread opened.
export const CORE = `
function readAt(pieces, target, position) {
  let done = 0;
  for (const p of pieces) {
    if (done >= target.length) break;
    const at = position + done;
    if (at >= p.start + p.size || at < p.start) continue;
    const want = Math.min(target.length - done, p.start + p.size - at);
    let got = 0;
    while (got < want) {
      let n;
      try {
        n = readSync(p.fd, target, done + got, want - got, at - p.start + got);
      } catch (err) {
        if (err !== null && typeof err === 'object') err.file = p.path;
        throw err;
      }
      if (n === 0) return done + got;
      got += n;
    }
    done += got;
  }
  return done;
}
function start(job) {
  return { job, pos: job.start, hashes: job.targets.map(() => createHash('sha256')), hex: undefined, short: undefined };
}
function step(st, buf, pieces, budget) {
  const job = st.job;
  const until = Math.min(job.end, st.pos + budget);
  let counted = 0;
  while (st.pos < until) {
    const n = readAt(pieces, buf.subarray(0, Math.min(buf.length, job.end - st.pos)), st.pos);
    if (n === 0) {
      st.short = st.pos;
      return counted;
    }
    const end = st.pos + n;
    for (let i = 0; i < job.targets.length; i += 1) {
      const t = job.targets[i];
      const a = Math.max(t.start, st.pos);
      const b = Math.min(t.end, end);
      if (a < b) st.hashes[i].update(buf.subarray(a - st.pos, b - st.pos));
    }
    counted += Math.max(0, Math.min(end, job.counted) - st.pos);
    st.pos = end;
  }
  if (st.pos >= job.end) st.hex = st.hashes.map((h) => h.digest('hex'));
  return counted;
}
return { readAt, start, step };
`;

// A worker: takes the next job in the shared order (an atomic counter both kinds of lane draw
// from, so no lane waits for the main thread to hand it work), skips those flagged, stops when
// the stop flag is set.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const core = (function (readSync, createHash) {${CORE}})(require('node:fs').readSync, require('node:crypto').createHash);
parentPort.on('message', (m) => {
  const ctl = new Int32Array(m.ctl);
  const skip = new Uint8Array(m.skip);
  const buf = Buffer.allocUnsafe(m.chunk);
  let job = -1;
  try {
    for (;;) {
      if (Atomics.load(ctl, 1) !== 0) break;
      const i = Atomics.add(ctl, 0, 1);
      if (i >= m.order.length) break;
      job = m.order[i];
      if (Atomics.load(skip, job) !== 0) continue;
      const st = core.start(m.jobs[job]);
      for (;;) {
        const counted = core.step(st, buf, m.pieces, m.report);
        if (counted > 0) parentPort.postMessage({ job, progress: counted });
        if (st.short !== undefined) {
          parentPort.postMessage({ job, short: st.short });
          return;
        }
        if (st.hex !== undefined || Atomics.load(ctl, 1) !== 0) break;
      }
      if (st.hex !== undefined) parentPort.postMessage({ job, hex: st.hex });
    }
  } catch (err) {
    parentPort.postMessage({ job, error: { code: err && err.code, message: String(err && err.message), file: err && err.file } });
    return;
  }
  parentPort.postMessage({ idle: true });
});
`;

/** Starts `count` hashing threads. */
function startWorkers(count: number): Promise<Worker[]> {
  return withWorkerThreads(({ Worker }) => Array.from({ length: count }, () => new Worker(WORKER_SOURCE, { eval: true, execArgv: workerArgs() })));
}

/** Below this, a worker's start (a few tens of ms) costs more than the second core gives. */
export const PARALLEL_MIN_BYTES = 48 * 1024 * 1024;

/** How many lanes by default: the cores, at most 4. */
export function defaultLanes(): number {
  return Math.min(availableParallelism(), 4);
}

// Threads started ahead, shared through the global object: the entry (dist/seabag.mjs) and the
// program it loads (dist/program.cjs) each carry their own copy of this module.
const PRESTARTED = Symbol.for('seabag.hashThreads.prestarted');
type WithPrestarted = { [PRESTARTED]?: Promise<Worker[]> };

/**
 * Starts `count` hashing threads now, for the next `hashLanes` to take. They do not keep the
 * process alive while waiting (a command that fails first still exits at once); the next
 * `hashLanes` takes them, or stops those it does not need.
 */
export function prestartHashThreads(count: number): void {
  const g = globalThis as WithPrestarted;
  if (count < 1 || g[PRESTARTED] !== undefined) return;
  const started = startWorkers(count).then((workers) => {
    for (const w of workers) {
      w.unref();
      // A thread that dies while waiting is dropped when taken (its threadId is then -1).
      w.on('error', () => undefined);
    }
    return workers;
  });
  started.catch(() => undefined);
  g[PRESTARTED] = started;
}

/**
 * `count` hashing threads: those started ahead first (when they are already up, or `count` > 0:
 * waiting for one being started is quicker than starting another), then new ones. Started-ahead
 * threads not needed are stopped.
 */
export async function takeThreads(count: number): Promise<Worker[]> {
  const g = globalThis as WithPrestarted;
  const pending = g[PRESTARTED];
  delete g[PRESTARTED];
  if (count < 1) {
    // Not waited for: this hashing runs on the main thread alone and must not wait for a thread's start.
    void pending?.then((ws) => Promise.all(ws.map((w) => w.terminate()))).catch(() => undefined);
    return [];
  }
  const ready = ((await pending?.catch(() => undefined)) ?? []).filter((w) => w.threadId !== -1);
  const taken = ready.slice(0, count);
  for (const w of ready.slice(count)) void w.terminate();
  for (const w of taken) {
    w.removeAllListeners('error');
    w.ref();
  }
  return taken.length < count ? [...taken, ...(await startWorkers(count - taken.length))] : taken;
}
