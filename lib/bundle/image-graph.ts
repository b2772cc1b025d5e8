/**
 * The build's image collection, one image at a time: its graph under the platform filter (as
 * containerd selects, see `oci/platform.ts`) with buildx attestation manifests kept or dropped,
 * warnings for platforms it lacks, its foreign layers checked at the source, and a source's
 * "no such content" answers turned into E_NOT_FOUND naming the image (exit 2, never an
 * environment failure).
 */
import { isSeabagError, SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { formatPlatform, MAX_METADATA_SIZE, parseImageManifest, parseJSON, type Descriptor, type Platform } from '../oci/descriptor.js';
import { postOrder, resolveGraph, type GraphNode } from '../oci/graph.js';
import { isImageManifest, isIndex } from '../oci/media-types.js';
import { attestationSubject, isAttestation, platformRank } from '../oci/platform.js';
import type { OpOptions, ReadOnlyStorage } from '../oci/store.js';
import { readVerified } from '../oci/verify.js';
import { isNotFound } from '../registry/client.js';
import { isForeignLayer } from '../registry/foreign.js';
import type { ReleaseAttestation } from './release.js';

/** Something the build did that the release engineer should know of; it did not stop the build. */
export interface BuildWarning {
  code: 'platform-missing' | 'platform-fallback';
  image: string;
  message: string;
  /** The platforms the image has. */
  platforms: string[];
  wanted: string[];
}

/** The platform a manifest's config names, when it names one. */
function configPlatform(graph: GraphNode, configs: ReadonlyMap<string, Buffer>): Platform | undefined {
  const manifest = parseImageManifest(graph.bytes as Buffer, graph.desc);
  const bytes = configs.get(manifest.config.digest);
  if (bytes === undefined) return undefined;
  let config: { os?: unknown; architecture?: unknown; variant?: unknown };
  try {
    config = parseJSON(bytes, manifest.config.digest) as typeof config;
  } catch {
    return undefined; // an artifact's config need not be JSON
  }
  if (typeof config?.os !== 'string' || typeof config.architecture !== 'string') return undefined;
  return { os: config.os, architecture: config.architecture, ...(typeof config.variant === 'string' ? { variant: config.variant } : {}) };
}

/** Platforms of an image: every platform entry of its (nested) indexes, or a single manifest's config. */
export function platformsOf(graph: GraphNode, configs: ReadonlyMap<string, Buffer>): string[] {
  if (isImageManifest(graph.desc.mediaType)) {
    const p = configPlatform(graph, configs);
    return p === undefined ? [] : [formatPlatform(p)];
  }
  const out: string[] = [];
  const visit = (node: GraphNode): void => {
    for (const c of node.children) {
      if (isAttestation(c.desc)) continue;
      if (c.desc.platform !== undefined) out.push(formatPlatform(c.desc.platform));
      else if (isIndex(c.desc.mediaType)) visit(c);
    }
  };
  visit(graph);
  return [...new Set(out)];
}

/** The buildx attestation manifests an image carries, with the manifest each describes. */
export function attestationsOf(graph: GraphNode): ReleaseAttestation[] {
  const out: ReleaseAttestation[] = [];
  const visit = (node: GraphNode): void => {
    const platforms = new Map<string, Platform | undefined>(node.children.map((c) => [c.desc.digest, c.desc.platform]));
    for (const c of node.children) {
      const subject = attestationSubject(c.desc);
      if (subject !== undefined) {
        const p = platforms.get(subject);
        out.push({ digest: c.desc.digest, subject: subject as Digest, ...(p === undefined ? {} : { platform: formatPlatform(p) }) });
      } else if (isIndex(c.desc.mediaType)) {
        visit(c);
      }
    }
  };
  if (isIndex(graph.desc.mediaType)) visit(graph);
  return out;
}

/**
 * Every foreign layer must be at the source: seabag carries what the source holds and never
 * downloads from a layer's `urls` (a build must not depend on a third party's server).
 *
 * @throws E_FOREIGN_LAYER_MISSING naming the image, the layer and its urls
 */
export async function checkForeignLayers(image: string, origin: string, graph: GraphNode, store: ReadOnlyStorage, options: OpOptions): Promise<void> {
  for (const node of postOrder(graph)) {
    if (node.bytes === undefined || !isImageManifest(node.desc.mediaType)) continue;
    for (const layer of parseImageManifest(node.bytes, node.desc).layers) {
      if (!isForeignLayer(layer)) continue;
      if (await store.exists(layer, options).catch((err: unknown) => (isSourceNotFound(err) ? false : Promise.reject(err)))) continue;
      const urls = layer.urls ?? [];
      throw new SeabagError('E_FOREIGN_LAYER_MISSING', `${image}: layer ${layer.digest} is a foreign (non-distributable) layer and ${origin} does not hold its blob; its urls: ${urls.length > 0 ? urls.join(', ') : '(none)'}`, {
        details: { image, origin, digest: layer.digest, mediaType: layer.mediaType, size: layer.size, urls },
        hint: "seabag carries only what the source holds and never downloads from a layer's urls: download the blob from one of them, check its digest, put it in the source (push it to the registry, or add it to the layout's blobs), then build again",
      });
    }
  }
}

/** A source's answer that the content does not exist (a registry's 404, a layout's missing file). */
function isSourceNotFound(err: unknown): boolean {
  return isNotFound(err) || isSeabagError(err, 'E_FILE_NOT_FOUND') || isSeabagError(err, 'E_NOT_FOUND');
}

/** A source whose "no such blob" answers name the image and the blob: exit 2, not an environment failure. */
export function namingMissing(store: ReadOnlyStorage, image: string, origin: string): ReadOnlyStorage {
  const missing = (desc: Descriptor, err: unknown): SeabagError =>
    new SeabagError('E_NOT_FOUND', `${image}: ${origin} says ${desc.mediaType} ${desc.digest} does not exist`, {
      cause: err,
      details: { image, origin, digest: desc.digest, mediaType: desc.mediaType },
      hint: 'the image at the source is incomplete: push it again whole (or fix the layout), then build again',
    });
  const wrapped: ReadOnlyStorage = {
    fetch: async (desc, options) => {
      try {
        return await store.fetch(desc, options);
      } catch (err) {
        throw isSourceNotFound(err) ? missing(desc, err) : err;
      }
    },
    exists: (desc, options) => store.exists(desc, options),
  };
  if (store.reader !== undefined) {
    const reader = store.reader.bind(store);
    wrapped.reader = async (desc) => {
      try {
        return await reader(desc);
      } catch (err) {
        throw isSourceNotFound(err) ? missing(desc, err) : err;
      }
    };
  }
  return wrapped;
}

export interface ResolveImageOptions extends OpOptions {
  strict: boolean;
  referrers: boolean;
  warn: (warning: BuildWarning) => void;
}

/** Reads (once) the config of every image manifest of a graph, up to `MAX_METADATA_SIZE` each (a larger one streams like a layer). */
async function readConfigs(graph: GraphNode, store: ReadOnlyStorage, configs: Map<string, Buffer>, options: OpOptions): Promise<void> {
  for (const node of postOrder(graph)) {
    if (node.bytes === undefined || !isImageManifest(node.desc.mediaType)) continue;
    const config = parseImageManifest(node.bytes, node.desc).config;
    if (!configs.has(config.digest) && config.size <= MAX_METADATA_SIZE) {
      configs.set(config.digest, await readVerified(await store.fetch(config, options), config, 'config'));
    }
  }
}

/**
 * Resolves one image's graph under the platform filter. An image with none of the wanted
 * platforms is kept whole with a warning (it may be meant for one node of the vessel only), or
 * refused when strict; a compatible platform kept in place of a wanted one is a warning too.
 *
 * @throws E_PLATFORM_UNAVAILABLE (strict), and what `resolveGraph` throws
 */
export async function resolveImage(
  image: string,
  store: ReadOnlyStorage,
  root: Descriptor,
  platforms: readonly Platform[],
  configs: Map<string, Buffer>,
  options: ResolveImageOptions,
): Promise<GraphNode> {
  const wanted = platforms.map(formatPlatform);
  const sig = options.signal ? { signal: options.signal } : {};
  const fallbacks = new Map<string, { wanted: Platform; chosen: Platform }>();
  let graph: GraphNode;
  let none = false;
  try {
    graph = await resolveGraph(store, root, {
      platforms,
      attestations: options.referrers,
      onPlatformFallback: (f) => fallbacks.set(`${formatPlatform(f.wanted)} ${formatPlatform(f.chosen)}`, f),
      ...sig,
    });
  } catch (err) {
    if (!isSeabagError(err, 'E_PLATFORM_UNAVAILABLE') || platforms.length === 0) throw err;
    graph = await resolveGraph(store, root, { attestations: options.referrers, ...sig });
    none = true;
  }
  await readConfigs(graph, store, configs, sig);
  if (platforms.length > 0 && isImageManifest(graph.desc.mediaType) && graph.desc.digest === root.digest) {
    const p = configPlatform(graph, configs);
    // An artifact (a Helm chart, say) names no platform: nothing to warn about.
    if (p !== undefined) {
      const ranks = platforms.map((w) => platformRank(p, w));
      if (ranks.every((r) => r < 0)) none = true;
      else if (!ranks.includes(0)) platforms.forEach((w, i) => (ranks[i] ?? -1) > 0 && fallbacks.set(formatPlatform(w), { wanted: w, chosen: p }));
    }
  }
  const has = platformsOf(graph, configs);
  if (none) {
    const message = `${image} has none of the platforms asked for (${wanted.join(', ')}): it has ${has.join(', ') || 'no platform named'}`;
    if (options.strict) {
      throw new SeabagError('E_PLATFORM_UNAVAILABLE', message, {
        details: { image, platforms: has, wanted },
        hint: 'build the image for one of those platforms, take it out of the release, or drop --platform-strict (platformStrict) to carry it as it is',
      });
    }
    options.warn({ code: 'platform-missing', image, message: `${message}; carried as it is`, platforms: has, wanted });
  }
  for (const f of fallbacks.values()) {
    options.warn({
      code: 'platform-fallback',
      image,
      message: `${image} has no ${formatPlatform(f.wanted)}; kept ${formatPlatform(f.chosen)}, which containerd runs in its place`,
      platforms: has,
      wanted,
    });
  }
  return graph;
}
