/**
 * Referrers aboard: after their content is pushed (with the images, by digest), each one is made
 * findable the way it was at the source, so `cosign verify` and policy controllers (Kyverno,
 * sigstore policy-controller) find it against the vessel registry, offline:
 * - cosign's tags (`sha256-<hex>.sig`, `.att`, `.sbom`) point at the same manifests, in the
 *   image's repository;
 * - an OCI 1.1 referrer (`subject` set) is listed by the registry's referrers API where it has one;
 *   where it has none (Distribution 2.8, MicroK8s' registry), the referrers tag schema's index
 *   `sha256-<subject hex>` is kept as distribution-spec v1.1.0 "Pushing Manifests with Subject"
 *   says a client must: fetched, the descriptor added when missing, pushed back under the tag.
 *
 * These tags are not tags a workload resolves, so import sets them: they change nothing that runs.
 */
import { throwIfAborted } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseIndex, type Descriptor } from '../oci/descriptor.js';
import { isIndex, OCI_INDEX } from '../oci/media-types.js';
import type { OpOptions } from '../oci/store.js';
import { isNotFound } from '../registry/client.js';
import { drain } from '../registry/http.js';
import type { Repository } from '../registry/repository.js';
import { fallbackTag, referrerFacts, type CarriedReferrer } from '../oci/referrers.js';

export interface LinkResult {
  /** cosign tags set or moved. */
  tagged: number;
  /** Fallback tag indexes written (registries without the referrers API). */
  indexes: number;
}

/** Does this registry answer the referrers API (distribution-spec v1.1.0 "Listing Referrers")? */
async function hasReferrersApi(repo: Repository, subject: Digest, options: OpOptions): Promise<boolean> {
  const res = await repo.client.request({
    method: 'GET',
    path: `/v2/${repo.name}/referrers/${subject}`,
    headers: { accept: OCI_INDEX },
    scope: [repo.pullScope],
    expect: [200, 400, 401, 403, 404, 405, 501],
    ...(options.signal ? { signal: options.signal } : {}),
  });
  await drain(res);
  return res.status === 200 && (res.headers['content-type'] ?? '').split(';')[0]?.trim() === OCI_INDEX;
}

/** The referrers tag schema's index for `subject` with `entries` added (the same index when none is new). */
async function updateFallbackIndex(repo: Repository, subject: Digest, entries: readonly Descriptor[], options: OpOptions): Promise<boolean> {
  const tag = fallbackTag(subject);
  let current: { desc: Descriptor; bytes: Buffer } | undefined;
  try {
    current = await repo.getManifest(tag, options);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  let doc: Record<string, unknown> = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
  let listed: Descriptor[] = [];
  if (current !== undefined && isIndex(current.desc.mediaType)) {
    listed = parseIndex(current.bytes, current.desc, `${repo.name}:${tag}`).manifests;
    doc = JSON.parse(current.bytes.toString('utf8')) as Record<string, unknown>;
  }
  const missing = entries.filter((e) => !listed.some((l) => l.digest === e.digest));
  if (missing.length === 0) return false;
  const manifests = [...((doc['manifests'] as unknown[] | undefined) ?? []), ...missing];
  const bytes = Buffer.from(JSON.stringify({ ...doc, schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  await repo.putManifest(tag, bytes, OCI_INDEX, options);
  return true;
}

/**
 * Sets the cosign tags of `referrers` and, on a registry without the referrers API, the fallback
 * tag indexes of their subjects. Each referrer's manifest must already be in its repository.
 * Idempotent: a tag already right and a descriptor already listed are left alone.
 *
 * @throws E_REGISTRY*, E_AUTH
 */
export async function linkReferrers(
  referrers: readonly CarriedReferrer[],
  repository: (name: string) => Promise<Repository>,
  options: OpOptions = {},
): Promise<LinkResult> {
  const result: LinkResult = { tagged: 0, indexes: 0 };
  const bySubject = new Map<string, { repo: string; subject: Digest; entries: Descriptor[] }>();
  for (const r of referrers) {
    throwIfAborted(options.signal);
    const repo = await repository(r.repository);
    const desc: Descriptor = { mediaType: r.record.mediaType, digest: r.record.digest, size: r.record.size };
    if (r.record.tag !== undefined && (await repo.tagDigest(r.record.tag, options)) !== r.record.digest) {
      await repo.tag(desc, r.record.tag, options);
      result.tagged += 1;
    }
    const facts = r.graph.bytes === undefined ? {} : referrerFacts(r.graph.bytes, desc);
    if (facts.subject === undefined) continue;
    const key = `${r.repository} ${facts.subject}`;
    const group = bySubject.get(key) ?? { repo: r.repository, subject: facts.subject, entries: [] };
    group.entries.push({
      ...desc,
      ...(facts.artifactType === undefined ? {} : { artifactType: facts.artifactType }),
      ...(facts.annotations === undefined ? {} : { annotations: facts.annotations }),
    });
    bySubject.set(key, group);
  }
  const api = new Map<string, boolean>();
  for (const { repo: name, subject, entries } of bySubject.values()) {
    const repo = await repository(name);
    let has = api.get(name);
    if (has === undefined) {
      has = await hasReferrersApi(repo, subject, options);
      api.set(name, has);
    }
    if (has) continue;
    if (await updateFallbackIndex(repo, subject, entries, options)) result.indexes += 1;
  }
  return result;
}
