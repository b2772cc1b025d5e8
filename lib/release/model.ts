/**
 * The release model: the narrow types every admission step and every policy check works on,
 * whatever the release came from (a bundle file, a shore registry). `trust/` sees only these,
 * never the archive code (after sigstore-js `packages/verify/src/shared.types.ts`, `SignedEntity`).
 */
import type { Digest } from '../oci/digest.js';
import type { Descriptor, ImageManifest } from '../oci/descriptor.js';
import type { ReferrerRecord } from '../oci/referrers.js';

export interface ReleaseImage {
  /** Full source reference: `shore.example.com/groke/fusion:1.4.0`. */
  ref: string;
  /** Repository on the vessel's registry: `groke/fusion`. */
  repository: string;
  tag?: string;
  digest: Digest;
  /** The digest at the source, when a platform filter made a smaller index. */
  sourceDigest?: Digest;
  mediaType: string;
  /** Bytes of every distinct blob of the image (manifests, configs, layers). */
  size: number;
  platforms: string[];
  /** buildx attestation manifests carried in the image's index, each with the manifest it describes. */
  attestations?: ReleaseAttestation[];
  /** Signatures, attestations, SBOMs and other referrers of the image and its manifests, carried with it. */
  referrers?: ReleaseReferrer[];
}

/** A referrer of an image (a cosign `.sig`/`.att`/`.sbom` tag, or an OCI 1.1 referrer), as the release lists it. */
export type ReleaseReferrer = ReferrerRecord;

/** A buildx attestation manifest (`vnd.docker.reference.type: attestation-manifest`) of an image. */
export interface ReleaseAttestation {
  digest: Digest;
  /** The manifest it describes (`vnd.docker.reference.digest`). */
  subject: Digest;
  /** That manifest's platform, when the index names it. */
  platform?: string;
}

/** The release document: the config of the release manifest, schema `release-document`. */
export interface ReleaseDocument {
  apiVersion: 'seabag.dev/v1';
  kind: 'ReleaseDocument';
  name: string;
  version: string;
  /** Only when the build was given a time (SOURCE_DATE_EPOCH); absent in a reproducible build. */
  created?: string;
  expires?: string;
  targets: string[];
  platforms?: string[];
  images: ReleaseImage[];
  manifests: { file: string; digest: Digest; documents: number }[];
  deviceProfiles: { name: string; file: string; discovery: 'udev' | 'onvif'; node?: string; digest: Digest; brokerImage: string }[];
  /** The release's own health check (see `ReleaseSpec.check`); run aboard only with the captain's consent. */
  check?: { command: string[]; timeoutSeconds: number };
  /** Blobs a delta bundle leaves out: the vessel must already hold them. */
  omittedBlobs: Digest[];
  since?: { kind: 'inventory' | 'bundle'; releases?: string[] };
  /** Keys every image was required to carry a cosign signature by, checked at build. */
  imagePolicy?: { keys: { keyid: string; publicKey: string }[] };
}

/** One signature artifact: a manifest whose `subject` is the release manifest, and its DSSE envelope. */
export interface SignatureArtifact {
  desc: Descriptor;
  manifest: ImageManifest;
  /** The DSSE envelope's bytes (verified against the manifest's layer digest). */
  envelope: Buffer;
}

/** What a signature check needs to know of a release: its manifest's descriptor and the signatures that claim it. */
export interface SignedRelease {
  releaseDesc: Descriptor;
  signatures: readonly Pick<SignatureArtifact, 'manifest' | 'envelope'>[];
}

/** Everything read of a release before it is judged. Nothing here is trusted yet. */
export interface ReleaseMetadata extends SignedRelease {
  releaseManifest: ImageManifest;
  release: ReleaseDocument;
  signatures: SignatureArtifact[];
  /** Trust roots carried with the release, in chain order, each distinct blob once. */
  roots: Buffer[];
}

/** A tag may not hold `+` (semver build metadata); OCI tools write `_` instead. */
export function versionTag(version: string): string {
  return version.replace(/\+/g, '_');
}

/** The registry repository the release manifest goes to on the vessel. */
export function releaseRepository(name: string): string {
  return `seabag/${name}`;
}

/** What reports say of a release: name, version, dates, targets and its digest. */
export interface ReleaseSummary {
  name: string;
  version: string;
  created?: string;
  targets: string[];
  digest: Digest;
  expires?: string;
}

export function releaseSummary(meta: Pick<ReleaseMetadata, 'release' | 'releaseDesc'>): ReleaseSummary {
  const { release } = meta;
  return {
    name: release.name,
    version: release.version,
    ...(release.created === undefined ? {} : { created: release.created }),
    targets: release.targets,
    digest: meta.releaseDesc.digest,
    ...(release.expires === undefined ? {} : { expires: release.expires }),
  };
}
