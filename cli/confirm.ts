/**
 * Preview and confirmation for the commands that change what runs or what is held (apply,
 * rollback, prune): `--dry-run` prints the plan and changes nothing; on a terminal the plan is
 * shown and `Proceed? [y/N]` asked unless `--yes`; anything else (a script, a pipe, a timer)
 * is never asked and proceeds, so scripts keep working.
 */
import { createInterface } from 'node:readline';
import type { Argv } from 'yargs';
import type { PruneReport, SwitchResult } from '../lib/index.js';
import type { RunContext } from './command.js';
import { flag } from './options.js';
import { writeLine, safeText } from './render.js';

export function confirmFlags(y: Argv): Argv {
  return y
    .option('dry-run', { type: 'boolean', default: false, describe: 'print what would change, and change nothing' })
    .option('yes', { alias: 'y', type: 'boolean', default: false, describe: 'do not ask Proceed? [y/N] on a terminal' });
}

type Plan = SwitchResult | PruneReport;

/** Reads one answer from the terminal; Ctrl-C, Ctrl-D or anything but y/yes is no. */
async function ask(ctx: RunContext, question: string): Promise<boolean> {
  const input = ctx.io.stdin;
  if (input === undefined) return false;
  const rl = createInterface({ input, output: ctx.io.stderr, terminal: false });
  try {
    ctx.io.stderr.write(question.split('\n').map(safeText).join('\n'));
    const answer = await new Promise<string>((resolve) => {
      rl.once('line', resolve);
      rl.once('close', () => resolve(''));
      rl.once('SIGINT', () => resolve(''));
      ctx.signal.addEventListener('abort', () => resolve(''), { once: true });
    });
    return /^\s*y(es)?\s*$/i.test(answer);
  } finally {
    rl.close();
    input.pause();
  }
}

/**
 * The library options that carry the question: `dryRun`, and a `confirm` callback when a person
 * at a terminal must be asked. `show` renders a plan as the lines the real run prints.
 * `shown` tells afterwards whether the plan was already on screen (so it is not printed twice).
 */
export function confirmation(
  args: Record<string, unknown>,
  ctx: RunContext,
  show: (plan: Plan) => string[],
): { dryRun: boolean; confirm?: (plan: Plan) => Promise<boolean>; shown: () => boolean } {
  const dryRun = flag(args, 'dry-run');
  let shown = false;
  const interactive = ctx.io.stdin?.isTTY === true && !flag(args, 'yes') && !dryRun;
  if (!interactive) return { dryRun, shown: () => shown };
  return {
    dryRun,
    shown: () => shown,
    confirm: async (plan) => {
      // With --json the plan goes to the terminal on stderr; stdout keeps its one object.
      const out = ctx.json ? ctx.io.stderr : ctx.io.stdout;
      ctx.progress.finish();
      for (const line of show(plan)) writeLine(out, line);
      shown = true;
      return ask(ctx, 'Proceed? [y/N] ');
    },
  };
}
