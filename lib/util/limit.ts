/** A counting semaphore: at most `concurrency` of the functions given to `run` at once. */
export class Limiter {
  readonly #concurrency: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(concurrency: number) {
    this.#concurrency = Math.max(1, Math.floor(concurrency));
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.#concurrency) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#active += 1;
    try {
      return await fn();
    } finally {
      this.#active -= 1;
      this.#waiting.shift()?.();
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
