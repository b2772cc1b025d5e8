/**
 * Flags of the commands that pull over a thin link (`import oci://`, `pull`): the rate, the
 * patience, the silence allowed; and retries reported on stderr.
 */
import type { Argv } from 'yargs';
import type { LinkOptions } from '../../lib/index.js';
import type { RunContext } from '../command.js';
import { str } from '../options.js';

export function linkFlags(y: Argv): Argv {
  return y
    .option('limit-rate', { type: 'string', describe: 'average bytes per second over the link not to exceed, as curl writes it: 500K, 1M (powers of 1024)' })
    .option('retries', { type: 'number', default: 20, describe: 'failed attempts in a row without progress before giving up (waits grow to 30 s: about 10 minutes)' })
    .option('timeout', { type: 'number', default: 60, describe: 'seconds without data before a connection is dropped and resumed' });
}

export function linkOptions(args: Record<string, unknown>, ctx: RunContext, parseRate: (s: string) => number): LinkOptions & { signal: AbortSignal; onProgress: RunContext['progress']['update'] } {
  const rate = str(args, 'limit-rate');
  return {
    ...(rate === undefined ? {} : { limitRate: parseRate(rate) }),
    retries: Number(args['retries']),
    timeoutSeconds: Number(args['timeout']),
    signal: ctx.signal,
    onProgress: ctx.progress.update,
    onRetry: (r) => ctx.io.stderr.write(`link: ${r.reason}; trying again in ${Math.max(1, Math.round(r.delayMs / 1000))} s (attempt ${r.attempt})\n`),
  };
}
