import { recoverVessel } from '../../lib/vessel/recover.js';
import { SeabagError } from '../../lib/errors.js';
import type { Command } from '../command.js';
import { deployFlags, vesselFlags } from '../options.js';
import { printJSON, writeLine } from '../render.js';
import { printNotes, vesselOptions } from '../vessel-options.js';

export const recover: Command = {
  command: 'recover',
  path: ['recover'],
  describe: 'decide an operation left pending (a switch that failed half-way): --abort puts the tags back, --finish completes it',
  builder: (y) =>
    deployFlags(
      vesselFlags(
        y
          .option('abort', { type: 'boolean', describe: 'put every tag the switch moved back where it was' })
          .option('finish', { type: 'boolean', describe: 'complete the switch' })
          .conflicts('abort', 'finish'),
      ),
    ),
  examples: [
    { does: 'put back every tag a half-done switch moved (status shows them)', run: 'bundle recover --abort' },
    { does: 'complete the half-done switch instead', run: 'bundle recover --finish' },
  ],
  async run(args, ctx) {
    if (args['abort'] !== true && args['finish'] !== true) {
      throw new SeabagError('E_USAGE', 'say what to do with the pending operation: --abort or --finish', { hint: '`bundle status` shows it' });
    }
    const result = await recoverVessel(args['abort'] === true ? 'abort' : 'finish', vesselOptions(args, ctx));
    printNotes(ctx, result.notes);
    if (ctx.json) printJSON(ctx.io, { ok: true, message: result.message });
    else writeLine(ctx.io.stdout, result.message);
    return 0;
  },
};
