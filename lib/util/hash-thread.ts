/**
 * sha256 on a second core, over buffers in shared memory: a copy reads each chunk once into a
 * buffer of this pool, hands it to the thread to hash and to the disk to write at the same time,
 * and reuses it once both are done. Nothing is copied between threads (the buffers are one
 * `SharedArrayBuffer`), so the main thread only reads, writes and keeps count, and the hashing of
 * a build costs no time of its own while it is shorter than the writing.
 *
 * Chunks are hashed in the order they are given, one sha256 stream at a time: a stream is begun
 * by its first chunk and ended (its hex digest returned) by the chunk marked last.
 */
import type { Worker } from 'node:worker_threads';
import { SeabagError } from '../errors.js';
import { withWorkerThreads, workerArgs } from './worker-args.js';

// The worker: plain CommonJS, evaluated from this string so the single-file CLI needs no second
// file. It only hashes; what it hashes is read and checked by the main thread.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const memory = Buffer.from(workerData.memory);
const size = workerData.size;
let hash;
parentPort.on('message', (m) => {
  try {
    if (hash === undefined) hash = createHash('sha256');
    hash.update(memory.subarray(m.slot * size, m.slot * size + m.n));
    if (m.last) {
      const hex = hash.digest('hex');
      hash = undefined;
      parentPort.postMessage({ hex });
    } else parentPort.postMessage({});
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message) });
  }
});
`;


interface Pending<T> {
  resolve: (value: T) => void;
  reject: (err: Error) => void;
}

/**
 * A worker thread that hashes chunks of a pool of shared buffers. `take()` and `give()` lend the
 * buffers (as `BufferPool` does); `hash()` sends one to the thread.
 */
export class HashThread {
  readonly #worker: Worker;
  readonly #buffers: Buffer[] = [];
  readonly #free: Buffer[] = [];
  readonly #waiting: Pending<Buffer>[] = [];
  /** Replies come in the order chunks were sent. */
  readonly #pending: Pending<string | undefined>[] = [];
  #failure: Error | undefined;

  private constructor(worker: Worker, memory: SharedArrayBuffer, count: number, size: number) {
    this.#worker = worker;
    for (let i = 0; i < count; i += 1) {
      const buffer = Buffer.from(memory, i * size, size);
      this.#buffers.push(buffer);
      this.#free.push(buffer);
    }
    worker.on('message', (m: { hex?: string; error?: string }) => {
      const p = this.#pending.shift();
      if (m.error !== undefined) this.#fail(new SeabagError('E_INTERNAL', `the hashing thread failed: ${m.error}`));
      else p?.resolve(m.hex);
    });
    worker.on('error', (err) => this.#fail(err));
    worker.on('exit', (code) => this.#fail(new SeabagError('E_INTERNAL', `the hashing thread stopped (exit ${code})`)));
  }

  /** Starts the thread with `count` buffers of `size` bytes. */
  static start(count: number, size: number): Promise<HashThread> {
    return withWorkerThreads(({ Worker }) => {
      const memory = new SharedArrayBuffer(count * size);
      const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: workerArgs(), workerData: { memory, size } });
      return new HashThread(worker, memory, count, size);
    });
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    for (const p of this.#pending.splice(0)) p.reject(this.#failure);
    for (const w of this.#waiting.splice(0)) w.reject(this.#failure);
  }

  /** Why the thread stopped, if it did: every later `hash()` and `take()` fails with it. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  #slot(buffer: Buffer): number {
    const slot = this.#buffers.findIndex((b) => b.byteOffset === buffer.byteOffset && b.buffer === buffer.buffer);
    if (slot === -1) throw new SeabagError('E_INTERNAL', 'a buffer not of the hashing pool was given to hash');
    return slot;
  }

  take(): Promise<Buffer> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const b = this.#free.pop();
    return b !== undefined ? Promise.resolve(b) : new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  give(b: Buffer): void {
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) waiter.resolve(b);
    else this.#free.push(b);
  }

  /**
   * Hashes the first `n` bytes of `buffer` (one of this pool's) into the current stream. Resolves
   * once the thread is done with the buffer: with the stream's hex digest when `last`.
   */
  hash(buffer: Buffer, n: number, last: boolean): Promise<string | undefined> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const slot = this.#slot(buffer);
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.#worker.postMessage({ slot, n, last });
    });
  }

  async close(): Promise<void> {
    this.#worker.removeAllListeners('exit');
    await this.#worker.terminate();
  }
}
