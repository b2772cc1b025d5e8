/**
 * The vessel's registry as a place to push to: one client, and a tracker that uploads each blob
 * once per import and mounts it into every other repository that needs it (distribution-spec
 * "Mounting a blob from another repository"), also from repositories earlier imports filled.
 */
import type { Readable } from 'node:stream';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/descriptor.js';
import { isManifestLike } from '../oci/media-types.js';
import type { ContentSource, OpOptions, PushOptions, Storage } from '../oci/store.js';
import type { Repository } from '../registry/repository.js';

export interface PushStats {
  /** Blobs and manifests uploaded. */
  pushed: number;
  /** Blobs mounted from another repository. */
  mounted: number;
  /** Content the registry already had (HEAD). */
  skipped: number;
  bytesPushed: number;
}

export class PushTracker {
  readonly stats: PushStats = { pushed: 0, mounted: 0, skipped: 0, bytesPushed: 0 };
  /** Repositories known to hold each digest. */
  readonly #known = new Map<string, Set<string>>();
  /** Uploads under way, by digest, resolving to the repository that got the blob. */
  readonly #inflight = new Map<string, Promise<string | undefined>>();
  readonly #onStored: ((desc: Descriptor) => void) | undefined;

  constructor(onStored?: (desc: Descriptor) => void) {
    this.#onStored = onStored;
  }

  /** Records that `repository` holds these digests (from earlier imports). */
  know(repository: string, digests: Iterable<string>): void {
    for (const d of digests) {
      let set = this.#known.get(d);
      if (set === undefined) {
        set = new Set();
        this.#known.set(d, set);
      }
      set.add(repository);
    }
  }

  /** Repositories other than `except` known to hold `digest`. */
  holders(digest: Digest, except?: string): string[] {
    return [...(this.#known.get(digest) ?? [])].filter((r) => r !== except);
  }

  /** A Storage for one repository whose pushes go through this tracker. */
  storage(repo: Repository): Storage {
    return {
      exists: async (desc: Descriptor, options?: OpOptions) => repo.exists(desc, options),
      fetch: async (desc: Descriptor, options?: OpOptions): Promise<Readable> => repo.fetch(desc, options),
      push: async (desc: Descriptor, open: ContentSource, options?: PushOptions) => this.#push(repo, desc, open, options ?? {}),
    };
  }

  async #push(repo: Repository, desc: Descriptor, open: ContentSource, options: PushOptions): Promise<void> {
    if (isManifestLike(desc.mediaType)) {
      await repo.push(desc, open, options);
      this.stats.pushed += 1;
      this.stats.bytesPushed += desc.size;
      this.know(repo.name, [desc.digest]);
      this.#onStored?.(desc);
      return;
    }
    const running = this.#inflight.get(desc.digest);
    if (running !== undefined) await running.catch(() => undefined);
    for (const from of this.holders(desc.digest, repo.name)) {
      if (await repo.mount(desc, from, options)) {
        this.stats.mounted += 1;
        this.know(repo.name, [desc.digest]);
        this.#onStored?.(desc);
        return;
      }
    }
    const upload = (async () => {
      await repo.push(desc, open, options);
      return repo.name;
    })();
    this.#inflight.set(desc.digest, upload);
    try {
      await upload;
    } finally {
      if (this.#inflight.get(desc.digest) === upload) this.#inflight.delete(desc.digest);
    }
    this.stats.pushed += 1;
    this.stats.bytesPushed += desc.size;
    this.know(repo.name, [desc.digest]);
    this.#onStored?.(desc);
  }
}
