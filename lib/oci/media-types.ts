/**
 * Media types of OCI image-spec v1.1.0 (`media-types.md`) and Docker Image Manifest V2 Schema 2,
 * and seabag's own artifact types.
 */

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
/** Non-distributable layers (image-spec v1.1.0 `layer.md`, deprecated but still served): `…nondistributable.v1.tar[+gzip|+zstd]`. */
export const OCI_NONDISTRIBUTABLE_PREFIX = 'application/vnd.oci.image.layer.nondistributable.v1.tar';

export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const DOCKER_FOREIGN_LAYER = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';

/** seabag's artifacts inside a bundle. */
export const SEABAG_RELEASE = 'application/vnd.seabag.release.v1+json';
export const SEABAG_RELEASE_CONFIG = 'application/vnd.seabag.release.config.v1+json';
export const SEABAG_K8S_MANIFESTS = 'application/vnd.seabag.k8s.manifests.v1+yaml';
export const SEABAG_DEVICE_PROFILE = 'application/vnd.seabag.akri.configuration.v1+yaml';
export const SEABAG_SIGNATURE = 'application/vnd.seabag.signature.v1+json';
export const SEABAG_TRUST_CHAIN = 'application/vnd.seabag.trust.chain.v1+json';
export const SEABAG_TRUST_ROOT = 'application/vnd.seabag.trust.root.v1+json';
/** artifactType of a bundle's index pushed to a registry (bundle push). */
export const SEABAG_BUNDLE = 'application/vnd.seabag.bundle.v1';
export const DSSE_ENVELOPE = 'application/vnd.dsse.envelope.v1+json';

/** Flux's OCI artifact, as `flux push artifact` writes it (fluxcd/pkg `oci` package). */
export const FLUX_CONFIG = 'application/vnd.cncf.flux.config.v1+json';
export const FLUX_CONTENT = 'application/vnd.cncf.flux.content.v1.tar+gzip';

/** The `config` of an artifact with no configuration (image-spec v1.1.0 `manifest.md#guidance-for-an-empty-descriptor`). */
export const EMPTY_JSON = '{}';
export const EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

export const MANIFEST_TYPES: readonly string[] = [OCI_MANIFEST, DOCKER_MANIFEST];
export const INDEX_TYPES: readonly string[] = [OCI_INDEX, DOCKER_MANIFEST_LIST];

/** Every type a registry may answer a manifest GET with, for the `Accept` header. */
export const ALL_MANIFEST_TYPES: readonly string[] = [...MANIFEST_TYPES, ...INDEX_TYPES];

export function isImageManifest(mediaType: string): boolean {
  return MANIFEST_TYPES.includes(mediaType);
}

export function isIndex(mediaType: string): boolean {
  return INDEX_TYPES.includes(mediaType);
}

/** Manifests and indexes: the nodes of a graph that name other content. */
export function isManifestLike(mediaType: string): boolean {
  return ALL_MANIFEST_TYPES.includes(mediaType);
}
