/**
 * Image references, `[registry/]repository[:tag][@digest]`, after the grammar of
 * distribution/reference (`reference.go`) and Docker's defaults: a name without a registry is on
 * `docker.io`, and a one-component name there is under `library/`.
 */
import { SeabagError } from '../errors.js';
import { parseDigest, type Digest } from './digest.js';

export interface Reference {
  /** `docker.io`, `shore.example.com`, `127.0.0.1:5000`, `[::1]:5000`. */
  registry: string;
  /** `groke/fusion`, `library/nginx`. */
  repository: string;
  tag?: string;
  digest?: Digest;
}

export const DOCKER_HUB = 'docker.io';

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]{1,5})?$`);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
export const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME = 255;

function invalid(input: string, why: string): SeabagError {
  return new SeabagError('E_REFERENCE_INVALID', `invalid image reference ${JSON.stringify(input)}: ${why}`, {
    details: { reference: input },
  });
}

function looksLikeRegistry(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost' || component !== component.toLowerCase();
}

/**
 * Parses a reference and applies Docker's defaults.
 *
 * @throws E_REFERENCE_INVALID naming the part that is wrong
 */
export function parseReference(input: string): Reference {
  if (input.length === 0) throw invalid(input, 'empty');
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    try {
      digest = parseDigest(rest.slice(at + 1));
    } catch (err) {
      throw invalid(input, (err as Error).message);
    }
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(input, `tag ${JSON.stringify(tag)} must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }
  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash !== -1 && looksLikeRegistry(rest.slice(0, slash))) {
    registry = rest.slice(0, slash);
    repository = rest.slice(slash + 1);
    if (!DOMAIN.test(registry)) throw invalid(input, `registry ${JSON.stringify(registry)} is not a host[:port]`);
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (repository.length === 0) throw invalid(input, 'no repository name');
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      throw invalid(input, `repository component ${JSON.stringify(component)} must be lowercase letters, digits and . _ __ -`);
    }
  }
  if (registry.length + 1 + repository.length > MAX_NAME) throw invalid(input, `name longer than ${MAX_NAME} characters`);
  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** `registry/repository`, the name without tag or digest. */
export function referenceName(ref: Reference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The full, normalized form: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  return `${referenceName(ref)}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}

/** The host to talk the distribution API to: Docker Hub's API lives on registry-1.docker.io. */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
}

/** Is this registry on the loopback interface, where Docker uses plain HTTP? */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:\d+$/, '');
  return host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
}
