import { throwIfAborted } from '../errors.js';

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

/** Something that fills a buffer from a position (a file, a range of a bundle). */
export interface ChunkSource {
  read(target: Buffer, position: number): Promise<number>;
}

/**
 * Reads `[0, size)` of `source` in chunks taken from `pool`, always one read ahead of `handle`,
 * which gets each chunk in order (and whether it is the last) together with its buffer, and must
 * give the buffer back to the pool when its bytes are gone.
 *
 * @throws what `short(position)` makes when the source ends before `size`
 */
export async function readAhead(
  source: ChunkSource,
  size: number,
  pool: Pick<BufferPool, 'take' | 'give'>,
  handle: (chunk: Buffer, buffer: Buffer, last: boolean) => Promise<void> | void,
  short: (position: number) => Error,
  signal?: AbortSignal,
): Promise<void> {
  const readAt = async (position: number): Promise<{ buffer: Buffer; n: number }> => {
    const buffer = await pool.take();
    const n = await source.read(buffer.subarray(0, Math.min(buffer.length, size - position)), position);
    if (n === 0) {
      pool.give(buffer);
      throw short(position);
    }
    return { buffer, n };
  };
  let position = 0;
  let next = size > 0 ? readAt(0) : undefined;
  while (next !== undefined) {
    throwIfAborted(signal);
    const { buffer, n } = await next;
    position += n;
    next = position < size ? readAt(position) : undefined;
    // A read that fails while the current chunk is handled is reported when it is awaited.
    next?.catch(() => undefined);
    await handle(buffer.subarray(0, n), buffer, position >= size);
  }
}
