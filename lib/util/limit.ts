import { setTimeout as sleep } from 'node:timers/promises';

/** A counting semaphore: at most `concurrency` of the functions given to `run` at once. */
export class Limiter {
  readonly #concurrency: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(concurrency: number) {
    this.#concurrency = Math.max(1, Math.floor(concurrency));
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    // A place is taken at once, or handed over by the function that ends (never freed and then
    // taken again: between the two, a `run` called by another task would take it first, and
    // one more than `concurrency` would run).
    if (this.#active >= this.#concurrency) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active += 1;
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next !== undefined) next();
      else this.#active -= 1;
    }
  }
}

/**
 * Runs every task, at most `concurrency` at once, and waits for all of them to settle before
 * reporting the first failure, so nothing is still running when the caller sees the error.
 * `onError` lets the caller stop the others early (abort a shared signal).
 */
export async function settleAll<T>(
  tasks: readonly (() => Promise<T>)[],
  concurrency: number,
  onError?: (err: unknown) => void,
): Promise<T[]> {
  const limiter = new Limiter(concurrency);
  let first: { err: unknown } | undefined;
  const results = await Promise.allSettled(
    tasks.map((task) =>
      limiter.run(async () => {
        if (first !== undefined) throw first.err;
        try {
          return await task();
        } catch (err) {
          if (first === undefined) {
            first = { err };
            onError?.(err);
          }
          throw err;
        }
      }),
    ),
  );
  if (first !== undefined) throw first.err;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/**
 * A token bucket for a byte rate: `take(n)` waits until `n` bytes fit under the average. The bucket
 * starts empty and holds at most `burstSeconds` of the rate, so the average never runs ahead of the
 * rate by more than that, however the takers (one transfer or several at once) come and go.
 */
export class TokenBucket {
  readonly rate: number;
  readonly #capacity: number;
  #tokens = 0;
  #last = Date.now();

  constructor(rate: number, burstSeconds = 1) {
    this.rate = rate;
    this.#capacity = rate * burstSeconds;
  }

  async take(n: number, signal?: AbortSignal): Promise<void> {
    const now = Date.now();
    this.#tokens = Math.min(this.#capacity, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    this.#tokens -= n;
    if (this.#tokens < 0) {
      const wait = (-this.#tokens / this.rate) * 1000;
      await sleep(wait, undefined, signal ? { signal } : {});
    }
  }
}
