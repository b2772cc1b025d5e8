import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { buildBundle } from '../../lib/bundle/build.js';
import { checkSplit, parseSize } from '../../lib/bundle/parts.js';
import { loadImageKey } from '../../lib/trust/cosign.js';
import { loadPrivateKey } from '../../lib/trust/keys.js';
import { loadRoot, type TrustRoot } from '../../lib/trust/root.js';
import { parsePlatformString } from '../../lib/oci/descriptor.js';
import { readSince } from '../../lib/bundle/since.js';
import { SeabagError } from '../../lib/errors.js';
import type { Command } from '../command.js';
import { flag, list, registryAccess, registryFlags, sourceDateEpoch, str } from '../options.js';
import { formatBytes, printJSON, shortDigest, writeLine } from '../render.js';

/** `--trust` takes root files, or folders of `N.root.json`; carried oldest first. */
async function rootsToCarry(paths: string[]): Promise<Buffer[]> {
  const found: { root: TrustRoot; bytes: Buffer }[] = [];
  for (const path of paths) {
    const s = await stat(path).catch(() => undefined);
    if (s?.isDirectory() === true) {
      for (const name of (await readdir(path)).filter((n) => /^\d+\.root\.json$/.test(n))) found.push(await loadRoot(join(path, name)));
    } else {
      found.push(await loadRoot(path));
    }
  }
  found.sort((a, b) => a.root.signed.version - b.root.signed.version);
  return found.map((f) => f.bytes);
}

/** A release that expires sooner than this after its build gets a warning. */
const EXPIRY_WARNING_DAYS = 30;

/** Every field of release.yaml, for `bundle build --help` (a test holds it to the schema). */
export const RELEASE_FIELDS = [
  'release.yaml, field by field (schema: schemas/release.schema.json):',
  '  apiVersion: seabag.dev/v1     always this',
  '  kind: Release                 always this',
  '  name: awareness               lower case; vessels hold it as seabag/awareness',
  '  version: 1.5.0                a version like 1.4.0 (semver); vessels refuse',
  '                                one lower than the newest they hold',
  '  targets: [class-a]            vessel classes that may import it; absent: any',
  '  platforms: [linux/arm64]      keep only these platforms of multi-platform',
  '                                images; absent: all',
  '  platformStrict: true          an image with none of the platforms fails the',
  '                                build (default: a warning, carried whole)',
  '  expires: 2027-06-01           a date or RFC 3339 time after which vessels',
  '                                refuse it; must be in the future',
  '  images:                       every image the release runs, at least one',
  '    - ref: shore.example.com/groke/fusion:1.5.0',
  '                                the name the manifests use; read from that',
  '                                registry unless from: says otherwise',
  '      from: oci:build/layout:fusion',
  '                                where to read it instead: oci:DIR[:REF],',
  '                                oci-archive:FILE[:REF], docker-archive:FILE,',
  '                                docker://REF (ref: stays the name)',
  '  imagePolicy:                  require a cosign signature on every image by',
  '    keys: [cosign.pub]          one of these public keys (PEM, P-256 or Ed25519)',
  '  manifests: [k8s/]             Kubernetes YAML files or folders; every image:',
  '                                in them must be one of images and is pinned',
  '                                to its digest',
  '  deviceProfiles: [devices/]    DeviceProfile files or folders, rendered into',
  '                                Akri Configurations',
  '  check: {command: [...], timeout: 120s}',
  '                                a health check signed into the release; a',
  '                                vessel runs it after apply only with',
  '                                --release-check, and switches back if it fails',
  'Paths are relative to release.yaml. Keys, manifests and device profiles must be',
  'inside its folder (no absolute path, no .., no symlink out; image sources from:',
  'may be anywhere), and each pinned manifest or rendered profile at most 4 MiB,',
  'what a bundle reader accepts. The time of the build is not recorded',
  '(set SOURCE_DATE_EPOCH to record one), so the same inputs give the same bytes.',
].join('\n');

export const build: Command = {
  command: 'build <spec>',
  path: ['build'],
  describe: 'build one signed bundle from a release spec (release.yaml)',
  builder: (y) =>
    registryFlags(
      y
        .positional('spec', { type: 'string', describe: 'the release spec (release.yaml)' })
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'bundle file to write (parts go beside it with --split)' })
        .option('sign', { type: 'string', array: true, describe: 'Ed25519 private key (PEM) to sign with; repeat for several signers' })
        .option('trust', { type: 'string', array: true, describe: 'trust root file, or folder of N.root.json, to carry for vessels on an older root' })
        .option('since', { type: 'string', describe: "build a delta: leave out what a vessel's inventory (or an older bundle) shows it has" })
        .option('split', { type: 'string', describe: 'write parts of at most SIZE bytes (500M, 4G, or fat32) and NAME.parts.json' })
        .option('platform', { type: 'string', array: true, describe: 'keep only OS/ARCH[/VARIANT] of multi-platform images, as containerd selects them (overrides the spec)' })
        .option('platform-strict', { type: 'boolean', describe: 'an image with none of the platforms fails the build (default: a warning, and the image is carried whole)' })
        .option('force', { type: 'boolean', default: false, describe: 'replace an existing output file' })
        .option('sync', { type: 'boolean', default: true, describe: 'fsync the bundle before it gets its name. --no-sync is for scratch builds only, UNSAFE for a stick: pulled or powered off too soon, it can hold a short or zeroed bundle' })
        .option('referrers', { type: 'boolean', default: true, describe: "carry image referrers: cosign signatures, attestations and SBOMs (.sig/.att/.sbom tags), OCI 1.1 referrers, buildx attestation manifests of the kept platforms (--no-referrers drops them)" })
        .option('unsigned', { type: 'boolean', default: false, describe: 'build without --sign on purpose (vessels refuse such a bundle; for tests)' })
        .option('image-key', { type: 'string', array: true, describe: 'require every image to carry a cosign signature by this public key (PEM, ECDSA P-256 or Ed25519); repeatable' }),
    ),
  progress: true,
  more: RELEASE_FIELDS,
  examples: [
    { does: 'build and sign a release', run: 'bundle build release.yaml -o awareness-1.4.0.bundle --sign release.key' },
    { does: 'parts of at most 4 GiB for a FAT32 stick', run: 'bundle build release.yaml -o stick/aw.bundle --split fat32 --sign release.key' },
    { does: "a delta: leave out what the vessel's inventory shows it holds", run: 'bundle build release.yaml -o aw-1.5.0.bundle --since inventory.json --sign release.key' },
    { does: 'require every image to be cosign-signed by this key', run: 'bundle build release.yaml -o aw.bundle --sign release.key --image-key cosign.pub' },
  ],
  async run(args, ctx) {
    // Refused up front, before any key is read or image fetched.
    const split = str(args, 'split');
    const splitSize = split === undefined ? undefined : parseSize(split);
    if (splitSize !== undefined) checkSplit(splitSize);
    const signing = list(args, 'sign');
    if (signing.length === 0 && !flag(args, 'unsigned')) {
      throw new SeabagError('E_UNSIGNED', 'build needs --sign KEY: every vessel refuses an unsigned bundle', {
        hint: 'sign with the release key (bundle build release.yaml -o NAME.bundle --sign release.key), or pass --unsigned to build one on purpose',
      });
    }
    if (signing.length > 0 && flag(args, 'unsigned')) throw new SeabagError('E_USAGE', '--sign and --unsigned contradict each other');
    const signers = await Promise.all(signing.map((p) => loadPrivateKey(p, '--sign')));
    const imageKeys = await Promise.all(list(args, 'image-key').map((p) => loadImageKey(p)));
    const roots = await rootsToCarry(list(args, 'trust'));
    const since = str(args, 'since');
    const created = sourceDateEpoch(ctx.io);
    const buildTime = created ?? new Date();
    const omit = since === undefined ? undefined : await readSince(since);
    const result = await buildBundle(str(args, 'spec') as string, {
      output: str(args, 'output') as string,
      platforms: list(args, 'platform').map(parsePlatformString),
      platformStrict: args['platform-strict'] === true,
      referrers: args['referrers'] !== false,
      onWarning: (w) => {
        if (!ctx.json) writeLine(ctx.io.stderr, `warning: ${w.message}`);
      },
      signers,
      roots,
      imageKeys,
      force: args['force'] === true,
      ...(args['sync'] === false ? { sync: false } : {}),
      reads: [...list(args, 'sign'), ...list(args, 'trust'), ...list(args, 'image-key'), ...(since === undefined ? [] : [since])],
      ...(omit === undefined ? {} : { omit }),
      ...(splitSize === undefined ? {} : { splitSize }),
      ...(created === undefined ? {} : { created }),
      // Expiry is judged against the build's own time: SOURCE_DATE_EPOCH when set, else now.
      now: buildTime,
      ...registryAccess(args, ctx.io.env),
      signal: ctx.signal,
      onProgress: ctx.progress.update,
    });
    ctx.progress.finish();
    const { release, write } = result;
    const daysLeft = release.expires === undefined ? undefined : (new Date(release.expires).getTime() - buildTime.getTime()) / 86_400_000;
    if (daysLeft !== undefined && daysLeft < EXPIRY_WARNING_DAYS) {
      writeLine(ctx.io.stderr, `warning: the release expires on ${release.expires}, in ${daysLeft < 1 ? 'less than a day' : `${Math.floor(daysLeft)} day(s)`}: a bundle that waits for a ship's next port may arrive dead`);
    }
    if (ctx.json) {
      printJSON(ctx.io, {
        ok: true,
        release: { name: release.name, version: release.version, digest: result.releaseDigest, created: release.created },
        files: write.files,
        size: write.size,
        ...(write.parts === undefined ? {} : { parts: write.parts.count, sha256: write.parts.sha256 }),
        images: release.images.map((i) => ({
          ref: i.ref,
          digest: i.digest,
          platforms: i.platforms,
          size: i.size,
          ...(i.attestations ? { attestations: i.attestations } : {}),
          ...(i.referrers ? { referrers: i.referrers.length } : {}),
        })),
        ...(result.imageSignatures === undefined ? {} : { imageSignatures: result.imageSignatures }),
        signatures: result.signedBy.map((keyid) => ({ keyid })),
        omittedBlobs: release.omittedBlobs,
        omittedBytes: result.omittedBytes,
        warnings: result.warnings,
      });
      return 0;
    }
    const out = ctx.io.stdout;
    writeLine(out, `built ${release.name} ${release.version}: ${write.files.join(', ')} (${formatBytes(write.size)}${write.parts ? ` in ${write.parts.count} parts` : ''})`);
    writeLine(out, `  release   ${result.releaseDigest}`);
    writeLine(out, `  images    ${release.images.map((i) => `${i.ref} (${shortDigest(i.digest)})`).join('\n            ')}`);
    const referrerCount = release.images.reduce((n, i) => n + (i.referrers ?? []).length, 0);
    if (referrerCount > 0) writeLine(out, `  referrers ${referrerCount} (signatures, attestations, SBOMs) carried with their images`);
    if (result.imageSignatures !== undefined) writeLine(out, `  images    every one cosign-signed by an image key`);
    writeLine(out, `  manifests ${release.manifests.length} file(s), device profiles ${release.deviceProfiles.length}`);
    if (release.omittedBlobs.length > 0) writeLine(out, `  delta     ${release.omittedBlobs.length} blob(s) left out (${formatBytes(result.omittedBytes)} the vessel already has)`);
    if (result.signedBy.length === 0) {
      writeLine(ctx.io.stderr, 'warning: the bundle is unsigned (--unsigned); vessels will refuse it');
    } else {
      writeLine(out, `  signed by ${result.signedBy.join('\n            ')}`);
    }
    if (roots.length > 0) writeLine(out, `  carries   ${roots.length} trust root(s)`);
    return 0;
  },
};
