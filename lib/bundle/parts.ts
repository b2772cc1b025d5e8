/**
 * Split bundles: NAME.001, NAME.002, … and NAME.parts.json (count, each part's size and sha256,
 * the whole file's sha256), so a bundle fits a FAT32 stick and one bad part can be named and sent
 * again alone. Readers take the parts file, any part, or the folder, and read the parts as one.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fromSystemError, SeabagError } from '../errors.js';
import { describeKind, sniffFile } from '../util/sniff.js';
import { assertSchema } from '../schema.js';
import type { Progress } from '../oci/store.js';
import { notRegular, readRegularFile } from '../util/files.js';
import { hashLanes } from './hash-lanes.js';
import { FileSource, type ByteSource } from './source.js';

export interface PartsFile {
  apiVersion: 'seabag.dev/v1';
  kind: 'BundleParts';
  /** File name of the whole bundle the parts make up. */
  bundle: string;
  size: number;
  sha256: string;
  partSize: number;
  count: number;
  parts: { name: string; size: number; sha256: string }[];
}

/** The largest file FAT32 can hold. */
export const FAT32_MAX = 4_294_967_295;

/** The smallest part `--split` writes: smaller parts only multiply files and checks. */
export const MIN_PART_SIZE = 1024 * 1024;

/** The most parts a parts file may list (schemas/parts.schema.json `count`), so the most a split may write. */
export const MAX_PARTS = 9999;

/**
 * Checks a split before anything is written: parts of at least `MIN_PART_SIZE`, and (when the
 * bundle's size is known) no more than `MAX_PARTS` of them, which is all a reader accepts.
 *
 * @throws E_USAGE
 */
export function checkSplit(partSize: number, bundleSize?: number): void {
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE) {
    throw new SeabagError('E_USAGE', `--split ${partSize} is below the smallest part, ${MIN_PART_SIZE} bytes (1M)`, { details: { partSize, min: MIN_PART_SIZE }, hint: 'use 1M or more, e.g. --split 500M, or --split fat32' });
  }
  if (bundleSize !== undefined && Math.ceil(bundleSize / partSize) > MAX_PARTS) {
    const least = Math.ceil(bundleSize / MAX_PARTS);
    throw new SeabagError('E_USAGE', `--split ${partSize} would cut this ${bundleSize}-byte bundle into ${Math.ceil(bundleSize / partSize)} parts; a reader accepts at most ${MAX_PARTS}`, {
      details: { partSize, bundleSize, maxParts: MAX_PARTS, smallestPartSize: least },
      hint: `use parts of at least ${least} bytes`,
    });
  }
}

const PART_SUFFIX = /\.(\d{3,})$/;
const PARTS_SUFFIX = '.parts.json';

export function partName(bundlePath: string, n: number): string {
  return `${bundlePath}.${String(n).padStart(3, '0')}`;
}

export function partsFileName(bundleName: string): string {
  return `${bundleName}${PARTS_SUFFIX}`;
}

/**
 * Parses a split size: `fat32`, bytes (`1048576`), or a number with K, M, G, T (powers of 1024,
 * as `split -b` and curl read them; `KiB`, `MB` spellings accepted).
 *
 * @throws E_USAGE
 */
export function parseSize(text: string): number {
  if (text.toLowerCase() === 'fat32') return FAT32_MAX;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (m === null) throw new SeabagError('E_USAGE', `invalid size ${JSON.stringify(text)}: expected bytes, or a number with K, M, G or T (e.g. 500M, 4G), or fat32`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? '').toLowerCase()] ?? 1;
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new SeabagError('E_USAGE', `invalid size ${JSON.stringify(text)}: must be at least one byte`);
  return bytes;
}

export interface BundleInput {
  /** What to call the bundle in messages. */
  name: string;
  /** The bundle file, or the parts in order. */
  pieces: { path: string; size: number }[];
  parts?: PartsFile;
  partsPath?: string;
}

/** Largest `.parts.json` read (thousands of parts are a few hundred KiB). */
export const MAX_PARTS_FILE = 4 * 1024 * 1024;

async function readPartsFile(path: string): Promise<PartsFile> {
  const text = (await readRegularFile(path, { maxBytes: MAX_PARTS_FILE, what: 'parts file', tooLarge: 'E_PART_CORRUPT' })).toString('utf8');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new SeabagError('E_PART_CORRUPT', `${path} is not valid JSON: ${(err as Error).message}`, { details: { file: path } });
  }
  assertSchema('parts', doc, path, 'E_PART_CORRUPT');
  const parts = doc as PartsFile;
  if (parts.count !== parts.parts.length) throw new SeabagError('E_PART_CORRUPT', `${path}: count ${parts.count} but ${parts.parts.length} parts listed`);
  const sum = parts.parts.reduce((s, p) => s + p.size, 0);
  if (sum !== parts.size) throw new SeabagError('E_PART_CORRUPT', `${path}: parts add up to ${sum} bytes, not ${parts.size}`);
  for (const p of parts.parts) {
    if (basename(p.name) !== p.name || p.name.startsWith('.')) throw new SeabagError('E_PART_CORRUPT', `${path}: part name ${JSON.stringify(p.name)} is not a plain file name`);
  }
  return parts;
}

/**
 * Finds the bytes of a bundle from what the user named: the bundle, its `.parts.json`, any of
 * its parts, or the folder holding them. Parts must all be there with their listed sizes.
 * Nothing but regular files is taken: a FIFO, a device or a link to one is E_USAGE at once,
 * before anything is opened for reading (so before a vessel lock is taken).
 *
 * Limits: the parts file is at most 4 MiB (`MAX_PARTS_FILE`).
 *
 * @throws E_FILE_NOT_FOUND, E_PART_MISSING (naming the part), E_PART_CORRUPT, E_USAGE
 */
export async function resolveBundleInput(path: string): Promise<BundleInput> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    const m = PART_SUFFIX.exec(path);
    // A named part that is gone, beside its parts file, is a missing part.
    if (m !== null && (err as NodeJS.ErrnoException).code === 'ENOENT') {
      const partsPath = `${path.slice(0, -m[0].length)}${PARTS_SUFFIX}`;
      if ((await stat(partsPath).catch(() => undefined)) !== undefined) return fromPartsFile(partsPath);
    }
    throw fromSystemError(err, 'open bundle', path);
  }
  if (st.isDirectory()) {
    const names = await readdir(path);
    const partsFiles = names.filter((n) => n.endsWith(PARTS_SUFFIX));
    if (partsFiles.length === 1) return fromPartsFile(join(path, partsFiles[0] as string));
    const bundles = names.filter((n) => n.endsWith('.bundle'));
    if (partsFiles.length === 0 && bundles.length === 1) {
      const only = join(path, bundles[0] as string);
      const s = await stat(only).catch((err: unknown) => {
        throw fromSystemError(err, 'open bundle', only);
      });
      if (!s.isFile()) throw notRegular(only, s, 'bundle');
      return single(only, s.size);
    }
    throw new SeabagError('E_USAGE', `${path} holds ${partsFiles.length} parts files and ${bundles.length} bundles; name the one to use`);
  }
  if (!st.isFile()) throw notRegular(path, st, 'bundle');
  if (path.endsWith(PARTS_SUFFIX)) return fromPartsFile(path);
  const m = PART_SUFFIX.exec(path);
  if (m !== null) {
    const partsPath = `${path.slice(0, -m[0].length)}${PARTS_SUFFIX}`;
    if ((await stat(partsPath).catch(() => undefined)) !== undefined) return fromPartsFile(partsPath);
    throw new SeabagError('E_PART_MISSING', `${path} looks like a part, but ${basename(partsPath)} is not beside it`, {
      details: { missing: [partsPath] },
      hint: 'copy the .parts.json file with the parts',
    });
  }
  await refuseWrongKind(path);
  return single(path, st.size);
}

/**
 * A file that is plainly something else (a release spec, a key, a trust root, a gzip) is named
 * for what it is; anything else goes on to the archive reader, which says what is wrong.
 *
 * @throws E_FILE_KIND
 */
async function refuseWrongKind(path: string): Promise<void> {
  const kind = await sniffFile(path);
  const say = (message: string, hint?: string): SeabagError =>
    new SeabagError('E_FILE_KIND', `${path} ${message}`, { details: { file: path, kind }, ...(hint === undefined ? {} : { hint }) });
  switch (kind) {
    case 'release-spec':
      throw say('is a release spec, not a bundle; build it with `bundle build`', `bundle build ${path} -o NAME.bundle --sign release.key`);
    case 'private-key':
    case 'public-key':
    case 'pem':
      throw say('is a key, not a bundle');
    case 'trust-root':
      throw say('is a trust root, not a bundle (it goes with --trust)');
    case 'inventory':
      throw say("is a vessel's inventory, not a bundle (ashore it goes to bundle build --since)");
    case 'gzip':
      throw say('is gzip-compressed; a bundle is an uncompressed tar (its layers are compressed already): gunzip it first');
    case 'device-profile':
    case 'yaml':
    case 'json':
      throw say(`is ${describeKind(kind)}, not a bundle`);
    default:
  }
}

async function single(path: string, size?: number): Promise<BundleInput> {
  return { name: path, pieces: [{ path, size: size ?? (await stat(path)).size }] };
}

async function fromPartsFile(partsPath: string): Promise<BundleInput> {
  const parts = await readPartsFile(partsPath);
  const dir = dirname(partsPath);
  const pieces: { path: string; size: number }[] = [];
  const missing: string[] = [];
  for (const p of parts.parts) {
    const file = join(dir, p.name);
    const s = await stat(file).catch(() => undefined);
    if (s === undefined) {
      missing.push(p.name);
      continue;
    }
    if (!s.isFile()) throw notRegular(file, s, 'part');
    if (s.size !== p.size) {
      throw new SeabagError('E_PART_CORRUPT', `part ${p.name} is ${s.size} bytes; ${basename(partsPath)} says ${p.size}`, {
        details: { part: p.name, expected: p.size, found: s.size },
        hint: `send ${p.name} again`,
      });
    }
    pieces.push({ path: file, size: p.size });
  }
  if (missing.length > 0) {
    throw new SeabagError('E_PART_MISSING', `missing part${missing.length === 1 ? '' : 's'} of ${parts.bundle}: ${missing.join(', ')}`, {
      details: { missing },
      hint: `copy ${missing.join(', ')} beside ${basename(partsPath)}`,
    });
  }
  return { name: join(dir, parts.bundle), pieces, parts, partsPath };
}

/** Opens the bytes of a resolved input. */
export function openInput(input: BundleInput): Promise<ByteSource> {
  return FileSource.open(input.name, input.pieces);
}

/** A part whose bytes do not hash to what the parts file says. */
export function partCorrupt(input: BundleInput, p: PartsFile['parts'][number], found: string): SeabagError {
  return new SeabagError('E_PART_CORRUPT', `part ${p.name} is damaged: its sha256 is ${found}, ${basename(input.partsPath ?? '')} says ${p.sha256}`, {
    details: { part: p.name, expected: p.sha256, found },
    hint: `send ${p.name} again (bundle fetch downloads only the parts that fail)`,
  });
}

/**
 * Hashes every part against the parts file, parts on different cores, so a bad one is named
 * before anything else happens.
 *
 * @throws E_PART_CORRUPT naming the part
 */
export async function verifyParts(input: BundleInput, options: { signal?: AbortSignal; onProgress?: (p: Progress) => void; lanes?: number; minParallelBytes?: number } = {}): Promise<void> {
  const parts = input.parts;
  if (parts === undefined) return;
  const absent = parts.parts[input.pieces.length];
  if (absent !== undefined) throw new SeabagError('E_PART_MISSING', `part ${absent.name} is missing`, { details: { missing: [absent.name] } });
  // Parts on different cores (hashLanes), the first bad one in order named.
  const source = await FileSource.open(input.name, input.pieces);
  try {
    let done = 0;
    let start = 0;
    const jobs = parts.parts.map((p) => {
      const job = { start, end: start + p.size, counted: start + p.size, targets: [{ start, end: start + p.size }] };
      start += p.size;
      return job;
    });
    const bad = new Map<number, SeabagError>();
    await hashLanes(source, jobs, {
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.lanes === undefined ? {} : { lanes: options.lanes }),
      ...(options.minParallelBytes === undefined ? {} : { minParallelBytes: options.minParallelBytes }),
      onBytes: (n, job) => {
        done += n;
        options.onProgress?.({ phase: 'check parts', done, total: parts.size, item: (parts.parts[job] as PartsFile['parts'][number]).name });
      },
      onJob: (job, [hex]) => {
        const p = parts.parts[job] as PartsFile['parts'][number];
        if (hex === p.sha256) return false;
        bad.set(job, partCorrupt(input, p, hex as string));
        return true;
      },
    });
    const first = [...bad.keys()].sort((x, y) => x - y)[0];
    if (first !== undefined) throw bad.get(first) as SeabagError;
  } finally {
    await source.close();
  }
}
