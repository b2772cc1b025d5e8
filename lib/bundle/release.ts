/**
 * The release inside a bundle file: the archive opened and its release metadata read (through
 * the release layer's bounded reader). Judging it is `admit()`'s work (`lib/release/admit.ts`).
 */
import { ArchiveLayout, BUNDLE_POLICY } from './archive.js';
import { openInput, resolveBundleInput, type BundleInput } from './parts.js';
import { MetadataReader, type MetadataSource } from '../release/metadata.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { ReadOnlyStorage } from '../oci/store.js';
import type { ReleaseMetadata } from '../release/model.js';
import { readRelease } from '../release/read.js';

export {
  releaseRepository,
  releaseSummary,
  versionTag,
  type ReleaseAttestation,
  type ReleaseDocument,
  type ReleaseImage,
  type ReleaseSummary,
  type SignatureArtifact,
} from '../release/model.js';

/**
 * Where a bundle's content lives, as import reads it: the archive (`ArchiveLayout`), or the shore
 * registry a bundle was pushed to (`lib/satellite`'s `RegistryLayout`).
 */
export interface BundleLayout extends MetadataSource, ReadOnlyStorage {
  /** Reads a small blob (≤ 4 MiB: metadata) and verifies it. */
  readSmall(desc: Descriptor, what?: string): Promise<Buffer>;
  close(): Promise<void>;
}

export interface OpenedBundle<L extends BundleLayout = ArchiveLayout> extends ReleaseMetadata {
  input: BundleInput;
  archive: L;
  /** The bounded reader the metadata was read through; later metadata reads share its bytes. */
  reader: MetadataReader;
  close(): Promise<void>;
}

/**
 * Opens a bundle (or its parts), checks the archive, and reads its release, signatures and roots.
 * Only metadata is read here, within `METADATA_LIMITS`; layers are checked when they stream.
 *
 * @throws E_FILE_NOT_FOUND, E_USAGE (not a regular file), E_PART_MISSING, E_PART_CORRUPT,
 *   E_ARCHIVE_UNSAFE, E_ARCHIVE_TRUNCATED, E_LAYOUT_INVALID, E_SIZE_MISMATCH, E_DIGEST_MISMATCH
 */
export async function openBundle(path: string | BundleInput): Promise<OpenedBundle> {
  const input = typeof path === 'string' ? await resolveBundleInput(path) : path;
  const archive = await openArchive(input);
  try {
    const reader = new MetadataReader(archive);
    const meta = await readRelease(reader);
    return { ...meta, input, archive, reader, close: () => archive.close() };
  } catch (err) {
    await archive.close();
    throw err;
  }
}

/**
 * Opens a bundle's archive: its structure checked, `oci-layout` and `index.json` read; the
 * release in it is read by `admit()` or `readRelease`.
 *
 * @throws E_FILE_NOT_FOUND, E_USAGE, E_ARCHIVE_UNSAFE, E_ARCHIVE_TRUNCATED, E_LAYOUT_INVALID
 */
export async function openArchive(input: BundleInput): Promise<ArchiveLayout> {
  const source = await openInput(input);
  try {
    return await ArchiveLayout.open(source, BUNDLE_POLICY);
  } catch (err) {
    await source.close();
    throw err;
  }
}
