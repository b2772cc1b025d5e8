/**
 * The release's manifests as a Flux OCI artifact (fluxcd RFC-0003 media types, as `flux push
 * artifact` writes them): an OCI image manifest, config `application/vnd.cncf.flux.config.v1+json`,
 * one `application/vnd.cncf.flux.content.v1.tar+gzip` layer holding the YAML. A Flux
 * `OCIRepository` on the vessel can follow its `current` tag.
 */
import { gzipSync } from 'node:zlib';
import { SeabagError } from '../errors.js';
import { tarStream } from '../util/lazy.js';
import { sha256Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/descriptor.js';
import { FLUX_CONFIG, FLUX_CONTENT, OCI_MANIFEST } from '../oci/media-types.js';
import { canonicalBytes } from '../util/canonical.js';

export interface ManifestFile {
  /** Path inside the artifact: `k8s/fusion.yaml`, `devices/bow-camera.yaml`. */
  path: string;
  text: string;
}

export interface FluxArtifact {
  manifest: { desc: Descriptor; data: Buffer };
  blobs: { desc: Descriptor; data: Buffer }[];
}

/**
 * A name taken from a release (a manifest layer's title) as a relative path that stays in its
 * folder: no absolute path, no `..`, `.` or empty segment, no backslash or control character.
 *
 * @throws E_ARCHIVE_UNSAFE
 */
export function safeReleasePath(name: string): string {
  const segments = name.split('/');
  const bad =
    name === '' ||
    name.length > 255 ||
    name.startsWith('/') ||
    /[\\\u0000-\u001f\u007f]/.test(name) ||
    segments.some((seg) => seg === '' || seg === '.' || seg === '..');
  if (bad) {
    throw new SeabagError('E_ARCHIVE_UNSAFE', `the release names a file ${JSON.stringify(name)}: not a relative path inside its folder`, { details: { name } });
  }
  return name;
}

/** A deterministic tar of the files (mtime 0, root-owned, 0644). */
async function tarFiles(files: readonly ManifestFile[]): Promise<Buffer> {
  for (const f of files) safeReleasePath(f.path);
  const pack = tarStream().pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack as unknown as AsyncIterable<Buffer>) chunks.push(chunk);
  })();
  for (const f of files) {
    const data = Buffer.from(f.text);
    await new Promise<void>((resolve, reject) =>
      pack.entry({ name: f.path, size: data.length, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '' }, data, (err) => (err ? reject(err) : resolve())),
    );
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/**
 * Makes the artifact. Same files, same bytes: gzip's header carries no time (Node writes mtime 0).
 */
export async function fluxArtifact(files: readonly ManifestFile[], annotations: Record<string, string>): Promise<FluxArtifact> {
  const content = gzipSync(await tarFiles(files), { level: 9 });
  const config = Buffer.from('{}');
  const configDesc: Descriptor = { mediaType: FLUX_CONFIG, digest: sha256Digest(config), size: config.length };
  const layerDesc: Descriptor = { mediaType: FLUX_CONTENT, digest: sha256Digest(content), size: content.length };
  const manifest = canonicalBytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDesc, layers: [layerDesc], annotations });
  return {
    manifest: { desc: { mediaType: OCI_MANIFEST, digest: sha256Digest(manifest), size: manifest.length }, data: manifest },
    blobs: [
      { desc: configDesc, data: config },
      { desc: layerDesc, data: content },
    ],
  };
}
