/**
 * One repository of a registry as a `Storage` and `TagStore`: distribution-spec v1.1.0 "Pull",
 * "Push", "Content discovery" and "Content management".
 */
import { Readable } from 'node:stream';
import { SeabagError } from '../errors.js';
import { isDigest, sha256Digest, type Digest } from '../oci/digest.js';
import { MAX_METADATA_SIZE, type Descriptor } from '../oci/descriptor.js';
import { ALL_MANIFEST_TYPES, isManifestLike } from '../oci/media-types.js';
import { TAG } from '../oci/reference.js';
import type { ContentSource, OpOptions, PushOptions, Storage, TagStore } from '../oci/store.js';
import { readVerified } from '../oci/verify.js';
import { isNotFound, type RepositoryEndpoint, type Requester } from './requester.js';
import { drain, readBody, type HttpResponse } from './http.js';
import { foreignRefused, isForeignLayer } from './foreign.js';
import { ChunkedUpload, mountBlob, uploadBlob } from './upload.js';

export interface RepositoryOptions {
  /** Other repositories of this registry that may hold a blob, for cross-repository mounts. */
  mountSources?: (digest: Digest) => readonly string[];
}

const ACCEPT = ALL_MANIFEST_TYPES.join(', ');

function sig(options: OpOptions): { signal?: AbortSignal } {
  return options.signal === undefined ? {} : { signal: options.signal };
}

export class Repository implements Storage, TagStore, RepositoryEndpoint {
  readonly client: Requester;
  readonly name: string;
  readonly #options: RepositoryOptions;

  constructor(client: Requester, name: string, options: RepositoryOptions = {}) {
    this.client = client;
    this.name = name;
    this.#options = options;
  }

  get pullScope(): string {
    return `repository:${this.name}:pull`;
  }

  get pushScope(): string {
    return `repository:${this.name}:pull,push`;
  }

  path(kind: 'blobs' | 'manifests' | 'tags', rest: string): string {
    return `/v2/${this.name}/${kind}/${rest}`;
  }

  /** HEAD a blob or manifest; true when the registry has it with the expected size. */
  async exists(desc: Descriptor, options: OpOptions = {}): Promise<boolean> {
    const res = await this.#head(desc.digest, isManifestLike(desc.mediaType) ? 'manifests' : 'blobs', options);
    if (res.status === 404) return false;
    const length = Number(res.headers['content-length']);
    return !Number.isFinite(length) || length === desc.size;
  }

  /** Does the repository hold this digest, as a blob or as a manifest (whatever its size)? */
  async has(digest: Digest, options: OpOptions = {}): Promise<boolean> {
    for (const kind of ['blobs', 'manifests'] as const) {
      if ((await this.#head(digest, kind, options)).status === 200) return true;
    }
    return false;
  }

  /**
   * Does the repository hold this digest where `kind` says it lives (one HEAD)? For a caller that
   * knows which digests are manifests; `has` asks both places. Ask for a manifest only what is
   * one: Distribution answers a layer HEADed as a manifest with a 500, after reading it whole.
   */
  async holds(digest: Digest, kind: 'blobs' | 'manifests', options: OpOptions & { retry?: boolean } = {}): Promise<boolean> {
    return (await this.#head(digest, kind, options)).status === 200;
  }

  /** HEAD a digest where `kind` says it lives (200 or 404); the response, drained. */
  async #head(digest: Digest, kind: 'blobs' | 'manifests', options: OpOptions & { retry?: boolean }): Promise<HttpResponse> {
    const res =
      kind === 'blobs'
        ? await this.#blobRequest('HEAD', digest, [200, 404], options)
        : await this.client.request({ method: 'HEAD', path: this.path(kind, digest), headers: { accept: ACCEPT }, scope: [this.pullScope], expect: [200, 404], ...(options.retry === false ? { retry: false } : {}), ...sig(options) });
    await drain(res);
    return res;
  }

  /** GET a blob (or a manifest by digest), streamed; the caller verifies it. */
  async fetch(desc: Descriptor, options: OpOptions = {}): Promise<Readable> {
    if (isManifestLike(desc.mediaType)) {
      const { bytes } = await this.getManifest(desc.digest, options);
      return Readable.from([bytes]);
    }
    const res = await this.#blobRequest('GET', desc.digest, [200], options);
    return res.body;
  }

  /**
   * GET a blob's bytes from `offset` on, or `length` of them (RFC 9110 §14 `Range`, which
   * Distribution serves on blob reads). A registry that ignores the range answers with the whole
   * blob: `start` says where the body begins. The caller verifies what it reads.
   *
   * @throws E_REGISTRY (404 when the repository lacks the blob; 416 when `offset` is past its end),
   *   E_REGISTRY_UNREACHABLE, E_AUTH
   */
  async openBlob(desc: Descriptor, options: OpOptions & { offset?: number; length?: number; retry?: boolean } = {}): Promise<{ body: Readable; start: number; total: number | undefined }> {
    const offset = options.offset ?? 0;
    const end = options.length === undefined ? '' : String(offset + options.length - 1);
    const headers: Record<string, string> = offset > 0 || end !== '' ? { range: `bytes=${offset}-${end}` } : {};
    const res = await this.#blobRequest('GET', desc.digest, [200, 206], options, headers);
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
      if (m === null) {
        res.body.destroy();
        throw new SeabagError('E_REGISTRY', `GET ${desc.digest} from ${this.client.registry}: 206 without a usable Content-Range`, { temporary: true });
      }
      return { body: res.body, start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) };
    }
    const length = Number(res.headers['content-length']);
    return { body: res.body, start: 0, total: Number.isFinite(length) && res.headers['content-length'] !== undefined ? length : undefined };
  }

  /**
   * GET or HEAD a blob, following the redirects of registries backed by object storage (S3, GCS,
   * a CDN: distribution-spec "Pulling blobs" allows 307). The client sends credentials only to
   * the registry's own origin, so the redirect target gets a bare request, as presigned URLs
   * require; a 401 there never becomes the registry's auth scheme.
   */
  async #blobRequest(method: 'GET' | 'HEAD', digest: Digest, expect: number[], options: OpOptions & { retry?: boolean }, headers: Record<string, string> = {}): Promise<HttpResponse> {
    const redirects = [301, 302, 303, 307, 308];
    const retry = options.retry === false ? { retry: false } : {};
    let res: HttpResponse = await this.client.request({
      method,
      path: this.path('blobs', digest),
      headers,
      scope: [this.pullScope],
      expect: [...expect, ...redirects],
      ...retry,
      ...sig(options),
    });
    for (let hops = 0; redirects.includes(res.status); hops += 1) {
      const location = res.headers.location;
      await drain(res);
      if (location === undefined || hops >= 5) {
        throw new SeabagError('E_REGISTRY', `${method} ${digest}: ${location === undefined ? 'a redirect without a Location' : 'more than 5 redirects'} from ${this.client.registry}`, {
          details: { registry: this.client.registry, digest },
        });
      }
      const next = new URL(location, res.url);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        throw new SeabagError('E_REGISTRY', `${method} ${digest}: ${this.client.registry} redirected to a ${next.protocol} URL`, { details: { registry: this.client.registry, digest } });
      }
      if (next.protocol === 'http:' && this.client.baseUrl.protocol === 'https:') {
        // A downgrade: the blob (and a presigned URL's signature) would cross the network in clear.
        throw new SeabagError('E_REGISTRY', `${method} ${digest}: ${this.client.registry} (HTTPS) redirected to plain HTTP ${next.origin}; an HTTPS registry's blobs are fetched over HTTPS only`, {
          details: { registry: this.client.registry, digest, location: next.origin },
          hint: 'configure the registry\'s storage redirect (object store, CDN) to use https:// URLs',
        });
      }
      res = await this.client.request({ method, path: next.href, headers, expect: [...expect, ...redirects], ...retry, ...sig(options) });
    }
    return res;
  }

  /**
   * GET a manifest by tag or digest, with every manifest type in `Accept`. By digest, the bytes
   * are verified against it; by tag, the digest is computed from the bytes (and must agree with
   * the registry's `Docker-Content-Digest`).
   *
   * @throws E_REGISTRY (404 when unknown), E_DIGEST_MISMATCH, E_LAYOUT_INVALID when too large
   */
  async getManifest(reference: string, options: OpOptions = {}): Promise<{ desc: Descriptor; bytes: Buffer }> {
    const res = await this.client.request({
      method: 'GET',
      path: this.path('manifests', reference),
      headers: { accept: ACCEPT },
      scope: [this.pullScope],
      expect: [200],
      ...sig(options),
    });
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > MAX_METADATA_SIZE) {
      res.body.destroy();
      throw new SeabagError('E_LAYOUT_INVALID', `manifest ${this.name}:${reference} is ${declared} bytes, over the ${MAX_METADATA_SIZE}-byte limit`);
    }
    const mediaType = (res.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    const bytes = await readBody(res, MAX_METADATA_SIZE);
    const digest = sha256Digest(bytes);
    if (isDigest(reference) && digest !== reference) {
      throw new SeabagError('E_DIGEST_MISMATCH', `manifest ${this.name}@${reference}: the registry sent content with digest ${digest}`, {
        details: { expected: reference, found: digest },
      });
    }
    const headerDigest = res.headers['docker-content-digest'];
    if (typeof headerDigest === 'string' && isDigest(headerDigest) && headerDigest !== digest) {
      throw new SeabagError('E_DIGEST_MISMATCH', `manifest ${this.name}:${reference}: Docker-Content-Digest says ${headerDigest}, content is ${digest}`, {
        details: { expected: headerDigest, found: digest },
      });
    }
    const type = isManifestLike(mediaType) ? mediaType : mediaTypeFromContent(bytes) ?? mediaType;
    return { desc: { mediaType: type, digest, size: bytes.length }, bytes };
  }

  /**
   * Stores content: manifests by digest (PUT), blobs by mount when a known repository has them,
   * else by upload.
   */
  async push(desc: Descriptor, open: ContentSource, options: PushOptions = {}): Promise<void> {
    if (isManifestLike(desc.mediaType)) {
      if (desc.size > MAX_METADATA_SIZE) throw new SeabagError('E_LAYOUT_INVALID', `manifest ${desc.digest} is over the ${MAX_METADATA_SIZE}-byte limit`);
      const bytes = await readVerified(await open(), desc, 'manifest');
      await this.putManifest(desc.digest, bytes, desc.mediaType, options);
      return;
    }
    for (const from of this.#options.mountSources?.(desc.digest) ?? []) {
      if (from !== this.name && (await mountBlob(this, desc, from, options))) return;
    }
    if (options.relay !== undefined) {
      // The source writes the blob into an upload of ours, and commits it once its bytes check out.
      await options.relay(() => ChunkedUpload.start(this, desc, options));
      return;
    }
    await options.prepare?.();
    await uploadBlob(this, desc, open, options);
  }

  /** Tries a cross-repository mount from `from`; true when the registry mounted the blob. */
  async mount(desc: Descriptor, from: string, options: OpOptions = {}): Promise<boolean> {
    return mountBlob(this, desc, from, options);
  }

  /** PUT a manifest under a tag or its digest. */
  async putManifest(reference: string, bytes: Buffer, mediaType: string, options: OpOptions = {}): Promise<Digest> {
    let res: HttpResponse;
    try {
      res = await this.client.request({
        method: 'PUT',
        path: this.path('manifests', reference),
        headers: { 'content-type': mediaType },
        body: () => bytes,
        scope: [this.pushScope],
        expect: [201, 200],
        ...sig(options),
      });
    } catch (err) {
      // Distribution's 500 "unknown error" for a manifest with layer urls it does not allow.
      const foreign = foreignLayersOf(bytes);
      if (foreign.length > 0 && err instanceof SeabagError && err.code === 'E_REGISTRY' && (err.details['errors'] as string[] | undefined)?.includes('UNKNOWN') === true) {
        throw foreignRefused(this.client.registry, `${this.name}@${sha256Digest(bytes)}`, foreign);
      }
      throw err;
    }
    await drain(res);
    return sha256Digest(bytes);
  }

  async resolve(tag: string, options: OpOptions = {}): Promise<Descriptor> {
    return (await this.getManifest(tag, options)).desc;
  }

  /** Points `tag` at a manifest this repository holds (GET it by digest, PUT it under the tag). */
  async tag(desc: Descriptor, tag: string, options: OpOptions = {}): Promise<void> {
    if (!TAG.test(tag)) throw new SeabagError('E_REFERENCE_INVALID', `invalid tag ${JSON.stringify(tag)}`);
    const { bytes } = await this.getManifest(desc.digest, options);
    await this.putManifest(tag, bytes, desc.mediaType, options);
  }

  /** The digest a tag points at now, or undefined when the tag does not exist. */
  async tagDigest(tag: string, options: OpOptions = {}): Promise<Digest | undefined> {
    try {
      return (await this.resolve(tag, options)).digest;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * The digest a tag points at now, by HEAD (the registry's `Docker-Content-Digest`, as `crane
   * digest` reads it: no manifest crosses the wire); undefined when the tag does not exist. A
   * registry that answers without that header is asked with a GET (`tagDigest`).
   *
   * @throws E_REGISTRY, E_REGISTRY_UNREACHABLE, E_AUTH
   */
  async headTag(tag: string, options: OpOptions = {}): Promise<Digest | undefined> {
    const res = await this.client.request({ method: 'HEAD', path: this.path('manifests', tag), headers: { accept: ACCEPT }, scope: [this.pullScope], expect: [200, 404], ...sig(options) });
    await drain(res);
    if (res.status === 404) return undefined;
    const said = res.headers['docker-content-digest'];
    return typeof said === 'string' && isDigest(said) ? said : this.tagDigest(tag, options);
  }

  /** Every tag, following `Link: <…>; rel="next"` pages (distribution-spec "Listing Tags"). */
  async listTags(options: OpOptions & { pageSize?: number } = {}): Promise<string[]> {
    const tags: string[] = [];
    let next: string | undefined = `${this.path('tags', 'list')}?n=${options.pageSize ?? 100}`;
    for (let pages = 0; next !== undefined; pages += 1) {
      if (pages > 10_000) throw new SeabagError('E_REGISTRY', `tag listing of ${this.name} does not end`);
      const res: HttpResponse = await this.client.request({ method: 'GET', path: next, scope: [this.pullScope], expect: [200, 404], ...sig(options) });
      if (res.status === 404) {
        await drain(res);
        return tags;
      }
      const doc = JSON.parse((await readBody(res, 16 * 1024 * 1024)).toString('utf8')) as { tags?: string[] | null };
      tags.push(...(doc.tags ?? []));
      const link = res.headers.link;
      const match = typeof link === 'string' ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      next = match?.[1] === undefined ? undefined : new URL(match[1], res.url).href;
    }
    return tags;
  }

  /** DELETE a manifest by digest (removes every tag pointing at it). Needs deletes enabled on the registry. */
  async deleteManifest(digest: Digest, options: OpOptions = {}): Promise<void> {
    const res = await this.client.request({
      method: 'DELETE',
      path: this.path('manifests', digest),
      scope: [`repository:${this.name}:delete`, this.pushScope],
      expect: [202, 200, 404],
      ...sig(options),
    });
    await drain(res);
  }

  /** DELETE a blob's link from this repository. */
  async deleteBlob(digest: Digest, options: OpOptions = {}): Promise<void> {
    const res = await this.client.request({
      method: 'DELETE',
      path: this.path('blobs', digest),
      scope: [`repository:${this.name}:delete`, this.pushScope],
      expect: [202, 200, 404],
      ...sig(options),
    });
    await drain(res);
  }
}

/** The foreign layers (with `urls`) a manifest names; none when it is not an image manifest. */
function foreignLayersOf(bytes: Buffer): Descriptor[] {
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { layers?: unknown };
    if (!Array.isArray(doc.layers)) return [];
    return (doc.layers as Descriptor[]).filter((l) => typeof l === 'object' && l !== null && typeof l.mediaType === 'string' && isForeignLayer(l));
  } catch {
    return [];
  }
}

/** A registry that answers with a generic content type: tell a manifest from an index by its fields. */
function mediaTypeFromContent(bytes: Buffer): string | undefined {
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown; manifests?: unknown; config?: unknown };
    if (typeof doc.mediaType === 'string') return doc.mediaType;
    if (Array.isArray(doc.manifests)) return 'application/vnd.oci.image.index.v1+json';
    if (doc.config !== undefined) return 'application/vnd.oci.image.manifest.v1+json';
  } catch {
    // fall through
  }
  return undefined;
}
