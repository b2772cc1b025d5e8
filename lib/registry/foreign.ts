/**
 * Foreign (non-distributable) layers at the vessel registry. CNCF Distribution refuses a
 * manifest whose layers carry `urls` unless its config allows them
 * (`validation.manifests.urls.allow`, docs/configuration.md "validation"); MicroK8s' registry
 * addon runs it with the default config, so it refuses them. It says so badly: HTTP 500 with an
 * `UNKNOWN` "unknown error" beside `MANIFEST_BLOB_UNKNOWN`, and only when the manifest is pushed,
 * after every blob. This module asks first, with a manifest the registry cannot store.
 */
import { SeabagError } from '../errors.js';
import { sha256Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/descriptor.js';
import { DOCKER_CONFIG, DOCKER_FOREIGN_LAYER, DOCKER_MANIFEST, OCI_CONFIG, OCI_NONDISTRIBUTABLE_PREFIX } from '../oci/media-types.js';
import type { OpOptions } from '../oci/store.js';
import { drain, readBody } from './http.js';
import type { RepositoryEndpoint } from './requester.js';

/** Layers a client fetches from their `urls` (Docker foreign, OCI non-distributable, or any layer with urls). */
export function isForeignLayer(desc: Descriptor): boolean {
  return (desc.urls !== undefined && desc.urls.length > 0) || desc.mediaType === DOCKER_FOREIGN_LAYER || desc.mediaType.startsWith(OCI_NONDISTRIBUTABLE_PREFIX);
}

/** The registry's answer to a manifest naming these layers: accepted, or refused with its error codes. */
export interface ForeignProbe {
  accepted: boolean;
  status: number;
  errors: string[];
}

/** A config digest no registry holds, so that the probe manifest is never stored (hashed when a probe is made, not at every start). */
function absentConfig(): string {
  return sha256Digest('seabag: probe for foreign layer urls; this blob does not exist');
}

/**
 * Asks the registry whether it accepts manifests whose layers carry these `urls`, without
 * storing anything: a manifest of type `manifestType` with `layers` and a config blob that does
 * not exist is pushed by digest (no tag). A registry that checks urls and blobs answers 400 with
 * `MANIFEST_BLOB_UNKNOWN` for the config alone when it accepts the urls, and adds other errors
 * (Distribution: `UNKNOWN`) when it refuses them. One request, never retried: the answer is the
 * same every time.
 *
 * @throws E_REGISTRY_UNREACHABLE, E_AUTH (as any request)
 */
export async function probeForeignLayers(repo: RepositoryEndpoint, manifestType: string, layers: readonly Descriptor[], options: OpOptions = {}): Promise<ForeignProbe> {
  const docker = manifestType === DOCKER_MANIFEST;
  const absent = absentConfig();
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: manifestType,
      config: { mediaType: docker ? DOCKER_CONFIG : OCI_CONFIG, digest: absent, size: 2 },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, ...(l.urls === undefined ? {} : { urls: l.urls }) })),
    }),
  );
  const digest = sha256Digest(manifest);
  const res = await repo.client.request({
    method: 'PUT',
    path: repo.path('manifests', digest),
    headers: { 'content-type': manifestType },
    body: () => manifest,
    scope: [repo.pushScope],
    expect: [200, 201, 202, 400, 500],
    retry: false,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  if (res.status < 300) {
    // A registry that checks nothing stored it: take it away again (untagged either way).
    await drain(res);
    await repo.deleteManifest(digest, options).catch(() => undefined);
    return { accepted: true, status: res.status, errors: [] };
  }
  let errors: string[] = [];
  let blobUnknown: string[] = [];
  try {
    const doc = JSON.parse((await readBody(res, 64 * 1024)).toString('utf8')) as { errors?: { code?: string; detail?: unknown }[] };
    errors = (doc.errors ?? []).map((e) => e.code ?? 'UNKNOWN');
    blobUnknown = (doc.errors ?? []).filter((e) => e.code === 'MANIFEST_BLOB_UNKNOWN').map((e) => String(e.detail));
  } catch {
    // not a distribution error body: judged by its status below
  }
  // Layer blobs may be unknown too (a registry that checks them); only other errors are a refusal.
  const refused = res.status >= 500 || errors.some((c) => c !== 'MANIFEST_BLOB_UNKNOWN') || (errors.length === 0 && !blobUnknown.includes(absent));
  return { accepted: !refused, status: res.status, errors };
}

/** The error for a registry that refuses foreign layer urls, saying how to allow them. */
export function foreignRefused(registry: string, image: string, layers: readonly Descriptor[], probe?: ForeignProbe): SeabagError {
  const first = layers[0];
  const urls = [...new Set(layers.flatMap((l) => l.urls ?? []))];
  return new SeabagError(
    'E_FOREIGN_LAYERS_REFUSED',
    `the vessel registry ${registry} refuses foreign layer URLs: ${image} has ${layers.length} foreign layer(s)${first === undefined ? '' : ` (${first.digest}${urls.length > 0 ? `, urls ${urls.slice(0, 3).join(', ')}` : ''})`}; nothing was pushed`,
    {
      details: { registry, image, layers: layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, urls: l.urls ?? [] })), ...(probe ? { status: probe.status, errors: probe.errors } : {}) },
      hint: "allow them in the registry's config.yml (CNCF Distribution, MicroK8s' registry addon): `validation: {manifests: {urls: {allow: ['^https?://']}}}`, restart the registry, and import again; the layers' bytes travel in the bundle, so nothing is fetched from those URLs",
    },
  );
}
