import { fetchBundle, parseRate } from '../../lib/fetch/fetch.js';
import type { Command } from '../command.js';
import { str } from '../options.js';
import { formatBytes, printJSON, safeText, writeLine } from '../render.js';

export const fetch: Command = {
  command: 'fetch <url>',
  path: ['fetch'],
  describe: 'download a bundle or its parts over HTTP(S): resumes, checks each part, limits the rate, rides out outages',
  builder: (y) =>
    y
      .positional('url', { type: 'string', describe: 'URL of a bundle, or of its .parts.json' })
      .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'folder to download into' })
      .option('limit-rate', { type: 'string', describe: 'average bytes per second not to exceed, as curl writes it: 500K, 1M (powers of 1024)' })
      .option('retries', { type: 'number', default: 20, describe: 'failed attempts in a row without progress before giving up (waits grow to 30 s: about 10 minutes)' })
      .option('timeout', { type: 'number', default: 60, describe: 'seconds without data before a connection is dropped and tried again' })
      .option('ca-file', { type: 'string', describe: 'PEM file of a CA to trust for HTTPS' })
      .option('force', { type: 'boolean', default: false, describe: 'replace a different bundle or parts file of the same name in the folder' }),
  progress: true,
  examples: [
    { does: 'download the parts of a bundle at no more than 300 KiB/s', run: 'bundle fetch https://shore.example.com/r/aw.parts.json -o /srv/in --limit-rate 300K' },
    { does: 'then stage it', run: 'bundle import /srv/in/aw.bundle' },
  ],
  async run(args, ctx) {
    const rate = str(args, 'limit-rate');
    const caFile = str(args, 'ca-file');
    const result = await fetchBundle(str(args, 'url') as string, {
      outDir: str(args, 'output') as string,
      ...(rate === undefined ? {} : { limitRate: parseRate(rate) }),
      retries: Number(args['retries']),
      timeoutSeconds: Number(args['timeout']),
      ...(caFile === undefined ? {} : { caFile }),
      force: args['force'] === true,
      signal: ctx.signal,
      onProgress: ctx.progress.update,
      onRetry: (r) => writeLine(ctx.io.stderr, `link: ${safeText(r.reason)}; trying again in ${Math.round(r.delayMs / 1000)} s (attempt ${r.attempt})`),
    });
    ctx.progress.finish();
    if (ctx.json) {
      printJSON(ctx.io, { ok: true, ...result });
      return 0;
    }
    writeLine(ctx.io.stdout, `fetched ${result.bundle} (${formatBytes(result.size)}; ${formatBytes(result.downloaded)} over the link${result.reused ? `, ${result.reused} part(s) already here` : ''}${result.refetched ? `, ${result.refetched} part(s) fetched again` : ''})`);
    writeLine(ctx.io.stdout, `  next  bundle import ${result.bundle}`);
    return 0;
  },
};
