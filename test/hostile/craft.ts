/**
 * Hostile archives, byte by byte: POSIX tar headers with any name, type, size and magic, so the
 * tests can build what no honest writer would.
 */
import { open, writeFile } from 'node:fs/promises';

export interface RawEntry {
  name: string;
  /** Type flag character: '0' file, '1' hard link, '2' symlink, '3' char device, '4' block device, '5' folder, '6' FIFO, 'x' PAX, 'L' GNU long name. */
  type?: string;
  data?: Buffer;
  /** Size written in the header, when it should lie about the data. */
  size?: number;
  linkname?: string;
  gnu?: boolean;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** One 512-byte header with a correct checksum. */
export function header(e: RawEntry): Buffer {
  const buf = Buffer.alloc(512);
  let name = e.name;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/');
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  buf.write(name.slice(0, 100), 0, 'utf8');
  buf.write(octal(e.type === '5' ? 0o755 : 0o644, 8), 100);
  buf.write(octal(0, 8), 108);
  buf.write(octal(0, 8), 116);
  buf.write(octal(e.size ?? e.data?.length ?? 0, 12), 124);
  buf.write(octal(0, 12), 136);
  buf.write(e.type ?? '0', 156);
  if (e.linkname !== undefined) buf.write(e.linkname, 157);
  if (e.gnu === true) buf.write('ustar  \0', 257, 'latin1');
  else {
    buf.write('ustar\0', 257, 'latin1');
    buf.write('00', 263, 'latin1');
  }
  if (e.gnu !== true) {
    // devmajor and devminor as seabag's writer fills them, so an honest entry is canonical.
    buf.write(octal(0, 8), 329);
    buf.write(octal(0, 8), 337);
  }
  if (prefix !== '' && e.gnu !== true) buf.write(prefix, 345);
  buf.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of buf) sum += b;
  buf.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return buf;
}

/** A PAX extended header record set. */
export function paxData(records: Record<string, string>): Buffer {
  let out = '';
  for (const [k, v] of Object.entries(records)) {
    const body = ` ${k}=${v}\n`;
    let len = body.length + 1;
    while (`${len}${body}`.length !== len) len = `${len}${body}`.length;
    out += `${len}${body}`;
  }
  return Buffer.from(out);
}

/** Entries as a tar: headers, data padded to 512, and (unless `end: false`) two zero blocks. */
export function tarBytes(entries: readonly RawEntry[], options: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(header(e));
    const data = e.data ?? Buffer.alloc(0);
    parts.push(data);
    const pad = (512 - (data.length % 512)) % 512;
    parts.push(Buffer.alloc(pad));
  }
  if (options.end !== false) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Writes a file whose tail is a hole: a huge entry without writing its bytes. */
export async function writeSparse(path: string, head: Buffer, totalSize: number): Promise<void> {
  await writeFile(path, head);
  const handle = await open(path, 'r+');
  try {
    await handle.truncate(totalSize);
  } finally {
    await handle.close();
  }
}
