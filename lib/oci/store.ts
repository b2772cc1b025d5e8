/**
 * The small contracts every place content lives meets (after oras-go v2 `content/storage.go`):
 * an OCI layout directory, a bundle being read, a bundle being written, a registry repository.
 * One `copyGraph` moves a graph between any two of them.
 */
import type { Readable } from 'node:stream';
import type { Descriptor } from './descriptor.js';

/** Progress of long work: bytes of content moved so far out of a known total. */
export interface Progress {
  phase: string;
  /** Bytes done so far in this phase. */
  done: number;
  /** Bytes expected in this phase, when known. */
  total?: number;
  /** What is being worked on now (a digest, a file, an image). */
  item?: string;
  /** What `done` and `total` count (default bytes). */
  unit?: 'bytes' | 'images' | 'blobs';
  /**
   * A retry about to happen (then `done` and `total` say nothing new): the registry, which
   * attempt of how many, the wait before it, and why (the error's code, HTTP status, message).
   */
  retry?: RetryNotice;
}

export interface RetryNotice {
  registry: string;
  attempt: number;
  of: number;
  delayMs: number;
  code: string;
  status?: number;
  reason: string;
}

export interface OpOptions {
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}

/** Opens content afresh; called again when a transfer has to start over. */
export type ContentSource = () => Promise<Readable>;

/** Random access to one blob's bytes, for copies that read ahead into buffers they reuse. */
export interface RangeReader {
  readonly size: number;
  /** Fills `target` from `position` of the blob; returns how many bytes it got (0 at the end). */
  read(target: Buffer, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface ReadOnlyStorage {
  /** Random access to a blob, when the store is a file (layouts, bundles); absent for registries. */
  reader?(desc: Descriptor): Promise<RangeReader>;
  /** Opens the content named by `desc`. The caller verifies what it reads (see `VerifyingStream`). */
  fetch(desc: Descriptor, options?: OpOptions): Promise<Readable>;
  /** Does the store hold this content (checked, not assumed from a name or a size)? */
  exists(desc: Descriptor, options?: OpOptions): Promise<boolean>;
  /**
   * Makes the content ready to be read quickly, once a copy knows it needs it: a remote source
   * (the satellite path) downloads it here, so no upload session waits on a slow link.
   */
  prepare?(desc: Descriptor, options?: OpOptions): Promise<void>;
  /**
   * Moves a blob into a destination's upload by writing it there itself, in one pass with
   * whatever else the source does with the bytes (the satellite path downloads, spools and hashes
   * them on the way). It commits the upload only once the bytes match `desc`, and cancels it
   * otherwise. `start` opens a fresh upload: called again when the destination broke and the
   * upload has to start over from the first byte.
   */
  relay?(desc: Descriptor, start: () => Promise<BlobWriter>, options?: RelayOptions): Promise<void>;
}

export interface RelayOptions extends OpOptions {
  /** Told of bytes written into the destination's upload. */
  onBytes?: (n: number) => void;
}

/**
 * One upload of one blob into a store, written in order. Nothing is stored under the blob's digest
 * until `commit`; `cancel` leaves nothing behind.
 */
export interface BlobWriter {
  /** Bytes accepted so far. */
  readonly written: number;
  /**
   * Appends bytes. Returns nothing when the destination took them at once, or a promise that
   * settles once it is ready for more (the destination is slower than the source): no promise per
   * chunk on a fast path that moves gigabytes in 64 KiB chunks. The caller must not change `chunk`
   * afterwards.
   */
  write(chunk: Buffer): Promise<void> | undefined;
  /**
   * Ends the request under way cleanly, keeping the upload open: a pause in the source (a link
   * outage) then leaves no request hanging on the destination. The next `write` goes on.
   */
  pause(): Promise<void>;
  /** Stores what was written under the blob's digest (call only once the bytes are verified). */
  commit(): Promise<void>;
  /** Abandons the upload (best effort; never throws). */
  cancel(): Promise<void>;
}

export interface PushOptions extends OpOptions {
  /** Random access to the same content, for stores that copy faster without a stream. */
  reader?: () => Promise<RangeReader>;
  /** Told of bytes sent when `reader` is used (a stream's bytes are counted by whoever made it). */
  onBytes?: (n: number) => void;
  /** Called once the content must really be sent (after HEAD and mounts found nothing), before it is opened. */
  prepare?: () => Promise<void>;
  /**
   * The source writes the blob into the upload itself (`ReadOnlyStorage.relay`): stores that can
   * open a `BlobWriter` call this instead of opening the content.
   */
  relay?: (start: () => Promise<BlobWriter>) => Promise<void>;
}

export interface Storage extends ReadOnlyStorage {
  /**
   * Stores content, verifying it against `desc` as it streams. `open` may be called more than once
   * when a transfer breaks and is started over. Either the content is stored whole or not at all.
   */
  push(desc: Descriptor, open: ContentSource, options?: PushOptions): Promise<void>;
}

export interface TagStore {
  /** The descriptor a tag points at. */
  resolve(tag: string, options?: OpOptions): Promise<Descriptor>;
  /** Points `tag` at the manifest `desc`, which the store already holds. */
  tag(desc: Descriptor, tag: string, options?: OpOptions): Promise<void>;
}
