/**
 * `bundle import oci://HOST/REPO:TAG`: a release straight from the shore registry into the
 * vessel's, staged exactly as a file import stages it (`lib/vessel/import.ts`), with the registry
 * as where the bundle's content comes from:
 *
 * 1. metadata first: the bundle index, the release manifest with its config, the signatures and
 *    carried roots; every trust and policy check runs on those, so a refused release costs a few
 *    KiB of link;
 * 2. then only what is missing: the copy HEADs the vessel's registry (and mounts from its other
 *    repositories) before it asks for a blob, so the delta is worked out aboard; a blob it needs is
 *    downloaded into `STATE/spool/sha256/<hex>.partial`, resumed with `Range` after any break, paced
 *    by one token bucket, checked against its digest, and only then pushed;
 * 3. a finished import removes its spool; an interrupted one leaves it for the next run.
 */
import { join } from 'node:path';
import type { Progress } from '../oci/store.js';
import { importBundle, type BundleOrigin, type ImportOptions, type ImportResult } from '../vessel/import.js';
import { formatOciAddress, parseOciAddress } from './address.js';
import { RegistryLayout } from './remote.js';
import { shoreClient, spoolOptions, type LinkOptions, type ShoreOptions } from './shore.js';
import { Spool } from './spool.js';

export interface RemoteImportOptions extends ImportOptions, LinkOptions {
  /** How to reach the shore registry (the vessel's registry keeps `registry`, `caFile`, `plainHttp`). */
  shore?: Omit<ShoreOptions, 'signal' | 'onProgress'>;
}

export interface RemoteImportResult extends ImportResult {
  /** `oci://HOST/REPO:TAG` as given. */
  source: string;
  /** Bytes that came over the link in this run (metadata and blobs). */
  bytesDownloaded: number;
  /** Bytes an earlier, interrupted run had left in the spool. */
  bytesResumed: number;
}

/** The spool of a vessel's state folder. */
export function spoolDir(stateDir: string): string {
  return join(stateDir, 'spool');
}

/**
 * Imports a pushed bundle from the shore registry.
 *
 * @throws what `importBundle` throws, plus E_NOT_FOUND (no such bundle), E_DIGEST_MISMATCH naming a
 *   blob damaged at the shore (its spool entry removed, nothing staged), E_REGISTRY_UNREACHABLE
 *   once patience runs out (run again: it resumes from the spool)
 */
export async function importFromRegistry(source: string, options: RemoteImportOptions): Promise<RemoteImportResult> {
  const address = parseOciAddress(source, 'required');
  const name = formatOciAddress(address);
  let done = 0;
  let total = 0;
  const progress = (p: Progress): void => options.onProgress?.(p);
  const spool = new Spool(spoolDir(options.stateDir), {
    ...spoolOptions(options, (n) => {
      done += n;
      progress({ phase: 'link', done, total: Math.max(total, done), item: name });
    }),
    // Bytes over the link against the blobs the vessel turned out to lack (known as the copy finds them).
    onStart: (size, have) => {
      total += size;
      done += have;
    },
  });
  const { retries, backoff, timeoutSeconds, onRetry } = options;
  const client = await shoreClient(address.registry, {
    ...options.shore,
    ...(retries === undefined ? {} : { retries }),
    ...(backoff === undefined ? {} : { backoff }),
    ...(timeoutSeconds === undefined ? {} : { timeoutSeconds }),
    ...(onRetry === undefined ? {} : { onRetry }),
  });
  let layout: RegistryLayout | undefined;
  try {
    const repo = client.repository(address.repository);
    const origin: BundleOrigin = {
      name,
      open: async (o) => {
        layout = await RegistryLayout.open(repo, address, spool, o.signal ? { signal: o.signal } : {});
        return layout.release();
      },
      staged: () => spool.remove(),
    };
    const result = await importBundle(origin, {
      ...options,
      // The copy's own progress counts what reaches the vessel; over a thin link the link is what matters.
      onProgress: (p) => {
        if (p.phase !== 'push') progress(p);
      },
    });
    return {
      ...result,
      source: name,
      bytesDownloaded: spool.bytesDownloaded + (layout?.metadataBytes ?? 0),
      bytesResumed: spool.bytesReused,
    };
  } finally {
    client.close();
  }
}
