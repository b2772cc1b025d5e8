/**
 * The example release (examples/awareness) with its images: a copy of the example in a folder of
 * the caller's, and the images its specs read, built with umoci into build/images.
 */
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli } from './cli.js';
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

/**
 * The example, signed: a copy in `work`, a root key and a release key, the trust root they make,
 * and both versions built (reproducibly, at EPOCH) as `awareness-1.4.0.bundle` and
 * `awareness-1.5.0.bundle`.
 */
export async function exampleBundles(work: string): Promise<{ example: string; trust: string; releaseKey: string; v1: string; v2: string }> {
  const example = await exampleCopy(work);
  const cli = async (args: string[]): Promise<void> => {
    const r = await runCli(args, { SOURCE_DATE_EPOCH: EPOCH });
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stdout}${r.stderr}`);
  };
  const releaseKey = join(work, 'release.key');
  await cli(['keygen', join(work, 'root.key')]);
  await cli(['keygen', releaseKey]);
  const trust = join(work, 'trust.json');
  await cli(['trust', 'init', '--root-key', join(work, 'root.key.pub'), '--release-key', `${releaseKey}.pub`, '--sign', join(work, 'root.key'), '-o', trust]);
  const v1 = join(work, 'awareness-1.4.0.bundle');
  const v2 = join(work, 'awareness-1.5.0.bundle');
  await cli(['build', join(example, '1.4.0', 'release.yaml'), '-o', v1, '--sign', releaseKey, '--no-progress']);
  await cli(['build', join(example, '1.5.0', 'release.yaml'), '-o', v2, '--sign', releaseKey, '--no-progress']);
  return { example, trust, releaseKey, v1, v2 };
}
