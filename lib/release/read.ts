/**
 * Reading a release's metadata from any `MetadataSource`: the release manifest (an OCI artifact
 * whose config is the release document and whose layers are the pinned manifests and rendered
 * device profiles), the signature artifacts that refer to it, and the trust roots carried for
 * vessels on an older root. Nothing is judged here; `admit()` does that.
 */
import { SeabagError } from '../errors.js';
import { parseJSON, type Descriptor } from '../oci/descriptor.js';
import { isImageManifest, SEABAG_RELEASE, SEABAG_RELEASE_CONFIG, SEABAG_SIGNATURE, SEABAG_TRUST_CHAIN } from '../oci/media-types.js';
import { assertSchema } from '../schema.js';
import type { MetadataReader } from './metadata.js';
import type { ReleaseDocument, ReleaseMetadata, SignatureArtifact } from './model.js';

function layoutError(name: string, message: string): SeabagError {
  return new SeabagError('E_LAYOUT_INVALID', `${name}: ${message}`, { details: { file: name } });
}

/** Index entries of one artifact type, each digest once (a repeated entry costs nothing more). */
function distinct(manifests: readonly Descriptor[], artifactType: string): Descriptor[] {
  const seen = new Set<string>();
  return manifests.filter((d) => d.artifactType === artifactType && !seen.has(d.digest) && seen.add(d.digest) !== undefined);
}

/**
 * Reads the release manifest, its release document, the signature artifacts and the carried
 * roots, all through `reader` (so within its caps, each distinct blob read once).
 *
 * @throws E_LAYOUT_INVALID (no or several release manifests, malformed or oversized metadata,
 *   a release document that breaks its schema), E_SIZE_MISMATCH, E_DIGEST_MISMATCH,
 *   E_BLOBS_MISSING, and what the source throws
 */
export async function readRelease(reader: MetadataReader): Promise<ReleaseMetadata> {
  const { index, name } = reader.source;
  reader.count(index.manifests.length, 'index.json');
  const releases = index.manifests.filter((d) => d.artifactType === SEABAG_RELEASE);
  if (releases.length !== 1) {
    throw layoutError(name, releases.length === 0 ? 'not a seabag bundle: index.json names no release manifest' : `index.json names ${releases.length} release manifests`);
  }
  const releaseDesc = releases[0] as Descriptor;
  if (!isImageManifest(releaseDesc.mediaType)) throw layoutError(name, `release manifest has media type ${releaseDesc.mediaType}`);
  const releaseManifest = await reader.manifest(releaseDesc, 'release manifest');
  if (releaseManifest.artifactType !== SEABAG_RELEASE || releaseManifest.config.mediaType !== SEABAG_RELEASE_CONFIG) {
    throw layoutError(name, 'the release manifest is not a seabag release artifact');
  }
  const release = parseJSON(await reader.read(releaseManifest.config, 'release document'), 'release document') as ReleaseDocument;
  assertSchema('release-document', release, `${name}: release document`, 'E_LAYOUT_INVALID');

  const signatures: SignatureArtifact[] = [];
  for (const desc of distinct(index.manifests, SEABAG_SIGNATURE)) {
    const manifest = await reader.manifest(desc, 'signature manifest');
    const layer = manifest.layers[0];
    if (manifest.layers.length !== 1 || layer === undefined) throw layoutError(name, `signature manifest ${desc.digest} must have exactly one layer`);
    signatures.push({ desc, manifest, envelope: await reader.read(layer, 'signature envelope') });
  }
  const roots: Buffer[] = [];
  const seenRoots = new Set<string>();
  for (const desc of distinct(index.manifests, SEABAG_TRUST_CHAIN)) {
    const manifest = await reader.manifest(desc, 'trust chain');
    for (const layer of manifest.layers) {
      if (seenRoots.has(layer.digest)) continue;
      seenRoots.add(layer.digest);
      roots.push(await reader.read(layer, 'trust root'));
    }
  }
  return { releaseDesc, releaseManifest, release, signatures, roots };
}
