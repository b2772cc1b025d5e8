import { loadImageKey } from '../../lib/trust/cosign.js';
import { loadRoot } from '../../lib/trust/root.js';
import { SeabagError } from '../../lib/errors.js';
import { verifyBundle } from '../../lib/bundle/verify.js';
import type { Command } from '../command.js';
import { list, str } from '../options.js';
import { formatBytes, printJSON, writeLine } from '../render.js';

export const verify: Command = {
  command: 'verify <file>',
  path: ['verify'],
  describe: 'check a bundle offline: archive, root chain, signatures, expiry, every byte (for CI)',
  builder: (y) =>
    y
      .positional('file', { type: 'string', describe: 'bundle, .parts.json, a part, or a folder' })
      .option('trust', { type: 'string', demandOption: true, describe: 'the trust root (trust.json) to verify against' })
      .option('images', { type: 'boolean', default: false, describe: "also check every image's cosign signature (keys: --image-key when given, else the release's imagePolicy)" })
      .option('image-key', { type: 'string', array: true, describe: "with --images: a cosign public key (PEM, ECDSA P-256 or Ed25519) images may be signed by; repeatable; when given, the release's own image keys are not used" }),
  progress: true,
  examples: [
    { does: 'in CI: exit 0 when valid, 1 when rejected', run: 'bundle verify awareness-1.4.0.bundle --trust trust.json' },
    { does: "also check every image's cosign signature against the release's image keys", run: 'bundle verify awareness-1.4.0.bundle --trust trust.json --images' },
  ],
  async run(args, ctx) {
    const trustPath = str(args, 'trust') as string;
    const { root } = await loadRoot(trustPath);
    const imageKeys = await Promise.all(list(args, 'image-key').map((p) => loadImageKey(p)));
    if (imageKeys.length > 0 && args['images'] !== true) throw new SeabagError('E_USAGE', '--image-key is used with --images');
    const report = await verifyBundle(str(args, 'file') as string, {
      trust: root,
      trustName: trustPath,
      ...(args['images'] === true ? { images: { keys: imageKeys } } : {}),
      signal: ctx.signal,
      onProgress: ctx.progress.update,
    });
    ctx.progress.finish();
    if (ctx.json) {
      printJSON(ctx.io, { ok: true, ...report });
      return 0;
    }
    const out = ctx.io.stdout;
    writeLine(out, `valid: ${report.release.name} ${report.release.version} (${report.release.digest})`);
    writeLine(out, `  signed by ${report.signatures.valid.length} trusted key(s), threshold ${report.signatures.threshold}: ${report.signatures.valid.join(', ')}`);
    writeLine(out, `  trust root version ${report.root.version}${report.root.accepted.length > 0 ? ` (rotated in the bundle: ${report.root.accepted.join(', ')})` : ''}`);
    if (report.imageKeys !== undefined) {
      writeLine(out, `  image keys: ${report.imageKeys.source === 'image-key' ? '--image-key only' : "the release's imagePolicy (no --image-key given)"}: ${report.imageKeys.keyids.join(', ')}`);
    }
    if (report.images !== undefined) writeLine(out, `  ${report.images.length} image(s) cosign-signed: ${report.images.map((i) => `${i.ref} by ${i.signedBy.join(', ')}`).join('; ')}`);
    writeLine(out, `  ${report.blobs.verified} blob(s) hashed, ${formatBytes(report.blobs.bytes)}${report.blobs.omitted > 0 ? `; ${report.blobs.omitted} left out (delta)` : ''}`);
    if (report.blobs.omittedUnsigned > 0) {
      writeLine(out, `  a delta pulled against a vessel inventory: ${report.blobs.omittedUnsigned} of its blobs are left out by an unsigned list; it imports only where those blobs are held`);
    }
    return 0;
  },
};
