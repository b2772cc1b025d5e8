import { loadRoot } from '../../lib/trust/root.js';
import { parseRate } from '../../lib/fetch/fetch.js';
import { parseSize } from '../../lib/bundle/parts.js';
import { pullBundle } from '../../lib/satellite/pull.js';
import { readSince } from '../../lib/bundle/since.js';
import { checkOutputs } from '../../lib/util/outputs.js';
import type { Command } from '../command.js';
import { registryAccess, registryFlags, str } from '../options.js';
import { formatBytes, printJSON, writeLine } from '../render.js';
import { linkFlags, linkOptions } from './link.js';

const EXAMPLES = [
  { does: 'a bundle file for a stick, checked before any layer moves', run: 'bundle pull oci://reg.example.com/rel/aw:1.5.0 -o aw.bundle --trust trust.json' },
  { does: 'at no more than 300 KiB/s, in parts for FAT32', run: 'bundle pull oci://reg.example.com/rel/aw:1.5.0 -o aw.bundle --limit-rate 300K --split fat32' },
];

export const pull: Command = {
  command: 'pull <source>',
  path: ['pull'],
  describe: 'write a bundle file from the shore registry (for a bridge PC): metadata first, resumes, limits the rate',
  builder: (y) =>
    linkFlags(
      registryFlags(
        y
          .positional('source', { type: 'string', describe: 'oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:…' })
          .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'bundle file to write' })
          .option('trust', { type: 'string', describe: 'trust root: check the signatures and expiry before any layer is downloaded' })
          .option('since', { type: 'string', describe: "write a delta: leave out what a vessel's inventory (bundle inventory) shows it holds" })
          .option('split', { type: 'string', describe: 'write parts of at most SIZE bytes (500M, 4G, or fat32) and NAME.parts.json' })
          .option('force', { type: 'boolean', default: false, describe: 'overwrite the output' }),
      ),
    ),
  progress: true,
  examples: EXAMPLES,
  async run(args, ctx) {
    const trustPath = str(args, 'trust');
    const split = str(args, 'split');
    // Never over the trust root or inventory it reads, even with --force (existing outputs: pullBundle's check).
    const reads = [str(args, 'trust'), str(args, 'since')].filter((p): p is string => p !== undefined);
    await checkOutputs([str(args, 'output') as string], { force: true, reads });
    const trust = trustPath === undefined ? undefined : (await loadRoot(trustPath)).root;
    const sincePath = str(args, 'since');
    const since = sincePath === undefined ? undefined : (await readSince(sincePath)).digests;
    const result = await pullBundle(str(args, 'source') as string, {
      output: str(args, 'output') as string,
      ...(trust === undefined ? {} : { trust }),
      ...(since === undefined ? {} : { since }),
      ...(split === undefined ? {} : { splitSize: parseSize(split) }),
      force: args['force'] === true,
      ...registryAccess(args, ctx.io.env),
      ...linkOptions(args, ctx, parseRate),
    });
    ctx.progress.finish();
    if (ctx.json) {
      const { write: _, ...rest } = result;
      printJSON(ctx.io, { ok: true, ...rest });
      return 0;
    }
    const out = ctx.io.stdout;
    writeLine(out, `pulled ${result.release.name} ${result.release.version}: ${result.files.join(', ')} (${formatBytes(result.size)}; ${formatBytes(result.bytesDownloaded)} over the link${result.bytesResumed > 0 ? `, ${formatBytes(result.bytesResumed)} resumed from an earlier run` : ''})`);
    if (result.omitted.blobs > 0) writeLine(out, `  delta ${result.omitted.blobs} blob(s) left out (${formatBytes(result.omitted.bytes)} the vessel holds)`);
    if (!result.verified) writeLine(ctx.io.stderr, 'note: not checked against a trust root (--trust); bundle verify or import will check it');
    writeLine(out, `  next  bundle import ${result.bundle}`);
    return 0;
  },
};
