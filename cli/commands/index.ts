import type { Command } from '../command.js';

/** Every verb of the program, in the order `--help` lists them. */
export const commands: Command[] = [];
