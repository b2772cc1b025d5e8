/**
 * Loading the program (yargs, the commands, the library) for one command line.
 *
 * The build (scripts/bundle-cli.mjs) makes dist/program/HEAD.cjs for each command word (only that
 * command's code) and dist/program/all.cjs (every command, for `--help`, completion and anything
 * else), each a CommonJS script run here with `vm.Script` and the V8 code cache the build trained
 * beside it (HEAD.cache): Node 20 has no compile cache for modules, and compiling yargs and the
 * library was most of a command's start-up. A cache that V8 refuses (another Node version) only
 * costs the compile; the cache is made by the build, never written at run time.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Script } from 'node:vm';
import { packageRoot } from '../lib/util/package.js';

export type ProgramModule = typeof import('./program.js');

/** A program script, compiled and run: its exports, and the script (the build takes its code cache). */
export interface LoadedProgram {
  exports: ProgramModule;
  script: Script;
  /** The code cache was given and V8 used it. */
  cached: boolean;
}

/** Where the build puts the program scripts and their code caches. */
export function programDir(): string {
  return join(packageRoot(), 'dist', 'program');
}

/**
 * Compiles and runs one program script. It is wrapped as a CommonJS module is, plus `__seabagUrl`
 * (its `import.meta.url`) and `__seabagImport` (its `import()`, since a script compiled by `vm`
 * cannot import on its own without an experimental flag); `"use strict"` because every source is a
 * module, and modules are strict.
 */
export function runProgramScript(path: string, cachedData?: Buffer): LoadedProgram {
  const file = resolve(path);
  const source = readFileSync(file, 'utf8');
  const wrapped = `(function (exports, require, module, __filename, __dirname, __seabagUrl, __seabagImport) {"use strict";${source}\n})`;
  const script = new Script(wrapped, { filename: file, ...(cachedData === undefined ? {} : { cachedData }) });
  const module = { exports: {} as ProgramModule };
  const body = script.runInThisContext() as (...args: unknown[]) => void;
  body.call(module.exports, module.exports, createRequire(file), module, file, dirname(file), pathToFileURL(file).href, (specifier: string) => import(specifier));
  return { exports: module.exports, script, cached: cachedData !== undefined && !script.cachedDataRejected };
}

function readOptional(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

/**
 * The program for a command line whose first word is `head`: that command's own script when the
 * build made one, else the whole program. From a checkout that was not bundled, the modules.
 */
export async function loadProgram(head: string | undefined): Promise<ProgramModule> {
  const dir = programDir();
  for (const name of head !== undefined && /^[a-z][a-z-]*$/.test(head) ? [head, 'all'] : ['all']) {
    const file = join(dir, `${name}.cjs`);
    const cache = readOptional(join(dir, `${name}.cache`));
    try {
      return runProgramScript(file, cache).exports;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || (err as NodeJS.ErrnoException).path !== file) throw err;
    }
  }
  return import('./program.js');
}
