import { vesselInventory } from '../../lib/vessel/operations.js';
import { writeJSONAtomic } from '../../lib/util/atomic.js';
import { join } from 'node:path';
import { checkOutputs } from '../../lib/util/outputs.js';
import type { Command } from '../command.js';
import { str, vesselFlags } from '../options.js';
import { printJSON, writeLine } from '../render.js';
import { vesselOptions } from '../vessel-options.js';

export const inventory: Command = {
  command: 'inventory',
  path: ['inventory'],
  describe: "write what the vessel holds to a small JSON file to send ashore (for bundle build --since)",
  builder: (y) =>
    vesselFlags(
      y
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'file to write' })
        .option('force', { type: 'boolean', default: false, describe: 'replace an existing output file' }),
    ),
  examples: [
    { does: 'what this vessel holds, to send ashore', run: 'bundle inventory -o /media/usb/inventory.json' },
    { does: 'ashore: a delta bundle without what the vessel holds', run: 'bundle build release.yaml -o aw.bundle --since inventory.json --sign release.key' },
  ],
  async run(args, ctx) {
    const output = str(args, 'output') as string;
    const options = vesselOptions(args, ctx);
    // Never over the vessel's own files, whatever --force says.
    const state = ['state.json', 'journal.json', 'lock'].map((n) => join(options.stateDir, n));
    await checkOutputs([output], { force: args['force'] === true, reads: state });
    const inv = await vesselInventory(options);
    await writeJSONAtomic(output, inv);
    if (ctx.json) printJSON(ctx.io, { ok: true, file: output, releases: inv.releases, blobs: inv.blobs.length });
    else writeLine(ctx.io.stdout, `wrote ${output}: ${inv.releases.length} release(s), ${inv.blobs.length} digest(s) held`);
    return 0;
  },
};
