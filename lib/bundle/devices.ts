/**
 * Device profiles rendered into Akri Configurations (`akri.sh/v0`, docs.akri.sh "Configuration"):
 * a discovery handler (udev rules, or ONVIF filters) with its details as YAML text, the capacity,
 * and a broker pod spec whose image is pinned like any other and which runs on the profile's node.
 */
import { yaml } from '../util/lazy.js';
import { schemaProblems, type Problem } from '../schema.js';
import type { ImageMatcher } from './k8s.js';
import { parseYAMLDocuments, readSpecFile } from './spec.js';

interface Filter {
  action: 'Include' | 'Exclude';
  items: string[];
}

export interface DeviceProfile {
  apiVersion: 'seabag.dev/v1';
  kind: 'DeviceProfile';
  name: string;
  node?: string;
  discovery: { udev?: { rules: string[]; groupRecursive?: boolean }; onvif?: { ipAddresses?: Filter; macAddresses?: Filter; scopes?: Filter; discoveryTimeoutSeconds?: number } };
  capacity?: number;
  broker: { image: string; env?: Record<string, string> };
}

export interface RenderedProfile {
  name: string;
  /** Source file, relative to the spec's folder. */
  file: string;
  discovery: 'udev' | 'onvif';
  node?: string;
  brokerImage: string;
  /** The Akri Configuration as YAML. */
  text: string;
}

/** The Akri Configuration object for a profile whose broker image is already pinned. */
export function akriConfiguration(profile: DeviceProfile, brokerImage: string): Record<string, unknown> {
  let handler: { name: string; discoveryDetails: string };
  if (profile.discovery.udev !== undefined) {
    const details: Record<string, unknown> = { udevRules: profile.discovery.udev.rules };
    if (profile.discovery.udev.groupRecursive !== undefined) details['groupRecursive'] = profile.discovery.udev.groupRecursive;
    handler = { name: 'udev', discoveryDetails: yaml().stringify(details, { lineWidth: 0 }) };
  } else {
    const onvif = profile.discovery.onvif ?? {};
    const details: Record<string, unknown> = {};
    for (const key of ['ipAddresses', 'macAddresses', 'scopes'] as const) if (onvif[key] !== undefined) details[key] = onvif[key];
    details['discoveryTimeoutSeconds'] = onvif.discoveryTimeoutSeconds ?? 1;
    handler = { name: 'onvif', discoveryDetails: yaml().stringify(details, { lineWidth: 0 }) };
  }
  const container: Record<string, unknown> = {
    name: `${profile.name}-broker`,
    image: brokerImage,
    // Akri replaces the placeholder with the discovered device's resource name.
    resources: { requests: { '{{PLACEHOLDER}}': '1' }, limits: { '{{PLACEHOLDER}}': '1' } },
  };
  if (profile.broker.env !== undefined) {
    container['env'] = Object.entries(profile.broker.env)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => ({ name, value }));
  }
  const podSpec: Record<string, unknown> = { containers: [container] };
  if (profile.node !== undefined) podSpec['nodeSelector'] = { 'kubernetes.io/hostname': profile.node };
  return {
    apiVersion: 'akri.sh/v0',
    kind: 'Configuration',
    metadata: { name: profile.name, labels: { 'app.kubernetes.io/managed-by': 'seabag' } },
    spec: {
      discoveryHandler: handler,
      capacity: profile.capacity ?? 1,
      brokerSpec: { brokerPodSpec: podSpec },
    },
  };
}

/**
 * Reads, validates and renders device profiles (one or more documents per file).
 */
export async function renderDeviceProfiles(files: readonly string[], baseDir: string, matcher: ImageMatcher): Promise<{ profiles: RenderedProfile[]; problems: Problem[] }> {
  const profiles: RenderedProfile[] = [];
  const problems: Problem[] = [];
  const names = new Map<string, string>();
  for (const path of files) {
    const { rel, text } = await readSpecFile(path, baseDir, 'device profile');
    const parsed = parseYAMLDocuments(text, rel);
    problems.push(...parsed.problems);
    for (const { data, lineOf, index } of parsed.docs) {
      const where = parsed.docs.length > 1 ? `${rel} (document ${index + 1})` : rel;
      const found = schemaProblems('device-profile', data, where, lineOf);
      if (found.length > 0) {
        problems.push(...found);
        continue;
      }
      const profile = data as DeviceProfile;
      const earlier = names.get(profile.name);
      if (earlier !== undefined) {
        problems.push({ file: where, path: 'name', message: `device profile ${JSON.stringify(profile.name)} is also defined in ${earlier}` });
        continue;
      }
      names.set(profile.name, where);
      const pinned = matcher.pin(profile.broker.image);
      if ('reason' in pinned) {
        const line = lineOf(['broker', 'image']);
        problems.push({ file: where, path: 'broker.image', message: pinned.reason, ...(line === undefined ? {} : { line }), ...(pinned.notInRelease === true ? { code: 'E_IMAGE_NOT_IN_RELEASE' as const } : {}) });
        continue;
      }
      const rendered: RenderedProfile = {
        name: profile.name,
        file: rel,
        discovery: profile.discovery.udev !== undefined ? 'udev' : 'onvif',
        brokerImage: pinned.pinned,
        text: yaml().stringify(akriConfiguration(profile, pinned.pinned), { lineWidth: 0 }),
      };
      if (profile.node !== undefined) rendered.node = profile.node;
      profiles.push(rendered);
    }
  }
  profiles.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { profiles, problems };
}
