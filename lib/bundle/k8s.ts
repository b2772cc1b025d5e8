/**
 * Pinning Kubernetes manifests: every `image:` of a pod spec (containers, initContainers,
 * ephemeralContainers) in Pods, the templates of Deployments, StatefulSets, DaemonSets,
 * ReplicaSets, ReplicationControllers, Jobs, CronJobs and PodTemplates, and Akri broker specs,
 * must name an image of the release and is rewritten to `name@sha256:…`.
 *
 * Manifests are read the way the cluster reads them: YAML 1.1 (Kubernetes' go-yaml v2), with `<<`
 * merge keys, anchors and aliases resolved. A document that uses any of those, or an explicit tag,
 * is written out flattened (plain maps and lists, no anchor, alias, merge key or tag), so the
 * signed text holds exactly the images that were checked and nothing a parser could read
 * differently. A literal `<<` key (quoted, so not a merge key) is refused: a YAML 1.1 reader of the
 * flattened text would take it for one.
 */
import type { Document } from 'yaml';
import { yaml } from '../util/lazy.js';
import type { Digest } from '../oci/digest.js';
import { parseReference, referenceName } from '../oci/reference.js';
import type { Problem } from '../schema.js';
import { parseYAMLDocuments, readSpecFile } from './spec.js';

/** An image of the release as manifests may name it. */
export interface PinTarget {
  name: string;
  tag?: string;
  digest: Digest;
  /** The digest at the source, when a platform filter made a new one. */
  sourceDigest?: Digest;
}

export interface PinnedFile {
  /** Path relative to the spec's folder, with forward slashes. */
  file: string;
  text: string;
  documents: number;
  images: { document: number; path: string; from: string; to: string }[];
}

/** Finds a release image for an `image:` value. */
export class ImageMatcher {
  readonly #byName = new Map<string, PinTarget[]>();

  constructor(targets: readonly PinTarget[]) {
    for (const t of targets) this.#byName.set(t.name, [...(this.#byName.get(t.name) ?? []), t]);
  }

  /** The pinned form of `image`, or why it can't be pinned. */
  pin(image: string): { pinned: string } | { reason: string; notInRelease?: true } {
    let ref;
    try {
      ref = parseReference(image);
    } catch (err) {
      return { reason: (err as Error).message };
    }
    const name = referenceName(ref);
    const candidates = this.#byName.get(name) ?? [];
    const written = writtenName(image);
    let found: PinTarget | undefined;
    if (ref.digest !== undefined) {
      found = candidates.find((c) => c.digest === ref.digest || c.sourceDigest === ref.digest);
    } else {
      const tag = ref.tag ?? 'latest';
      found = candidates.find((c) => c.tag === tag);
    }
    if (found !== undefined) return { pinned: `${written}@${found.digest}` };
    const has = candidates.map((c) => (c.tag === undefined ? `${c.name}@${c.digest}` : `${c.name}:${c.tag}`));
    return {
      reason: `image ${JSON.stringify(image)} is not in the release${has.length > 0 ? ` (the release has ${has.join(', ')})` : ''}`,
      notInRelease: true,
    };
  }
}

/** `groke/ui:1.4.0@sha256:…` → `groke/ui` (the name as the manifest wrote it). */
function writtenName(image: string): string {
  const at = image.indexOf('@');
  const noDigest = at === -1 ? image : image.slice(0, at);
  const colon = noDigest.lastIndexOf(':');
  return colon > noDigest.lastIndexOf('/') ? noDigest.slice(0, colon) : noDigest;
}

type Path = (string | number)[];

const TEMPLATE_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'ReplicationController', 'Job']);
const CONTAINER_LISTS = ['containers', 'initContainers', 'ephemeralContainers'];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function get(obj: unknown, path: Path): unknown {
  let cur: unknown = obj;
  for (const seg of path) {
    if (typeof seg === 'number') cur = Array.isArray(cur) ? cur[seg] : undefined;
    else cur = isObject(cur) ? cur[seg] : undefined;
  }
  return cur;
}

/** Paths of the pod specs inside one object (recursing into `List` items). */
function podSpecPaths(obj: unknown, base: Path = []): Path[] {
  if (!isObject(obj)) return [];
  const kind = obj['kind'];
  const apiVersion = typeof obj['apiVersion'] === 'string' ? obj['apiVersion'] : '';
  if (typeof kind === 'string' && kind.endsWith('List') && Array.isArray(obj['items'])) {
    return obj['items'].flatMap((item, i) => podSpecPaths(item, [...base, 'items', i]));
  }
  if (kind === 'Pod') return [[...base, 'spec']];
  if (typeof kind === 'string' && TEMPLATE_KINDS.has(kind)) return [[...base, 'spec', 'template', 'spec']];
  if (kind === 'CronJob') return [[...base, 'spec', 'jobTemplate', 'spec', 'template', 'spec']];
  if (kind === 'PodTemplate') return [[...base, 'template', 'spec']];
  if (kind === 'Configuration' && apiVersion.startsWith('akri.sh/')) {
    return [
      [...base, 'spec', 'brokerSpec', 'brokerPodSpec'],
      [...base, 'spec', 'brokerSpec', 'brokerJobSpec', 'template', 'spec'],
    ];
  }
  return [];
}

/** Every `image` field of the pod specs in `obj`: its path and value. */
export function imageFields(obj: unknown): { path: Path; image: unknown }[] {
  const out: { path: Path; image: unknown }[] = [];
  for (const spec of podSpecPaths(obj)) {
    for (const list of CONTAINER_LISTS) {
      const containers = get(obj, [...spec, list]);
      if (!Array.isArray(containers)) continue;
      containers.forEach((c, i) => {
        if (isObject(c) && 'image' in c) out.push({ path: [...spec, list, i, 'image'], image: c['image'] });
      });
    }
  }
  return out;
}

export function formatPath(path: Path): string {
  return path.reduce<string>((acc, seg) => (typeof seg === 'number' ? `${acc}[${seg}]` : acc === '' ? seg : `${acc}.${seg}`), '');
}

function describeDoc(data: unknown, index: number): string {
  const kind = isObject(data) && typeof data['kind'] === 'string' ? data['kind'] : 'document';
  const name = isObject(data) && isObject(data['metadata']) && typeof data['metadata']['name'] === 'string' ? data['metadata']['name'] : undefined;
  return `document ${index + 1} (${kind}${name === undefined ? '' : ` ${name}`})`;
}

/** Does this document use anything beyond plain maps, lists and scalars (anchors, aliases, merges, tags)? */
function usesIndirection(doc: Document): boolean {
  const Y = yaml();
  let found = false;
  Y.visit(doc, {
    Alias: () => {
      found = true;
      return Y.visit.BREAK;
    },
    Node: (_key, node) => {
      if ((node as { anchor?: string }).anchor !== undefined || ((node as { tag?: string }).tag !== undefined && (node as { tag?: string }).tag !== '')) {
        found = true;
        return Y.visit.BREAK;
      }
      return undefined;
    },
    Pair: (_key, pair) => {
      if (Y.isScalar(pair.key) && typeof pair.key.value !== 'string' && String(pair.key.value) === 'Symbol(<<)') {
        found = true;
        return Y.visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
}

/** Paths of literal `<<` keys left in resolved data (quoted in the source, so not merges). */
function literalMergeKeys(data: unknown, base: Path = [], out: Path[] = []): Path[] {
  if (Array.isArray(data)) data.forEach((v, i) => literalMergeKeys(v, [...base, i], out));
  else if (isObject(data)) {
    for (const [k, v] of Object.entries(data)) {
      if (k === '<<') out.push([...base, k]);
      literalMergeKeys(v, [...base, k], out);
    }
  }
  return out;
}

/**
 * The document to edit and write: the parsed one (comments kept) when it is plain, else a new one
 * built from the resolved data, so the output has no anchor, alias, merge key or tag.
 */
function editable(doc: Document, data: unknown): Document {
  if (!usesIndirection(doc)) return doc;
  return new (yaml().Document)(data, { version: '1.1', aliasDuplicateObjects: false }) as unknown as Document;
}

/** Parses manifests as the cluster will (YAML 1.1, merge keys). */
function parseManifests(text: string, file: string): ReturnType<typeof parseYAMLDocuments> {
  return parseYAMLDocuments(text, file, { version: '1.1' });
}

/**
 * Pins one YAML text (one or more documents); returns the new text and the problems found.
 */
export function pinText(text: string, file: string, matcher: ImageMatcher): { pinned: PinnedFile; problems: Problem[] } {
  const { docs, problems } = parseManifests(text, file);
  const images: PinnedFile['images'] = [];
  const out: Document[] = [];
  for (const { doc: parsed, data, index, lineOf } of docs) {
    for (const path of literalMergeKeys(data)) {
      const line = lineOf(path);
      problems.push({
        file,
        path: `${describeDoc(data, index)} ${formatPath(path)}`,
        message: 'a quoted "<<" key is a plain key in YAML 1.2 but a merge key once written out for YAML 1.1 readers; write the map out instead',
        ...(line === undefined ? {} : { line }),
      });
    }
    const doc = editable(parsed, data);
    for (const { path, image } of imageFields(data)) {
      const where = `${describeDoc(data, index)} ${formatPath(path)}`;
      const line = lineOf(path);
      if (typeof image !== 'string') {
        problems.push({ file, path: where, message: 'image must be a string', ...(line === undefined ? {} : { line }) });
        continue;
      }
      const result = matcher.pin(image);
      if ('reason' in result) {
        problems.push({ file, path: where, message: result.reason, ...(line === undefined ? {} : { line }), ...(result.notInRelease === true ? { code: 'E_IMAGE_NOT_IN_RELEASE' as const } : {}) });
        continue;
      }
      doc.setIn(path, result.pinned);
      images.push({ document: index + 1, path: formatPath(path), from: image, to: result.pinned });
    }
    out.push(doc);
  }
  const rendered = out.map((d) => d.toString({ lineWidth: 0 })).join('---\n');
  return { pinned: { file, text: rendered, documents: out.length, images }, problems };
}

/**
 * Reads and pins manifest files.
 *
 * @returns pinned files in the order given, and every problem (unknown images, bad YAML)
 */
export async function pinManifestFiles(files: readonly string[], baseDir: string, matcher: ImageMatcher): Promise<{ files: PinnedFile[]; problems: Problem[] }> {
  const pinned: PinnedFile[] = [];
  const problems: Problem[] = [];
  for (const path of files) {
    const { rel, text } = await readSpecFile(path, baseDir, 'manifest');
    const result = pinText(text, rel, matcher);
    pinned.push(result.pinned);
    problems.push(...result.problems);
  }
  return { files: pinned, problems };
}

/**
 * Points every pinned image of a manifest text at `registry` (`groke/fusion@sha256:…` →
 * `localhost:32000/groke/fusion@sha256:…`), for clusters that pull from the vessel's registry
 * by name rather than through a mirror setting.
 */
export function rewriteImageHosts(text: string, registry: string, file = 'manifest'): string {
  const { docs } = parseManifests(text, file);
  const out: Document[] = [];
  for (const { doc: parsed, data } of docs) {
    const doc = editable(parsed, data);
    for (const { path, image } of imageFields(data)) {
      if (typeof image !== 'string') continue;
      const ref = parseReference(image);
      if (ref.digest === undefined) continue;
      doc.setIn(path, `${registry}/${ref.repository}@${ref.digest}`);
    }
    out.push(doc);
  }
  return out.map((d) => d.toString({ lineWidth: 0 })).join('---\n');
}
