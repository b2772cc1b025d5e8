/**
 * The link to the shore registry: one client (credentials, TLS and `--ca-file`/`--plain-http` as
 * for `build`), with the patience of `fetch` for outages, and one token bucket over everything
 * that comes across.
 */
import type { OpOptions } from '../oci/store.js';
import type { CredentialStore } from '../registry/auth.js';
import { RegistryClient } from '../registry/client.js';
import type { PatienceOptions } from '../fetch/patience.js';
import { TokenBucket } from '../util/limit.js';
import type { SpoolOptions } from './spool.js';

export interface ShoreOptions extends OpOptions {
  /** Speak plain HTTP to the shore registry (loopback registries do by default). */
  plainHttp?: boolean;
  /** PEM file of a CA to trust for the shore registry's certificate. */
  caFile?: string;
  credentials?: CredentialStore;
}

export interface LinkOptions extends PatienceOptions {
  /** Average bytes per second over the link not to exceed (`--limit-rate`). */
  limitRate?: number;
  /** Seconds without a byte before a download is dropped and resumed (default 60). */
  timeoutSeconds?: number;
}

/** A client for the shore registry whose requests wait out outages as `fetch` does. */
export function shoreClient(registry: string, options: ShoreOptions & LinkOptions): Promise<RegistryClient> {
  const { minMs, maxMs } = options.backoff ?? { minMs: 1_000, maxMs: 30_000 };
  return RegistryClient.create(registry, {
    ...(options.plainHttp === undefined ? {} : { plainHttp: options.plainHttp }),
    ...(options.caFile === undefined ? {} : { caFile: options.caFile }),
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    retry: { retries: options.retries ?? 20, minDelayMs: minMs, maxDelayMs: maxMs },
    timeoutMs: (options.timeoutSeconds ?? 60) * 1000,
    ...(options.onRetry === undefined ? {} : { onRetry: (err, attempt, delayMs) => options.onRetry?.({ url: registry, attempt, delayMs, reason: err.message }) }),
  });
}

/** Spool options from link options: the rate as one bucket (a quarter-second burst at most). */
export function spoolOptions(options: LinkOptions & OpOptions, onBytes?: (n: number) => void): SpoolOptions {
  return {
    ...(options.limitRate === undefined ? {} : { bucket: new TokenBucket(options.limitRate, 0.25) }),
    ...(options.retries === undefined ? {} : { retries: options.retries }),
    ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
    ...(options.timeoutSeconds === undefined ? {} : { timeoutSeconds: options.timeoutSeconds }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.onRetry === undefined ? {} : { onRetry: options.onRetry }),
    ...(onBytes === undefined ? {} : { onBytes }),
  };
}
