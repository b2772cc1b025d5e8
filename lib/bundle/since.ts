/**
 * What a vessel already has, for delta bundles: its inventory (sent ashore), or an older bundle
 * it is known to have imported.
 */
import { openRegularFile, readRegularFile } from '../util/files.js';
import { fromSystemError, SeabagError } from '../errors.js';
import { describeKind, sniff } from '../util/sniff.js';
import { assertSchema } from '../schema.js';
import type { Digest } from '../oci/digest.js';
import { openBundle } from './release.js';

export interface Inventory {
  apiVersion: 'seabag.dev/v1';
  kind: 'Inventory';
  created: string;
  target?: string;
  releases: { name: string; version: string; digest: Digest; state: 'staged' | 'active' | 'previous' | 'failed' }[];
  blobs: Digest[];
}

export interface SinceBase {
  digests: ReadonlySet<string>;
  kind: 'inventory' | 'bundle';
  releases: string[];
}

/** Largest inventory read. */
export const MAX_INVENTORY_FILE = 64 * 1024 * 1024;

/**
 * Reads an inventory (JSON, at most 64 MiB) or an older bundle; regular files only.
 *
 * @throws E_USAGE (not a regular file), E_INVENTORY_INVALID, E_FILE_NOT_FOUND, and what `openBundle` throws for a bundle
 */
export async function readSince(path: string): Promise<SinceBase> {
  let head: Buffer;
  try {
    const { handle } = await openRegularFile(path, '--since file');
    try {
      const buf = Buffer.alloc(64);
      const { bytesRead } = await handle.read(buf, 0, 64, 0);
      head = buf.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw fromSystemError(err, 'read', path);
  }
  if (head.toString('utf8').trimStart().startsWith('{')) {
    const text = await readRegularFile(path, { maxBytes: MAX_INVENTORY_FILE, what: 'inventory', tooLarge: 'E_INVENTORY_INVALID' });
    let doc: unknown;
    try {
      doc = JSON.parse(text.toString('utf8'));
    } catch (err) {
      throw new SeabagError('E_INVENTORY_INVALID', `${path} is not valid JSON: ${(err as Error).message}`);
    }
    const kind = sniff(text);
    if (kind !== 'inventory' && kind !== 'json') {
      throw new SeabagError('E_INVENTORY_INVALID', `${path} is ${describeKind(kind)}, not an inventory or a bundle; --since wants what \`bundle inventory\` wrote aboard, or an older bundle`, {
        details: { file: path, kind },
      });
    }
    assertSchema('inventory', doc, path, 'E_INVENTORY_INVALID');
    const inventory = doc as Inventory;
    return { digests: new Set(inventory.blobs), kind: 'inventory', releases: inventory.releases.map((r) => `${r.name}@${r.version}`) };
  }
  const bundle = await openBundle(path);
  try {
    // A vessel that imported this bundle holds everything in it, and what it left out.
    const digests = new Set<string>([...bundle.archive.blobs.keys(), ...bundle.release.omittedBlobs]);
    return { digests, kind: 'bundle', releases: [`${bundle.release.name}@${bundle.release.version}`] };
  } finally {
    await bundle.close();
  }
}
