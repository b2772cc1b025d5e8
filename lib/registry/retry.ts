/**
 * Retry with exponential backoff, only for errors marked `temporary` where they were made.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SeabagError, throwIfAborted } from '../errors.js';

export interface RetryPolicy {
  /** Attempts after the first (default 5). */
  retries: number;
  /** First wait (default 250 ms), doubled each time up to `maxDelayMs` (default 8 s). */
  minDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 5, minDelayMs: 250, maxDelayMs: 8_000 };

export function isTemporary(err: unknown): boolean {
  return err instanceof SeabagError && err.temporary;
}

/** The wait before attempt `n` (1-based), with ±20% jitter so clients don't retry in step. */
export function backoffDelay(policy: RetryPolicy, attempt: number, hintMs?: number): number {
  const base = Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** (attempt - 1));
  const jittered = base * (0.8 + Math.random() * 0.4);
  return Math.max(jittered, Math.min(hintMs ?? 0, policy.maxDelayMs * 4));
}

/**
 * Runs `fn`, again after a pause when it fails with a temporary error, up to `policy.retries`
 * more times. The last error is thrown as it was.
 */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy = DEFAULT_RETRY,
  signal?: AbortSignal,
  onRetry?: (err: SeabagError, attempt: number, delayMs: number) => void,
): Promise<T> {
  for (let attempt = 0; ; attempt += 1) {
    throwIfAborted(signal);
    try {
      return await fn(attempt);
    } catch (err) {
      if (!isTemporary(err) || attempt >= policy.retries) throw err;
      const e = err as SeabagError;
      const hint = typeof e.details['retryAfterMs'] === 'number' ? e.details['retryAfterMs'] : undefined;
      const delay = backoffDelay(policy, attempt + 1, hint);
      onRetry?.(e, attempt + 1, delay);
      try {
        await sleep(delay, undefined, signal === undefined ? {} : { signal });
      } catch {
        throwIfAborted(signal);
      }
    }
  }
}
