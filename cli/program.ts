/**
 * The `bundle` (alias `seabag`) program: `main(argv, io)` parses, runs one verb and returns the
 * exit status. Only `main.ts` touches `process`.
 */
import yargs, { type Argv } from 'yargs';
import { packageVersion, SeabagError } from '../lib/index.js';
import type { Command } from './command.js';
import { commands } from './commands/index.js';
import type { CliIO } from './io.js';
import { ProgressReporter } from './progress.js';
import { reportError, reportInterrupt, writeLine } from './render.js';

const EPILOGUE = [
  'Exit status: 0 done; 1 rejected (signature, digest, unsafe archive, downgrade, wrong target,',
  'expired, delta base missing); 2 usage or invalid input; 3 the environment failed (registry,',
  'disk, lock). With --json, stdout carries exactly one JSON object.',
  '',
  'More: README.md; DESIGN.md describes the bundle format and the vessel state.',
].join('\n');

function parser(argv: string[], io: CliIO): Argv {
  let y = yargs(argv)
    .scriptName('bundle')
    .usage('$0 <command> [options]\n\nSigned, content-addressed release bundles for clusters that are mostly offline.')
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON object on stdout instead of text' })
    .option('progress', { type: 'boolean', default: true, describe: 'show progress on stderr (--no-progress to hide)' })
    .strict()
    .demandCommand(1, 'name a command; see bundle --help')
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(packageVersion())
    .epilogue(EPILOGUE)
    .wrap(Math.min(100, io.stdout.isTTY === true ? (process.stdout.columns ?? 100) : 100));
  const groups = new Map<string, Command[]>();
  for (const c of commands) {
    if (c.path.length === 1) {
      y = y.command(c.command, c.describe, (sub) => c.builder(sub));
    } else {
      const head = c.path[0] as string;
      groups.set(head, [...(groups.get(head) ?? []), c]);
    }
  }
  for (const [head, subs] of groups) {
    y = y.command(`${head} <command>`, `${head}: ${subs.map((s) => s.path.slice(1).join(' ')).join(', ')}`, (sub) => {
      let inner = sub;
      for (const s of subs) inner = inner.command(s.command, s.describe, (z) => s.builder(z));
      return inner.demandCommand(1, `name a ${head} command: ${subs.map((s) => s.path.slice(1).join(' ')).join(', ')}`);
    });
  }
  return y;
}

function findCommand(words: readonly unknown[]): Command | undefined {
  return commands.find((c) => c.path.every((p, i) => words[i] === p));
}

/**
 * Runs the program. Never throws: every failure becomes a message and an exit status.
 */
export async function main(argv: string[], io: CliIO): Promise<number> {
  const wantsJSON = argv.includes('--json');
  let parsed: { args: Record<string, unknown>; output: string; error: Error | undefined };
  try {
    parsed = await new Promise((resolve) => {
      void parser(argv, io).parse(argv, {}, (error: Error | undefined, args: Record<string, unknown>, output: string) => {
        resolve({ args, output, error: error ?? undefined });
      });
    });
  } catch (err) {
    return reportError(io, new SeabagError('E_USAGE', (err as Error).message), wantsJSON);
  }
  if (parsed.error !== undefined) {
    const words = (parsed.args?.['_'] as unknown[] | undefined) ?? [];
    const which = findCommand(words)?.path.join(' ');
    return reportError(
      io,
      new SeabagError('E_USAGE', parsed.error.message, { hint: `run \`bundle ${which === undefined ? '' : `${which} `}--help\`` }),
      wantsJSON,
    );
  }
  if (parsed.output !== '') {
    // --help or --version
    writeLine(io.stdout, parsed.output);
    return 0;
  }
  const command = findCommand(parsed.args['_'] as unknown[]);
  if (command === undefined) return reportError(io, new SeabagError('E_USAGE', 'unknown command', { hint: 'run `bundle --help`' }), wantsJSON);
  const json = parsed.args['json'] === true;
  const progress = new ProgressReporter(io, ProgressReporter.modeFor(io, parsed.args['progress'] !== false && !json));
  const signal = io.signal ?? new AbortController().signal;
  try {
    return await command.run(parsed.args, { io, json, progress, signal });
  } catch (err) {
    progress.finish();
    if (signal.aborted) return reportInterrupt(io, err, json);
    return reportError(io, err, json);
  }
}
