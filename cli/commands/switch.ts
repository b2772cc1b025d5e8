import { applyRelease, rollbackRelease, SeabagError, type SwitchResult } from '../../lib/index.js';
import type { Command, RunContext } from '../command.js';
import { deployFlags, str, vesselFlags } from '../options.js';
import { printJSON, shortDigest, writeLine } from '../render.js';
import { printNotes, vesselOptions } from '../vessel-options.js';

function report(ctx: RunContext, result: SwitchResult & { notes: string[] }): number {
  printNotes(ctx, result.notes);
  if (ctx.json) {
    printJSON(ctx.io, { ok: true, ...result });
    return 0;
  }
  const out = ctx.io.stdout;
  const r = result.release;
  if (result.unchanged) {
    writeLine(out, `${r.name} ${r.version} is already active; nothing moved`);
    return 0;
  }
  writeLine(out, `${result.op === 'apply' ? 'applied' : 'rolled back to'} ${r.name} ${r.version}${result.from ? ` (was ${result.from.version})` : ''}`);
  for (const m of result.tags) writeLine(out, `  ${m.repository}:${m.tag}  ${m.from ? shortDigest(m.from) : '(new)'} → ${shortDigest(m.to)}`);
  if (result.deployed) writeLine(out, `  kubectl applied ${result.deployed.applied.length} file(s); rolled out ${result.deployed.rolledOut.join(', ') || 'nothing to wait for'}`);
  return 0;
}

function parseNameVersion(text: string): { name: string; version: string } {
  const at = text.lastIndexOf('@');
  if (at <= 0 || at === text.length - 1) throw new SeabagError('E_USAGE', `expected NAME@VERSION, e.g. awareness@1.5.0, not ${JSON.stringify(text)}`);
  return { name: text.slice(0, at), version: text.slice(at + 1) };
}

export const apply: Command = {
  command: 'apply <release>',
  path: ['apply'],
  describe: "switch to a staged release: move the images' tags, then the commit point seabag/NAME:current",
  builder: (y) => deployFlags(vesselFlags(y.positional('release', { type: 'string', describe: 'NAME@VERSION' }))).example('$0 apply awareness@1.5.0', ''),
  async run(args, ctx) {
    const { name, version } = parseNameVersion(str(args, 'release') as string);
    return report(ctx, await applyRelease(name, version, vesselOptions(args, ctx)));
  },
};

export const rollback: Command = {
  command: 'rollback <name>',
  path: ['rollback'],
  describe: 'switch back to the previous release (or --to VERSION), without shore',
  builder: (y) =>
    deployFlags(vesselFlags(y.positional('name', { type: 'string', describe: 'release name' }).option('to', { type: 'string', describe: 'the held version to go back to' }))),
  async run(args, ctx) {
    return report(ctx, await rollbackRelease(str(args, 'name') as string, str(args, 'to'), vesselOptions(args, ctx)));
  },
};
