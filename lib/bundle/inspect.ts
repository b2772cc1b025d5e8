/**
 * `bundle inspect`: what a bundle holds, read from its metadata alone (no layer is read).
 */
import type { Digest } from '../oci/digest.js';
import { isImageManifest, isIndex } from '../oci/media-types.js';
import { SeabagError } from '../errors.js';
import { parseIndex, type Descriptor } from '../oci/descriptor.js';
import { parseEnvelope } from '../trust/dsse.js';
import { parseRoot } from '../trust/root.js';
import type { ReferrerRecord } from '../oci/referrers.js';
import { openBundle, releaseSummary, type ReleaseAttestation, type ReleaseDocument, type ReleaseSummary } from './release.js';

export interface InspectReport {
  file: string;
  parts: number;
  size: number;
  release: ReleaseSummary;
  images: { ref: string; repository: string; tag?: string; digest: Digest; platforms: string[]; size: number; attestations?: ReleaseAttestation[]; referrers: ReferrerRecord[] }[];
  /** Keys the release required every image to be signed by (cosign), when it did. */
  imagePolicy?: { keyids: string[] };
  manifests: { file: string; documents: number; digest: Digest }[];
  deviceProfiles: ReleaseDocument['deviceProfiles'];
  /** The release's own signed health check, for the captain to read before `apply --release-check`. */
  check?: ReleaseDocument['check'];
  /** Keyids the envelopes name (hints only: `verify` checks them). */
  signatures: { keyid: string }[];
  roots: { version: number; expires: string }[];
  omittedBlobs: Digest[];
  /** Bytes of the omitted blobs, as the image manifests give their sizes. */
  omittedBytes: number;
  since?: ReleaseDocument['since'];
}

/**
 * Reads a bundle's release, images, signatures and roots.
 *
 * @throws what `openBundle` throws
 */
export async function inspectBundle(path: string): Promise<InspectReport> {
  const bundle = await openBundle(path);
  try {
    const { release } = bundle;
    const omitted = new Set<string>(release.omittedBlobs);
    const sizes = new Map<string, number>();
    // Walk the image manifests in the bundle for the sizes of what was left out: each distinct
    // manifest once, through the same capped reader as the release (nothing here is signed yet).
    const seen = new Set<string>();
    const visit = async (desc: Descriptor, depth: number): Promise<void> => {
      bundle.reader.count(1, desc.digest);
      if (depth > 8 || seen.has(desc.digest) || bundle.archive.location(desc.digest) === undefined) return;
      seen.add(desc.digest);
      desc = { ...desc, size: bundle.archive.location(desc.digest)?.size ?? desc.size };
      if (isImageManifest(desc.mediaType)) {
        const m = await bundle.reader.manifest(desc, desc.digest);
        for (const d of [m.config, ...m.layers]) sizes.set(d.digest, d.size);
      } else if (isIndex(desc.mediaType)) {
        const index = parseIndex(await bundle.reader.read(desc), desc);
        bundle.reader.count(index.manifests.length, desc.digest);
        for (const d of index.manifests) await visit(d, depth + 1);
      }
    };
    for (const image of release.images) {
      const size = bundle.archive.location(image.digest)?.size ?? 0;
      await visit({ mediaType: image.mediaType, digest: image.digest, size }, 0).catch((err: unknown) => {
        // A cap is a refusal, not a missing size.
        if (err instanceof SeabagError && err.code === 'E_LAYOUT_INVALID' && err.details['limit'] !== undefined) throw err;
      });
    }
    const signatures: { keyid: string }[] = [];
    // Each distinct envelope once, however many artifacts carry it.
    for (const envelope of new Set(bundle.signatures.map((s) => s.envelope))) {
      try {
        for (const sig of parseEnvelope(envelope).signatures) signatures.push({ keyid: sig.keyid ?? '(none)' });
      } catch {
        signatures.push({ keyid: '(unreadable envelope)' });
      }
    }
    const roots = bundle.roots.flatMap((bytes, i) => {
      try {
        const r = parseRoot(bytes, `root ${i + 1}`);
        return [{ version: r.signed.version, expires: r.signed.expires }];
      } catch {
        return [];
      }
    });
    return {
      file: bundle.input.name,
      parts: bundle.input.pieces.length,
      size: bundle.archive.source.size,
      release: releaseSummary(bundle),
      images: release.images.map((i) => ({
        ref: i.ref,
        repository: i.repository,
        ...(i.tag === undefined ? {} : { tag: i.tag }),
        digest: i.digest,
        platforms: i.platforms,
        size: i.size,
        ...(i.attestations === undefined ? {} : { attestations: i.attestations }),
        referrers: i.referrers ?? [],
      })),
      ...(release.imagePolicy === undefined ? {} : { imagePolicy: { keyids: release.imagePolicy.keys.map((k) => k.keyid) } }),
      manifests: release.manifests.map((m) => ({ file: m.file, documents: m.documents, digest: m.digest })),
      deviceProfiles: release.deviceProfiles,
      ...(release.check === undefined ? {} : { check: release.check }),
      signatures,
      roots,
      omittedBlobs: release.omittedBlobs,
      omittedBytes: [...omitted].reduce((sum, d) => sum + (sizes.get(d) ?? 0), 0),
      ...(release.since === undefined ? {} : { since: release.since }),
    };
  } finally {
    await bundle.close();
  }
}
