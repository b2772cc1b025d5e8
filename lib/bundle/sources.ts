/**
 * Where a release's images come from: a registry (with the user's docker credentials), an OCI
 * layout folder (`oci:DIR[:REF]`), an OCI layout tar (`oci-archive:FILE[:REF]`), or the output of
 * `docker save` (`docker-archive:FILE[:REF]`), converted to an OCI image deterministically.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isAbsolute, posix, resolve } from 'node:path';
import { SeabagError } from '../errors.js';
import { sha256Digest, type Digest } from '../oci/digest.js';
import { parseJSON, REF_NAME, type Descriptor, type ImageIndex } from '../oci/descriptor.js';
import { OciLayout } from '../oci/layout.js';
import { OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST } from '../oci/media-types.js';
import { formatReference, parseReference, type Reference } from '../oci/reference.js';
import type { OpOptions, ReadOnlyStorage } from '../oci/store.js';
import type { CredentialStore } from '../registry/auth.js';
import { isNotFound, RegistryClient, retryAsProgress } from '../registry/client.js';
import { DEFAULT_RETRY } from '../registry/retry.js';
import { ArchiveLayout, OCI_ARCHIVE_POLICY } from './archive.js';
import { FileSource, type ByteSource } from './source.js';
import { scanTar, type TarEntry } from './tar.js';

export interface ImageSource {
  store: ReadOnlyStorage;
  root: Descriptor;
  /** Where it came from, for messages: `oci:./build/ui:1.4.0`. */
  origin: string;
  close(): Promise<void>;
}

export interface SourceOptions extends OpOptions {
  /** Folder relative paths in `from` are taken from (the release spec's folder). */
  baseDir: string;
  credentials?: CredentialStore;
  /** Plain HTTP (true) or TLS (false) for registries; undefined: plain for loopback only. */
  plainHttp?: boolean;
  caFile?: string;
  /**
   * Registry clients shared between images of one build, by registry: each is made once, also
   * when images are opened at once (the map holds it from the moment it is asked for).
   */
  clients?: Map<string, Promise<RegistryClient>>;
  /**
   * OCI layouts shared between images of one build, by their folder: one store per folder, whose
   * `index.json` is read once for the build (`OciLayout.open`'s `indexOnce`).
   */
  layouts?: Map<string, Promise<OciLayout>>;
}

/** Splits `KIND:PATH[:REF]`; PATH may not contain a colon (as with skopeo's transports). */
export function parseFrom(from: string): { kind: 'oci' | 'oci-archive' | 'docker-archive' | 'docker'; path: string; ref?: string } {
  if (from.startsWith('docker://')) return { kind: 'docker', path: from.slice('docker://'.length) };
  const colon = from.indexOf(':');
  const kind = from.slice(0, colon);
  if (kind !== 'oci' && kind !== 'oci-archive' && kind !== 'docker-archive') {
    throw new SeabagError('E_SPEC_INVALID', `unknown image source ${JSON.stringify(from)}: use oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF] or docker://REF`);
  }
  const rest = from.slice(colon + 1);
  const second = rest.indexOf(':');
  if (rest.length === 0 || second === 0) throw new SeabagError('E_SPEC_INVALID', `image source ${JSON.stringify(from)} names no path`);
  return second === -1 ? { kind, path: rest } : { kind, path: rest.slice(0, second), ref: rest.slice(second + 1) };
}

/**
 * Picks the manifest of an index.json: by `org.opencontainers.image.ref.name` equal to `ref`;
 * without `ref`, the only one, or the one named like the release's image (full reference or tag).
 */
function pickFromIndex(index: ImageIndex, ref: string | undefined, wanted: Reference, origin: string): Descriptor {
  const named = (name: string): Descriptor[] => index.manifests.filter((m) => m.annotations?.[REF_NAME] === name);
  let found: Descriptor[] = [];
  if (ref !== undefined) {
    found = named(ref);
  } else if (index.manifests.length === 1) {
    found = index.manifests;
  } else {
    for (const candidate of [formatReference(wanted), wanted.tag, wanted.digest].filter((c): c is string => c !== undefined)) {
      found = named(candidate);
      if (found.length > 0) break;
    }
  }
  if (found.length !== 1) {
    const names = index.manifests.map((m) => m.annotations?.[REF_NAME]).filter((n): n is string => n !== undefined);
    throw new SeabagError(
      'E_NOT_FOUND',
      `${origin}: ${found.length === 0 ? 'no image' : `${found.length} images`} named ${JSON.stringify(ref ?? formatReference(wanted))}; it has ${names.length > 0 ? names.map((n) => JSON.stringify(n)).join(', ') : 'no named images'}`,
      { details: { origin, available: names } },
    );
  }
  const desc = found[0] as Descriptor;
  return { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
}

function client(registry: string, options: SourceOptions): Promise<RegistryClient> {
  const existing = options.clients?.get(registry);
  if (existing !== undefined) return existing;
  const created = RegistryClient.create(registry, {
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    ...(options.plainHttp === undefined ? {} : { plainHttp: options.plainHttp }),
    ...(options.caFile === undefined ? {} : { caFile: options.caFile }),
    ...(options.onProgress === undefined ? {} : { onRetry: retryAsProgress(registry, DEFAULT_RETRY, options.onProgress) }),
  });
  options.clients?.set(registry, created);
  return created;
}

function layoutAt(folder: string, options: SourceOptions): Promise<OciLayout> {
  const existing = options.layouts?.get(folder);
  if (existing !== undefined) return existing;
  const opened = OciLayout.open(folder, { indexOnce: true });
  options.layouts?.set(folder, opened);
  return opened;
}

/**
 * Opens the source of one image and finds its root manifest. An OCI layout is opened for one look
 * (its `index.json` read once, however many images and referrers of it are found there).
 *
 * @throws E_NOT_FOUND (the source has no such image: exit 2), E_FILE_NOT_FOUND, E_REGISTRY* (unreachable or
 *   failing: exit 3), E_AUTH, E_ARCHIVE_UNSAFE, E_LAYOUT_INVALID
 */
export async function openImageSource(ref: Reference, from: string | undefined, options: SourceOptions): Promise<ImageSource> {
  const path = (p: string): string => (isAbsolute(p) ? p : resolve(options.baseDir, p));
  if (from === undefined || from.startsWith('docker://')) {
    const target = from === undefined ? ref : parseReference(from.slice('docker://'.length));
    const c = await client(target.registry, options);
    const repo = c.repository(target.repository);
    const reference = target.digest ?? target.tag ?? 'latest';
    let desc: Descriptor;
    try {
      ({ desc } = await repo.getManifest(reference, options));
    } catch (err) {
      // The registry answered that it has no such tag, digest or repository: the spec names
      // something that is not there (exit 2). Unreachable or failing registries stay E_REGISTRY*.
      if (!isNotFound(err)) throw err;
      const shown = formatReference(target);
      throw new SeabagError('E_NOT_FOUND', `${shown}: ${target.registry} has no ${target.digest === undefined ? `tag ${JSON.stringify(target.tag ?? 'latest')}` : `manifest ${target.digest}`} in ${target.repository}`, {
        cause: err,
        details: { reference: shown, registry: target.registry, repository: target.repository, ...(target.digest ? { digest: target.digest } : { tag: target.tag ?? 'latest' }), errors: (err as SeabagError).details['errors'] },
        hint: 'check the reference in release.yaml (a pinned digest must be one the registry holds), or push the image first',
      });
    }
    return { store: repo, root: desc, origin: formatReference(target), close: async () => undefined };
  }
  const parsed = parseFrom(from);
  const origin = from;
  if (parsed.kind === 'oci') {
    const folder = path(parsed.path);
    const layout = await layoutAt(folder, options);
    const root = pickFromIndex(await layout.readIndex(), parsed.ref, ref, origin);
    return { store: layout, root, origin, close: async () => undefined };
  }
  const source = await FileSource.open(path(parsed.path), [path(parsed.path)]);
  try {
    if (parsed.kind === 'oci-archive') {
      const archive = await ArchiveLayout.open(source, OCI_ARCHIVE_POLICY);
      return { store: archive, root: pickFromIndex(archive.index, parsed.ref, ref, origin), origin, close: () => source.close() };
    }
    return await openDockerArchive(source, parsed.ref, ref, origin);
  } catch (err) {
    await source.close();
    throw err;
  }
}

interface DockerManifestEntry {
  Config?: unknown;
  RepoTags?: unknown;
  Layers?: unknown;
}

/** Content of a converted `docker save` archive: synthesized JSON in memory, layers in place. */
class DockerArchiveStore implements ReadOnlyStorage {
  readonly #source: ByteSource;
  readonly #memory = new Map<string, Buffer>();
  readonly #entries = new Map<string, TarEntry>();

  constructor(source: ByteSource) {
    this.#source = source;
  }

  addBytes(bytes: Buffer): Digest {
    const digest = sha256Digest(bytes);
    this.#memory.set(digest, bytes);
    return digest;
  }

  addEntry(digest: Digest, entry: TarEntry): void {
    this.#entries.set(digest, entry);
  }

  async fetch(desc: Descriptor): Promise<Readable> {
    const bytes = this.#memory.get(desc.digest);
    if (bytes !== undefined) return Readable.from([bytes]);
    const entry = this.#entries.get(desc.digest);
    if (entry === undefined) throw new SeabagError('E_NOT_FOUND', `${this.#source.name} has no ${desc.digest}`);
    return this.#source.stream(entry.dataOffset, entry.size);
  }

  async exists(desc: Descriptor): Promise<boolean> {
    return this.#memory.has(desc.digest) || this.#entries.has(desc.digest);
  }
}

const GZIP = Buffer.from([0x1f, 0x8b]);
const ZSTD = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * `docker save` output. Docker 25 and later write an OCI layout inside (used as is); older
 * versions and skopeo's `docker-archive:` write `manifest.json`, a config JSON and layer tars,
 * which become an OCI manifest with the same config and layers (only the manifest is new, and it
 * is the same for the same archive).
 */
async function openDockerArchive(source: ByteSource, ref: string | undefined, wanted: Reference, origin: string): Promise<ImageSource> {
  const entries = await scanTar(source, { ...OCI_ARCHIVE_POLICY, allowTypes: ['symlink', 'hardlink'] });
  const byName = new Map(entries.map((e) => [e.name, e]));
  if (byName.has('oci-layout') && byName.has('index.json')) {
    const archive = await ArchiveLayout.open(source, OCI_ARCHIVE_POLICY);
    return { store: archive, root: pickFromIndex(archive.index, ref, wanted, origin), origin, close: () => source.close() };
  }
  const resolveEntry = (name: string, hops = 0): TarEntry => {
    const entry = byName.get(posix.normalize(name));
    if (entry === undefined) throw new SeabagError('E_LAYOUT_INVALID', `${origin}: manifest.json names ${JSON.stringify(name)}, which is not in the archive`);
    if (entry.type === 'file') return entry;
    if ((entry.type === 'symlink' || entry.type === 'hardlink') && hops < 8) {
      const target = entry.type === 'symlink' ? posix.join(posix.dirname(entry.name), entry.linkname) : entry.linkname;
      if (target.startsWith('..') || posix.isAbsolute(target)) throw new SeabagError('E_ARCHIVE_UNSAFE', `${origin}: link ${entry.name} points outside the archive`);
      return resolveEntry(target, hops + 1);
    }
    throw new SeabagError('E_LAYOUT_INVALID', `${origin}: ${name} is not a file`);
  };
  const readJSON = async (name: string): Promise<{ bytes: Buffer; doc: unknown }> => {
    const entry = resolveEntry(name);
    if (entry.size > 4 * 1024 * 1024) throw new SeabagError('E_LAYOUT_INVALID', `${origin}: ${name} is too large`);
    const bytes = await source.read(entry.dataOffset, entry.size);
    return { bytes, doc: parseJSON(bytes, `${origin}:${name}`) };
  };
  const { doc } = await readJSON('manifest.json');
  if (!Array.isArray(doc) || doc.length === 0) throw new SeabagError('E_LAYOUT_INVALID', `${origin}: manifest.json lists no images`);
  const images = doc as DockerManifestEntry[];
  const tagsOf = (m: DockerManifestEntry): string[] =>
    Array.isArray(m.RepoTags)
      ? m.RepoTags.filter((t): t is string => typeof t === 'string').map((t) => {
          try {
            return formatReference(parseReference(t));
          } catch {
            return t;
          }
        })
      : [];
  let chosen: DockerManifestEntry | undefined;
  if (ref !== undefined) {
    const want = formatReference(parseReference(ref));
    chosen = images.find((m) => tagsOf(m).includes(want));
  } else if (images.length === 1) {
    chosen = images[0];
  } else {
    chosen = images.find((m) => tagsOf(m).includes(formatReference(wanted)));
  }
  if (chosen === undefined) {
    throw new SeabagError('E_NOT_FOUND', `${origin}: no image ${JSON.stringify(ref ?? formatReference(wanted))}; it has ${images.flatMap(tagsOf).join(', ') || 'untagged images'}`);
  }
  if (typeof chosen.Config !== 'string' || !Array.isArray(chosen.Layers) || !chosen.Layers.every((l) => typeof l === 'string')) {
    throw new SeabagError('E_LAYOUT_INVALID', `${origin}: manifest.json entry lacks Config or Layers`);
  }
  const store = new DockerArchiveStore(source);
  const config = await readJSON(chosen.Config);
  const configDigest = store.addBytes(config.bytes);
  const diffIds = ((config.doc as { rootfs?: { diff_ids?: unknown } }).rootfs?.diff_ids ?? []) as unknown[];
  const layers: Descriptor[] = [];
  for (const [i, name] of (chosen.Layers as string[]).entries()) {
    const entry = resolveEntry(name);
    const head = await source.read(entry.dataOffset, Math.min(4, entry.size));
    const gzip = head.subarray(0, 2).equals(GZIP);
    const zstd = head.equals(ZSTD);
    const mediaType = gzip ? OCI_LAYER_GZIP : zstd ? OCI_LAYER_ZSTD : OCI_LAYER;
    const named = /(?:^|\/)([a-f0-9]{64})(?:\.tar|\/layer\.tar)?$/.exec(entry.name)?.[1];
    let digest: Digest | undefined;
    if (mediaType === OCI_LAYER && typeof diffIds[i] === 'string' && /^sha256:[a-f0-9]{64}$/.test(diffIds[i] as string)) {
      // An uncompressed layer's digest is its diff_id; checked when it is read.
      digest = diffIds[i] as Digest;
    } else if (named !== undefined && entry.name.startsWith('blobs/')) {
      digest = `sha256:${named}`;
    } else {
      const hash = createHash('sha256');
      await pipeline(source.stream(entry.dataOffset, entry.size), hash);
      digest = `sha256:${hash.digest('hex')}`;
    }
    store.addEntry(digest, entry);
    layers.push({ mediaType, digest, size: entry.size });
  }
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.bytes.length }, layers }),
  );
  const root: Descriptor = { mediaType: OCI_MANIFEST, digest: store.addBytes(manifest), size: manifest.length };
  return { store, root, origin, close: () => source.close() };
}
