/**
 * A few large buffers reused by a copy, handed back when their bytes are safely gone (written to
 * disk or to a socket): a multi-gigabyte copy allocates nothing per chunk, so memory stays flat
 * and the garbage collector stays out of the way.
 */
export class BufferPool {
  readonly #free: Buffer[] = [];
  readonly #waiting: ((b: Buffer) => void)[] = [];

  constructor(count: number, size: number) {
    for (let i = 0; i < count; i += 1) this.#free.push(Buffer.allocUnsafe(size));
  }

  take(): Promise<Buffer> {
    const b = this.#free.pop();
    return b !== undefined ? Promise.resolve(b) : new Promise((resolve) => this.#waiting.push(resolve));
  }

  give(b: Buffer): void {
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) waiter(b);
    else this.#free.push(b);
  }
}

/** Copy chunk: large enough that per-chunk costs (syscalls, promises) disappear. */
export const COPY_CHUNK = 4 * 1024 * 1024;
