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
export { RegistryClient, isNotFound, type RegistryClientOptions } from './registry/client.js';
export { Repository } from './registry/repository.js';
export { DEFAULT_RETRY, type RetryPolicy } from './registry/retry.js';
