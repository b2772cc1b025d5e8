/**
 * `oci://HOST[:PORT]/REPO[:TAG|@sha256:…]`: a repository (or a bundle in it) on a shore registry.
 */
import { SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseReference } from '../oci/reference.js';

export interface OciAddress {
  /** `HOST[:PORT]` as written. */
  registry: string;
  repository: string;
  tag?: string;
  digest?: Digest;
}

export function isOciAddress(text: string): boolean {
  return text.startsWith('oci://');
}

/**
 * Parses an `oci://` address. The host is always explicit (no Docker Hub default).
 *
 * @throws E_USAGE when it is not `oci://HOST[:PORT]/REPO…`, or names a tag or digest where none
 *   may be (`reference: 'none'`) or none where one must be (`reference: 'required'`)
 */
export function parseOciAddress(text: string, reference: 'none' | 'optional' | 'required'): OciAddress {
  const usage = (why: string): SeabagError =>
    new SeabagError('E_USAGE', `invalid address ${JSON.stringify(text)}: ${why}`, {
      hint: reference === 'none' ? 'write oci://HOST[:PORT]/REPO, e.g. oci://registry.example.com/releases/awareness' : 'write oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:…',
    });
  if (!isOciAddress(text)) throw usage('it must start with oci://');
  const rest = text.slice('oci://'.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) throw usage('no repository after the host');
  const host = rest.slice(0, slash);
  let ref;
  try {
    ref = parseReference(rest);
  } catch (err) {
    throw usage((err as Error).message);
  }
  if (ref.registry !== host) throw usage(`${JSON.stringify(host)} is not a registry host (use HOST.DOMAIN, HOST:PORT or localhost)`);
  if (reference === 'none' && (ref.tag !== undefined || ref.digest !== undefined)) throw usage('name the repository only; the tag comes from the release (or --tag)');
  if (reference === 'required' && ref.tag === undefined && ref.digest === undefined) throw usage('name the release with :TAG or @sha256:…');
  return {
    registry: host,
    repository: ref.repository,
    ...(ref.tag === undefined ? {} : { tag: ref.tag }),
    ...(ref.digest === undefined ? {} : { digest: ref.digest }),
  };
}

export function formatOciAddress(a: OciAddress): string {
  return `oci://${a.registry}/${a.repository}${a.tag === undefined ? '' : `:${a.tag}`}${a.digest === undefined ? '' : `@${a.digest}`}`;
}
