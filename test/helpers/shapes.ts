/**
 * Hand-written image shapes in OCI layouts (nested indexes, buildx attestation manifests,
 * foreign layers, zstd layers, artifacts), and pushing a layout's graph to a registry through
 * the distribution API where skopeo cannot carry the shape.
 */
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import tar from 'tar-stream';
import { sha256Digest } from '../../lib/oci/digest.js';
import type { Descriptor, Platform } from '../../lib/oci/descriptor.js';
import { copyGraph } from '../../lib/oci/graph.js';
import { OciLayout } from '../../lib/oci/layout.js';
import { OCI_CONFIG, OCI_INDEX, OCI_MANIFEST } from '../../lib/oci/media-types.js';
import { RegistryClient } from '../../lib/registry/client.js';

/** Stores bytes in a layout under their digest. */
export async function putBytes(layoutDir: string, bytes: Buffer, mediaType: string): Promise<Descriptor> {
  const layout = await OciLayout.open(layoutDir, { create: true });
  const desc: Descriptor = { mediaType, digest: sha256Digest(bytes), size: bytes.length };
  await layout.push(desc, async () => Readable.from([bytes]));
  return desc;
}

export async function putJSON(layoutDir: string, doc: unknown, mediaType: string): Promise<Descriptor> {
  return putBytes(layoutDir, Buffer.from(JSON.stringify(doc)), mediaType);
}

/** A tar of small files. */
export async function tarOf(files: Record<string, string>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name, mtime: new Date(0), mode: 0o644 }, content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export async function tarGz(files: Record<string, string>): Promise<Buffer> {
  return gzipSync(await tarOf(files));
}

/** zstd-compressed bytes, by the zstd tool. */
export async function zstd(bytes: Buffer): Promise<Buffer> {
  const r = await execa('zstd', ['-q', '-c', '--no-check'], { input: bytes, encoding: 'buffer' });
  return Buffer.from(r.stdout);
}

/** An image manifest over a config document and layers already in the layout. */
export async function manifestOf(layoutDir: string, config: Record<string, unknown>, layers: Descriptor[], extra: Record<string, unknown> = {}, mediaType = OCI_MANIFEST, configType = OCI_CONFIG): Promise<Descriptor> {
  const cfg = await putJSON(layoutDir, config, configType);
  return putJSON(layoutDir, { schemaVersion: 2, mediaType, config: cfg, layers, ...extra }, mediaType);
}

/** An index entry with a platform. */
export function entry(desc: Descriptor, platform?: Platform, annotations?: Record<string, string>): Descriptor {
  return { mediaType: desc.mediaType, digest: desc.digest, size: desc.size, ...(platform ? { platform } : {}), ...(annotations ? { annotations } : {}) };
}

export async function indexOf(layoutDir: string, manifests: Descriptor[], extra: Record<string, unknown> = {}, mediaType = OCI_INDEX): Promise<Descriptor> {
  return putJSON(layoutDir, { schemaVersion: 2, mediaType, manifests, ...extra }, mediaType);
}

/**
 * A buildx-style attestation manifest for `subject`: an in-toto statement layer, a config of
 * platform unknown/unknown, and the index entry buildx writes for it.
 */
export async function attestationFor(layoutDir: string, subject: Descriptor, name: string): Promise<Descriptor> {
  const statement = Buffer.from(
    JSON.stringify({
      _type: 'https://in-toto.io/Statement/v0.1',
      predicateType: 'https://slsa.dev/provenance/v0.2',
      subject: [{ name, digest: { sha256: subject.digest.slice(7) } }],
      predicate: { builder: { id: 'seabag-test' } },
    }),
  );
  const layer = await putBytes(layoutDir, statement, 'application/vnd.in-toto+json');
  const manifest = await manifestOf(
    layoutDir,
    { architecture: 'unknown', os: 'unknown', config: {}, rootfs: { type: 'layers', diff_ids: [layer.digest] } },
    [{ ...layer, annotations: { 'in-toto.io/predicate-type': 'https://slsa.dev/provenance/v0.2' } }],
  );
  return entry(manifest, { architecture: 'unknown', os: 'unknown' }, { 'vnd.docker.reference.digest': subject.digest, 'vnd.docker.reference.type': 'attestation-manifest' });
}

/** Pushes a layout's graph to `host/repo` through the distribution API (children first), tagging the root. */
export async function pushGraph(layoutDir: string, root: Descriptor, host: string, repo: string, tag?: string): Promise<void> {
  const layout = await OciLayout.open(layoutDir);
  const client = await RegistryClient.create(host);
  try {
    const repository = client.repository(repo);
    await copyGraph(layout, repository, root);
    if (tag !== undefined) await repository.putManifest(tag, await readFile(layout.path(root)), root.mediaType);
  } finally {
    client.close();
  }
}
