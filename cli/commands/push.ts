import { pushBundle } from '../../lib/satellite/push.js';
import type { Command } from '../command.js';
import { registryAccess, registryFlags, str } from '../options.js';
import { formatBytes, printJSON, writeLine } from '../render.js';

const EXAMPLES = [
  { does: 'publish a bundle to the shore registry, tagged with its version', run: 'bundle push aw-1.5.0.bundle oci://reg.example.com/releases/aw' },
  { does: 'under a tag of your own', run: 'bundle push aw-1.5.0.bundle oci://reg.example.com/releases/aw --tag stable' },
];

export const push: Command = {
  command: 'push <file> <target>',
  path: ['push'],
  describe: "publish a bundle to the shore's OCI registry (oci://HOST[:PORT]/REPO), tagged with its version",
  builder: (y) =>
    registryFlags(
      y
        .positional('file', { type: 'string', describe: 'bundle, .parts.json, a part, or their folder' })
        .positional('target', { type: 'string', describe: 'oci://HOST[:PORT]/REPO' })
        .option('tag', { type: 'string', describe: 'tag for the bundle (default: the release version)' }),
    ),
  progress: true,
  examples: EXAMPLES,
  async run(args, ctx) {
    const tag = str(args, 'tag');
    const result = await pushBundle(str(args, 'file') as string, str(args, 'target') as string, {
      ...(tag === undefined ? {} : { tag }),
      ...registryAccess(args, ctx.io.env),
      signal: ctx.signal,
      onProgress: ctx.progress.update,
    });
    ctx.progress.finish();
    if (ctx.json) {
      printJSON(ctx.io, { ok: true, ...result });
      return 0;
    }
    for (const n of result.notes) ctx.io.stderr.write(`note: ${n}\n`);
    const out = ctx.io.stdout;
    writeLine(out, `pushed ${result.release.name} ${result.release.version} to ${result.address}`);
    writeLine(out, `  bundle   ${result.digest}`);
    writeLine(out, `  blobs    ${result.blobs.total}: ${result.blobs.pushed} pushed (${formatBytes(result.bytesPushed)}), ${result.blobs.skipped} already there${result.blobs.omitted > 0 ? `, ${result.blobs.omitted} left out of the delta and found` : ''}`);
    writeLine(out, `  aboard   bundle import ${result.address}`);
    return 0;
  },
};
