/**
 * An OCI image layout on disk (image-spec v1.1.0 `image-layout.md`): `oci-layout`, `index.json`,
 * `blobs/sha256/<hex>`. Blobs are written whole or not at all (temp file, verify, fsync, rename,
 * fsync the directory), and so is `index.json`.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fromSystemError, SeabagError } from '../errors.js';
import { writeJSONAtomic } from '../util/atomic.js';
import { openRegularFile, READ_CHUNK, readRegularFile, sha256File, streamToFileAtomic } from '../util/files.js';
import { blobPath } from './digest.js';
import { MAX_METADATA_SIZE, parseIndexDocument, parseJSON, REF_NAME, type Descriptor, type ImageIndex } from './descriptor.js';
import { OCI_INDEX } from './media-types.js';
import type { ContentSource, OpOptions, RangeReader, Storage, TagStore } from './store.js';
import { VerifyingStream } from './verify.js';

export const LAYOUT_VERSION = '1.0.0';
export const OCI_LAYOUT_FILE = 'oci-layout';
export const INDEX_FILE = 'index.json';

export class OciLayout implements Storage, TagStore {
  readonly root: string;
  /** Digests hashed from disk (or written by us) in this process: no need to hash them twice. */
  readonly #verified = new Set<string>();
  #indexWrite: Promise<unknown> = Promise.resolve();
  /** With `indexOnce`: the first reading of `index.json`, which serves every later one. */
  #indexOnce: Promise<ImageIndex> | undefined;
  readonly #keepIndex: boolean;

  private constructor(root: string, keepIndex: boolean) {
    this.root = root;
    this.#keepIndex = keepIndex;
  }

  /**
   * Opens a layout; with `create`, makes an empty one where there is none. With `indexOnce`, for
   * a reader that takes one look at the layout (a build reading its images): `index.json` is read
   * once, on first use, and `readIndex()` answers from that reading from then on (several images
   * of one layout, and their referrers, see the same index, read once).
   *
   * @throws E_FILE_NOT_FOUND when there is no layout and `create` is not set; E_LAYOUT_INVALID
   */
  static async open(root: string, options: { create?: boolean; indexOnce?: boolean } = {}): Promise<OciLayout> {
    const layout = new OciLayout(root, options.indexOnce === true);
    const marker = join(root, OCI_LAYOUT_FILE);
    let text: string | undefined;
    try {
      text = (await readRegularFile(marker, { maxBytes: MAX_METADATA_SIZE, what: OCI_LAYOUT_FILE, tooLarge: 'E_LAYOUT_INVALID' })).toString('utf8');
    } catch (err) {
      // No marker: a folder to make a layout in, when asked to; anything else is an error.
      if (!(err instanceof SeabagError && err.code === 'E_FILE_NOT_FOUND' && options.create === true)) throw fromSystemError(err, 'open OCI layout', root);
    }
    if (text === undefined) {
      await mkdir(join(root, 'blobs', 'sha256'), { recursive: true });
      await writeJSONAtomic(marker, { imageLayoutVersion: LAYOUT_VERSION });
      await writeJSONAtomic(join(root, INDEX_FILE), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
    } else {
      const doc = parseJSON(Buffer.from(text), `${root}/${OCI_LAYOUT_FILE}`) as { imageLayoutVersion?: unknown };
      if (doc.imageLayoutVersion !== LAYOUT_VERSION) {
        throw new SeabagError('E_LAYOUT_INVALID', `${marker}: unsupported imageLayoutVersion ${String(doc.imageLayoutVersion)}`);
      }
    }
    return layout;
  }

  path(desc: Pick<Descriptor, 'digest'>): string {
    return blobPath(this.root, desc.digest);
  }

  async fetch(desc: Descriptor): Promise<Readable> {
    // A layout comes from outside: a blob that is a FIFO or a link to a device is refused, not read.
    const { handle } = await openRegularFile(this.path(desc), 'blob');
    return handle.createReadStream({ highWaterMark: READ_CHUNK });
  }

  async reader(desc: Descriptor): Promise<RangeReader> {
    const path = this.path(desc);
    const { handle, stats } = await openRegularFile(path, 'blob');
    const { size } = stats;
    if (size !== desc.size) {
      await handle.close();
      throw new SeabagError('E_SIZE_MISMATCH', `blob ${desc.digest}: ${size} bytes, expected ${desc.size}`, { details: { digest: desc.digest, expected: desc.size, found: size } });
    }
    return {
      size,
      read: async (target, position) => (await handle.read(target, 0, target.length, position)).bytesRead,
      close: () => handle.close(),
    };
  }

  /** True when the blob is here with the right size and its bytes hash to its digest. */
  async exists(desc: Descriptor, options: OpOptions = {}): Promise<boolean> {
    if (this.#verified.has(desc.digest)) return true;
    const path = this.path(desc);
    try {
      const s = await stat(path);
      if (!s.isFile() || s.size !== desc.size) return false;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw fromSystemError(err, 'stat blob', path);
    }
    if (`sha256:${await sha256File(path, undefined, options.signal)}` !== desc.digest) return false;
    this.#verified.add(desc.digest);
    return true;
  }

  async push(desc: Descriptor, open: ContentSource, options: OpOptions = {}): Promise<void> {
    if (await this.exists(desc, options)) return;
    const source = await open();
    const transforms = [new VerifyingStream(desc)];
    await streamToFileAtomic(source, transforms, this.path(desc), options.signal ? { signal: options.signal } : {});
    this.#verified.add(desc.digest);
  }

  /**
   * Reads `index.json`: a regular file of at most 4 MiB (once only, for a layout opened with
   * `indexOnce`). @throws E_USAGE, E_LAYOUT_INVALID, E_FILE_NOT_FOUND, E_IO
   */
  readIndex(): Promise<ImageIndex> {
    if (!this.#keepIndex) return this.#readIndexFile();
    this.#indexOnce ??= this.#readIndexFile();
    return this.#indexOnce;
  }

  async #readIndexFile(): Promise<ImageIndex> {
    const path = join(this.root, INDEX_FILE);
    let data: Buffer;
    try {
      data = await readRegularFile(path, { maxBytes: MAX_METADATA_SIZE, what: INDEX_FILE, tooLarge: 'E_LAYOUT_INVALID' });
    } catch (err) {
      throw fromSystemError(err, 'read', path);
    }
    return parseIndexDocument(parseJSON(data, path), { mediaType: OCI_INDEX }, path);
  }

  /** Replaces `index.json` with the result of `change`, one change at a time. */
  async updateIndex(change: (index: ImageIndex) => ImageIndex): Promise<void> {
    const next = this.#indexWrite.then(async () => {
      const index = await this.#readIndexFile();
      const changed = change(index);
      this.#indexOnce = undefined;
      await writeJSONAtomic(join(this.root, INDEX_FILE), { ...changed, schemaVersion: 2, mediaType: OCI_INDEX });
    });
    this.#indexWrite = next.catch(() => undefined);
    await next;
  }

  async resolve(tag: string): Promise<Descriptor> {
    const index = await this.readIndex();
    const found = index.manifests.filter((d) => d.annotations?.[REF_NAME] === tag);
    if (found.length === 0) throw new SeabagError('E_NOT_FOUND', `no image tagged ${JSON.stringify(tag)} in ${this.root}`);
    if (found.length > 1) throw new SeabagError('E_LAYOUT_INVALID', `${this.root}: tag ${JSON.stringify(tag)} names ${found.length} images`);
    return found[0] as Descriptor;
  }

  /** Points `tag` (`org.opencontainers.image.ref.name`) at `desc`; the manifest must already be stored. */
  async tag(desc: Descriptor, tag: string): Promise<void> {
    if (!(await this.exists(desc))) throw new SeabagError('E_NOT_FOUND', `cannot tag ${desc.digest} in ${this.root}: not stored`);
    await this.updateIndex((index) => ({
      ...index,
      manifests: [
        ...index.manifests.filter((d) => d.annotations?.[REF_NAME] !== tag),
        { ...desc, annotations: { ...desc.annotations, [REF_NAME]: tag } },
      ],
    }));
  }
}
