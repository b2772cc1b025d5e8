/**
 * The supply chain of an image: what refers to it, found where the image comes from, so that
 * signatures, attestations and SBOMs travel with it.
 *
 * Two kinds are looked for, for each manifest of an image (the image, its platform manifests, and
 * the image as the source names it when a platform filter made a smaller index):
 * - OCI 1.1 referrers (image-spec v1.1.0 `manifest.md#image-manifest-property-descriptions`,
 *   `subject`): through the referrers API (distribution-spec v1.1.0 "Listing Referrers") where the
 *   registry has it, and the referrers tag schema `sha256-<hex>` (distribution-spec v1.1.0
 *   "Referrers Tag Schema") everywhere; in an OCI layout, the manifests of `index.json` whose
 *   `subject` names the digest.
 * - cosign's tags `sha256-<hex>.sig`, `.att` and `.sbom` (sigstore/cosign `specs/SIGNATURE_SPEC.md`
 *   "Tag-based Discovery"), in the image's repository or, in a layout, as `ref.name`.
 * Referrers of referrers (a signature over an SBOM) are followed too, a few levels deep.
 *
 * Nothing is parsed beyond the manifest structure: every kind, known or not, is carried byte for
 * byte (what a referrer is as content is `oci/referrers.ts`).
 *
 * Limits: at most {@link MAX_REFERRERS} referrers per image, {@link MAX_REFERRER_DEPTH} levels of
 * referrers of referrers, {@link MAX_LAYOUT_SCAN} manifests of a layout's `index.json` read for
 * their `subject`; manifests and indexes are held in memory only up to 4 MiB each.
 */
import { SeabagError, throwIfAborted } from '../errors.js';
import { isDigest, type Digest } from '../oci/digest.js';
import { MAX_METADATA_SIZE, parseIndex, REF_NAME, type Descriptor, type ImageIndex } from '../oci/descriptor.js';
import { fetchVerified, postOrder, type GraphNode } from '../oci/graph.js';
import { OciLayout } from '../oci/layout.js';
import { isIndex, isManifestLike, OCI_INDEX } from '../oci/media-types.js';
import { fallbackTag, referrerFacts, referrerGraph, type ReferrerKind, type ReferrerRecord } from '../oci/referrers.js';
import type { OpOptions, ReadOnlyStorage } from '../oci/store.js';
import { isNotFound } from '../registry/client.js';
import { drain, readBody, type HttpResponse } from '../registry/http.js';
import { Repository } from '../registry/repository.js';
import { Limiter } from '../util/limit.js';
import { SharedWork } from '../util/shared.js';
import { ArchiveLayout } from './archive.js';

export interface DiscoveredReferrer {
  record: ReferrerRecord;
  /** The referrer's content: its manifest (bytes held) and what it names, without its subject. */
  graph: GraphNode;
}

export const MAX_REFERRERS = 512;
export const MAX_REFERRER_DEPTH = 3;
export const MAX_LAYOUT_SCAN = 10_000;
/** Manifests of a layout's `index.json` read at once for their `subject`. */
const LAYOUT_SCAN_CONCURRENCY = 8;

const COSIGN_SUFFIXES: readonly (readonly [string, ReferrerKind])[] = [
  ['sig', 'signature'],
  ['att', 'attestation'],
  ['sbom', 'sbom'],
];

interface Hit {
  desc: Descriptor;
  kind: ReferrerKind;
  tag?: string;
}

/** Where referrers of one source are looked up. */
export interface ReferrerFinder {
  find(subject: Digest, options: OpOptions): Promise<Hit[]>;
}

function indexEntries(bytes: Buffer, desc: Descriptor): Descriptor[] {
  return parseIndex(bytes, desc).manifests;
}

/** A registry repository: the referrers API when the registry has it, the fallback tag, cosign's tags. */
class RegistryFinder implements ReferrerFinder {
  readonly #repo: Repository;
  #api: boolean | undefined;

  constructor(repo: Repository) {
    this.#repo = repo;
  }

  async #tagged(tag: string, options: OpOptions): Promise<{ desc: Descriptor; bytes: Buffer } | undefined> {
    try {
      return await this.#repo.getManifest(tag, options);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * distribution-spec v1.1.0 "Listing Referrers": 200 with an index (pages linked by `Link`), or
   * 404 where the registry has no such API (Distribution 2.8), asked once per repository.
   */
  async #fromApi(subject: Digest, options: OpOptions): Promise<Descriptor[] | undefined> {
    if (this.#api === false) return undefined;
    const out: Descriptor[] = [];
    let next: string | undefined = `/v2/${this.#repo.name}/referrers/${subject}`;
    for (let pages = 0; next !== undefined; pages += 1) {
      if (pages >= 64) throw new SeabagError('E_REGISTRY', `the referrers list of ${this.#repo.name}@${subject} does not end`);
      const res: HttpResponse = await this.#repo.client.request({
        method: 'GET',
        path: next,
        headers: { accept: OCI_INDEX },
        scope: [this.#repo.pullScope],
        expect: [200, 400, 401, 403, 404, 405, 501],
        ...(options.signal ? { signal: options.signal } : {}),
      });
      const type = (res.headers['content-type'] ?? '').split(';')[0]?.trim();
      if (res.status !== 200 || type !== OCI_INDEX) {
        await drain(res);
        if (pages > 0) break;
        if (res.status !== 200) this.#api = false;
        return undefined;
      }
      this.#api = true;
      const bytes = await readBody(res, MAX_METADATA_SIZE);
      out.push(...parseIndex(bytes, { mediaType: OCI_INDEX, digest: subject, size: bytes.length }, `referrers of ${subject}`).manifests);
      const link = res.headers.link;
      const match = typeof link === 'string' ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      next = match?.[1] === undefined ? undefined : new URL(match[1], res.url).href;
    }
    return out;
  }

  async find(subject: Digest, options: OpOptions): Promise<Hit[]> {
    const hits: Hit[] = [];
    const api = await this.#fromApi(subject, options);
    for (const d of api ?? []) hits.push({ desc: d, kind: 'referrer' });
    // The fallback tag, also where the registry has the API: a client may have written it before.
    const fallback = await this.#tagged(fallbackTag(subject), options);
    if (fallback !== undefined && isIndex(fallback.desc.mediaType)) {
      for (const d of indexEntries(fallback.bytes, fallback.desc)) hits.push({ desc: d, kind: 'referrer' });
    }
    for (const [suffix, kind] of COSIGN_SUFFIXES) {
      const tag = `${fallbackTag(subject)}.${suffix}`;
      const found = await this.#tagged(tag, options);
      if (found !== undefined) hits.push({ desc: found.desc, kind, tag });
    }
    return hits;
  }
}

/**
 * An OCI layout (a folder or a tar): cosign's tags as `ref.name` (bare, as `skopeo copy … oci:DIR:TAG`
 * writes it, or a full reference ending in `:TAG`), the fallback tag, and the manifests of
 * `index.json` whose `subject` names the digest (how oras and `cosign save` keep referrers).
 */
class LayoutFinder implements ReferrerFinder {
  readonly #store: ReadOnlyStorage;
  readonly #readIndex: () => Promise<ImageIndex>;
  #indexRead: Promise<ImageIndex> | undefined;
  #subjects: SharedWork<Map<Digest, Descriptor[]>> | undefined;

  constructor(store: ReadOnlyStorage, index: () => Promise<ImageIndex>) {
    this.#store = store;
    this.#readIndex = index;
  }

  /** The layout's index, read once by this finder (one build's look at the source). */
  #index(): Promise<ImageIndex> {
    this.#indexRead ??= this.#readIndex();
    return this.#indexRead;
  }

  static #named(desc: Descriptor, tag: string): boolean {
    const name = desc.annotations?.[REF_NAME];
    return name === tag || (name !== undefined && name.endsWith(`:${tag}`) && !name.endsWith(`@${tag}`));
  }

  /**
   * The manifests of the layout by their `subject`: one scan, shared by every image of the layout
   * (each waits for it with its own signal; it stops only once none waits any more).
   */
  #bySubject(options: OpOptions): Promise<Map<Digest, Descriptor[]>> {
    if (this.#subjects === undefined || this.#subjects.abandoned) this.#subjects = new SharedWork((signal) => this.#scan({ ...options, signal }));
    return this.#subjects.wait(options.signal);
  }

  async #scan(options: OpOptions): Promise<Map<Digest, Descriptor[]>> {
    const map = new Map<Digest, Descriptor[]>();
    const entries = (await this.#index()).manifests.filter((d) => isManifestLike(d.mediaType));
    if (entries.length > MAX_LAYOUT_SCAN) {
      throw new SeabagError('E_LAYOUT_INVALID', `the layout's index.json lists ${entries.length} manifests, over the ${MAX_LAYOUT_SCAN} read for referrers`);
    }
    // Read several at once (a layout may list thousands), taken in the index's order: the
    // first bad manifest in that order is the error, as when they are read one by one.
    const limiter = new Limiter(LAYOUT_SCAN_CONCURRENCY);
    const subjects = await Promise.allSettled(
      entries.map((d) =>
        limiter.run(async () => {
          throwIfAborted(options.signal);
          return d.size > MAX_METADATA_SIZE ? undefined : referrerFacts(await fetchVerified(this.#store, d, options), d).subject;
        }),
      ),
    );
    entries.forEach((d, i) => {
      const read = subjects[i] as PromiseSettledResult<Digest | undefined>;
      if (read.status === 'rejected') throw read.reason;
      if (read.value !== undefined) map.set(read.value, [...(map.get(read.value) ?? []), d]);
    });
    return map;
  }

  async find(subject: Digest, options: OpOptions): Promise<Hit[]> {
    const index = await this.#index();
    const hits: Hit[] = (await this.#bySubject(options)).get(subject)?.map((desc) => ({ desc, kind: 'referrer' as const })) ?? [];
    for (const d of index.manifests.filter((m) => LayoutFinder.#named(m, fallbackTag(subject)) && isIndex(m.mediaType))) {
      for (const r of indexEntries(await fetchVerified(this.#store, d, options), d)) hits.push({ desc: r, kind: 'referrer' });
    }
    for (const [suffix, kind] of COSIGN_SUFFIXES) {
      const tag = `${fallbackTag(subject)}.${suffix}`;
      for (const d of index.manifests.filter((m) => LayoutFinder.#named(m, tag))) hits.push({ desc: d, kind, tag });
    }
    return hits;
  }
}

/** How to find referrers in a store; undefined for stores that hold none (a `docker save` archive). */
function finderFor(store: ReadOnlyStorage): ReferrerFinder | undefined {
  if (store instanceof Repository) return new RegistryFinder(store);
  if (store instanceof OciLayout) return new LayoutFinder(store, () => store.readIndex());
  if (store instanceof ArchiveLayout) return new LayoutFinder(store, async () => store.index);
  return undefined;
}

/**
 * The referrer lookups of one build, shared by its images: one finder per store, so that a
 * layout's `index.json` and the `subject` of every manifest it lists are read once for the build,
 * not once per image of it (4 images of one layout read each manifest 5 times). For one build
 * only: what a finder read is not read again.
 */
export class ReferrerLookups {
  readonly #finders = new Map<ReadOnlyStorage, ReferrerFinder | undefined>();

  finder(store: ReadOnlyStorage): ReferrerFinder | undefined {
    if (!this.#finders.has(store)) this.#finders.set(store, finderFor(store));
    return this.#finders.get(store);
  }
}

const KIND_ORDER: Record<ReferrerKind, number> = { signature: 0, attestation: 1, sbom: 2, referrer: 3 };

/**
 * Finds the referrers of `subjects` (manifest digests of one image) in the store the image comes
 * from, and of those referrers in turn, and resolves each one's content. The result is in a fixed
 * order (subject, kind, tag, digest), whatever order the source lists them in, so builds reproduce.
 * A descriptor listed as a referrer whose manifest names another subject is not one, and is left;
 * so is a referrer whose `subject` is neither in `carried` (the image's content) nor another
 * referrer found: the source's own index when a platform filter rewrote it. (cosign's tags name
 * their image in the signed payload, not in `subject`: those of the source's index are kept.)
 *
 * @throws E_LAYOUT_INVALID (over {@link MAX_REFERRERS}, malformed manifests), E_DIGEST_MISMATCH,
 *   E_REGISTRY*, E_AUTH
 */
export async function discoverReferrers(store: ReadOnlyStorage, subjects: readonly Digest[], options: OpOptions & { carried?: ReadonlySet<string>; lookups?: ReferrerLookups } = {}): Promise<DiscoveredReferrer[]> {
  const finder = options.lookups === undefined ? finderFor(store) : options.lookups.finder(store);
  if (finder === undefined) return [];
  const found = new Map<string, DiscoveredReferrer>();
  const order = new Map<Digest, number>();
  const seen = new Set<Digest>(subjects);
  let frontier = [...new Set(subjects)];
  frontier.forEach((s, i) => order.set(s, i));
  for (let depth = 0; depth < MAX_REFERRER_DEPTH && frontier.length > 0; depth += 1) {
    const next: Digest[] = [];
    for (const subject of frontier) {
      for (const hit of await finder.find(subject, options)) {
        throwIfAborted(options.signal);
        if (!isManifestLike(hit.desc.mediaType) || !isDigest(hit.desc.digest)) continue;
        const key = `${hit.desc.digest} ${hit.tag ?? ''}`;
        if (found.has(key)) continue;
        const desc: Descriptor = { mediaType: hit.desc.mediaType, digest: hit.desc.digest, size: hit.desc.size };
        const bytes = await fetchVerified(store, desc, options);
        const facts = referrerFacts(bytes, desc);
        if (hit.kind === 'referrer' && facts.subject !== subject) continue;
        // A `subject` the bundle does not hold (the source's index, when a platform filter made
        // a smaller one): left out, so every carried referrer's graph is whole in the bundle.
        if (facts.subject !== undefined && options.carried !== undefined && !options.carried.has(facts.subject) && ![...found.values()].some((f) => f.record.digest === facts.subject)) continue;
        const graph = await referrerGraph(store, desc, { ...options, stop: (d) => seen.has(d.digest as Digest) && d.digest !== desc.digest });
        const record: ReferrerRecord = {
          kind: hit.kind,
          subject,
          digest: desc.digest,
          mediaType: desc.mediaType,
          size: desc.size,
          ...(facts.artifactType === undefined ? {} : { artifactType: facts.artifactType }),
          ...(hit.tag === undefined ? {} : { tag: hit.tag }),
        };
        found.set(key, { record, graph });
        if (found.size > MAX_REFERRERS) {
          throw new SeabagError('E_LAYOUT_INVALID', `over ${MAX_REFERRERS} referrers for one image (at ${subject}); build with --no-referrers to leave them out`, {
            details: { subject, limit: MAX_REFERRERS },
          });
        }
        if (!seen.has(desc.digest)) {
          seen.add(desc.digest);
          order.set(desc.digest, order.size);
          next.push(desc.digest);
        }
      }
    }
    frontier = next;
  }
  return [...found.values()].sort(
    (a, b) =>
      (order.get(a.record.subject) ?? 0) - (order.get(b.record.subject) ?? 0) ||
      KIND_ORDER[a.record.kind] - KIND_ORDER[b.record.kind] ||
      (a.record.tag ?? '').localeCompare(b.record.tag ?? '') ||
      a.record.digest.localeCompare(b.record.digest),
  );
}

/** The manifests of an image graph whose referrers belong with it, plus the digest its source named. */
export function referrerSubjects(graph: GraphNode, sourceDigest?: Digest): Digest[] {
  const out = postOrder(graph)
    .filter((n) => n.bytes !== undefined)
    .map((n) => n.desc.digest)
    .reverse();
  if (sourceDigest !== undefined && !out.includes(sourceDigest)) out.push(sourceDigest);
  return out;
}
