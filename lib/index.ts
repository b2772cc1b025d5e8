/**
 * seabag's public library entry. The CLI uses nothing else; nothing here prints.
 */
export * from './errors.js';
export * from './oci/digest.js';
export * from './oci/descriptor.js';
export * from './oci/media-types.js';
export * from './oci/reference.js';
export * from './oci/store.js';
export * from './oci/verify.js';
export * from './oci/layout.js';
export * from './oci/graph.js';
export { CredentialStore, type Credentials } from './registry/auth.js';
export { RegistryClient, isNotFound, checkRegistryHost, type RegistryClientOptions } from './registry/client.js';
export { Repository } from './registry/repository.js';
export { DEFAULT_RETRY, type RetryPolicy } from './registry/retry.js';
export * from './schema.js';
export * from './bundle/archive.js';
export * from './bundle/build.js';
export * from './bundle/inspect.js';
export * from './bundle/parts.js';
export * from './bundle/release.js';
export * from './bundle/since.js';
export * from './bundle/source.js';
export * from './bundle/verify.js';
export * from './trust/keys.js';
export * from './trust/dsse.js';
export * from './trust/root.js';
export * from './trust/policy.js';
export { verifyReleaseSignatures, effectiveRoot, releaseStatement, type SignatureCheck } from './trust/verify.js';
export { compareSemver, isSemver } from './util/semver.js';
export { writeFileAtomic, writeJSONAtomic } from './util/atomic.js';
export { packageVersion } from './util/package.js';
export { importBundle, type ImportOptions, type ImportResult } from './vessel/import.js';
export { applyRelease, rollbackRelease, vesselStatus, pruneReleases, vesselInventory, type StatusReport, type PruneReport, type SwitchOptions } from './vessel/operations.js';
export type { SwitchResult, TagMove } from './vessel/switch.js';
export type { DeployOptions, DeployerName } from './vessel/deploy.js';
export { DEFAULT_STATE_DIR, StateDir, type VesselState, type HeldRelease } from './vessel/state.js';
export { fetchBundle, parseRate, type FetchOptions, type FetchResult } from './fetch/fetch.js';
