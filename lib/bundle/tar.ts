/**
 * A strict reader of POSIX tar headers (IEEE Std 1003.1-2017 `pax` "ustar Interchange Format"),
 * walking an archive by offsets: headers are read, data is skipped over and left where it is, so
 * nothing is ever extracted to a path taken from the archive and no entry is held in memory.
 *
 * Bundles are read with the strictest policy (regular files and their directories only, names
 * from a fixed list); image archives made by other tools (oci-archive, docker save) with a
 * lenient one that understands PAX and GNU long names and, for docker save, symlinks.
 */
import { SeabagError } from '../errors.js';
import type { ByteSource } from './source.js';

export const BLOCK = 512;

export type EntryType =
  | 'file'
  | 'directory'
  | 'symlink'
  | 'hardlink'
  | 'character device'
  | 'block device'
  | 'fifo'
  | 'pax header'
  | 'pax global header'
  | 'GNU long name'
  | 'GNU long link name'
  | 'unknown';

export interface TarEntry {
  /** Normalized: no leading `./`, no trailing `/`; the root folder is `''`. */
  name: string;
  type: EntryType;
  size: number;
  headerOffset: number;
  dataOffset: number;
  linkname: string;
}

export interface ScanPolicy {
  /** Understand PAX (`x`, `g`) and GNU long-name (`L`, `K`) headers; bundles never have them. */
  extendedHeaders: boolean;
  /** Entry types allowed besides files and directories (e.g. symlinks in `docker save` output). */
  allowTypes?: readonly EntryType[];
  /** Returns why a (normalized) name is not allowed, or undefined to accept it. */
  checkName?: (name: string, type: EntryType) => string | undefined;
  /** Largest allowed size of an entry with this name, if limited. */
  maxSize?: (name: string) => number | undefined;
  /** Upper bound on headers, extended ones included (default `MAX_TAR_ENTRIES`). */
  maxEntries?: number;
  /** Require the padding after each entry to be zeros (POSIX says it is; bundles are checked). */
  zeroPadding?: boolean;
  /**
   * Accept a header only when it is byte for byte the one `encodeHeader` writes for its name,
   * size and type (every field, terminator, padding byte and the checksum's format): one bit
   * flipped anywhere in a header is then always refused. For bundles, which only seabag writes.
   */
  canonical?: boolean;
}

const TYPES: Record<string, EntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'character device',
  '4': 'block device',
  '5': 'directory',
  '6': 'fifo',
  x: 'pax header',
  g: 'pax global header',
  L: 'GNU long name',
  K: 'GNU long link name',
};

/**
 * Most headers an archive may have (extended headers count). A release of hundreds of images has
 * a few thousand blobs; a million-entry archive is refused at its 100,001st header, not after a
 * minute of reading.
 */
export const MAX_TAR_ENTRIES = 100_000;

/** Bytes read at once for the headers that follow small entries. */
const HEADER_WINDOW = 32 * 1024;

/** Zero padding allowed after the end-of-archive marker (GNU tar pads to 10 KiB records). */
const MAX_TRAILER = 64 * 1024;
/** PAX and GNU long-name payloads are small; refuse big ones. */
const MAX_EXTENDED = 64 * 1024;

export function unsafe(source: string, message: string, details: Record<string, unknown> = {}): SeabagError {
  return new SeabagError('E_ARCHIVE_UNSAFE', `${source}: ${message}`, { details: { file: source, ...details } });
}

function cString(buf: Buffer, start: number, end: number): string {
  const slice = buf.subarray(start, end);
  const nul = slice.indexOf(0);
  return (nul === -1 ? slice : slice.subarray(0, nul)).toString('utf8');
}

/** Octal (NUL/space terminated) or base-256 (GNU, high bit set) number field. */
function numberField(buf: Buffer, start: number, end: number): number | undefined {
  const field = buf.subarray(start, end);
  if (((field[0] ?? 0) & 0x80) !== 0) {
    if (((field[0] ?? 0) & 0x40) !== 0) return undefined; // negative
    let value = (field[0] ?? 0) & 0x3f;
    for (let i = 1; i < field.length; i += 1) {
      value = value * 256 + (field[i] ?? 0);
      if (!Number.isSafeInteger(value)) return undefined;
    }
    return value;
  }
  const text = field.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) return undefined;
  const value = parseInt(text, 8);
  return Number.isSafeInteger(value) ? value : undefined;
}

function checksumOk(block: Buffer): boolean {
  const stored = numberField(block, 148, 156);
  if (stored === undefined) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i += 1) {
    const byte = i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

function isZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i += 1) if (buf[i] !== 0) return false;
  return true;
}

/**
 * Normalizes a member name, or says why it is unsafe: absolute, `..`, empty segments,
 * backslashes, control characters.
 */
export function normalizeName(raw: string): { name: string } | { reason: string } {
  if (raw.length === 0) return { reason: 'empty name' };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(raw)) return { reason: 'control character in name' };
  if (raw.includes('\\')) return { reason: 'backslash in name' };
  if (raw.startsWith('/')) return { reason: 'absolute path' };
  let name = raw;
  while (name.startsWith('./')) name = name.slice(2);
  if (name === '.') name = '';
  if (name.endsWith('/')) name = name.slice(0, -1);
  if (name === '') return { name };
  const segments = name.split('/');
  if (segments.some((s) => s === '..')) return { reason: 'path goes up (..)' };
  if (segments.some((s) => s === '' || s === '.')) return { reason: 'empty or "." path segment' };
  return { name };
}

function parsePax(data: Buffer, where: string): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space === -1) throw unsafe(where, 'malformed PAX header');
    const len = Number(data.subarray(pos, space).toString('latin1'));
    if (!Number.isSafeInteger(len) || len <= 0 || pos + len > data.length) throw unsafe(where, 'malformed PAX record length');
    const record = data.subarray(space + 1, pos + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq === -1) throw unsafe(where, 'malformed PAX record');
    out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += len;
  }
  return out;
}

/**
 * Walks every header of a tar archive and returns its entries, checking each against `policy`.
 *
 * Limits: `policy.maxEntries` headers (default 100,000, extended headers included), 64 KiB per
 * PAX or GNU long-name payload, 64 KiB of zero padding after the end marker, `policy.maxSize`
 * per named entry.
 *
 * @throws E_ARCHIVE_UNSAFE (links, devices, traversal, duplicates, bad checksums, unknown
 *   formats, oversized entries, trailing data), E_ARCHIVE_TRUNCATED (ends mid-header or mid-entry,
 *   or without the end-of-archive marker)
 */
export async function scanTar(source: ByteSource, policy: ScanPolicy): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const names = new Set<string>();
  const maxEntries = policy.maxEntries ?? MAX_TAR_ENTRIES;
  let headers = 0;
  let pos = 0;
  // Headers that follow small entries are read 32 KiB at a time (an archive of many small files
  // is walked in a few hundred reads, not one per header); after a big entry, one block.
  let window: Buffer = Buffer.alloc(0);
  let windowStart = 0;
  let lastSize = 0;
  const readHeader = async (at: number): Promise<Buffer> => {
    if (at < windowStart || at + BLOCK > windowStart + window.length) {
      const length = lastSize <= HEADER_WINDOW ? Math.min(HEADER_WINDOW, source.size - at) : BLOCK;
      window = await source.read(at, length);
      windowStart = at;
    }
    return window.subarray(at - windowStart, at - windowStart + BLOCK);
  };
  // An entry's zero padding: from the window when it holds it (small entries); after a big entry,
  // read with the block after it, the next header, so each big entry costs one read, not two.
  const readPadding = async (at: number, length: number): Promise<Buffer> => {
    if (at >= windowStart && at + length <= windowStart + window.length) return window.subarray(at - windowStart, at - windowStart + length);
    window = await source.read(at, Math.min(length + BLOCK, source.size - at));
    windowStart = at;
    return window.subarray(0, length);
  };
  let pending: { path?: string; linkpath?: string; size?: number } = {};
  const where = source.name;
  for (;;) {
    if (pos + BLOCK > source.size) throw truncatedAt(where, pos, 'a header');
    const header = await readHeader(pos);
    if (isZero(header)) {
      if (pos + 2 * BLOCK > source.size) throw truncatedAt(where, pos, 'the end-of-archive marker');
      const second = await source.read(pos + BLOCK, BLOCK);
      if (!isZero(second)) throw unsafe(where, `a lone zero block at offset ${pos}`, { offset: pos });
      const rest = source.size - (pos + 2 * BLOCK);
      if (rest > MAX_TRAILER) throw unsafe(where, `${rest} bytes of trailing data after the end of the archive`, { offset: pos + 2 * BLOCK });
      if (rest > 0 && !isZero(await source.read(pos + 2 * BLOCK, rest))) {
        throw unsafe(where, 'trailing data after the end of the archive', { offset: pos + 2 * BLOCK });
      }
      if (Object.keys(pending).length > 0) throw unsafe(where, 'an extended header with no entry after it');
      return entries;
    }
    headers += 1;
    if (headers > maxEntries) throw unsafe(where, `more than ${maxEntries} entries (at offset ${pos})`, { offset: pos, limit: maxEntries });
    if (!checksumOk(header)) throw unsafe(where, `bad header checksum at offset ${pos}`, { offset: pos });
    const magic = header.subarray(257, 265).toString('latin1');
    const posix = magic === 'ustar\u000000';
    const gnu = magic === 'ustar  \u0000';
    if (!posix && !gnu) throw unsafe(where, `not a POSIX tar header at offset ${pos}`, { offset: pos });
    const flag = String.fromCharCode(header[156] ?? 0);
    const type = TYPES[flag] ?? 'unknown';
    const size = numberField(header, 124, 136);
    if (size === undefined) throw unsafe(where, `bad size field at offset ${pos}`, { offset: pos });
    lastSize = size;
    const dataOffset = pos + BLOCK;
    const next = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
    if (dataOffset + size > source.size) throw truncatedAt(where, pos, `the ${size}-byte entry at offset ${pos}`);

    if (type === 'pax header' || type === 'pax global header' || type === 'GNU long name' || type === 'GNU long link name') {
      if (!policy.extendedHeaders) throw unsafe(where, `${type} at offset ${pos} (bundles never have them; one could rename an entry)`, { offset: pos, type });
      if (size > MAX_EXTENDED) throw unsafe(where, `${type} of ${size} bytes at offset ${pos}`);
      const data = await source.read(dataOffset, size);
      if (type === 'pax header') {
        const records = parsePax(data, where);
        if (records['path'] !== undefined) pending.path = records['path'];
        if (records['linkpath'] !== undefined) pending.linkpath = records['linkpath'];
        if (records['size'] !== undefined) {
          const n = Number(records['size']);
          if (!Number.isSafeInteger(n) || n < 0) throw unsafe(where, 'bad PAX size');
          pending.size = n;
        }
      } else if (type === 'GNU long name') {
        pending.path = cString(data, 0, data.length);
      } else if (type === 'GNU long link name') {
        pending.linkpath = cString(data, 0, data.length);
      }
      pos = next;
      continue;
    }

    let raw = cString(header, 0, 100);
    const prefix = posix ? cString(header, 345, 500) : '';
    if (prefix !== '') raw = `${prefix}/${raw}`;
    if (pending.path !== undefined) raw = pending.path;
    const linkname = pending.linkpath ?? cString(header, 157, 257);
    if (pending.size !== undefined && pending.size !== size) throw unsafe(where, `PAX size disagrees with the header at offset ${pos}`);
    pending = {};

    const normalized = normalizeName(raw);
    if ('reason' in normalized) throw unsafe(where, `${normalized.reason}: ${JSON.stringify(raw.slice(0, 200))}`, { offset: pos, name: raw.slice(0, 200) });
    const name = normalized.name;
    if (type !== 'file' && type !== 'directory' && !(policy.allowTypes ?? []).includes(type)) {
      throw unsafe(where, `${type} ${JSON.stringify(name)} at offset ${pos}: only regular files and folders are allowed`, { offset: pos, name, type });
    }
    if (type === 'directory' && size !== 0) throw unsafe(where, `folder ${JSON.stringify(name)} has a size`, { offset: pos, name });
    const reason = policy.checkName?.(name, type);
    if (reason !== undefined) throw unsafe(where, `${reason}: ${JSON.stringify(name)} at offset ${pos}`, { offset: pos, name });
    const limit = policy.maxSize?.(name);
    if (limit !== undefined && size > limit) throw unsafe(where, `${JSON.stringify(name)} is ${size} bytes, over the ${limit}-byte limit`, { offset: pos, name, size, limit });
    if (names.has(name)) throw unsafe(where, `duplicate entry ${JSON.stringify(name)} at offset ${pos}`, { offset: pos, name });
    if (policy.canonical === true && !isCanonical(header, name, size, type)) {
      throw unsafe(where, `the header of ${JSON.stringify(name)} at offset ${pos} is not the one seabag writes for it (damaged or altered)`, { offset: pos, name });
    }
    names.add(name);
    if (policy.zeroPadding === true && next > dataOffset + size) {
      if (next > source.size) throw truncatedAt(where, dataOffset + size, `the padding of ${JSON.stringify(name)}`);
      if (!isZero(await readPadding(dataOffset + size, next - dataOffset - size))) {
        throw unsafe(where, `non-zero padding after ${JSON.stringify(name)} at offset ${dataOffset + size}`, { offset: dataOffset + size, name });
      }
    }
    entries.push({ name, type, size, headerOffset: pos, dataOffset, linkname });
    pos = next;
  }
}

/** Is `header` exactly what `encodeHeader` writes for this entry? */
function isCanonical(header: Buffer, name: string, size: number, type: EntryType): boolean {
  if (type !== 'file' && type !== 'directory') return false;
  try {
    return encodeHeader(name, size, type).equals(header);
  } catch {
    return false; // a name the writer could not have written
  }
}

function truncatedAt(where: string, pos: number, what: string): SeabagError {
  return new SeabagError('E_ARCHIVE_TRUNCATED', `${where} is truncated: it ends inside ${what} (at offset ${pos})`, {
    details: { file: where, offset: pos },
  });
}

function octalField(value: number, width: number): Buffer {
  const field = Buffer.alloc(width);
  if (value < 8 ** (width - 1)) {
    field.write(value.toString(8).padStart(width - 1, '0'), 0, 'latin1');
    return field;
  }
  // GNU base-256 for sizes of 8 GiB and more (high bit set, big-endian).
  let v = value;
  for (let i = width - 1; i > 0; i -= 1) {
    field[i] = v % 256;
    v = Math.floor(v / 256);
  }
  field[0] = 0x80;
  return field;
}

/**
 * The ustar header of one bundle entry: a regular file or a folder, mtime 0, uid/gid 0, modes
 * 0644/0755, no user or group names (nothing but name and size comes from the content).
 */
export function encodeHeader(name: string, size: number, type: 'file' | 'directory'): Buffer {
  const header = Buffer.alloc(BLOCK);
  const fullName = type === 'directory' && !name.endsWith('/') ? `${name}/` : name;
  if (Buffer.byteLength(fullName) > 100) throw new SeabagError('E_INTERNAL', `tar name longer than 100 bytes: ${fullName} (bundle names are fixed and short)`);
  header.write(fullName, 0, 'utf8');
  octalField(type === 'directory' ? 0o755 : 0o644, 8).copy(header, 100);
  octalField(0, 8).copy(header, 108);
  octalField(0, 8).copy(header, 116);
  octalField(size, 12).copy(header, 124);
  octalField(0, 12).copy(header, 136);
  header.write(type === 'directory' ? '5' : '0', 156, 'latin1');
  header.write('ustar\u000000', 257, 'latin1');
  octalField(0, 8).copy(header, 329);
  octalField(0, 8).copy(header, 337);
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return header;
}
