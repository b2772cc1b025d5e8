/**
 * The spool: blobs on their way from the shore registry, in `DIR/sha256/<hex>.partial` while they
 * come in and `DIR/sha256/<hex>` once their digest is checked. A break (a dropped link, a killed
 * process, a power cut) leaves the partial file, and the next attempt (or the next run) asks the
 * registry for the rest with `Range` and goes on hashing where it stopped. One token bucket paces
 * every download that shares it.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fromSystemError, SeabagError } from '../errors.js';
import { digestHex } from '../oci/digest.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { BlobWriter, RangeReader, RelayOptions } from '../oci/store.js';
import { withPatience, type PatienceOptions } from '../fetch/patience.js';
import { isNotFound } from '../registry/client.js';
import { networkError } from '../registry/http.js';
import type { Repository } from '../registry/repository.js';
import { fsyncDir } from '../util/atomic.js';
import { READ_CHUNK, sha256File } from '../util/files.js';
import { Limiter, type TokenBucket } from '../util/limit.js';
import { openAppender } from './appender.js';

export interface SpoolOptions extends PatienceOptions {
  /** Paces every byte over the link (`--limit-rate`). */
  bucket?: TokenBucket;
  /** Told of every byte that comes over the link. */
  onBytes?: (n: number) => void;
  /** Seconds without a byte before a download is dropped and resumed (default 60). */
  timeoutSeconds?: number;
  /** Told when a blob is first asked for: its size, and how much of it the spool already holds. */
  onStart?: (size: number, have: number) => void;
}

export class Spool {
  readonly dir: string;
  readonly #options: SpoolOptions;
  readonly #inflight = new Map<string, Promise<string>>();
  readonly #relays = new Map<string, Promise<void>>();
  /**
   * Under a rate limit, one download at a time: the link is the bottleneck anyway, and a break (a
   * cut, a kill) then loses at most the one slice in flight.
   */
  readonly #downloads: Limiter;
  /** Bytes that came over the link into this spool. */
  bytesDownloaded = 0;
  /** Bytes of blobs found already complete or part-done in the spool (not downloaded again). */
  bytesReused = 0;

  constructor(dir: string, options: SpoolOptions = {}) {
    this.dir = dir;
    this.#options = options;
    this.#downloads = new Limiter(options.bucket === undefined ? Number.MAX_SAFE_INTEGER : 1);
  }

  /** Where a blob's verified copy lives. */
  path(desc: Pick<Descriptor, 'digest'>): string {
    return join(this.dir, 'sha256', digestHex(desc.digest));
  }

  /**
   * Brings a blob into the spool (or finds it there) and returns the path of its verified copy.
   *
   * @throws E_DIGEST_MISMATCH, E_SIZE_MISMATCH naming the blob (its spool entry removed);
   *   E_BLOBS_MISSING when the repository lacks it; E_REGISTRY_UNREACHABLE, E_REGISTRY once
   *   patience runs out; E_AUTH; E_DISK_FULL, E_IO
   */
  get(repo: Repository, desc: Descriptor): Promise<string> {
    let running = this.#inflight.get(desc.digest);
    if (running === undefined) {
      const relaying = this.#relays.get(desc.digest);
      running = (relaying === undefined ? this.#get(repo, desc) : relaying.catch(() => undefined).then(() => this.#get(repo, desc))).finally(() => this.#inflight.delete(desc.digest));
      this.#inflight.set(desc.digest, running);
    }
    return running;
  }

  /** The verified copy as a stream (the blob brought in first when needed). */
  async stream(repo: Repository, desc: Descriptor): Promise<Readable> {
    return createReadStream(await this.get(repo, desc), { highWaterMark: READ_CHUNK });
  }

  /** The verified copy for random access. */
  async reader(repo: Repository, desc: Descriptor): Promise<RangeReader> {
    const handle = await open(await this.get(repo, desc), 'r');
    return {
      size: desc.size,
      read: async (target, position) => (await handle.read(target, 0, Math.min(target.length, desc.size - position), position)).bytesRead,
      close: () => handle.close(),
    };
  }

  /**
   * Moves a blob from the shore registry into an upload on the vessel's registry in one pass: each
   * chunk that comes over the link is hashed, appended to the spool's partial file (so a break, a
   * kill or a power cut loses at most what was in flight) and written into the upload at the same
   * time. The upload is committed (`BlobWriter.commit`) only once the whole blob matches its
   * digest; otherwise it is cancelled, the spool entry removed, and E_DIGEST_MISMATCH thrown.
   *
   * Bytes an earlier attempt or run left in the spool are hashed and fed first, then the rest is
   * asked for with `Range`. A new upload always starts from byte 0 (Distribution cannot resume
   * one), fed from the spool. A break of the link ends the upload's request cleanly and keeps the
   * upload; a break of the upload cancels it and starts a new one from the spool (at most the
   * vessel client's retries). Once committed, the blob's spool entry is removed: the vessel's
   * registry holds it now.
   *
   * @throws what `get` throws; the vessel registry's errors once its retries run out
   */
  relay(repo: Repository, desc: Descriptor, start: () => Promise<BlobWriter>, options: RelayOptions & { retries?: number } = {}): Promise<void> {
    // One transfer of a blob at a time: a relay waits for the one before it (and for a download).
    const before = Promise.all([this.#relays.get(desc.digest), this.#inflight.get(desc.digest)]).catch(() => undefined);
    const running = before.then(() => this.#downloads.run(() => this.#relay(repo, desc, start, options)));
    const settled = running.finally(() => {
      if (this.#relays.get(desc.digest) === settled) this.#relays.delete(desc.digest);
    });
    this.#relays.set(desc.digest, settled);
    return settled;
  }

  async #relay(repo: Repository, desc: Descriptor, start: () => Promise<BlobWriter>, options: RelayOptions & { retries?: number }): Promise<void> {
    const o = this.#options;
    const final = this.path(desc);
    const partial = `${final}.partial`;
    await mkdir(join(this.dir, 'sha256'), { recursive: true }).catch((err: unknown) => {
      throw fromSystemError(err, 'create', this.dir);
    });
    // A whole copy an earlier run downloaded (and never pushed) is fed like a partial one: checked again on the way.
    if ((await stat(final).catch(() => undefined)) !== undefined) await rename(final, partial).catch(() => undefined);
    const earlier = Math.min(desc.size, (await stat(partial).catch(() => undefined))?.size ?? 0);
    o.onStart?.(desc.size, earlier);
    this.bytesReused += earlier;
    const what = `${repo.client.registry}/${repo.name}@${desc.digest}`;
    const vesselRetries = options.retries ?? 5;
    let upload: BlobWriter | undefined;
    let hash = createHash('sha256');
    let hashed = 0;
    let vesselFailures = 0;
    let trusted = earlier === 0;
    let handle: FileHandle | undefined;
    const fromVessel = new WeakSet<object>();
    const blame = (err: unknown): SeabagError => {
      const e = err instanceof SeabagError ? err : networkError(err, 'PATCH', new URL(`/v2/${repo.name}/blobs/uploads/`, 'http://vessel.invalid'));
      fromVessel.add(e);
      return e;
    };
    const vessel = async <T>(work: () => Promise<T> | T): Promise<T> => {
      try {
        return await work();
      } catch (err) {
        throw blame(err);
      }
    };
    const dropUpload = async (): Promise<void> => {
      const u = upload;
      upload = undefined;
      await u?.cancel();
    };
    const feed = async (from: number, to: number): Promise<void> => {
      const u = upload as BlobWriter;
      for (let at = from; at < to; ) {
        // A fresh buffer each time: the upload's request may still hold the last one.
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, to - at));
        const { bytesRead } = await (handle as FileHandle).read(buf, 0, buf.length, at);
        if (bytesRead === 0) throw new SeabagError('E_IO', `${partial} ended at byte ${at} while it was being read`, { temporary: true });
        const chunk = buf.subarray(0, bytesRead);
        if (at + bytesRead > hashed) {
          hash.update(chunk.subarray(Math.max(0, hashed - at)));
          hashed = at + bytesRead;
        }
        await vessel(() => u.write(chunk));
        options.onBytes?.(bytesRead);
        at += bytesRead;
      }
    };
    const attempt = async (progressed: () => void): Promise<void> => {
      // Opened afresh each attempt: a refused range removes the partial file.
      await handle?.close().catch(() => undefined);
      handle = await open(partial, constants.O_RDWR | constants.O_CREAT, 0o644);
      let held = (await handle.stat()).size;
      if (held > desc.size || held < hashed) {
        // Not what this relay wrote: start the blob over.
        await handle.truncate(0);
        held = 0;
      }
      if (held < hashed) {
        hash = createHash('sha256');
        hashed = 0;
      }
      // An upload goes on only in step with the spool; a new one starts from byte 0.
      if (upload !== undefined && (upload.written !== held || hashed !== held)) await dropUpload();
      // A fresh blob's upload session opens while its first bytes are asked for.
      let starting: Promise<BlobWriter> | undefined;
      if (upload === undefined) {
        starting = vessel(start);
        starting.catch(() => undefined);
        if (held > 0) {
          upload = await starting;
          starting = undefined;
        }
      }
      const ready = async (): Promise<BlobWriter> => {
        if (starting !== undefined) {
          const opening = starting;
          starting = undefined;
          upload = await opening;
        }
        return upload as BlobWriter;
      };
      if (upload !== undefined && upload.written < held) await feed(upload.written, held);
      let offset = held;
      try {
        while (offset < desc.size) {
          // Under a rate limit the link is paid for before it is asked for, as in `get`.
          const slice = o.bucket === undefined ? undefined : Math.min(sliceSize(o.bucket.rate), desc.size - offset);
          if (slice !== undefined) await o.bucket?.take(slice, o.signal);
          const opened = await this.#openRange(repo, desc, offset, slice, partial);
          let u: BlobWriter;
          try {
            u = await ready();
          } catch (err) {
            opened.body.destroy();
            throw err;
          }
          const restarted = opened.start !== offset;
          if (restarted || (opened.total !== undefined && opened.total !== desc.size)) {
            opened.body.destroy();
            if (opened.total !== undefined && opened.total !== desc.size) {
              await dropUpload();
              await rm(partial, { force: true });
              throw new SeabagError('E_SIZE_MISMATCH', `blob ${desc.digest} is ${opened.total} bytes at ${repo.client.registry}/${repo.name}; the release says ${desc.size}`, {
                details: { digest: desc.digest, expected: desc.size, found: opened.total },
              });
            }
            // The registry ignored the range: start the blob (and its upload) over.
            await (handle as FileHandle).truncate(0);
            hash = createHash('sha256');
            hashed = 0;
            await dropUpload();
            throw new SeabagError('E_REGISTRY', `${repo.client.registry} ignored the range asked for ${desc.digest}; starting it over`, { temporary: true });
          }
          const until = slice === undefined ? desc.size : offset + slice;
          // Counts what the hash has taken in, so a break anywhere leaves `hashed` true.
          const counted = {
            update: (buf: Buffer) => {
              hashed += buf.length;
              return hash.update(buf);
            },
          };
          // Per 64 KiB chunk, on the fast path: no promise or closure unless the upload must drain.
          const onBytes = options.onBytes;
          offset = await this.#receive(repo, desc, handle as FileHandle, opened.body, offset, Math.min(desc.size, until), counted, progressed, partial, slice ?? 0, (buf) => {
            let waiting: Promise<void> | undefined;
            try {
              waiting = u.write(buf);
            } catch (err) {
              throw blame(err);
            }
            if (waiting === undefined) {
              onBytes?.(buf.length);
              return undefined;
            }
            const n = buf.length;
            return waiting.then(
              () => onBytes?.(n),
              (err: unknown) => {
                throw blame(err);
              },
            );
          });
        }
      } catch (err) {
        if (starting !== undefined) {
          const opening = starting;
          starting = undefined;
          upload = await opening.catch(() => undefined);
        }
        const u = upload;
        if (err instanceof SeabagError && !fromVessel.has(err) && u !== undefined) {
          // The link broke: end the upload's request cleanly while patience waits.
          await vessel(() => u.pause()).catch(() => dropUpload());
        }
        throw err;
      }
      const u = await ready();
      const found = `sha256:${hash.digest('hex')}`;
      hash = createHash('sha256');
      hashed = 0;
      if (found !== desc.digest) {
        await dropUpload();
        if (trusted) await rm(partial, { force: true });
        if (!trusted) {
          // Bytes an earlier run left may have been damaged since (a power cut, a bad disk): the
          // shore is blamed only for a blob downloaded whole in this run.
          trusted = true;
          await (handle as FileHandle).truncate(0);
          throw new SeabagError('E_DIGEST_MISMATCH', `blob ${desc.digest} resumed from the spool does not match its digest; fetching it whole`, { temporary: true });
        }
        throw new SeabagError('E_DIGEST_MISMATCH', `blob ${desc.digest} from the shore registry does not match its digest (its bytes hash to ${found}); removed it from the spool and cancelled its upload`, {
          details: { expected: desc.digest, found, size: desc.size, spool: partial },
          hint: 'the copy in the shore registry is damaged: push the bundle again (bundle push) and run this again',
        });
      }
      await vessel(() => u.commit());
      upload = undefined;
    };
    try {
      await withPatience(
        what,
        o,
        async (progressed) => {
          try {
            await attempt(progressed);
          } catch (err) {
            if (err instanceof SeabagError && fromVessel.has(err)) {
              await dropUpload();
              vesselFailures += 1;
              if (!err.temporary || vesselFailures > vesselRetries) {
                throw new SeabagError(err.code, err.message, { cause: err, details: err.details, ...(err.hint === undefined ? {} : { hint: err.hint }) });
              }
            }
            if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw fromSystemError(err, 'write', partial);
            throw err;
          }
        },
        (last) =>
          new SeabagError(last.code, `giving up on ${what} after ${o.retries ?? 20} failed attempts in a row: ${last.message}`, {
            cause: last,
            details: { ...last.details, digest: desc.digest, spool: partial },
            hint: 'run the same command again when the link is back: it resumes from the bytes already in the spool',
          }),
      );
    } finally {
      await dropUpload();
      await handle?.close().catch(() => undefined);
    }
    // The vessel's registry holds the blob now: its spool entry has done its job.
    await rm(partial, { force: true });
  }

  /** Removes the spool and everything in it (a finished transfer). */
  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  async #get(repo: Repository, desc: Descriptor): Promise<string> {
    const final = this.path(desc);
    const done = await stat(final).catch(() => undefined);
    if (done?.size === desc.size) {
      // Left by an earlier run: checked again (a power cut or a bad disk may have changed it
      // since), so a damaged copy is fetched again rather than pushed and refused.
      if ((await sha256File(final)) === digestHex(desc.digest)) {
        this.bytesReused += desc.size;
        this.#options.onStart?.(desc.size, desc.size);
        return final;
      }
      await rm(final, { force: true });
    }
    await mkdir(join(this.dir, 'sha256'), { recursive: true }).catch((err: unknown) => {
      throw fromSystemError(err, 'create', this.dir);
    });
    const partial = `${final}.partial`;
    const o = this.#options;
    o.onStart?.(desc.size, Math.min(desc.size, (await stat(partial).catch(() => undefined))?.size ?? 0));
    const what = `${repo.client.registry}/${repo.name}@${desc.digest}`;
    let first = true;
    await this.#downloads.run(() => withPatience(what, o, (progressed) => this.#attempt(repo, desc, partial, progressed, first ? ((first = false), true) : false), (last) =>
      new SeabagError(last.code, `giving up on ${what} after ${o.retries ?? 20} failed attempts in a row: ${last.message}`, {
        cause: last,
        details: { ...last.details, digest: desc.digest, spool: partial },
        hint: 'run the same command again when the link is back: it resumes from the bytes already in the spool',
      }),
    ));
    try {
      await rename(partial, final);
      await fsyncDir(join(this.dir, 'sha256'));
    } catch (err) {
      throw fromSystemError(err, 'move into place', final);
    }
    return final;
  }

  /** One attempt: resume from what the partial file holds. Resolves once the digest checks out. */
  async #attempt(repo: Repository, desc: Descriptor, partial: string, progressed: () => void, firstAttempt: boolean): Promise<void> {
    const o = this.#options;
    let offset = (await stat(partial).catch(() => undefined))?.size ?? 0;
    if (offset > desc.size) {
      await rm(partial, { force: true });
      offset = 0;
    }
    let handle: FileHandle | undefined;
    try {
      handle = await open(partial, offset === 0 ? 'w' : 'r+');
      // Hash what an earlier attempt (or run) left, so the bytes already here are checked too.
      const hash = createHash('sha256');
      if (offset > 0) {
        await hashPrefix(handle, offset, hash);
        if (firstAttempt) this.bytesReused += offset;
      }
      let current = hash;
      while (offset < desc.size) {
        // Under a rate limit the link is paid for before it is asked for: one ranged request per
        // slice, so no more than a slice is ever in flight beyond what has been written here (a
        // kill or a cut loses little, and the rate holds however deep the socket buffers are).
        const slice = o.bucket === undefined ? undefined : Math.min(sliceSize(o.bucket.rate), desc.size - offset);
        if (slice !== undefined) await o.bucket?.take(slice, o.signal);
        const opened = await this.#openRange(repo, desc, offset, slice, partial);
        const { body } = opened;
        const restarted = opened.start !== offset;
        if (restarted) {
          // The registry sent the whole blob: start over from its first byte.
          await handle.truncate(0);
          offset = 0;
          current = createHash('sha256');
        }
        if (opened.total !== undefined && opened.total !== desc.size) {
          body.destroy();
          await handle.close();
          handle = undefined;
          await rm(partial, { force: true });
          throw new SeabagError('E_SIZE_MISMATCH', `blob ${desc.digest} is ${opened.total} bytes at ${repo.client.registry}/${repo.name}; the release says ${desc.size}`, {
            details: { digest: desc.digest, expected: desc.size, found: opened.total },
          });
        }
        const until = slice === undefined || restarted ? desc.size : offset + slice;
        offset = await this.#receive(repo, desc, handle, body, offset, Math.min(desc.size, until), current, progressed, partial, slice ?? 0);
      }
      return await this.#finish(desc, handle, current, partial);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw fromSystemError(err, 'write', partial);
      throw err;
    } finally {
      await handle?.close().catch(() => undefined);
    }
  }

  /**
   * Asks the shore for the blob from `offset` on (`length` of it under a rate limit).
   *
   * @throws E_BLOBS_MISSING when the repository lacks it; E_REGISTRY (temporary, the partial file
   *   removed) when the registry will not serve the range
   */
  async #openRange(repo: Repository, desc: Descriptor, offset: number, length: number | undefined, partial: string): Promise<Awaited<ReturnType<Repository['openBlob']>>> {
    const o = this.#options;
    try {
      return await repo.openBlob(desc, { offset, ...(length === undefined ? {} : { length }), retry: false, ...(o.signal ? { signal: o.signal } : {}) });
    } catch (err) {
      if (isNotFound(err)) {
        throw new SeabagError('E_BLOBS_MISSING', `${repo.client.registry}/${repo.name} does not hold blob ${desc.digest}, which the release needs`, {
          cause: err,
          details: { missing: [desc.digest], repository: repo.name },
          hint: 'push the whole bundle to the shore registry again (bundle push)',
        });
      }
      if (err instanceof SeabagError && err.code === 'E_REGISTRY' && err.details['status'] === 416) {
        await rm(partial, { force: true });
        throw new SeabagError('E_REGISTRY', `${repo.client.registry} refused to resume ${desc.digest} at byte ${offset}; starting it over`, { temporary: true });
      }
      throw err;
    }
  }

  /**
   * Writes a response body from `start` on; returns where it ended (at least `until`). `also`
   * gets each chunk at the same time as the file (a relay's upload).
   */
  async #receive(repo: Repository, desc: Descriptor, handle: FileHandle, body: Readable, start: number, until: number, hash: { update(data: Buffer): unknown }, progressed: () => void, partial: string, prepaid: number, also?: (buf: Buffer) => Promise<void> | undefined): Promise<number> {
    // A relay's spool is read back only after a break: on a fast link it is written around the
    // page cache. A pull reads its spool back at once, and a paced link is too slow to matter.
    const direct = also !== undefined && this.#options.bucket === undefined;
    const o = this.#options;
    const url = new URL(repo.path('blobs', desc.digest), repo.client.baseUrl);
    const timeoutMs = (o.timeoutSeconds ?? 60) * 1000;
    // One timer per response, not one per chunk: it drops a body that has been silent too long.
    let heard = Date.now();
    const timer = setInterval(() => {
      if (Date.now() - heard >= timeoutMs) body.destroy(Object.assign(new Error(`no data for ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' }));
    }, Math.min(timeoutMs, 1000));
    let received = start;
    let credit = prepaid;
    // Chunks reach the file in batches (a write per 64 KiB chunk costs more than the copy itself),
    // at most SPOOL_BATCH bytes or a second behind the link, one write in flight, in order; around
    // the page cache where `direct` (see appender.ts).
    const appender = await openAppender(handle, partial, start, { direct });
    const settle = (): Promise<void> => appender.close();
    try {
      for await (const chunk of body) {
        const buf = chunk as Buffer;
        heard = Date.now();
        if (received + buf.length > desc.size) {
          body.destroy();
          await settle().catch(() => undefined);
          await rm(partial, { force: true });
          throw new SeabagError('E_SIZE_MISMATCH', `blob ${desc.digest} from ${repo.client.registry}/${repo.name} runs past its ${desc.size} bytes`, {
            details: { digest: desc.digest, expected: desc.size, found: `more than ${desc.size}` },
          });
        }
        if (o.bucket !== undefined) {
          const owed = Math.max(0, buf.length - credit);
          credit = Math.max(0, credit - buf.length);
          if (owed > 0) await o.bucket.take(owed, o.signal);
        }
        // Awaited only when there is something to wait for (most chunks: neither).
        const appending = appender.append(buf);
        if (appending !== undefined) await appending;
        const sending = also?.(buf);
        if (sending !== undefined) await sending;
        hash.update(buf);
        received += buf.length;
        this.bytesDownloaded += buf.length;
        o.onBytes?.(buf.length);
        progressed();
      }
      await settle();
    } catch (err) {
      // What came over the link is kept, whatever broke.
      await settle().catch(() => undefined);
      if (err instanceof SeabagError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw fromSystemError(err, 'write', partial);
      const e = networkError(err, 'GET', url);
      if (e.code === 'E_ABORTED') throw e;
      await handle.datasync().catch(() => undefined);
      throw new SeabagError('E_REGISTRY_UNREACHABLE', `download of ${desc.digest} from ${repo.client.registry} broke at byte ${received} of ${desc.size}: ${(err as Error).message}`, {
        cause: err,
        details: { digest: desc.digest, offset: received, url: url.href },
        temporary: true,
        hint: 'run the same command again when the link is back: it resumes from the bytes already in the spool',
      });
    } finally {
      clearInterval(timer);
      await appender.close().catch(() => undefined);
    }
    if (received < until) {
      await handle.datasync().catch(() => undefined);
      throw new SeabagError('E_REGISTRY_UNREACHABLE', `download of ${desc.digest} from ${repo.client.registry} broke at byte ${received} of ${desc.size}: the response ended early`, {
        details: { digest: desc.digest, offset: received, url: url.href },
        temporary: true,
      });
    }
    return received;
  }

  async #finish(desc: Descriptor, handle: FileHandle, hash: Hash, partial: string): Promise<void> {
    const found = `sha256:${hash.digest('hex')}`;
    if (found !== desc.digest) {
      await handle.close().catch(() => undefined);
      await rm(partial, { force: true });
      throw new SeabagError('E_DIGEST_MISMATCH', `blob ${desc.digest} from the shore registry does not match its digest (its bytes hash to ${found}); removed it from the spool`, {
        details: { expected: desc.digest, found, size: desc.size, spool: partial },
        hint: 'the copy in the shore registry is damaged: push the bundle again (bundle push) and run this again',
      });
    }
    await handle.sync();
  }
}

/**
 * Bytes per ranged request under a rate limit: a quarter second of the rate, 32 KiB to 256 KiB.
 * Small slices lose little to a break (at most the one in flight) and keep the rate even; each
 * costs one request's headers (about 0.4 KiB each way: about 0.5% at 300K) and a round trip, which
 * the bucket's quarter-second burst makes up for.
 */
function sliceSize(rate: number): number {
  return Math.max(32 * 1024, Math.min(256 * 1024, Math.floor(rate / 4)));
}

async function hashPrefix(handle: FileHandle, length: number, hash: Hash): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK * 4, length));
  let position = 0;
  while (position < length) {
    const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, length - position), position);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    position += bytesRead;
  }
}
