/**
 * Work that several callers wait for, each with its own `AbortSignal` (the images of one build,
 * resolved at once, share a layout's referrer scan and a registry's tokens; an image is stopped
 * when one before it fails). The work runs under a signal of its own, aborted only once every
 * caller waiting for it has stopped waiting: the stop of the caller that happened to begin it
 * never fails the others with a cancellation that none of them asked for.
 */
import { SeabagError } from '../errors.js';

export class SharedWork<T> {
  readonly #stop = new AbortController();
  readonly #result: Promise<T>;
  #waiting = 0;

  /** Begins `work` at once, under the work's own signal. */
  constructor(work: (signal: AbortSignal) => Promise<T>) {
    this.#result = work(this.#stop.signal);
    this.#result.catch(() => undefined);
  }

  /** The work's own outcome (for bookkeeping: waits for it whatever any caller's signal does). */
  get result(): Promise<T> {
    return this.#result;
  }

  /** Stopped, every caller having stopped waiting: it is not to be waited for again (begin it anew). */
  get abandoned(): boolean {
    return this.#stop.signal.aborted;
  }

  /**
   * The outcome for one caller: the work's, or E_ABORTED as soon as `signal` aborts (the work
   * goes on for the other callers, and stops once none waits for it any more).
   */
  wait(signal: AbortSignal | undefined): Promise<T> {
    this.#waiting += 1;
    if (signal === undefined) return this.#result;
    return new Promise<T>((resolve, reject) => {
      const leave = (): void => {
        this.#waiting -= 1;
        if (this.#waiting === 0) this.#stop.abort(signal.reason);
        reject(new SeabagError('E_ABORTED', 'the operation was cancelled', { cause: signal.reason }));
      };
      if (signal.aborted) {
        leave();
        return;
      }
      signal.addEventListener('abort', leave, { once: true });
      this.#result.then(
        (value) => {
          signal.removeEventListener('abort', leave);
          resolve(value);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', leave);
          reject(err);
        },
      );
    });
  }
}
