/**
 * `bundle fetch`: a bundle, or its parts, over a thin and breaking link. Downloads go to
 * `NAME.partial` and resume with `Range` (RFC 9110 §14) after any break or restart; each part is
 * checked against the parts file's sha256 and only a part that fails is fetched again; a token
 * bucket keeps the average rate at or under `--limit-rate`; failures back off and are retried as
 * long as the link keeps coming back, so an outage of several minutes is ridden out.
 */
import { mkdir, open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fromSystemError, SeabagError } from '../errors.js';
import type { OpOptions } from '../oci/store.js';
import { networkError, readBody, Transport, type HttpResponse } from '../registry/http.js';
import { assertSchema } from '../schema.js';
import { fsyncDir, writeFileAtomic } from '../util/atomic.js';
import { MAX_CA_FILE, readRegularFile, sha256File } from '../util/files.js';
import { checkOutputs } from '../util/outputs.js';
import type { PartsFile } from '../bundle/parts.js';
import { TokenBucket } from '../util/limit.js';
import { withPatience } from './patience.js';

export interface FetchOptions extends OpOptions {
  /** Folder to download into (made if missing). */
  outDir: string;
  /** Average bytes per second not to exceed. */
  limitRate?: number;
  /** Failed attempts in a row, without a byte of progress, before giving up (default 20). */
  retries?: number;
  /** Seconds without a byte before a connection is dropped and tried again (default 60). */
  timeoutSeconds?: number;
  /** First and longest wait between attempts (default 1 s and 30 s). */
  backoff?: { minMs: number; maxMs: number };
  /** PEM file of a CA for HTTPS. */
  caFile?: string;
  /** Replace a bundle or parts file already in the folder (parts of the same bundle are always checked and reused). */
  force?: boolean;
  onRetry?: (info: { url: string; attempt: number; delayMs: number; reason: string }) => void;
}

export interface FetchResult {
  /** What to give `bundle import`: the bundle, or the parts file. */
  bundle: string;
  files: string[];
  /** Bytes of the whole bundle. */
  size: number;
  /** Bytes that came over the link in this run. */
  downloaded: number;
  /** Parts already there and intact. */
  reused: number;
  /** Parts fetched again because their sha256 was wrong. */
  refetched: number;
}

/**
 * Parses a rate the way curl's `--limit-rate` does: bytes, or K, M, G (powers of 1024).
 *
 * @throws E_USAGE
 */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)$/i.exec(text.trim());
  if (m === null) throw new SeabagError('E_USAGE', `invalid rate ${JSON.stringify(text)}: bytes per second, or with K, M, G (e.g. 500K, 1M)`);
  const rate = Math.floor(Number(m[1]) * ({ '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? '').toLowerCase()] ?? 1));
  if (rate < 1) throw new SeabagError('E_USAGE', `invalid rate ${JSON.stringify(text)}: at least one byte per second`);
  return rate;
}

interface Session {
  transport: Transport;
  options: FetchOptions;
  limiter: TokenBucket | undefined;
  downloaded: number;
  /** Bytes of the whole fetch done, for progress. */
  done: number;
  total: number;
}

function fetchError(message: string, details: Record<string, unknown>, temporary: boolean): SeabagError {
  return new SeabagError('E_FETCH', message, { details, temporary });
}

async function get(session: Session, url: URL, headers: Record<string, string>): Promise<HttpResponse> {
  try {
    return await session.transport.send({ method: 'GET', url, headers, ...(session.options.signal ? { signal: session.options.signal } : {}) });
  } catch (err) {
    const e = networkError(err, 'GET', url);
    // A link that is down is worth waiting for, whatever the socket said; a certificate we do not
    // trust is not going to change.
    if (e.code === 'E_REGISTRY_UNREACHABLE') throw fetchError(`cannot reach ${url.host}: ${e.message}`, { url: url.href }, true);
    if (e.code === 'E_REGISTRY') throw new SeabagError('E_FETCH', e.message, { cause: e, details: e.details, hint: 'pass --ca-file with the CA that signed the server certificate' });
    throw e;
  }
}

function statusError(res: HttpResponse): SeabagError {
  res.body.resume();
  const temporary = res.status >= 500 || res.status === 429 || res.status === 408;
  return fetchError(`GET ${res.url.href}: HTTP ${res.status}`, { url: res.url.href, status: res.status }, temporary);
}

/** The most failed attempts in a row `--retries` may allow (waits grow to 30 s: about 83 hours). */
export const MAX_FETCH_RETRIES = 10_000;
/** The longest `--timeout` (seconds without data): a day. */
export const MAX_FETCH_TIMEOUT = 86_400;

/** Runs attempts until one succeeds; gives up after `retries` failures in a row without progress. */
function patiently<T>(session: Session, url: URL, attempt: (progressed: () => void) => Promise<T>): Promise<T> {
  const o = session.options;
  return withPatience(url.href, { ...(o.retries === undefined ? {} : { retries: o.retries }), ...(o.backoff ? { backoff: o.backoff } : {}), ...(o.signal ? { signal: o.signal } : {}), ...(o.onRetry ? { onRetry: o.onRetry } : {}) }, attempt, (e, retries) =>
    new SeabagError('E_FETCH', `giving up on ${url.href} after ${retries} failed attempts in a row: ${e.message}`, {
      cause: e,
      details: { url: url.href },
      hint: 'run the same command again later: it resumes where it stopped (--retries raises the patience)',
    }),
  );
}

/**
 * Brings `url` into `dest` through `dest.partial`, resuming from what is there. Returns the size.
 */
async function download(session: Session, url: URL, dest: string, expectedSize: number | undefined): Promise<number> {
  const partial = `${dest}.partial`;
  return patiently(session, url, async (progressed) => {
    let offset = (await stat(partial).catch(() => undefined))?.size ?? 0;
    if (expectedSize !== undefined && offset > expectedSize) {
      await rm(partial, { force: true });
      offset = 0;
    }
    if (expectedSize !== undefined && offset === expectedSize) return offset;
    const res = await get(session, url, offset > 0 ? { range: `bytes=${offset}-` } : {});
    let total: number | undefined;
    if (res.status === 416) {
      res.body.resume();
      const whole = Number(/\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''))?.[1]);
      if (Number.isFinite(whole) && whole === offset) return offset;
      await rm(partial, { force: true });
      throw fetchError(`${url.href}: the server refused to resume at ${offset}; starting over`, { url: url.href }, true);
    }
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
      if (m === null || Number(m[1]) !== offset) {
        res.body.resume();
        await rm(partial, { force: true });
        throw fetchError(`${url.href}: the server resumed at the wrong place; starting over`, { url: url.href }, true);
      }
      total = m[3] === '*' ? undefined : Number(m[3]);
    } else if (res.status === 200) {
      // No range support (or nothing to resume): start from the beginning.
      offset = 0;
      const length = Number(res.headers['content-length']);
      total = Number.isFinite(length) ? length : undefined;
    } else {
      throw statusError(res);
    }
    if (expectedSize !== undefined && total !== undefined && total !== expectedSize) {
      res.body.resume();
      throw new SeabagError('E_PART_CORRUPT', `${url.href} is ${total} bytes; the parts file says ${expectedSize}`, { details: { url: url.href, expected: expectedSize, found: total } });
    }
    let handle: FileHandle | undefined;
    let received = offset;
    try {
      handle = await open(partial, offset === 0 ? 'w' : 'r+');
      const timeoutMs = (session.options.timeoutSeconds ?? 60) * 1000;
      let timer: NodeJS.Timeout | undefined;
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => res.body.destroy(Object.assign(new Error(`no data for ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })), timeoutMs);
      };
      arm();
      try {
        for await (const chunk of res.body) {
          const buf = chunk as Buffer;
          arm();
          if (session.limiter !== undefined) await session.limiter.take(buf.length, session.options.signal);
          await handle.write(buf, 0, buf.length, received);
          received += buf.length;
          session.downloaded += buf.length;
          session.done += buf.length;
          progressed();
          session.options.onProgress?.({ phase: 'fetch', done: session.done, total: session.total, item: basename(dest) });
        }
      } catch (err) {
        throw networkError(err, 'GET', url).code === 'E_ABORTED' ? err : fetchError(`download of ${url.href} broke at byte ${received}: ${(err as Error).message}`, { url: url.href, offset: received }, true);
      } finally {
        clearTimeout(timer);
      }
      await handle.sync();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw fromSystemError(err, 'write', partial);
      throw err;
    } finally {
      await handle?.close();
    }
    const want = expectedSize ?? total;
    if (want !== undefined && received < want) {
      throw fetchError(`download of ${url.href} stopped at byte ${received} of ${want}`, { url: url.href, offset: received }, true);
    }
    return received;
  });
}

/**
 * A parts file from the link names the files fetch will write: the bundle must be a plain name
 * (no dotfile, no folder), the parts file must be `BUNDLE.parts.json`, and the parts exactly
 * `BUNDLE.001`, `BUNDLE.002`, … in order. Anything else (`notes.txt`, `.profile`, `../x`) is refused
 * before a byte is written.
 *
 * @throws E_PART_CORRUPT
 */
function checkPartNames(parts: PartsFile, partsName: string): void {
  const bundle = parts.bundle;
  const refuse = (what: string): never => {
    throw new SeabagError('E_PART_CORRUPT', `the parts file names ${what}; only ${JSON.stringify(`${bundle}.001`)}, … of its bundle are fetched`, {
      details: { bundle, names: parts.parts.map((p) => p.name) },
    });
  };
  if (bundle === '' || bundle.startsWith('.') || /[/\\\u0000-\u001f\u007f]/.test(bundle)) refuse(`the bundle ${JSON.stringify(bundle)}`);
  if (partsName !== `${bundle}.parts.json`) refuse(`the bundle ${JSON.stringify(bundle)} but is itself ${JSON.stringify(partsName)}`);
  parts.parts.forEach((p, i) => {
    if (p.name !== `${bundle}.${String(i + 1).padStart(3, '0')}`) refuse(`a part ${JSON.stringify(p.name)}`);
  });
}

/** A file name from a URL or a parts file, refusing anything that could leave the folder. */
function plainName(name: string, what: string): string {
  if (name === '' || name.startsWith('.') || name.includes('/') || name.includes('\\') || name.includes('\0')) {
    throw new SeabagError(what === 'a part name' ? 'E_PART_CORRUPT' : 'E_USAGE', `${what} ${JSON.stringify(name)} is not a plain file name`, { details: { name } });
  }
  return name;
}

/**
 * Downloads a bundle (URL of the file) or its parts (URL of `NAME.parts.json`) into a folder.
 *
 * @throws E_FETCH (after the retries, or a non-temporary HTTP error), E_PART_CORRUPT (a part still
 *   wrong after being fetched again), E_DISK_FULL, E_USAGE
 */
export async function fetchBundle(url: string, options: FetchOptions): Promise<FetchResult> {
  // A patience of NaN or -1 would retry forever or never: refused before any request.
  if (options.retries !== undefined && (!Number.isInteger(options.retries) || options.retries < 0 || options.retries > MAX_FETCH_RETRIES)) {
    throw new SeabagError('E_USAGE', `--retries must be a whole number from 0 to ${MAX_FETCH_RETRIES}, not ${String(options.retries)}`, { details: { retries: options.retries } });
  }
  if (options.timeoutSeconds !== undefined && (!Number.isFinite(options.timeoutSeconds) || options.timeoutSeconds <= 0 || options.timeoutSeconds > MAX_FETCH_TIMEOUT)) {
    throw new SeabagError('E_USAGE', `--timeout must be a number of seconds above 0 and at most ${MAX_FETCH_TIMEOUT}, not ${String(options.timeoutSeconds)}`, { details: { timeout: options.timeoutSeconds } });
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SeabagError('E_USAGE', `invalid URL ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new SeabagError('E_USAGE', `fetch speaks http and https, not ${parsed.protocol}`);
  await mkdir(options.outDir, { recursive: true }).catch((err: unknown) => {
    throw fromSystemError(err, 'create', options.outDir);
  });
  let ca: string | undefined;
  if (options.caFile !== undefined) ca = (await readRegularFile(options.caFile, { maxBytes: MAX_CA_FILE, what: 'CA file' })).toString('utf8');
  const transport = new Transport({ ...(ca === undefined ? {} : { ca }), timeoutMs: (options.timeoutSeconds ?? 60) * 1000 });
  const session: Session = { transport, options, limiter: options.limitRate ? new TokenBucket(options.limitRate) : undefined, downloaded: 0, done: 0, total: 0 };
  try {
    const name = plainName(decodeURIComponent(basename(parsed.pathname)), 'the URL names');
    if (!name.endsWith('.parts.json')) {
      const dest = join(options.outDir, name);
      await checkOutputs([dest], { force: options.force === true });
      const size = await download(session, parsed, dest, undefined);
      await rename(`${dest}.partial`, dest);
      await fsyncDir(options.outDir);
      return { bundle: dest, files: [dest], size, downloaded: session.downloaded, reused: 0, refetched: 0 };
    }

    // Parts: the parts file first (small), then each part, checked against it.
    const text = await patiently(session, parsed, async () => {
      const res = await get(session, parsed, {});
      if (res.status !== 200) throw statusError(res);
      return (await readBody(res, 1024 * 1024)).toString('utf8');
    });
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new SeabagError('E_PART_CORRUPT', `${url} is not a parts file (not JSON)`);
    }
    assertSchema('parts', doc, url, 'E_PART_CORRUPT');
    const parts = doc as PartsFile;
    // Every name is checked before anything is written: only NAME.001, NAME.002, … of this bundle.
    checkPartNames(parts, name);
    const partsPath = join(options.outDir, name);
    const previous = await readFile(partsPath, 'utf8').catch(() => undefined);
    if (previous !== undefined && previous !== text) await checkOutputs([partsPath], { force: options.force === true });
    session.total = parts.size;
    const files: string[] = [];
    let reused = 0;
    let refetched = 0;
    for (const part of parts.parts) {
      const dest = join(options.outDir, plainName(part.name, 'a part name'));
      files.push(dest);
      const existing = await stat(dest).catch(() => undefined);
      if (existing?.size === part.size && (await sha256File(dest)) === part.sha256) {
        reused += 1;
        session.done += part.size;
        options.onProgress?.({ phase: 'fetch', done: session.done, total: session.total, item: part.name });
        continue;
      }
      await rm(dest, { force: true });
      const partUrl = new URL(part.name, parsed);
      for (let round = 0; ; round += 1) {
        const before = session.done;
        await download(session, partUrl, dest, part.size);
        const found = await sha256File(`${dest}.partial`);
        if (found === part.sha256) break;
        // A damaged part (on the wire, or a damaged .partial we resumed): fetch it whole again.
        await rm(`${dest}.partial`, { force: true });
        session.done = before;
        refetched += 1;
        if (round >= 2) {
          throw new SeabagError('E_PART_CORRUPT', `part ${part.name} from ${partUrl.href} has sha256 ${found} three times; the parts file says ${part.sha256}`, {
            details: { part: part.name, expected: part.sha256, found },
            hint: 'the copy on the server is damaged: ask shore to upload it again',
          });
        }
      }
      await rename(`${dest}.partial`, dest);
      await fsyncDir(options.outDir);
    }
    await writeFileAtomic(partsPath, text);
    return { bundle: partsPath, files: [...files, partsPath], size: parts.size, downloaded: session.downloaded, reused, refetched };
  } finally {
    transport.close();
  }
}
