/**
 * Which upstream registry hosts the held releases pull from, and where containerd must go instead:
 * the vessel registry. Import keeps each image's upstream path without the host
 * (`shore.example.com/groke/fusion` → `groke/fusion`, Docker Hub's `nginx` → `library/nginx`), so
 * a mirror entry per host is all containerd, K3s or MicroK8s need: no path rewrite.
 */
import { SeabagError } from '../errors.js';
import { isLoopbackRegistry, parseReference } from '../oci/reference.js';
import type { VesselState } from '../vessel/state.js';

/** Where the runtime reaches the vessel registry. */
export interface MirrorEndpoint {
  /** `127.0.0.1:32000`, `registry.vessel:5000`. */
  host: string;
  /** `http://127.0.0.1:32000` or `https://…`. */
  url: string;
  /** Absolute path of the CA that signed the registry's certificate (TLS only). */
  caFile?: string;
}

export interface MirroredHost {
  /** The upstream registry host as image names spell it (`docker.io`, `ghcr.io`, `shore.example.com:5000`). */
  host: string;
  /** Where the upstream really answers the distribution API (`https://registry-1.docker.io` for `docker.io`). */
  upstream: string;
  /** Every repository of the held releases under this host, sorted. */
  repositories: string[];
  /** True for the vessel registry's own entry (names that already point at it, e.g. after `--deploy kubectl`). */
  self: boolean;
}

export interface MirrorPlan {
  endpoint: MirrorEndpoint;
  hosts: MirroredHost[];
  /** Also let the runtime fall back to the upstream when the vessel lacks an image (off by default: the link is metered). */
  upstreamFallback: boolean;
  /** Repositories that two upstream hosts share: both land in one vessel repository, so say so. */
  collisions: { repository: string; hosts: string[] }[];
}

export interface PlanOptions {
  /** HOST[:PORT] of the vessel registry as the runtime reaches it. */
  registry: string;
  plainHttp?: boolean;
  /** Absolute path of a CA file; implies HTTPS. */
  caFile?: string;
  upstreamFallback?: boolean;
}

/**
 * A host that may name a folder: the reference grammar's domain (letters, digits, dots, dashes,
 * an optional port) or a bracketed IPv6 address. Never `/`, never `.` or `..` alone.
 */
const SAFE_HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

/**
 * Checks a registry host before it names a folder or a TOML/YAML key.
 *
 * @throws E_REFERENCE_INVALID
 */
export function assertSafeHost(host: string): void {
  if (!SAFE_HOST.test(host) || host.length > 255) {
    throw new SeabagError('E_REFERENCE_INVALID', `${JSON.stringify(host)} is not a registry host[:port]`, { details: { host } });
  }
}

/** The URL the distribution API of an upstream host lives at. */
export function upstreamURL(host: string): string {
  return host === 'docker.io' ? 'https://registry-1.docker.io' : `https://${host}`;
}

/**
 * Every upstream host of the held releases (failed ones included: the captain may apply them
 * again), mirrored to the vessel registry, plus the vessel registry's own entry.
 *
 * @throws E_USAGE (no registry), E_REFERENCE_INVALID (a held reference that is not a valid name)
 */
export function mirrorPlan(state: VesselState, options: PlanOptions): MirrorPlan {
  assertSafeHost(options.registry);
  const plain = options.caFile !== undefined ? false : (options.plainHttp ?? isLoopbackRegistry(options.registry));
  if (plain && options.caFile !== undefined) throw new SeabagError('E_USAGE', '--plain-http and --ca-file contradict each other');
  const endpoint: MirrorEndpoint = {
    host: options.registry,
    url: `${plain ? 'http' : 'https'}://${options.registry}`,
    ...(options.caFile === undefined ? {} : { caFile: options.caFile }),
  };
  const byHost = new Map<string, Set<string>>();
  const hostsOfRepo = new Map<string, Set<string>>();
  for (const release of state.releases) {
    for (const image of release.images) {
      const ref = parseReference(image.ref);
      assertSafeHost(ref.registry);
      (byHost.get(ref.registry) ?? byHost.set(ref.registry, new Set()).get(ref.registry))?.add(ref.repository);
      (hostsOfRepo.get(ref.repository) ?? hostsOfRepo.set(ref.repository, new Set()).get(ref.repository))?.add(ref.registry);
    }
  }
  const hosts: MirroredHost[] = [...byHost.entries()]
    .filter(([host]) => host !== options.registry)
    .map(([host, repos]) => ({ host, upstream: upstreamURL(host), repositories: [...repos].sort(), self: false }));
  hosts.push({ host: options.registry, upstream: endpoint.url, repositories: [...new Set([...byHost.values()].flatMap((s) => [...s]))].sort(), self: true });
  hosts.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  const collisions = [...hostsOfRepo.entries()].filter(([, h]) => h.size > 1).map(([repository, h]) => ({ repository, hosts: [...h].sort() }));
  return { endpoint, hosts, upstreamFallback: options.upstreamFallback === true, collisions };
}
