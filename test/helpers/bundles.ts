/**
 * Taking bundles apart and putting them back together, for tests that need a bundle that is
 * wrong in one precise way: the result is a well-formed archive, so what is tested is the check
 * the change is aimed at, not the archive reader.
 */
import { readFile } from 'node:fs/promises';
import { sha256Digest } from '../../lib/oci/digest.js';
import type { Descriptor } from '../../lib/oci/descriptor.js';
import { FileSource } from '../../lib/bundle/source.js';
import { scanTar } from '../../lib/bundle/tar.js';
import { writeBundle, type BundleEntry } from '../../lib/bundle/writer.js';
import { DSSE_ENVELOPE, EMPTY_DIGEST, OCI_EMPTY, OCI_MANIFEST, SEABAG_SIGNATURE } from '../../lib/oci/media-types.js';

export interface Unpacked {
  /** Entry names in order, with their bytes (folders have none). */
  entries: { name: string; data?: Buffer; dir?: boolean }[];
  index: { schemaVersion: 2; mediaType?: string; manifests: (Descriptor & { artifactType?: string })[] };
}

export async function unpackBundle(path: string): Promise<Unpacked> {
  const source = await FileSource.open(path, [path]);
  try {
    const list = await scanTar(source, { extendedHeaders: false });
    const entries: Unpacked['entries'] = [];
    for (const e of list) {
      if (e.type === 'directory') entries.push({ name: e.name, dir: true });
      else entries.push({ name: e.name, data: await source.read(e.dataOffset, e.size) });
    }
    const index = JSON.parse((entries.find((e) => e.name === 'index.json')?.data ?? Buffer.from('{}')).toString()) as Unpacked['index'];
    return { entries, index };
  } finally {
    await source.close();
  }
}

/** Writes entries back (index.json from `index`). */
export async function packBundle(u: Unpacked, path: string): Promise<void> {
  const out: BundleEntry[] = u.entries.map((e) =>
    e.dir === true ? { name: e.name, type: 'directory' } : { name: e.name, data: e.name === 'index.json' ? Buffer.from(JSON.stringify(u.index)) : (e.data as Buffer) },
  );
  await writeBundle(path, out);
}

export function addBlob(u: Unpacked, data: Buffer, mediaType: string): Descriptor {
  const desc: Descriptor = { mediaType, digest: sha256Digest(data), size: data.length };
  const name = `blobs/sha256/${desc.digest.slice(7)}`;
  if (!u.entries.some((e) => e.name === name)) u.entries.push({ name, data });
  return desc;
}

export function blob(u: Unpacked, digest: string): Buffer {
  const found = u.entries.find((e) => e.name === `blobs/sha256/${digest.slice(7)}`)?.data;
  if (found === undefined) throw new Error(`no blob ${digest}`);
  return found;
}

/** The release manifest's descriptor. */
export function releaseOf(u: Unpacked): Descriptor {
  const d = u.index.manifests.find((m) => m.artifactType === 'application/vnd.seabag.release.v1+json');
  if (d === undefined) throw new Error('no release');
  return d;
}

/** The DSSE envelope of the (first) signature artifact, or undefined. */
export function envelopeOf(u: Unpacked): Buffer | undefined {
  const sig = u.index.manifests.find((m) => m.artifactType === SEABAG_SIGNATURE);
  if (sig === undefined) return undefined;
  const manifest = JSON.parse(blob(u, sig.digest).toString()) as { layers: Descriptor[] };
  return blob(u, (manifest.layers[0] as Descriptor).digest);
}

/**
 * Writes `bundle` to `out` with its signed statement swapped under the same signature: the
 * statement claims release `version` instead, and the signature still is the one made over the
 * original (so no check but the signature's can refuse it).
 */
export async function swapSignedPayload(bundle: string, out: string, version = '9.9.9'): Promise<void> {
  const u = await unpackBundle(bundle);
  const envelope = JSON.parse((envelopeOf(u) as Buffer).toString()) as { payload: string };
  const statement = JSON.parse(Buffer.from(envelope.payload, 'base64').toString()) as { predicate: { version: string } };
  statement.predicate.version = version;
  envelope.payload = Buffer.from(JSON.stringify(statement)).toString('base64');
  replaceSignature(u, Buffer.from(JSON.stringify(envelope)));
  await packBundle(u, out);
}

/** Replaces the signature artifact with one carrying `envelope` (none when undefined), subject `subject`. */
export function replaceSignature(u: Unpacked, envelope: Buffer | undefined, subject: Descriptor = releaseOf(u)): void {
  u.index.manifests = u.index.manifests.filter((m) => m.artifactType !== SEABAG_SIGNATURE);
  if (envelope === undefined) return;
  const env = addBlob(u, envelope, DSSE_ENVELOPE);
  const empty = addBlob(u, Buffer.from('{}'), OCI_EMPTY);
  if (empty.digest !== EMPTY_DIGEST) throw new Error('empty');
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: SEABAG_SIGNATURE,
      config: empty,
      layers: [env],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    }),
  );
  const desc = addBlob(u, manifest, OCI_MANIFEST);
  u.index.manifests.push({ ...desc, artifactType: SEABAG_SIGNATURE });
}

/** Flips one byte of a file at `offset`. */
export async function flipByte(path: string, offset: number): Promise<void> {
  const { open } = await import('node:fs/promises');
  const handle = await open(path, 'r+');
  try {
    const buf = Buffer.alloc(1);
    await handle.read(buf, 0, 1, offset);
    buf[0] = (buf[0] ?? 0) ^ 0x01;
    await handle.write(buf, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

export async function readBytes(path: string): Promise<Buffer> {
  return readFile(path);
}

/**
 * Rewrites the signed release itself and signs it again with `key`: for content a trusted signer
 * got wrong (the attack is then on everything after the signature check).
 */
export async function resign(u: Unpacked, keyPath: string, change: (release: Record<string, unknown>) => void): Promise<void> {
  const { parsePrivateKey, signEnvelope, IN_TOTO_PAYLOAD_TYPE, releaseStatement } = await import('../../lib/index.js');
  const { canonicalBytes } = await import('../../lib/util/canonical.js');
  const releaseDesc = releaseOf(u);
  const manifest = JSON.parse(blob(u, releaseDesc.digest).toString()) as { config: Descriptor; layers: Descriptor[] } & Record<string, unknown>;
  const release = JSON.parse(blob(u, manifest.config.digest).toString()) as Record<string, unknown>;
  change(release);
  const config = addBlob(u, canonicalBytes(release), manifest.config.mediaType);
  const newManifest = addBlob(u, canonicalBytes({ ...manifest, config }), releaseDesc.mediaType);
  u.index.manifests = u.index.manifests.map((m) => (m.digest === releaseDesc.digest ? { ...m, digest: newManifest.digest, size: newManifest.size } : m));
  const key = parsePrivateKey(await readFile(keyPath));
  const statement = canonicalBytes(releaseStatement(release as never, newManifest));
  replaceSignature(u, canonicalBytes(signEnvelope(statement, IN_TOTO_PAYLOAD_TYPE, [key])), newManifest);
}

/** A deep copy to edit (structuredClone would turn the Buffers into plain Uint8Arrays). */
export function cloneUnpacked(u: Unpacked): Unpacked {
  return {
    entries: u.entries.map((e) => ({ ...e, ...(e.data === undefined ? {} : { data: Buffer.from(e.data) }) })),
    index: JSON.parse(JSON.stringify(u.index)) as Unpacked['index'],
  };
}
