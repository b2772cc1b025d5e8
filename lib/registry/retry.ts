/**
 * Retry with exponential backoff, only for errors marked `temporary` where they were made.
 *
 * Which registry answers are temporary (decided once, in `client.ts`, with `isPermanentAnswer`):
 * a reset or refused connection, 429, and a 5xx, except a 5xx the registry will give again
 * for the same request:
 * - 501 Not Implemented and 505 HTTP Version Not Supported: the server lacks the feature;
 * - a 5xx whose error body also names a verdict on the request itself (`MANIFEST_BLOB_UNKNOWN`,
 *   `MANIFEST_INVALID`, `DIGEST_INVALID`, `NAME_INVALID`, …). CNCF Distribution 2.8 answers a
 *   manifest it refuses in validation (foreign layer `urls` without
 *   `validation.manifests.urls.allow`, say) with 500 and `UNKNOWN` "unknown error" listed first,
 *   beside `MANIFEST_BLOB_UNKNOWN`: the 500 is an artefact of the order of its errors, and the
 *   same manifest gets the same answer every time, so retrying only spends 8 s.
 * A 5xx with `UNKNOWN` alone (a storage driver hiccup, a proxy in trouble) stays temporary.
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

/** distribution-spec error codes that judge the request, not the server's health. */
const REQUEST_VERDICTS = new Set([
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'MANIFEST_UNVERIFIED',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'TAG_INVALID',
  'UNSUPPORTED',
  'DENIED',
  'UNAUTHORIZED',
]);

/** Will the registry answer the same request the same way (see the module comment)? */
export function isPermanentAnswer(status: number, codes: readonly string[]): boolean {
  if (status === 501 || status === 505) return true;
  return status >= 500 && codes.some((c) => REQUEST_VERDICTS.has(c));
}

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
