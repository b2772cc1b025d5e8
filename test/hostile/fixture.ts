/**
 * What the hostile suites attack: the example release 1.4.0 and 1.5.0, signed, and a vessel that
 * runs 1.4.0 with 1.5.0 staged.
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { parseImageManifest } from '../../lib/oci/descriptor.js';
import { runCli } from '../helpers/cli.js';
import { buildImage } from '../helpers/images.js';
import { EPOCH, exampleCopy } from '../helpers/example.js';
import { startVessel, type TestVessel } from '../helpers/vessel.js';

export interface Fixture {
  work: string;
  example: string;
  trust: string;
  rootKey: string;
  releaseKey: string;
  v1: string;
  v2: string;
  /** 1.6.0: like 1.5.0, but fusion carries a layer of its own no other release has. */
  v3: string;
  uniqueLayer: string;
  cleanup(): Promise<void>;
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<void> {
  const r = await runCli(args, { SOURCE_DATE_EPOCH: EPOCH, ...env });
  if (r.code !== 0) throw new Error(`bundle ${args.join(' ')}: ${r.stdout}${r.stderr}`);
}

export async function makeFixture(): Promise<Fixture> {
  const work = await mkdtemp(join(tmpdir(), 'seabag-hostile-'));
  const example = await exampleCopy(work);
  const rootKey = join(work, 'root.key');
  const releaseKey = join(work, 'release.key');
  await cli(['keygen', rootKey]);
  await cli(['keygen', releaseKey]);
  const trust = join(work, 'trust.json');
  await cli(['trust', 'init', '--root-key', `${rootKey}.pub`, '--release-key', `${releaseKey}.pub`, '--sign', rootKey, '-o', trust]);
  const v1 = join(work, 'awareness-1.4.0.bundle');
  const v2 = join(work, 'awareness-1.5.0.bundle');
  await cli(['build', join(example, '1.4.0', 'release.yaml'), '-o', v1, '--sign', releaseKey, '--no-progress']);
  await cli(['build', join(example, '1.5.0', 'release.yaml'), '-o', v2, '--sign', releaseKey, '--no-progress']);
  const layout = join(example, 'build', 'images');
  const fusion16 = await buildImage(layout, 'fusion-1.6.0', {
    from: 'fusion-1.5.0',
    files: { 'etc/seabag-release': 'awareness fusion 1.6.0\n', 'opt/model.bin': randomBytes(96 * 1024).toString('base64') },
  });
  const uniqueLayer = parseImageManifest(await readFile(join(layout, 'blobs', 'sha256', fusion16.digest.slice(7))), fusion16).layers.at(-1)?.digest as string;
  await cp(join(example, '1.5.0'), join(example, '1.6.0'), { recursive: true });
  for (const file of [join(example, '1.6.0', 'release.yaml'), join(example, '1.6.0', 'k8s', 'fusion.yaml')]) {
    await writeFile(file, (await readFile(file, 'utf8')).replace(/version: 1\.5\.0/, 'version: 1.6.0').replace(/fusion:1\.5\.0/g, 'fusion:1.6.0').replace(/fusion-1\.5\.0/g, 'fusion-1.6.0'));
  }
  const v3 = join(work, 'awareness-1.6.0.bundle');
  await cli(['build', join(example, '1.6.0', 'release.yaml'), '-o', v3, '--sign', releaseKey, '--no-progress']);
  return { work, example, trust, rootKey, releaseKey, v1, v2, v3, uniqueLayer, cleanup: () => rm(work, { recursive: true, force: true }) };
}

/** Builds a bundle from a spec (SOURCE_DATE_EPOCH fixed), with whatever flags are given. */
export async function buildWith(spec: string, out: string, extra: string[] = [], env: Record<string, string> = {}): Promise<string> {
  await cli(['build', spec, '-o', out, '--no-progress', ...extra], env);
  return out;
}

/** A vessel running 1.4.0, with 1.5.0 staged. */
export async function busyVessel(t: ExecutionContext, f: Fixture): Promise<TestVessel> {
  const v = await startVessel(t);
  for (const args of [
    ['import', f.v1, '--trust', f.trust, '--target', 'class-a'],
    ['apply', 'awareness@1.4.0'],
    ['import', f.v2],
  ]) {
    const r = await v.run(args);
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stdout}${r.stderr}`);
  }
  return v;
}
