/**
 * `npm run demo`: the whole life of a release, end to end, on this machine.
 *
 * Ashore: make the example's images, a throwaway signing key and trust root, build and sign
 * awareness 1.4.0 and 1.5.0, verify them as CI would. Aboard: a throwaway registry on loopback
 * stands in for the ship's, 1.4.0 is imported and applied, 1.5.0 is imported (staged, not
 * running), applied, and rolled back. Every step runs the real `bundle` program and shows it.
 */
import { cp, mkdir, rm } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { makeExampleImages } from '../test/helpers/example.js';
import { startRegistry } from '../test/helpers/registry.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = join(root, '.demo');
const bin = join(root, 'dist', 'seabag.mjs');
const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function say(text: string): void {
  process.stdout.write(`\n${bold(text)}\n`);
}

async function bundle(args: string[], env: Record<string, string> = {}): Promise<void> {
  const shown = args.map((a) => (a.startsWith(work) ? relative(process.cwd(), a) || '.' : a)).join(' ');
  process.stdout.write(`$ bundle ${shown}\n`);
  const result = await execa('node', [bin, ...args, '--no-progress'], { env, reject: false, all: true });
  process.stdout.write(`${(result.all ?? '').replace(/^/gm, '  ')}\n`);
  if (result.exitCode !== 0) throw new Error(`bundle ${args[0]} failed with exit status ${result.exitCode}`);
}

async function main(): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const example = join(work, 'awareness');
  await cp(join(root, 'examples', 'awareness'), example, { recursive: true });

  say('Ashore 1/4 — the images of the example release, built with umoci from busybox');
  const images = await makeExampleImages(example);
  process.stdout.write(`  fusion 1.4.0 and 1.5.0, toolbox 1.0.0 and 1.0.1, radar and camera-broker for amd64 and arm64, in ${relative(process.cwd(), images)}\n`);

  say('Ashore 2/4 — a throwaway root key and release key, and the trust root vessels pin');
  await bundle(['keygen', join(work, 'root.key')]);
  await bundle(['keygen', join(work, 'release.key')]);
  await bundle(['trust', 'init', '--root-key', join(work, 'root.key.pub'), '--release-key', join(work, 'release.key.pub'), '--sign', join(work, 'root.key'), '-o', join(work, 'trust.json')]);

  say('Ashore 3/4 — build and sign both releases (one file each; the same inputs give the same bytes)');
  const v1 = join(work, 'awareness-1.4.0.bundle');
  const v2 = join(work, 'awareness-1.5.0.bundle');
  await bundle(['build', join(example, '1.4.0', 'release.yaml'), '-o', v1, '--sign', join(work, 'release.key')]);
  await bundle(['build', join(example, '1.5.0', 'release.yaml'), '-o', v2, '--sign', join(work, 'release.key')]);
  await bundle(['inspect', v2]);

  say('Ashore 4/4 — CI verifies every byte and every signature, offline');
  await bundle(['verify', v1, '--trust', join(work, 'trust.json')]);
  await bundle(['verify', v2, '--trust', join(work, 'trust.json')]);

  say('Aboard — a throwaway registry on loopback stands in for the ship\'s (localhost:32000 on MicroK8s)');
  const registry = await startRegistry({ storageDir: join(work, 'registry') });
  try {
    const env = { SEABAG_STATE_DIR: join(work, 'vessel-state'), SEABAG_REGISTRY: registry.host, SEABAG_TARGET: 'class-a' };
    process.stdout.write(`  registry ${registry.host}; vessel state in ${relative(process.cwd(), env.SEABAG_STATE_DIR)}; vessel class class-a\n`);

    say('Aboard 1/5 — the crew imports 1.4.0 from the stick, pinning the trust root; the captain applies it');
    await bundle(['import', v1, '--trust', join(work, 'trust.json')], env);
    await bundle(['apply', 'awareness@1.4.0', '--yes'], env);
    await bundle(['status'], env);

    say('Aboard 2/5 — 1.5.0 arrives and is imported: staged, while 1.4.0 keeps running (no workload tag moved)');
    await bundle(['import', v2], env);
    await bundle(['status'], env);

    say('Aboard 3/5 — the captain looks before switching to 1.5.0 (at a terminal, apply shows this and asks Proceed? [y/N])');
    await bundle(['apply', 'awareness@1.5.0', '--dry-run'], env);
    await bundle(['apply', 'awareness@1.5.0', '--yes'], env);
    await bundle(['status'], env);

    say('Aboard 4/5 — something is wrong with 1.5.0 at sea: roll back, no shore needed');
    await bundle(['rollback', 'awareness', '--yes'], env);
    await bundle(['status'], env);

    say('Aboard 5/5 — what the vessel holds, to send ashore for a small delta next time');
    await bundle(['inventory', '-o', join(work, 'inventory.json')], env);
  } finally {
    await registry.stop();
    // Its config and log (the storage stays in the demo's folder with the rest).
    await rm(dirname(registry.configPath), { recursive: true, force: true });
  }
  say(`Done. The bundles, keys and vessel state are in ${relative(process.cwd(), work) || work}; npm test runs the test suite.`);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
