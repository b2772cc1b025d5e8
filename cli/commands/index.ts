import type { Command } from '../command.js';

/**
 * Every verb of the program, in the order `--help` lists them: its words, and the module that
 * defines it. A command's module (and the library code only it uses) is loaded only when that
 * command runs or help lists it, so `bundle status` does not initialise build, verify or the
 * registry client (in the bundled program, dist/program.cjs, each such module is initialised on
 * its first import).
 */
export interface CommandEntry {
  /** The words after the program name that select the command; the same as its `Command.path`. */
  path: readonly string[];
  load: () => Promise<Command>;
}

export const commandEntries: readonly CommandEntry[] = [
  { path: ['keygen'], load: async () => (await import('./keygen.js')).keygen },
  { path: ['trust', 'init'], load: async () => (await import('./trust.js')).trustInit },
  { path: ['trust', 'rotate'], load: async () => (await import('./trust.js')).trustRotate },
  { path: ['trust', 'reset-time'], load: async () => (await import('./trust.js')).trustResetTime },
  { path: ['trust', 'set-time'], load: async () => (await import('./trust.js')).trustSetTime },
  { path: ['build'], load: async () => (await import('./build.js')).build },
  { path: ['inspect'], load: async () => (await import('./inspect.js')).inspect },
  { path: ['verify'], load: async () => (await import('./verify.js')).verify },
  { path: ['import'], load: async () => (await import('./import.js')).importCommand },
  { path: ['apply'], load: async () => (await import('./switch.js')).apply },
  { path: ['rollback'], load: async () => (await import('./switch.js')).rollback },
  { path: ['status'], load: async () => (await import('./status.js')).status },
  { path: ['inventory'], load: async () => (await import('./inventory.js')).inventory },
  { path: ['prune'], load: async () => (await import('./prune.js')).prune },
  { path: ['recover'], load: async () => (await import('./recover.js')).recover },
  { path: ['runtime-config'], load: async () => (await import('./runtime-config.js')).runtimeConfigCommand },
  { path: ['fetch'], load: async () => (await import('./fetch.js')).fetch },
  { path: ['push'], load: async () => (await import('./push.js')).push },
  { path: ['pull'], load: async () => (await import('./pull.js')).pull },
];

/** The commands whose first word is `head` (every command when it is undefined), in help order. */
export async function loadCommands(head?: string): Promise<Command[]> {
  return Promise.all(commandEntries.filter((e) => head === undefined || e.path[0] === head).map((e) => e.load()));
}
