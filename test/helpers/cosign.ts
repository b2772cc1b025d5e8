/**
 * Supply-chain artifacts in the formats cosign and OCI 1.1 tools write them, made here with
 * `node:crypto` because no cosign binary exists on these machines:
 * - a cosign signature (sigstore/cosign `specs/SIGNATURE_SPEC.md`): an OCI manifest whose layer is a
 *   simple-signing payload (`application/vnd.dev.cosign.simplesigning.v1+json`) with the base64
 *   ECDSA P-256 (ASN.1 DER) signature in the `dev.cosignproject.cosign/signature` annotation, and
 *   a config naming the payload as its one diff_id, as cosign writes it; tagged `sha256-<hex>.sig`;
 * - a cosign attestation (`cosign attest`): a DSSE envelope over an in-toto Statement, as a layer
 *   of type `application/vnd.dsse.envelope.v1+json`; tagged `sha256-<hex>.att`;
 * - an SPDX SBOM attached as an OCI 1.1 referrer (`subject` set, `artifactType`
 *   `application/spdx+json`, empty config), as `oras attach` writes it.
 */
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { Readable } from 'node:stream';
import { sha256Digest } from '../../lib/oci/digest.js';
import { REF_NAME, type Descriptor } from '../../lib/oci/descriptor.js';
import type { OciLayout } from '../../lib/oci/layout.js';
import type { Storage } from '../../lib/oci/store.js';
import type { Repository } from '../../lib/registry/repository.js';

export const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';

export interface Blob {
  desc: Descriptor;
  data: Buffer;
}

export interface Artifact {
  /** The manifest's descriptor and bytes. */
  manifest: Blob;
  blobs: Blob[];
}

export interface EcKey {
  privateKey: KeyObject;
  publicPem: string;
}

/** An ECDSA P-256 key pair, as `cosign generate-key-pair` makes (its `cosign.pub` is this SPKI PEM). */
export function ecKey(): EcKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

function blob(data: Buffer, mediaType: string, annotations?: Record<string, string>): Blob {
  return { desc: { mediaType, digest: sha256Digest(data), size: data.length, ...(annotations ? { annotations } : {}) }, data };
}

function manifest(doc: Record<string, unknown>, blobs: Blob[]): Artifact {
  return { manifest: blob(Buffer.from(JSON.stringify(doc)), OCI_MANIFEST), blobs };
}

/** cosign's config for a signature or attestation manifest: no platform, one diff_id per layer. */
function cosignConfig(layers: Blob[]): Blob {
  return blob(
    Buffer.from(
      JSON.stringify({
        architecture: '',
        config: {},
        created: '0001-01-01T00:00:00Z',
        history: [{ created: '0001-01-01T00:00:00Z' }],
        os: '',
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.desc.digest) },
      }),
    ),
    OCI_CONFIG,
  );
}

/** The simple-signing payload `cosign sign` signs: it names the image digest (`named`, default `digest`). */
export function simpleSigningPayload(dockerReference: string, named: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': dockerReference }, image: { 'docker-manifest-digest': named }, type: 'cosign container image signature' },
      optional: null,
    }),
  );
}

/**
 * A cosign signature manifest for `digest`, signed by `key`; `names` puts another digest in the
 * payload (a signature lifted from another image).
 */
export function cosignSignature(dockerReference: string, digest: string, key: EcKey, names: string = digest): Artifact {
  const payload = simpleSigningPayload(dockerReference, names);
  const signature = sign('sha256', payload, key.privateKey).toString('base64');
  const layer = blob(payload, SIMPLE_SIGNING, { [SIGNATURE_ANNOTATION]: signature });
  const config = cosignConfig([layer]);
  return manifest({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: config.desc, layers: [layer.desc] }, [config, layer]);
}

/** DSSE pre-authentication encoding (DSSE v1.0 `protocol.md`). */
function pae(type: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`DSSEv1 ${Buffer.byteLength(type)} ${type} ${body.length} `), body]);
}

/** A cosign attestation (`cosign attest --type slsaprovenance`): a signed in-toto Statement about `digest`. */
export function cosignAttestation(name: string, digest: string, key: EcKey): Artifact {
  const statement = Buffer.from(
    JSON.stringify({
      _type: 'https://in-toto.io/Statement/v0.1',
      predicateType: 'https://slsa.dev/provenance/v0.2',
      subject: [{ name, digest: { sha256: digest.slice('sha256:'.length) } }],
      predicate: { builder: { id: 'https://ci.example.com/shore' }, buildType: 'https://example.com/seabag-test' },
    }),
  );
  const type = 'application/vnd.in-toto+json';
  const envelope = Buffer.from(JSON.stringify({ payloadType: type, payload: statement.toString('base64'), signatures: [{ keyid: '', sig: sign('sha256', pae(type, statement), key.privateKey).toString('base64') }] }));
  const layer = blob(envelope, 'application/vnd.dsse.envelope.v1+json', { [SIGNATURE_ANNOTATION]: '', predicateType: 'https://slsa.dev/provenance/v0.2' });
  const config = cosignConfig([layer]);
  return manifest({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: config.desc, layers: [layer.desc] }, [config, layer]);
}

/** An SPDX 2.3 SBOM of `name`, attached to `subject` as an OCI 1.1 referrer. */
export function spdxReferrer(name: string, subject: Descriptor): Artifact {
  const sbom = blob(
    Buffer.from(
      JSON.stringify({
        spdxVersion: 'SPDX-2.3',
        dataLicense: 'CC0-1.0',
        SPDXID: 'SPDXRef-DOCUMENT',
        name,
        documentNamespace: `https://example.com/spdx/${subject.digest}`,
        creationInfo: { created: '2026-01-01T00:00:00Z', creators: ['Tool: seabag-test'] },
        packages: [{ SPDXID: 'SPDXRef-busybox', name: 'busybox', versionInfo: '1.36.1', downloadLocation: 'NOASSERTION' }],
      }),
    ),
    'application/spdx+json',
    { 'org.opencontainers.image.title': 'sbom.spdx.json' },
  );
  const empty = blob(Buffer.from('{}'), OCI_EMPTY);
  return manifest(
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: 'application/spdx+json',
      config: empty.desc,
      layers: [sbom.desc],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
    },
    [empty, sbom],
  );
}

/**
 * A referrer of a kind nobody knows, written oddly on purpose (extra fields, spacing, key order):
 * carried byte for byte, it keeps its digest; re-serialized, it would not.
 */
export function unknownReferrer(subject: Descriptor): Artifact {
  const data = blob(Buffer.from([0, 1, 2, 3, 254, 255, ...Buffer.from(' opaque vendor payload\n')]), 'application/vnd.example.mystery.v7');
  const empty = blob(Buffer.from('{}'), OCI_EMPTY);
  const text = `{ "schemaVersion" : 2,\n  "mediaType":"${OCI_MANIFEST}", "x-vendor": {"z": 1, "a": [true, null]},\n  "artifactType": "application/vnd.example.mystery.v7+json",\n  "config": ${JSON.stringify(empty.desc)},\n  "layers": [${JSON.stringify(data.desc)}],\n  "subject": {"digest": "${subject.digest}", "size": ${subject.size}, "mediaType": "${subject.mediaType}"} }\n`;
  return { manifest: blob(Buffer.from(text), OCI_MANIFEST), blobs: [empty, data] };
}

async function put(store: Storage, b: Blob): Promise<void> {
  await store.push({ mediaType: b.desc.mediaType, digest: b.desc.digest, size: b.desc.size }, async () => Readable.from([b.data]));
}

/** Pushes an artifact's blobs then its manifest into a registry repository, tagged when `tag` is given. */
export async function pushToRegistry(repo: Repository, artifact: Artifact, tag?: string): Promise<void> {
  for (const b of artifact.blobs) await put(repo, b);
  await repo.putManifest(tag ?? artifact.manifest.desc.digest, artifact.manifest.data, artifact.manifest.desc.mediaType);
}

/** Writes an artifact into an OCI layout and lists it in `index.json` (under `tag` as `ref.name`, or untagged). */
export async function addToLayout(layout: OciLayout, artifact: Artifact, tag?: string): Promise<void> {
  for (const b of [...artifact.blobs, artifact.manifest]) await put(layout, b);
  const d = artifact.manifest.desc;
  await layout.updateIndex((index) => ({
    ...index,
    manifests: [...index.manifests, { mediaType: d.mediaType, digest: d.digest, size: d.size, ...(tag === undefined ? {} : { annotations: { [REF_NAME]: tag } }) }],
  }));
}

/** cosign's tag for a digest. */
export function tagFor(digest: string, suffix: 'sig' | 'att' | 'sbom'): string {
  return `sha256-${digest.slice('sha256:'.length)}.${suffix}`;
}
