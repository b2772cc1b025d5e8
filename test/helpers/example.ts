/**
 * The example release (examples/awareness) with its images: a copy of the example in a folder of
 * the caller's, and the images its specs read, built with umoci into build/images.
 */
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildImage, buildIndex } from './images.js';

export const EXAMPLE_DIR = fileURLToPath(new URL('../../examples/awareness', import.meta.url));

/** SOURCE_DATE_EPOCH the tests build with, so bundles reproduce. */
export const EPOCH = '1790000000';

/**
 * Builds the example's images into `dir/build/images`:
 * fusion 1.4.0 and 1.5.0, toolbox 1.0.0 and 1.0.1 (each second one adds a small layer), and the multi-arch
 * (amd64 + arm64) radar 2.0.0 and camera-broker 2.1.0.
 */
export async function makeExampleImages(dir: string): Promise<string> {
  const layout = join(dir, 'build', 'images');
  const release = (text: string): Record<string, string> => ({ 'etc/seabag-release': `${text}\n` });
  await buildImage(layout, 'fusion-1.4.0', { files: release('awareness fusion 1.4.0') });
  await buildImage(layout, 'fusion-1.5.0', { from: 'fusion-1.4.0', files: release('awareness fusion 1.5.0') });
  await buildImage(layout, 'toolbox-1.0.0', { files: release('toolbox 1.0.0') });
  await buildImage(layout, 'toolbox-1.0.1', { from: 'toolbox-1.0.0', files: release('toolbox 1.0.1') });
  for (const [name, version] of [
    ['radar', '2.0.0'],
    ['camera-broker', '2.1.0'],
  ] as const) {
    await buildImage(layout, `${name}-amd64`, { files: release(`${name} ${version} amd64`) });
    await buildImage(layout, `${name}-arm64`, { files: release(`${name} ${version} arm64`), architecture: 'arm64' });
    await buildIndex(layout, `${name}-${version}`, [
      { tag: `${name}-amd64`, architecture: 'amd64' },
      { tag: `${name}-arm64`, architecture: 'arm64' },
    ]);
  }
  return layout;
}

/** Copies the example into `dir` and builds its images there; returns the copy's folder. */
export async function exampleCopy(dir: string): Promise<string> {
  const target = join(dir, 'awareness');
  await cp(EXAMPLE_DIR, target, { recursive: true });
  await makeExampleImages(target);
  return target;
}
