/**
 * Where a release's metadata comes from, and the one bounded, sharing reader admission reads it
 * through.
 *
 * A `MetadataSource` is small on purpose: the top-level index, and blobs fetched by descriptor.
 * A bundle file meets it (`ArchiveLayout`), and so can a shore registry repository, so that one
 * `admit()` judges both. Everything read before the signature check is read through a
 * `MetadataReader`, which reads each distinct blob once and shares its bytes (a release whose
 * manifests name one blob hundreds of times costs that blob once), and refuses past fixed caps
 * on one blob, on all the bytes read, and on the descriptors walked.
 */
import type { Readable } from 'node:stream';
import { SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { MAX_METADATA_SIZE, parseImageManifest, type Descriptor, type ImageIndex, type ImageManifest } from '../oci/descriptor.js';
import type { OpOptions } from '../oci/store.js';
import { readVerified } from '../oci/verify.js';

/** The metadata side of a release's home: its index, and its blobs by descriptor. */
export interface MetadataSource {
  /** What to call the source in messages (a bundle's path, `oci://host/repo:tag`). */
  readonly name: string;
  /** The top-level index (unsigned: admission checks it against the signed release). */
  readonly index: ImageIndex;
  /** Opens the blob named by `desc`; the reader verifies size and digest as it reads. */
  fetch(desc: Descriptor, options?: OpOptions): Promise<Readable>;
  /** Does the source hold this blob, at this size? (completeness) */
  exists(desc: Descriptor, options?: OpOptions): Promise<boolean>;
  /** The size of the blob held under `digest`, when the source knows it without a request (an archive's table of contents). */
  sizeOf?(digest: Digest): number | undefined;
}

export interface MetadataLimits {
  /** Largest single metadata blob (manifest, config, envelope, root). */
  maxBlobBytes: number;
  /** All distinct metadata bytes read for one admission. */
  maxTotalBytes: number;
  /** Descriptors walked (every reference counted, repeated or not). */
  maxDescriptors: number;
}

/**
 * The caps of one admission: 4 MiB per blob (Distribution's own manifest limit), 64 MiB in all,
 * 100,000 descriptors. A real release of hundreds of multi-arch images uses a few MiB and a few
 * tens of thousands of descriptors.
 */
export const METADATA_LIMITS: Readonly<MetadataLimits> = Object.freeze({
  maxBlobBytes: MAX_METADATA_SIZE,
  maxTotalBytes: 64 * 1024 * 1024,
  maxDescriptors: 100_000,
});

function overLimit(source: string, message: string, details: Record<string, unknown>): SeabagError {
  return new SeabagError('E_LAYOUT_INVALID', `${source}: ${message}`, {
    details: { file: source, ...details },
    hint: 'the release metadata is larger than any real release needs; the bundle is refused before its signature is checked',
  });
}

/**
 * Reads metadata blobs from a source, each distinct digest once, within `MetadataLimits`.
 *
 * Limits: `maxBlobBytes` per blob (checked from the descriptor before any byte is read),
 * `maxTotalBytes` of distinct blobs in all, `maxDescriptors` references counted by `count`.
 */
export class MetadataReader {
  readonly source: MetadataSource;
  readonly limits: Readonly<MetadataLimits>;
  readonly #blobs = new Map<Digest, Promise<Buffer>>();
  readonly #manifests = new Map<string, ImageManifest>();
  #bytes = 0;
  #descriptors = 0;

  constructor(source: MetadataSource, limits: Partial<MetadataLimits> = {}) {
    this.source = source;
    this.limits = { ...METADATA_LIMITS, ...limits };
  }

  /** Distinct metadata bytes read so far. */
  get bytesRead(): number {
    return this.#bytes;
  }

  /** Descriptors counted so far. */
  get descriptors(): number {
    return this.#descriptors;
  }

  /**
   * Counts `n` more descriptor references.
   *
   * @throws E_LAYOUT_INVALID past `maxDescriptors`
   */
  count(n: number, where: string): void {
    this.#descriptors += n;
    if (this.#descriptors > this.limits.maxDescriptors) {
      throw overLimit(this.source.name, `more than ${this.limits.maxDescriptors} descriptors in its metadata (at ${where})`, { limit: this.limits.maxDescriptors, where });
    }
  }

  /**
   * The verified bytes of a small blob; the same Buffer for every read of the same digest.
   *
   * @throws E_LAYOUT_INVALID (over a cap), E_SIZE_MISMATCH, E_DIGEST_MISMATCH, E_BLOBS_MISSING and what the source throws
   */
  read(desc: Descriptor, what: string = desc.mediaType, options: OpOptions = {}): Promise<Buffer> {
    const known = this.#blobs.get(desc.digest);
    if (known !== undefined) {
      return known.then((bytes) => {
        if (bytes.length !== desc.size) {
          throw new SeabagError('E_SIZE_MISMATCH', `${what} ${desc.digest} is ${bytes.length} bytes, a descriptor says ${desc.size}`, {
            details: { digest: desc.digest, expected: desc.size, found: bytes.length },
          });
        }
        return bytes;
      });
    }
    if (desc.size > this.limits.maxBlobBytes) {
      return Promise.reject(overLimit(this.source.name, `${what} ${desc.digest} is ${desc.size} bytes, over the ${this.limits.maxBlobBytes}-byte limit for metadata`, {
        digest: desc.digest,
        size: desc.size,
        limit: this.limits.maxBlobBytes,
      }));
    }
    if (this.#bytes + desc.size > this.limits.maxTotalBytes) {
      return Promise.reject(overLimit(this.source.name, `its metadata is more than ${this.limits.maxTotalBytes} bytes (at ${what} ${desc.digest})`, {
        digest: desc.digest,
        limit: this.limits.maxTotalBytes,
      }));
    }
    this.#bytes += desc.size;
    const pending = (async () => readVerified(await this.source.fetch(desc, options), desc, what))();
    this.#blobs.set(desc.digest, pending);
    return pending;
  }

  /**
   * A parsed image manifest (parsed once per digest); its descriptors are counted each call.
   *
   * @throws what `read` throws; E_LAYOUT_INVALID when malformed
   */
  async manifest(desc: Descriptor, what: string): Promise<ImageManifest> {
    // Keyed by media type too: the parse checks the document's type against its descriptor's.
    const key = `${desc.mediaType} ${desc.digest}`;
    let manifest = this.#manifests.get(key);
    if (manifest === undefined) {
      manifest = parseImageManifest(await this.read(desc, what), desc, what);
      this.#manifests.set(key, manifest);
    }
    this.count(manifest.layers.length + 1, what);
    return manifest;
  }
}
