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

export interface Command {
  /** yargs command string, e.g. `build <spec>`. */
  command: string;
  describe: string;
  builder: (y: Argv) => Argv;
  /** The words after the program name that select this command (`['trust', 'init']`). */
  path: string[];
  run: (args: Record<string, unknown>, ctx: RunContext) => Promise<number>;
}
