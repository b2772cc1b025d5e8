/**
 * The narrow contracts the registry modules meet each other through, so none imports another's
 * class: a repository needs of its client only `request` (auth, retries and TLS inside); uploads
 * and probes need of a repository only its paths, scopes and a HEAD. With these, `client.ts`
 * (makes repositories), `repository.ts` (uses uploads) and `upload.ts` form no import cycle.
 */
import type { Readable } from 'node:stream';
import { SeabagError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { OpOptions } from '../oci/store.js';
import type { BodyPump, HttpResponse } from './http.js';
import type { RetryPolicy } from './retry.js';

export interface RegistryRequest {
  method: string;
  /** A path under the registry root (`/v2/...`) or an absolute URL (upload locations). */
  path: string;
  headers?: Record<string, string>;
  /** Produces the body; called again for each attempt, so streams are opened afresh. */
  body?: () => Promise<Buffer | Readable | BodyPump> | Buffer | Readable | BodyPump;
  /** Repository access this needs, e.g. `repository:groke/fusion:pull,push`. */
  scope?: string[];
  /** Statuses that count as success; anything else is an error. */
  expect: number[];
  /** Retry temporary failures here (default true). Uploads retry a level up, from a new session. */
  retry?: boolean;
  signal?: AbortSignal;
}

/** What a repository needs of its registry client. */
export interface Requester {
  /** HOST[:PORT], for messages. */
  readonly registry: string;
  /** `http(s)://HOST[:PORT]`: where paths are resolved. */
  readonly baseUrl: URL;
  readonly retryPolicy: RetryPolicy;
  readonly onRetry: ((err: SeabagError, attempt: number, delayMs: number) => void) | undefined;
  request(req: RegistryRequest): Promise<HttpResponse>;
}

/** What uploads, mounts and probes need of a repository. */
export interface RepositoryEndpoint {
  readonly client: Requester;
  readonly name: string;
  readonly pushScope: string;
  path(kind: 'blobs' | 'manifests' | 'tags', rest: string): string;
  exists(desc: Descriptor, options?: OpOptions): Promise<boolean>;
  deleteManifest(digest: Descriptor['digest'], options?: OpOptions): Promise<void>;
}

/** Is this the registry saying 404 (unknown blob, manifest or tag)? */
export function isNotFound(err: unknown): boolean {
  return err instanceof SeabagError && err.code === 'E_REGISTRY' && err.details['status'] === 404;
}
