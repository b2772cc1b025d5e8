/**
 * The `bundle` (alias `seabag`) program: `main(argv, io)` parses, runs one verb and returns the
 * exit status. Only `main.ts` touches `process`.
 */
import yargs, { type Argv } from 'yargs';
import { SeabagError } from '../lib/errors.js';
import { packageVersion } from '../lib/util/package.js';
import type { Command } from './command.js';
import { commandEntries, loadCommands } from './commands/index.js';
import type { CliIO } from './io.js';
import { ProgressReporter } from './progress.js';
import { reportError, reportInterrupt, writeLine } from './render.js';
import { nearest } from './suggest.js';

/** Help is laid out for an 80-column terminal (and the man page is made from it). */
export const HELP_WIDTH = 80;

const EPILOGUE = [
  'Exit status: 0 done; 1 rejected (signature, digest, unsafe archive, downgrade,',
  'wrong target, expired, delta base missing); 2 usage or invalid input; 3 the',
  'environment failed (registry, disk, lock). With --json, stdout carries exactly',
  'one JSON object.',
  '',
  'Each command explains itself: bundle COMMAND --help. More: README.md, the',
  'man page bundle(1), the schemas in schemas/ and the notes in docs/.',
].join('\n');

/**
 * A command line broken at spaces into lines of at most `width` columns, each but the last
 * ending in ` \\` (the shell's continuation), so it still pastes as one command.
 */
export function shellLines(command: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of command.split(' ')) {
    const indent = lines.length === 0 ? '' : '    ';
    if (line !== '' && (indent + line + ' ' + word).length > width - 2) {
      lines.push(`${indent}${line} \\`);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  lines.push(`${lines.length === 0 ? '' : '    '}${line}`);
  return lines;
}

/** A note broken at spaces into lines of at most `width` columns. */
function noteLines(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && `${line} ${word}`.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines;
}

/** The `Examples:` block and the extra text of one command's `--help`. */
export function commandEpilogue(c: Command): string | undefined {
  const parts: string[] = [];
  if (c.examples !== undefined && c.examples.length > 0) {
    parts.push(['Examples:', ...c.examples.flatMap((e) => [...noteLines(e.does, HELP_WIDTH - 4).map((l) => `  # ${l}`), ...shellLines(e.run, HELP_WIDTH - 2).map((l) => `  ${l}`)])].join('\n'));
  }
  if (c.more !== undefined) parts.push(c.more);
  return parts.length === 0 ? undefined : parts.join('\n\n');
}

function withCommand(y: Argv, c: Command): Argv {
  let z = c.builder(y);
  z = c.progress === true
    ? z.option('progress', { type: 'boolean', default: true, describe: 'show progress on stderr (--no-progress to hide)' })
    : // Accepted so scripts that pass --no-progress everywhere keep working, but not offered.
      z.option('progress', { type: 'boolean', hidden: true });
  const epilogue = commandEpilogue(c);
  return epilogue === undefined ? z : z.epilogue(epilogue);
}

/** The head words: `keygen`, `trust`, `build`… */
export function commandHeads(): string[] {
  return [...new Set([...commandEntries.map((c) => c.path[0] as string), 'completion'])];
}

/**
 * The commands yargs must know to parse `argv`: when it starts with a command's word, that
 * command (every `trust` command for `trust …`); otherwise, as for `bundle --help`, all of them.
 * yargs runs only the matched command's builder either way, so the parse, the errors and the
 * help text are the same; what is saved is loading the modules of the other commands.
 */
async function commandsFor(argv: readonly string[]): Promise<Command[]> {
  const first = argv[0];
  const head = first !== undefined && first !== 'completion' && commandEntries.some((c) => c.path[0] === first) ? first : undefined;
  return loadCommands(head);
}

function parser(argv: string[], commands: readonly Command[], width = HELP_WIDTH): Argv {
  let y = yargs(argv)
    .scriptName('bundle')
    .usage('$0 <command> [options]\n\nSigned, content-addressed release bundles for clusters that are mostly offline.')
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON object on stdout instead of text' })
    .version(false)
    .option('version', { type: 'boolean', global: false, describe: 'print the version of bundle' })
    .strict()
    .demandCommand(1, 'name a command; see bundle --help')
    .help()
    .alias('h', 'help')
    .epilogue(EPILOGUE)
    .wrap(width);
  // After a command's handler, yargs renders that command's whole help and keeps it for a later
  // showHelp()/getHelp(), which seabag never calls (help is printed only for --help, rendered
  // then): that rendering was up to 9 ms of every `bundle import`.
  (y as unknown as { getInternalMethods(): { getUsageInstance(): { cacheHelpMessage(): void } } }).getInternalMethods().getUsageInstance().cacheHelpMessage = () => undefined;
  const groups = new Map<string, Command[]>();
  for (const c of commands) {
    if (c.path.length === 1) {
      y = y.command(c.command, c.describe, (sub) => withCommand(sub, c));
    } else {
      const head = c.path[0] as string;
      groups.set(head, [...(groups.get(head) ?? []), c]);
    }
  }
  for (const [head, subs] of groups) {
    y = y.command(`${head} <command>`, `${head}: ${subs.map((s) => s.path.slice(1).join(' ')).join(', ')}`, (sub) => {
      let inner = sub;
      for (const s of subs) inner = inner.command(s.command, s.describe, (z) => withCommand(z, s));
      return inner.demandCommand(1, `name a ${head} command: ${subs.map((s) => s.path.slice(1).join(' ')).join(', ')}`);
    });
  }
  y = y.command('completion <shell>', 'print a tab-completion script: bundle completion bash >> ~/.bashrc', (sub) =>
    sub
      .positional('shell', { choices: ['bash', 'zsh'], describe: 'the shell to complete in' })
      .epilogue(
        [
          'Examples:',
          '  # complete bundle commands and flags in bash, from the next shell on',
          '  bundle completion bash > /etc/bash_completion.d/bundle',
          '  # in zsh (a folder on $fpath)',
          '  bundle completion zsh > ~/.zfunc/_bundle',
        ].join('\n'),
      ),
  );
  return y;
}

function findCommand(words: readonly unknown[], commands: readonly Command[]): Command | undefined {
  return commands.find((c) => c.path.every((p, i) => words[i] === p));
}

/** A mistyped command word, with the nearest real one: `stauts` → `status`. */
function mistyped(argv: string[]): SeabagError | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  const first = words[0];
  if (first === undefined || argv.indexOf(first) !== 0) return undefined;
  const heads = commandHeads();
  if (!heads.includes(first)) {
    const near = nearest(first, heads);
    return new SeabagError('E_USAGE', `unknown command ${JSON.stringify(first)}${near === undefined ? '' : `; did you mean \`bundle ${near}\`?`}`, {
      details: { command: first, ...(near === undefined ? {} : { suggestion: near }) },
      hint: 'run `bundle --help` for the list of commands',
    });
  }
  const subs = commandEntries.filter((c) => c.path[0] === first && c.path.length > 1).map((c) => c.path[1] as string);
  const second = words[1];
  if (subs.length > 0 && second !== undefined && argv.indexOf(second) === 1 && !subs.includes(second)) {
    const near = nearest(second, subs);
    return new SeabagError('E_USAGE', `unknown command ${JSON.stringify(`${first} ${second}`)}${near === undefined ? '' : `; did you mean \`bundle ${first} ${near}\`?`}`, {
      details: { command: `${first} ${second}`, ...(near === undefined ? {} : { suggestion: `${first} ${near}` }) },
      hint: `run \`bundle ${first} --help\``,
    });
  }
  return undefined;
}

/** What `bundle ARGS` prints for `--help` (for the man page and the help tests). */
export async function helpText(words: string[], width = HELP_WIDTH): Promise<string> {
  const commands = await commandsFor(words);
  return new Promise((resolve, reject) => {
    void parser([...words, '--help'], commands, width).parse([...words, '--help'], {}, (error: Error | undefined, _args: unknown, output: string) => {
      if (error !== undefined && error !== null) reject(error);
      else resolve(output);
    });
  });
}

/** Every command's words, for help tests and the man page: `['build']`, `['trust', 'init']`… */
export function commandPaths(): string[][] {
  return [...commandEntries.map((c) => [...c.path]), ['completion']];
}

/** The flags of one command (of `commands`, every command loaded), for completion scripts. */
export function commandFlags(path: string[], commands: readonly Command[]): string[] {
  const c = findCommand(path, commands);
  const y = yargs([]);
  const built = c === undefined ? y.option('shell', {}) : withCommand(y, c);
  const opts = (built as unknown as { getOptions(): { key: Record<string, unknown>; hiddenOptions: string[]; alias: Record<string, string[]> } }).getOptions();
  const positionals = [...(c?.command ?? '').matchAll(/[<[]([\w-]+)(?:\.\.)?[>\]]/g)].map((m) => m[1]);
  const hidden = new Set([...opts.hiddenOptions, ...positionals]);
  const flags = Object.keys(opts.key).filter((k) => !hidden.has(k) && !['$0', '_'].includes(k));
  return ['--help', '--json', ...flags.filter((f) => f.length > 1 && !['help', 'json', 'version'].includes(f)).map((f) => `--${f}`)];
}

/**
 * Runs the program. Never throws: every failure becomes a message and an exit status.
 */
export async function main(argv: string[], io: CliIO): Promise<number> {
  const wantsJSON = argv.includes('--json');
  const typo = mistyped(argv);
  if (typo !== undefined) return reportError(io, typo, wantsJSON);
  const commands = await commandsFor(argv);
  let parsed: { args: Record<string, unknown>; output: string; error: Error | undefined };
  try {
    parsed = await new Promise((resolve) => {
      void parser(argv, commands).parse(argv, {}, (error: Error | undefined, args: Record<string, unknown>, output: string) => {
        resolve({ args, output, error: error ?? undefined });
      });
    });
  } catch (err) {
    return reportError(io, new SeabagError('E_USAGE', (err as Error).message), wantsJSON);
  }
  const words = (parsed.args?.['_'] as unknown[] | undefined) ?? [];
  if (parsed.args?.['version'] === true && words.length === 0) {
    writeLine(io.stdout, packageVersion());
    return 0;
  }
  if (parsed.error !== undefined) {
    const which = findCommand(words, commands)?.path.join(' ');
    return reportError(
      io,
      new SeabagError('E_USAGE', parsed.error.message, { hint: `run \`bundle ${which === undefined ? '' : `${which} `}--help\`` }),
      wantsJSON,
    );
  }
  if (parsed.output !== '') {
    writeLine(io.stdout, parsed.output);
    return 0;
  }
  if (words[0] === 'completion') {
    const { completionScript } = await import('./completion.js');
    io.stdout.write(completionScript(String(parsed.args['shell']) as 'bash' | 'zsh', commands));
    return 0;
  }
  const command = findCommand(words, commands);
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
