import type { Argv } from 'yargs';
import { applyRelease, rollbackRelease } from '../../lib/vessel/operations.js';
import { MAX_CHECK_SECONDS, parseDuration } from '../../lib/util/duration.js';
import { SeabagError } from '../../lib/errors.js';
import type { GateOptions, SwitchOptions } from '../../lib/vessel/recover.js';
import type { SwitchResult } from '../../lib/vessel/switch.js';
import { confirmation, confirmFlags } from '../confirm.js';
import type { Command, RunContext } from '../command.js';
import { deployFlags, str, vesselFlags } from '../options.js';
import { printJSON, shortDigest, writeLine } from '../render.js';
import { printNotes, vesselOptions } from '../vessel-options.js';

/** The tag moves, one a line: the same list for the plan, the question and the result. */
function moveLines(result: SwitchResult): string[] {
  return result.tags.map((m) => `  ${m.repository}:${m.tag}  ${m.from ? shortDigest(m.from) : '(new)'} → ${shortDigest(m.to)}`);
}

/** What a switch would do, before it does it (`--dry-run`, and the question on a terminal). */
export function planLines(plan: SwitchResult): string[] {
  const r = plan.release;
  if (plan.unchanged) return [`${r.name} ${r.version} is already active; nothing to move`];
  const verb = plan.op === 'apply' ? 'apply' : 'roll back to';
  const now = plan.from ? ` (running now: ${plan.from.version})` : ' (nothing of it runs now)';
  const lines = [`${verb} ${r.name} ${r.version}${now} moves ${plan.tags.length} tag${plan.tags.length === 1 ? '' : 's'}:`, ...moveLines(plan)];
  if (plan.gate !== undefined) {
    const cmd = plan.gate.source === 'cli' ? (plan.gate.command[2] ?? '') : plan.gate.command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
    lines.push(`then runs ${plan.gate.source === 'cli' ? 'your check' : "the release's own check, on this host"} (${plan.gate.timeoutSeconds}s at most; a failure switches back):`, `  ${cmd}`);
  }
  return lines;
}

function report(ctx: RunContext, result: SwitchResult & { notes: string[] }, shown: boolean): number {
  printNotes(ctx, result.notes);
  if (ctx.json) {
    printJSON(ctx.io, { ok: true, ...result });
    return 0;
  }
  const out = ctx.io.stdout;
  const r = result.release;
  if (result.dryRun === true) {
    for (const line of planLines(result)) writeLine(out, line);
    if (!result.unchanged) writeLine(out, 'dry run: nothing changed');
    return 0;
  }
  const checkLine = result.check ? `  health check passed (${result.check.source === 'cli' ? '--check' : "the release's check"})${result.check.output ? `: ${result.check.output.split('\n').slice(-1)[0]}` : ''}` : undefined;
  if (result.unchanged) {
    writeLine(out, `${r.name} ${r.version} is already active; nothing moved`);
    if (checkLine !== undefined) writeLine(out, checkLine);
    return 0;
  }
  writeLine(out, `${result.op === 'apply' ? 'applied' : 'rolled back to'} ${r.name} ${r.version}${result.from ? ` (was ${result.from.version})` : ''}${shown ? `: ${result.tags.length} tag(s) moved as shown` : ''}`);
  if (!shown) for (const line of moveLines(result)) writeLine(out, line);
  if (checkLine !== undefined) writeLine(out, checkLine);
  if (result.deployed) writeLine(out, `  kubectl applied ${result.deployed.applied.length} file(s); rolled out ${result.deployed.rolledOut.join(', ') || 'nothing to wait for'}`);
  return 0;
}

/** The health gate's flags (apply and rollback). */
function gateFlags(y: Argv): Argv {
  return y
    .option('check', { type: 'string', describe: 'a command (run with /bin/sh -c) that must succeed after the switch, or seabag switches back; it gets SEABAG_RELEASE, SEABAG_VERSION, SEABAG_PREVIOUS' })
    .option('check-timeout', { type: 'string', describe: "how long the check may take (120s, 5m; default 120s, or the release's own)" })
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

/** Runs a switch with the preview, the question and the health gate wired in. */
async function switchWith(
  args: Record<string, unknown>,
  ctx: RunContext,
  run: (options: SwitchOptions) => Promise<SwitchResult & { notes: string[] }>,
): Promise<number> {
  const c = confirmation(args, ctx, (plan) => planLines(plan as SwitchResult));
  const result = await run({
    ...vesselOptions(args, ctx),
    gate: gateOptions(args, ctx),
    dryRun: c.dryRun,
    ...(c.confirm === undefined ? {} : { confirm: c.confirm }),
  });
  return report(ctx, result, c.shown());
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
  builder: (y) => gateFlags(confirmFlags(deployFlags(vesselFlags(y.positional('release', { type: 'string', describe: 'NAME@VERSION' }))))),
  examples: [
    { does: 'show what would change, ask, then switch', run: 'bundle apply awareness@1.5.0' },
    { does: 'only show what would change', run: 'bundle apply awareness@1.5.0 --dry-run' },
    { does: 'switch without asking (scripts, the console)', run: 'bundle apply awareness@1.5.0 --yes' },
    { does: 'switch back unless the check passes within a minute', run: "bundle apply aw@1.5.0 --check 'curl -f http://fusion/ok' --check-timeout 60s" },
    { does: "run the release's own signed check (inspect shows it)", run: 'bundle apply awareness@1.5.0 --release-check' },
  ],
  async run(args, ctx) {
    const { name, version } = parseNameVersion(str(args, 'release') as string);
    return switchWith(args, ctx, (options) => applyRelease(name, version, options));
  },
};

export const rollback: Command = {
  command: 'rollback <name>',
  path: ['rollback'],
  describe: 'switch back to the previous release (or --to VERSION), without shore',
  builder: (y) =>
    gateFlags(confirmFlags(deployFlags(vesselFlags(y.positional('name', { type: 'string', describe: 'release name' }).option('to', { type: 'string', describe: 'the held version to go back to' }))))),
  examples: [
    { does: 'back to the release that ran before (bundle status names it)', run: 'bundle rollback awareness' },
    { does: 'back to a version named', run: 'bundle rollback awareness --to 1.3.2' },
    { does: 'and back again unless the check passes', run: "bundle rollback awareness --check 'curl -f http://fusion/ok'" },
  ],
  async run(args, ctx) {
    return switchWith(args, ctx, (options) => rollbackRelease(str(args, 'name') as string, str(args, 'to'), options));
  },
};
