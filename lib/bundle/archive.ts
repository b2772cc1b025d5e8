/**
 * An OCI image layout inside a tar archive, read in place by offsets: the bundle itself, or an
 * `oci-archive:` image source. Blobs stream straight from their place in the file; nothing is
 * extracted.
 */
import type { Readable } from 'node:stream';
import { SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { MAX_METADATA_SIZE, parseIndexDocument, parseJSON, type Descriptor, type ImageIndex } from '../oci/descriptor.js';
import { INDEX_FILE, LAYOUT_VERSION, OCI_LAYOUT_FILE } from '../oci/layout.js';
import { OCI_INDEX } from '../oci/media-types.js';
import type { OpOptions, RangeReader, ReadOnlyStorage } from '../oci/store.js';
import { readVerified } from '../oci/verify.js';
import type { MetadataSource } from '../release/metadata.js';
import type { ByteSource } from './source.js';
import { scanTar, unsafe, type ScanPolicy, type TarEntry } from './tar.js';

const BLOB_NAME = /^blobs\/sha256\/([a-f0-9]{64})$/;
const BUNDLE_DIRS = new Set(['', 'blobs', 'blobs/sha256']);

/**
 * Bundles: regular files named `oci-layout`, `index.json`, `blobs/sha256/<hex>` and their
 * folders, nothing else, each header byte-identical to the one seabag's writer emits.
 */
export const BUNDLE_POLICY: ScanPolicy = {
  extendedHeaders: false,
  zeroPadding: true,
  canonical: true,
  checkName: (name, type) => {
    if (type === 'directory') return BUNDLE_DIRS.has(name) ? undefined : 'unexpected folder';
    if (name === OCI_LAYOUT_FILE || name === INDEX_FILE || BLOB_NAME.test(name)) return undefined;
    return name.startsWith('blobs/') ? 'blob name is not sha256/<64 lowercase hex>' : 'unknown file';
  },
  maxSize: (name) => (name === OCI_LAYOUT_FILE || name === INDEX_FILE ? MAX_METADATA_SIZE : undefined),
};

/** Image archives from other tools: PAX and GNU names understood, other files ignored. */
export const OCI_ARCHIVE_POLICY: ScanPolicy = {
  extendedHeaders: true,
  maxSize: (name) => (name === OCI_LAYOUT_FILE || name === INDEX_FILE ? MAX_METADATA_SIZE : undefined),
};

/** A bundle's layout is a release's metadata source (`admit()` reads it through `MetadataSource`). */
export class ArchiveLayout implements ReadOnlyStorage, MetadataSource {
  readonly source: ByteSource;
  readonly entries: readonly TarEntry[];
  readonly blobs: ReadonlyMap<Digest, TarEntry>;
  readonly index: ImageIndex;

  private constructor(source: ByteSource, entries: TarEntry[], blobs: Map<Digest, TarEntry>, index: ImageIndex) {
    this.source = source;
    this.entries = entries;
    this.blobs = blobs;
    this.index = index;
  }

  /**
   * Scans the archive and reads its `oci-layout` and `index.json`.
   *
   * Limits: those of `scanTar` (100,000 headers; for bundles, canonical headers only) and 4 MiB
   * each for `oci-layout` and `index.json`.
   *
   * @throws E_ARCHIVE_UNSAFE, E_ARCHIVE_TRUNCATED, E_LAYOUT_INVALID
   */
  static async open(source: ByteSource, policy: ScanPolicy = BUNDLE_POLICY): Promise<ArchiveLayout> {
    const entries = await scanTar(source, policy);
    const byName = new Map(entries.map((e) => [e.name, e]));
    const marker = byName.get(OCI_LAYOUT_FILE);
    const indexEntry = byName.get(INDEX_FILE);
    if (marker === undefined || marker.type !== 'file' || indexEntry === undefined || indexEntry.type !== 'file') {
      throw new SeabagError('E_LAYOUT_INVALID', `${source.name} is not an OCI image layout archive: it lacks ${marker === undefined ? OCI_LAYOUT_FILE : INDEX_FILE}`);
    }
    for (const e of [marker, indexEntry]) {
      if (e.size > MAX_METADATA_SIZE) throw unsafe(source.name, `${e.name} is ${e.size} bytes, over the ${MAX_METADATA_SIZE}-byte limit`);
    }
    const layout = parseJSON(await source.read(marker.dataOffset, marker.size), `${source.name}:${OCI_LAYOUT_FILE}`) as { imageLayoutVersion?: unknown };
    if (layout === null || typeof layout !== 'object' || layout.imageLayoutVersion !== LAYOUT_VERSION) {
      throw new SeabagError('E_LAYOUT_INVALID', `${source.name}: ${OCI_LAYOUT_FILE} must say imageLayoutVersion ${LAYOUT_VERSION}`);
    }
    const indexDoc = parseJSON(await source.read(indexEntry.dataOffset, indexEntry.size), `${source.name}:${INDEX_FILE}`);
    const index = parseIndexDocument(indexDoc, { mediaType: OCI_INDEX }, `${source.name}:${INDEX_FILE}`);
    const blobs = new Map<Digest, TarEntry>();
    for (const e of entries) {
      const m = BLOB_NAME.exec(e.name);
      if (m !== null && e.type === 'file') blobs.set(`sha256:${m[1] as string}`, e);
    }
    return new ArchiveLayout(source, entries, blobs, index);
  }

  get name(): string {
    return this.source.name;
  }

  /** The size of the blob stored under `digest`, or undefined when the archive has none. */
  sizeOf(digest: Digest): number | undefined {
    return this.blobs.get(digest)?.size;
  }

  #entry(desc: Descriptor): TarEntry {
    const entry = this.blobs.get(desc.digest);
    if (entry === undefined) {
      throw new SeabagError('E_BLOBS_MISSING', `${this.source.name} does not hold ${desc.mediaType} ${desc.digest}`, { details: { missing: [desc.digest] } });
    }
    if (entry.size !== desc.size) {
      throw new SeabagError('E_SIZE_MISMATCH', `blob ${desc.digest} in ${this.source.name} is ${entry.size} bytes, its descriptor says ${desc.size}`, {
        details: { digest: desc.digest, expected: desc.size, found: entry.size },
      });
    }
    return entry;
  }

  async fetch(desc: Descriptor, options: OpOptions = {}): Promise<Readable> {
    const entry = this.#entry(desc);
    return this.source.stream(entry.dataOffset, entry.size, options.signal);
  }

  async reader(desc: Descriptor): Promise<RangeReader> {
    const entry = this.#entry(desc);
    const source = this.source;
    return {
      size: entry.size,
      read: async (target, position) => {
        const want = Math.min(target.length, entry.size - position);
        return want <= 0 ? 0 : source.readInto(target.subarray(0, want), entry.dataOffset + position);
      },
      close: async () => undefined,
    };
  }

  /** Present by name and size; the bytes are verified when read. */
  async exists(desc: Descriptor): Promise<boolean> {
    const entry = this.blobs.get(desc.digest);
    return entry !== undefined && entry.size === desc.size;
  }

  /** Where a blob's bytes sit in the archive. */
  location(digest: Digest): TarEntry | undefined {
    return this.blobs.get(digest);
  }

  /**
   * Reads a small blob (≤ 4 MiB) and verifies it.
   *
   * @throws E_LAYOUT_INVALID (too large), E_BLOBS_MISSING, E_DIGEST_MISMATCH, E_SIZE_MISMATCH
   */
  async readSmall(desc: Descriptor, what = desc.mediaType): Promise<Buffer> {
    if (desc.size > MAX_METADATA_SIZE) {
      throw new SeabagError('E_LAYOUT_INVALID', `${what} ${desc.digest} is ${desc.size} bytes, over the ${MAX_METADATA_SIZE}-byte limit`);
    }
    return readVerified(await this.fetch(desc), desc, what);
  }

  close(): Promise<void> {
    return this.source.close();
  }
}
