/**
 * Reaching into the test registry's storage, as disk trouble or a careless operator would: the
 * file that holds a blob (or a manifest: Distribution stores both as blobs).
 */
import { join } from 'node:path';
import type { RegistryHandle } from './registry.js';

/** The `data` file of a blob in Distribution's filesystem storage. */
export function blobDataPath(registry: RegistryHandle, digest: string): string {
  const hex = digest.replace(/^sha256:/, '');
  return join(registry.storageDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
}
