/**
 * The shape of one verb: its yargs definition and a `run` that returns the exit status.
 */
import type { Argv } from 'yargs';
import type { ProgressReporter } from './progress.js';
import type { CliIO } from './io.js';

export interface RunContext {
  io: CliIO;
  json: boolean;
  progress: ProgressReporter;
  signal: AbortSignal;
}

/** One example of `--help`: a command line that fits 80 columns, and what it does. */
export interface Example {
  run: string;
  does: string;
}

export interface Command {
  /** yargs command string, e.g. `build <spec>`. */
  command: string;
  describe: string;
  builder: (y: Argv) => Argv;
  /** The words after the program name that select this command (`['trust', 'init']`). */
  path: string[];
  /** Examples for `--help` and the man page, each printed as `# does` then the command line. */
  examples?: Example[];
  /** More text for `--help` and the man page, after the examples. */
  more?: string;
  /** It does long work and shows progress (`--no-progress` is offered). */
  progress?: boolean;
  run: (args: Record<string, unknown>, ctx: RunContext) => Promise<number>;
}
