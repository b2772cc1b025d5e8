/**
 * Loading the program (yargs, the commands, the library).
 *
 * The build (scripts/bundle-cli.mjs) makes dist/program.cjs, the whole program as one CommonJS
 * script, run here with the V8 code cache the build trained beside it (dist/program.cache;
 * lib/util/cached-script.ts says how a cache is checked): compiling yargs and the library was
 * most of a command's start-up. Inside it, a command's own code is initialised only when that
 * command runs (cli/commands/index.ts).
 */
import { join } from 'node:path';
import { packageRoot } from '../lib/util/package.js';
import { runCachedScript, writeScriptCache, type LoadedScript } from '../lib/util/cached-script.js';

export type ProgramModule = typeof import('./program.js');

/** A program script, compiled and run: its exports, and the script (the build takes its code cache). */
export type LoadedProgram = LoadedScript<ProgramModule>;

/** The program script the build makes, and its code cache beside it (`.cache` for `.cjs`). */
export function programScript(): { file: string; cache: string } {
  const dir = join(packageRoot(), 'dist');
  return { file: join(dir, 'program.cjs'), cache: join(dir, 'program.cache') };
}

/** Compiles and runs one program script, from its code cache when one made from its bytes is given. */
export function runProgramScript(path: string, cacheFile?: string): LoadedProgram {
  return runCachedScript<ProgramModule>(path, cacheFile, (specifier) => import(specifier));
}

/** Writes the code cache of a loaded program (the build's training), marked with the script's sha256. */
export function writeProgramCache(loaded: LoadedProgram, cacheFile: string): void {
  writeScriptCache(loaded, cacheFile);
}

/**
 * Whether a command line starts from the code cache: every one but those that stream a release
 * from a registry (`import oci://…`, `pull oci://…`). V8 builds every function the cache holds at
 * once, into the old generation; while gigabytes stream through sockets, each minor collection
 * their buffers force then finds the old generation close enough to its limit to start a full
 * mark-compact (100–130 per 2 GiB pull, against 2 for a program that loads less). Without the
 * cache a 2 GiB pull measured 8.45–8.66 s against 9.00–9.09 s (user CPU 3.8–4.2 s against
 * 4.6–4.8 s, bench/satellite-lab.ts, both orders); its start costs ~30 ms more.
 */
export function startsFromCodeCache(argv: readonly string[]): boolean {
  return !((argv[0] === 'import' || argv[0] === 'pull') && argv.slice(1).some((a) => a.startsWith('oci://')));
}

/**
 * The program: the bundled script, with its code cache unless `codeCache` is false; from a
 * checkout that was not bundled, the modules.
 */
export async function loadProgram(options: { codeCache?: boolean } = {}): Promise<ProgramModule> {
  const { file, cache } = programScript();
  try {
    return runProgramScript(file, options.codeCache === false ? undefined : cache).exports;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || (err as NodeJS.ErrnoException).path !== file) throw err;
  }
  return import('./program.js');
}
