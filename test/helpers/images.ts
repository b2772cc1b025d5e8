/**
 * Real images, built with umoci from Debian's busybox-static: a base image, images that add a
 * small layer to it, multi-arch indexes, and images with large random layers for benchmarks.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import tar from 'tar-stream';
import { sha256Digest } from '../../lib/oci/digest.js';
import { REF_NAME, type Descriptor } from '../../lib/oci/descriptor.js';
import { OciLayout } from '../../lib/oci/layout.js';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST } from '../../lib/oci/media-types.js';

export const BUSYBOX = '/bin/busybox';

export interface ImageSpec {
  /** Files to add in a new layer (path inside the image → content). */
  files?: Record<string, string>;
  /** Tag in the same layout to build on (default: a fresh busybox base). */
  from?: string;
  architecture?: string;
  /** Entrypoint (default: busybox cat /etc/seabag-release). */
  entrypoint?: string[];
}

async function umoci(...args: string[]): Promise<void> {
  await execa('umoci', args);
}

/** Makes (once per layout) the busybox base image, tagged `base`. */
async function ensureBase(layout: string): Promise<void> {
  const index = await (await OciLayout.open(layout, { create: true })).readIndex();
  if (index.manifests.some((m) => m.annotations?.[REF_NAME] === 'base')) return;
  const work = await mkdtemp(join(tmpdir(), 'seabag-umoci-'));
  try {
    await umoci('new', '--image', `${layout}:base`);
    await umoci('unpack', '--rootless', '--image', `${layout}:base`, join(work, 'bundle'));
    const rootfs = join(work, 'bundle', 'rootfs');
    await mkdir(join(rootfs, 'bin'), { recursive: true });
    await mkdir(join(rootfs, 'etc'), { recursive: true });
    await copyFile(BUSYBOX, join(rootfs, 'bin', 'busybox'));
    await symlink('busybox', join(rootfs, 'bin', 'sh'));
    await umoci('repack', '--no-history', '--image', `${layout}:base`, join(work, 'bundle'));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Builds `layout:tag`: the base (or `from`) plus one layer with `files`; returns its manifest
 * descriptor.
 */
export async function buildImage(layout: string, tag: string, spec: ImageSpec = {}): Promise<Descriptor> {
  await ensureBase(layout);
  const work = await mkdtemp(join(tmpdir(), 'seabag-umoci-'));
  try {
    const bundle = join(work, 'bundle');
    await umoci('unpack', '--rootless', '--image', `${layout}:${spec.from ?? 'base'}`, bundle);
    for (const [path, content] of Object.entries(spec.files ?? {})) {
      const target = join(bundle, 'rootfs', path);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, content);
    }
    await umoci('repack', '--no-history', '--image', `${layout}:${tag}`, bundle);
    const entrypoint = spec.entrypoint ?? ['/bin/busybox', 'cat', '/etc/seabag-release'];
    const args = ['config', '--no-history', '--image', `${layout}:${tag}`, '--os', 'linux', '--architecture', spec.architecture ?? 'amd64'];
    for (const e of entrypoint) args.push('--config.entrypoint', e);
    await umoci(...args);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return (await OciLayout.open(layout)).resolve(tag);
}

/** Writes an index over images already in the layout and tags it. */
export async function buildIndex(layout: string, tag: string, members: { tag: string; os?: string; architecture: string; variant?: string }[]): Promise<Descriptor> {
  const store = await OciLayout.open(layout);
  const manifests: Descriptor[] = [];
  for (const m of members) {
    const d = await store.resolve(m.tag);
    manifests.push({
      mediaType: d.mediaType,
      digest: d.digest,
      size: d.size,
      platform: { os: m.os ?? 'linux', architecture: m.architecture, ...(m.variant ? { variant: m.variant } : {}) },
    });
  }
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  const desc: Descriptor = { mediaType: OCI_INDEX, digest: sha256Digest(bytes), size: bytes.length };
  await store.push(desc, async () => Readable.from([bytes]));
  await store.tag(desc, tag);
  return desc;
}

/** A deterministic stream of pseudo-random bytes (sha256 in counter mode over a seed). */
export function pseudoRandom(seed: string, size: number): Readable {
  let produced = 0;
  let counter = 0;
  const block = 1024 * 1024;
  // One random megabyte, varied per block by a counter, keeps generation far faster than the work measured.
  const base = createHash('sha512').update(seed).digest();
  const pool = Buffer.alloc(block);
  for (let i = 0; i < block; i += base.length) base.copy(pool, i);
  return new Readable({
    read() {
      if (produced >= size) {
        this.push(null);
        return;
      }
      const n = Math.min(block, size - produced);
      const chunk = Buffer.from(pool.subarray(0, n));
      const stamp = createHash('sha256').update(`${seed}:${counter}`).digest();
      for (let i = 0; i < n; i += 4096) stamp.copy(chunk, i, 0, Math.min(32, n - i));
      counter += 1;
      produced += n;
      this.push(chunk);
    },
  });
}

/** Streams content of unknown digest into a layout, returning its descriptor. */
async function putBlob(layout: OciLayout, mediaType: string, source: Readable): Promise<Descriptor> {
  const tmp = join(layout.root, 'blobs', 'sha256', `.incoming-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(
    source,
    new Transform({
      transform(chunk: Buffer, _e, cb) {
        hash.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    }),
    createWriteStream(tmp),
  );
  const digest = `sha256:${hash.digest('hex')}` as const;
  await rename(tmp, layout.path({ digest }));
  return { mediaType, digest, size };
}

/**
 * An image whose layers are uncompressed tars each holding one file of pseudo-random bytes of the
 * given sizes: a real, valid image, big enough to measure with and quick to make. Layers made
 * with the same `layerSeeds` entry (and size) are the same blob, so images can share them.
 */
export async function buildRandomImage(layoutDir: string, tag: string, layerSizes: number[], seed = tag, layerSeeds: readonly string[] = []): Promise<Descriptor> {
  const layout = await OciLayout.open(layoutDir, { create: true });
  const layers: Descriptor[] = [];
  for (const [i, size] of layerSizes.entries()) {
    const pack = tar.pack();
    const entry = pack.entry({ name: `data/${layerSeeds[i] ?? `${seed}-${i}`}.bin`, size, mtime: new Date(0), mode: 0o644 }, (err) => {
      if (err) pack.destroy(err);
      else pack.finalize();
    });
    pseudoRandom(layerSeeds[i] ?? `${seed}/${i}`, size).pipe(entry);
    layers.push(await putBlob(layout, OCI_LAYER, Readable.from(pack)));
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    }),
  );
  const configDesc: Descriptor = { mediaType: OCI_CONFIG, digest: sha256Digest(config), size: config.length };
  await layout.push(configDesc, async () => Readable.from([config]));
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDesc, layers }));
  const desc: Descriptor = { mediaType: OCI_MANIFEST, digest: sha256Digest(manifest), size: manifest.length };
  await layout.push(desc, async () => Readable.from([manifest]));
  await layout.tag(desc, tag);
  return desc;
}
