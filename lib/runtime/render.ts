/**
 * The two files a runtime reads its mirrors from, rendered from a `MirrorPlan`:
 *
 * - containerd's `hosts.toml`, one per registry host under a `config_path` folder (containerd
 *   docs/hosts.md, containerd ≥ 1.5; MicroK8s reads the same layout under `args/certs.d/`);
 * - K3s's `/etc/rancher/k3s/registries.yaml`, `mirrors` and `configs`
 *   (https://docs.k3s.io/installation/private-registry).
 *
 * Strings are written as TOML basic strings through JSON escaping (the two agree on `\"`, `\\`
 * and `\uXXXX`), and YAML through the yaml library, so no host or path can break out of its value.
 */
import { yaml } from '../util/lazy.js';
import type { MirroredHost, MirrorPlan } from './mirrors.js';

/** First line of every file seabag writes here: what regeneration may overwrite without `--force`. */
export const MARKER = '# Written by seabag (bundle runtime-config).';

const PULL_RESOLVE = '["pull", "resolve"]';

function tomlString(value: string): string {
  return JSON.stringify(value);
}

/**
 * One `hosts.toml`: the vessel registry as a `[host]`, tried first. Without upstream fallback it
 * is the `server` too, so containerd never reaches for the upstream (the docs' "ensure only the
 * mirror is utilised"); with it, the upstream is the `server`. The `[host]` table is always
 * written: containerd 1.6 (Debian 12, many K3s and MicroK8s builds) refuses a hosts.toml without
 * one ("invalid `host` tree").
 */
export function hostsToml(plan: MirrorPlan, entry: MirroredHost): string {
  const { endpoint } = plan;
  const mirrorOnly = entry.self || !plan.upstreamFallback;
  const ca = endpoint.caFile === undefined ? [] : [`ca = ${tomlString(endpoint.caFile)}`];
  const lines = [
    MARKER,
    entry.self
      ? `# The vessel registry itself, for images already named ${entry.host}/…`
      : `# Pulls of ${entry.host}/… are served by the vessel registry ${endpoint.host}; regenerated after each import.`,
    mirrorOnly ? `# server is the vessel registry too: containerd never falls back to the upstream.` : `# server is the upstream: tried only when the vessel registry lacks an image.`,
    `server = ${tomlString(mirrorOnly ? endpoint.url : entry.upstream)}`,
    ...(mirrorOnly ? [`capabilities = ${PULL_RESOLVE}`, ...ca] : []),
    '',
    `[host.${tomlString(endpoint.url)}]`,
    `  capabilities = ${PULL_RESOLVE}`,
    ...ca.map((l) => `  ${l}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** The K3s document: every host mirrored to the vessel endpoint; TLS settings keyed by the vessel host. */
export function registriesDocument(plan: MirrorPlan): { mirrors: Record<string, { endpoint: string[] }>; configs?: Record<string, { tls: { ca_file: string } }> } {
  const mirrors: Record<string, { endpoint: string[] }> = {};
  for (const h of plan.hosts) mirrors[h.host] = { endpoint: [plan.endpoint.url] };
  const doc: ReturnType<typeof registriesDocument> = { mirrors };
  if (plan.endpoint.caFile !== undefined) doc.configs = { [plan.endpoint.host]: { tls: { ca_file: plan.endpoint.caFile } } };
  return doc;
}

/** `registries.yaml` text. K3s always falls back to the upstream unless started with `--disable-default-registry-endpoint`. */
export function registriesYaml(plan: MirrorPlan): string {
  const head = [MARKER, `# Every upstream host of the held releases is pulled from the vessel registry ${plan.endpoint.host}; regenerated after each import.`];
  if (!plan.upstreamFallback) head.push('# K3s still tries the upstream last unless the node runs with --disable-default-registry-endpoint.');
  return `${head.join('\n')}\n${yaml().stringify(registriesDocument(plan), { lineWidth: 0 })}`;
}
