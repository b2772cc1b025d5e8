import { applyRelease, MAX_CHECK_SECONDS, parseDuration, rollbackRelease, SeabagError, type GateOptions, type SwitchResult } from '../../lib/index.js';
import type { Argv } from 'yargs';
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
  if (result.check) writeLine(out, `  health check passed (${result.check.source === 'cli' ? '--check' : "the release's check"})${result.check.output ? `: ${result.check.output.split('\n').slice(-1)[0]}` : ''}`);
  if (result.deployed) writeLine(out, `  kubectl applied ${result.deployed.applied.length} file(s); rolled out ${result.deployed.rolledOut.join(', ') || 'nothing to wait for'}`);
  return 0;
}

/** The health gate's flags (apply and rollback). */
function gateFlags(y: Argv): Argv {
  return y
    .option('check', { type: 'string', describe: 'a command (run with /bin/sh -c) that must succeed after the switch, or seabag switches back; it gets SEABAG_RELEASE, SEABAG_VERSION, SEABAG_PREVIOUS' })
    .option('check-timeout', { type: 'string', describe: 'how long the check may take (120s, 5m; default 120s, or the release\'s own)' })
    .option('release-check', { type: 'boolean', default: false, describe: "run the release's own signed check (a command chosen ashore, run on this host); --check replaces it" });
}

function gateOptions(args: Record<string, unknown>, ctx: RunContext): GateOptions {
  const check = str(args, 'check');
  const timeout = str(args, 'check-timeout');
  if (check !== undefined && check.trim() === '') throw new SeabagError('E_USAGE', '--check needs a command');
  if (timeout !== undefined && check === undefined && args['release-check'] !== true) throw new SeabagError('E_USAGE', '--check-timeout needs --check CMD or --release-check');
  return {
    ...(check === undefined ? {} : { check }),
    ...(timeout === undefined ? {} : { timeoutSeconds: parseDuration(timeout, '--check-timeout', MAX_CHECK_SECONDS) }),
    releaseCheck: args['release-check'] === true,
    env: ctx.io.env,
  };
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
  builder: (y) =>
    gateFlags(deployFlags(vesselFlags(y.positional('release', { type: 'string', describe: 'NAME@VERSION' }))))
      .example('$0 apply awareness@1.5.0', '')
      .example("$0 apply awareness@1.5.0 --check 'curl -fsS http://fusion.local/healthz' --check-timeout 60s", 'switch back unless the check passes'),
  async run(args, ctx) {
    const { name, version } = parseNameVersion(str(args, 'release') as string);
    return report(ctx, await applyRelease(name, version, { ...vesselOptions(args, ctx), gate: gateOptions(args, ctx) }));
  },
};

export const rollback: Command = {
  command: 'rollback <name>',
  path: ['rollback'],
  describe: 'switch back to the previous release (or --to VERSION), without shore',
  builder: (y) =>
    gateFlags(deployFlags(vesselFlags(y.positional('name', { type: 'string', describe: 'release name' }).option('to', { type: 'string', describe: 'the held version to go back to' })))),
  async run(args, ctx) {
    return report(ctx, await rollbackRelease(str(args, 'name') as string, str(args, 'to'), { ...vesselOptions(args, ctx), gate: gateOptions(args, ctx) }));
  },
};
