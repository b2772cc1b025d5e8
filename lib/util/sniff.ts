/**
 * What kind of file a person handed us, told by its first bytes, so a wrong one gets a message
 * that says what it is and what was wanted ("that is a public key; --sign wants the private
 * key") instead of a parser's complaint. Only positive recognition counts: a file that is none
 * of these is `unknown`, and the reader it was meant for reports it as before.
 */
import { openRegularFile } from './files.js';

export type FileKind =
  | 'private-key'
  | 'public-key'
  | 'pem'
  | 'trust-root'
  | 'parts-file'
  | 'inventory'
  | 'json'
  | 'release-spec'
  | 'device-profile'
  | 'yaml'
  | 'tar'
  | 'gzip'
  | 'unknown';

/** How many bytes `sniffFile` reads: enough for a key, a trust root, a spec, a tar header. */
export const SNIFF_BYTES = 64 * 1024;

function jsonKind(text: string): FileKind {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // Cut off at SNIFF_BYTES, or not JSON after all: judge by the keys it shows.
    if (/"signed"\s*:/.test(text) && /"signatures"\s*:/.test(text)) return 'trust-root';
    return /^\s*[{[]\s*"/.test(text) ? 'json' : 'unknown';
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return 'json';
  const o = doc as Record<string, unknown>;
  if ('signed' in o && 'signatures' in o) return 'trust-root';
  if (o['kind'] === 'Inventory') return 'inventory';
  if (Array.isArray(o['parts']) && typeof o['bundle'] === 'string') return 'parts-file';
  return 'json';
}

/** The kind of a file from its first bytes (at most `SNIFF_BYTES` of them). */
export function sniff(head: Uint8Array): FileKind {
  const buf = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (buf.length >= 262 && buf.toString('latin1', 257, 262) === 'ustar') return 'tar';
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) return 'gzip';
  if (buf.subarray(0, 8192).includes(0)) return 'unknown';
  const text = buf.toString('utf8').replace(/^\uFEFF/, '');
  const trimmed = text.trimStart();
  const pem = /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(trimmed);
  if (pem !== null) {
    const label = pem[1] ?? '';
    if (/PRIVATE KEY$/.test(label)) return 'private-key';
    if (label === 'PUBLIC KEY') return 'public-key';
    return 'pem';
  }
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) return jsonKind(text);
  if (/^kind:\s*["']?Release["']?\s*$/m.test(text)) return 'release-spec';
  if (/^kind:\s*["']?DeviceProfile["']?\s*$/m.test(text)) return 'device-profile';
  if (/^(---\s*$|[A-Za-z_][\w.-]*:(\s|$))/m.test(trimmed)) return 'yaml';
  return 'unknown';
}

/** Reads the first bytes of `path` and tells its kind (`unknown` when it cannot be read). */
export async function sniffFile(path: string): Promise<FileKind> {
  let handle;
  try {
    // Never blocks, never reads a device: a FIFO or /dev/zero is 'unknown' here (and refused by the caller).
    ({ handle } = await openRegularFile(path));
    const buf = Buffer.alloc(SNIFF_BYTES);
    const { bytesRead } = await handle.read(buf, 0, SNIFF_BYTES, 0);
    return sniff(buf.subarray(0, bytesRead));
  } catch {
    return 'unknown';
  } finally {
    await handle?.close();
  }
}

/** "a public key", "a trust root", … for messages. */
export function describeKind(kind: FileKind): string {
  return {
    'private-key': 'a private key',
    'public-key': 'a public key',
    pem: 'a PEM file (a certificate?), not an Ed25519 key',
    'trust-root': 'a trust root',
    'parts-file': 'the parts list of a split bundle',
    inventory: "a vessel's inventory",
    json: 'a JSON document',
    'release-spec': 'a release spec (release.yaml)',
    'device-profile': 'a device profile',
    yaml: 'a YAML document',
    tar: 'a tar archive (a bundle?)',
    gzip: 'a gzip-compressed file',
    unknown: 'a file of unknown kind',
  }[kind];
}
