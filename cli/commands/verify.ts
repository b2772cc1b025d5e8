import { loadRoot, verifyBundle } from '../../lib/index.js';
import type { Command } from '../command.js';
import { str } from '../options.js';
import { formatBytes, printJSON, writeLine } from '../render.js';

export const verify: Command = {
  command: 'verify <file>',
  path: ['verify'],
  describe: 'check a bundle offline: archive, root chain, signatures, expiry, every byte (for CI)',
  builder: (y) =>
    y
      .positional('file', { type: 'string', describe: 'bundle, .parts.json, a part, or a folder' })
      .option('trust', { type: 'string', demandOption: true, describe: 'the trust root (trust.json) to verify against' }),
  progress: true,
  examples: [
    { does: 'in CI: exit 0 when valid, 1 when rejected', run: 'bundle verify awareness-1.4.0.bundle --trust trust.json' },
  ],
  async run(args, ctx) {
    const trustPath = str(args, 'trust') as string;
    const { root } = await loadRoot(trustPath);
    const report = await verifyBundle(str(args, 'file') as string, { trust: root, trustName: trustPath, signal: ctx.signal, onProgress: ctx.progress.update });
    ctx.progress.finish();
    if (ctx.json) {
      printJSON(ctx.io, { ok: true, ...report });
      return 0;
    }
    const out = ctx.io.stdout;
    writeLine(out, `valid: ${report.release.name} ${report.release.version} (${report.release.digest})`);
    writeLine(out, `  signed by ${report.signatures.valid.length} trusted key(s), threshold ${report.signatures.threshold}: ${report.signatures.valid.join(', ')}`);
    writeLine(out, `  trust root version ${report.root.version}${report.root.accepted.length > 0 ? ` (rotated in the bundle: ${report.root.accepted.join(', ')})` : ''}`);
    writeLine(out, `  ${report.blobs.verified} blob(s) hashed, ${formatBytes(report.blobs.bytes)}${report.blobs.omitted > 0 ? `; ${report.blobs.omitted} left out (delta)` : ''}`);
    return 0;
  },
};
