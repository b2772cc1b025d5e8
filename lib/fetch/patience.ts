/**
 * Patience for a thin link (`bundle fetch`, and the satellite path's downloads): an attempt that
 * fails with a temporary error is tried again after a growing pause, for as long as attempts keep
 * making progress; only `retries` failures in a row with no byte of progress give up. With the
 * defaults (20 attempts, waits from 1 s growing to 30 s) an outage of about ten minutes is ridden
 * out.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SeabagError, throwIfAborted } from '../errors.js';

export interface PatienceOptions {
  /** Failed attempts in a row, without a byte of progress, before giving up (default 20). */
  retries?: number;
  /** First and longest wait between attempts (default 1 s and 30 s). */
  backoff?: { minMs: number; maxMs: number };
  signal?: AbortSignal;
  onRetry?: (info: { url: string; attempt: number; delayMs: number; reason: string }) => void;
}

/**
 * Runs `attempt` until it succeeds. An error that is not a SeabagError counts as temporary (a
 * stream that broke); a SeabagError is retried only when it says it is temporary.
 *
 * @param what names the transfer in messages (a URL)
 * @param giveUp makes the error thrown when patience runs out from the last one
 */
export async function withPatience<T>(
  what: string,
  options: PatienceOptions,
  attempt: (progressed: () => void) => Promise<T>,
  giveUp: (last: SeabagError, retries: number) => SeabagError,
): Promise<T> {
  const retries = options.retries ?? 20;
  const { minMs, maxMs } = options.backoff ?? { minMs: 1_000, maxMs: 30_000 };
  let failures = 0;
  for (;;) {
    throwIfAborted(options.signal);
    let progressed = false;
    try {
      return await attempt(() => {
        progressed = true;
      });
    } catch (err) {
      const e = err instanceof SeabagError ? err : new SeabagError('E_FETCH', String((err as Error).message ?? err), { details: { url: what }, temporary: true });
      if (!e.temporary || e.code === 'E_ABORTED') throw e;
      failures = progressed ? 1 : failures + 1;
      if (failures > retries) throw giveUp(e, retries);
      const delay = Math.min(maxMs, minMs * 2 ** (failures - 1));
      options.onRetry?.({ url: what, attempt: failures, delayMs: delay, reason: e.message });
      try {
        await sleep(delay, undefined, options.signal ? { signal: options.signal } : {});
      } catch {
        throwIfAborted(options.signal);
      }
    }
  }
}
