/**
 * A bundle pushed to a shore registry, read in place: the pushed image index stands for the
 * bundle's `index.json`, manifests and small metadata blobs come straight from the repository
 * (verified), and every other blob comes through the spool, so it is downloaded only when someone
 * reads it, resumes after a break and is paced by the link's token bucket.
 */
import { Readable } from 'node:stream';
import { SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { MAX_METADATA_SIZE, parseImageManifest, parseIndexDocument, parseJSON, type Descriptor, type ImageIndex } from '../oci/descriptor.js';
import { fetchVerified } from '../oci/graph.js';
import { isImageManifest, isManifestLike, OCI_INDEX, SEABAG_BUNDLE, SEABAG_RELEASE, SEABAG_SIGNATURE, SEABAG_TRUST_CHAIN } from '../oci/media-types.js';
import type { BlobWriter, OpOptions, RangeReader, RelayOptions } from '../oci/store.js';
import { readVerified } from '../oci/verify.js';
import type { BundleLayout, OpenedBundle } from '../bundle/release.js';
import { MetadataReader } from '../release/metadata.js';
import { readRelease } from '../release/read.js';
import type { Repository } from '../registry/repository.js';
import { DEFAULT_RETRY, withRetry } from '../registry/retry.js';
import { canonicalBytes } from '../util/canonical.js';
import { formatOciAddress, type OciAddress } from './address.js';
import type { Spool } from './spool.js';

/**
 * Admission metadata asked for at once (see `RegistryLayout.#prefetch`): at most 16 documents of
 * each kind, none over 64 KiB, 256 KiB in all (a release's is a few KiB).
 */
const PREFETCH = 16;
const PREFETCH_ITEM = 64 * 1024;
const PREFETCH_BYTES = 256 * 1024;

/** Blobs up to this size are read whole, without the spool: metadata, not worth resuming. */
export const SMALL_BLOB = 256 * 1024;

/** The pushed index's bytes → the bundle's `index.json` bytes (the same document without `artifactType`). */
export function bundleIndexBytes(pushed: Buffer): Buffer {
  const doc = parseJSON(pushed, 'bundle index') as Record<string, unknown>;
  const { artifactType: _, ...rest } = doc;
  return canonicalBytes(rest);
}

/** The bundle's `index.json` bytes → what is pushed as the bundle's image index. */
export function pushedIndexBytes(indexJson: Buffer): Buffer {
  const doc = parseJSON(indexJson, 'index.json') as Record<string, unknown>;
  return canonicalBytes({ ...doc, mediaType: OCI_INDEX, artifactType: SEABAG_BUNDLE });
}

export class RegistryLayout implements BundleLayout {
  readonly repo: Repository;
  readonly index: ImageIndex;
  /** The pushed index's descriptor in the repository. */
  readonly desc: Descriptor;
  /** The bundle's `index.json`, byte for byte. */
  readonly indexJson: Buffer;
  readonly source: { readonly name: string };
  readonly #spool: Spool;
  readonly #sizes = new Map<string, number>();
  /** Manifests read so far, verified: each crosses the link once. */
  readonly #manifests = new Map<string, Promise<Buffer>>();
  /** Small blobs read so far (the release document, its layers, envelopes, roots). */
  readonly #small = new Map<string, Promise<Buffer>>();
  /** Reads `#prefetch` started, awaited before the layout closes. */
  readonly #prefetching: Promise<unknown>[] = [];
  /** Bytes of metadata (manifests, small blobs) read from the registry. */
  metadataBytes = 0;
  readonly #onMetadata: ((n: number) => void) | undefined;

  private constructor(repo: Repository, name: string, desc: Descriptor, indexJson: Buffer, index: ImageIndex, spool: Spool, onMetadata?: (n: number) => void) {
    this.repo = repo;
    this.source = { name };
    this.desc = desc;
    this.indexJson = indexJson;
    this.index = index;
    this.#spool = spool;
    this.#onMetadata = onMetadata;
    for (const d of index.manifests) this.#sizes.set(d.digest, d.size);
  }

  /**
   * Reads the bundle index a `bundle push` made (by tag or digest).
   *
   * @throws E_NOT_FOUND when the repository has no such tag or digest; E_LAYOUT_INVALID when it is
   *   not a seabag bundle; E_AUTH, E_REGISTRY*
   */
  static async open(repo: Repository, address: OciAddress, spool: Spool, options: OpOptions & { onMetadata?: (n: number) => void } = {}): Promise<RegistryLayout> {
    const name = formatOciAddress(address);
    const reference = address.digest ?? address.tag;
    if (reference === undefined) throw new SeabagError('E_USAGE', `${name} names no tag or digest`);
    let got;
    try {
      got = await repo.getManifest(reference, options);
    } catch (err) {
      if (err instanceof SeabagError && err.code === 'E_REGISTRY' && err.details['status'] === 404) {
        throw new SeabagError('E_NOT_FOUND', `${name}: the registry has no such bundle`, {
          cause: err,
          details: { address: name },
          hint: 'push it first (bundle push FILE oci://HOST/REPO), or check the tag (the release version by default)',
        });
      }
      throw err;
    }
    options.onMetadata?.(got.bytes.length);
    const doc = parseJSON(got.bytes, name) as { artifactType?: unknown; mediaType?: unknown };
    if (got.desc.mediaType !== OCI_INDEX || doc.artifactType !== SEABAG_BUNDLE) {
      throw new SeabagError('E_LAYOUT_INVALID', `${name} is not a seabag bundle (its manifest is ${got.desc.mediaType}${typeof doc.artifactType === 'string' ? `, artifactType ${doc.artifactType}` : ''}, not an image index with artifactType ${SEABAG_BUNDLE})`, {
        details: { address: name, mediaType: got.desc.mediaType },
        hint: 'name a tag that bundle push made (the release version, or its --tag)',
      });
    }
    const indexJson = bundleIndexBytes(got.bytes);
    const index = parseIndexDocument(parseJSON(indexJson, name), { mediaType: OCI_INDEX }, name);
    const layout = new RegistryLayout(repo, name, got.desc, indexJson, index, spool, options.onMetadata);
    layout.metadataBytes += got.bytes.length;
    return layout;
  }

  get name(): string {
    return this.source.name;
  }

  /**
   * Reads the release, signatures and roots through admission's bounded reader: metadata only (a
   * few KiB). Admission (`admit()`) judges it next, through the same reader.
   */
  async release(): Promise<OpenedBundle<RegistryLayout>> {
    this.#prefetch();
    const reader = new MetadataReader(this);
    const meta = await readRelease(reader).catch(async (err: unknown) => {
      await this.close();
      throw err;
    });
    return { ...meta, input: { name: this.source.name, pieces: [] }, archive: this, reader, close: () => this.close() };
  }

  /**
   * Asks for the admission metadata all at once (the release manifest with its config and layers,
   * each signature manifest with its envelope, each trust chain with its roots), so the reads
   * that follow, one after another, wait on one round trip rather than a dozen. Only what
   * `readRelease` reads anyway, at most PREFETCH of each kind; a failure here is left for that
   * read to meet and report.
   */
  #prefetch(): void {
    const quiet = (p: Promise<unknown>): void => {
      p.catch(() => undefined);
      this.#prefetching.push(p);
    };
    // Within a budget far below admission's own caps: a hostile index gets no more than that.
    let budget = PREFETCH_BYTES;
    const affordable = (d: Descriptor): boolean => d.size <= PREFETCH_ITEM && (budget -= d.size) >= 0;
    for (const kind of [SEABAG_RELEASE, SEABAG_SIGNATURE, SEABAG_TRUST_CHAIN]) {
      for (const desc of this.index.manifests.filter((d) => d.artifactType === kind).slice(0, PREFETCH)) {
        if (!isImageManifest(desc.mediaType) || !affordable(desc)) continue;
        quiet(
          this.manifest(desc).then((bytes) => {
            const m = parseImageManifest(bytes, desc);
            const blobs = kind === SEABAG_RELEASE ? [m.config, ...m.layers] : m.layers;
            for (const b of blobs.slice(0, PREFETCH)) if (affordable(b)) quiet(this.readSmall(b));
          }),
        );
      }
    }
  }

  /**
   * Sizes are known from the descriptors seen so far (the index, and every manifest read through
   * this layout), so completeness costs no request; a blob's presence in the registry is proven
   * when it is read (E_BLOBS_MISSING when the repository lacks it).
   */
  sizeOf(digest: Digest): number | undefined {
    return this.#sizes.get(digest);
  }

  #learn(bytes: Buffer, desc: Descriptor): void {
    this.metadataBytes += bytes.length;
    this.#onMetadata?.(bytes.length);
    this.#sizes.set(desc.digest, desc.size);
    const doc = parseJSON(bytes, desc.digest) as { config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[]; subject?: Descriptor };
    for (const d of [doc.config, doc.subject, ...(doc.layers ?? []), ...(doc.manifests ?? [])]) {
      if (d !== undefined && typeof d.digest === 'string' && typeof d.size === 'number') this.#sizes.set(d.digest, d.size);
    }
  }

  /** A manifest or index by digest, verified, read from the registry once. */
  manifest(desc: Descriptor, options: OpOptions = {}): Promise<Buffer> {
    let pending = this.#manifests.get(desc.digest);
    if (pending === undefined) {
      pending = fetchVerified(this.repo, desc, options).then((bytes) => {
        this.#learn(bytes, desc);
        return bytes;
      });
      this.#manifests.set(desc.digest, pending);
      pending.catch(() => this.#manifests.delete(desc.digest));
    }
    return pending;
  }

  async fetch(desc: Descriptor, options: OpOptions = {}): Promise<Readable> {
    if (isManifestLike(desc.mediaType)) return Readable.from([await this.manifest(desc, options)]);
    // Metadata (the release document, envelopes, roots, configs) comes whole; layers through the spool.
    if (desc.size <= SMALL_BLOB) return Readable.from([await this.readSmall(desc)]);
    return this.#spool.stream(this.repo, desc);
  }

  /**
   * Moves a blob into an upload on the vessel's registry: a layer through the spool in one pass
   * (`Spool.relay`: downloaded, spooled, hashed and uploaded at once, committed once its digest
   * checks out); metadata read whole and verified first, then written.
   */
  async relay(desc: Descriptor, start: () => Promise<BlobWriter>, options: RelayOptions = {}): Promise<void> {
    if (!isManifestLike(desc.mediaType) && desc.size > SMALL_BLOB) return this.#spool.relay(this.repo, desc, start, options);
    // The upload session opens while the blob comes over the link.
    let first: Promise<BlobWriter> | undefined = start();
    first.catch(() => undefined);
    const bytes = await this.readSmall(desc).catch(async (err: unknown) => {
      await (await first?.catch(() => undefined))?.cancel();
      throw err;
    });
    await withRetry(
      async () => {
        const upload = await (first ?? start());
        first = undefined;
        try {
          await upload.write(bytes);
          await upload.commit();
        } catch (err) {
          await upload.cancel();
          throw err;
        }
      },
      DEFAULT_RETRY,
      options.signal,
    );
    options.onBytes?.(bytes.length);
  }

  /** Downloads a blob into the spool (or finds it there) before an upload of it starts. */
  async prepare(desc: Descriptor): Promise<void> {
    if (!isManifestLike(desc.mediaType) && desc.size > SMALL_BLOB) await this.#spool.get(this.repo, desc);
  }

  async reader(desc: Descriptor): Promise<RangeReader> {
    if (desc.size <= SMALL_BLOB) {
      const bytes = await this.readSmall(desc);
      return { size: bytes.length, read: async (target, position) => bytes.copy(target, 0, position, Math.min(bytes.length, position + target.length)), close: async () => undefined };
    }
    return this.#spool.reader(this.repo, desc);
  }

  /** A blob is taken to be there; reading it proves it (or fails with E_BLOBS_MISSING). */
  async exists(desc: Descriptor): Promise<boolean> {
    return this.#sizes.get(desc.digest) === desc.size;
  }

  /**
   * Reads metadata (≤ 4 MiB) straight from the registry, verified: manifests, the release
   * document and its layers, signature envelopes, trust roots.
   */
  async readSmall(desc: Descriptor, what = desc.mediaType): Promise<Buffer> {
    if (desc.size > MAX_METADATA_SIZE) {
      throw new SeabagError('E_LAYOUT_INVALID', `${what} ${desc.digest} is ${desc.size} bytes, over the ${MAX_METADATA_SIZE}-byte limit`);
    }
    if (isManifestLike(desc.mediaType)) return this.manifest(desc);
    let pending = this.#small.get(desc.digest);
    if (pending === undefined) {
      pending = (async () => {
        const bytes = await readVerified((await this.repo.openBlob(desc)).body, desc, what);
        this.metadataBytes += bytes.length;
        this.#onMetadata?.(bytes.length);
        this.#sizes.set(desc.digest, desc.size);
        return bytes;
      })();
      this.#small.set(desc.digest, pending);
      pending.catch(() => this.#small.delete(desc.digest));
    }
    return pending;
  }

  async close(): Promise<void> {
    // The registry client belongs to whoever opened the layout; nothing asked for here is left
    // under way when it closes.
    await Promise.allSettled(this.#prefetching);
  }
}
