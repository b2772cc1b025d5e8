/**
 * Small content held in memory (artifacts made on the fly), as a store copyGraph can read.
 */
import { Readable } from 'node:stream';
import type { Descriptor } from './descriptor.js';
import type { ReadOnlyStorage } from './store.js';
import { SeabagError } from '../errors.js';

export class MemoryStore implements ReadOnlyStorage {
  readonly #blobs = new Map<string, Buffer>();

  add(desc: Descriptor, data: Buffer): this {
    this.#blobs.set(desc.digest, data);
    return this;
  }

  async fetch(desc: Descriptor): Promise<Readable> {
    const data = this.#blobs.get(desc.digest);
    if (data === undefined) throw new SeabagError('E_NOT_FOUND', `no ${desc.digest} in memory`);
    return Readable.from([data]);
  }

  async exists(desc: Descriptor): Promise<boolean> {
    return this.#blobs.has(desc.digest);
  }
}
