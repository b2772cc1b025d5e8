/**
 * Loading the program (yargs, the commands, the library).
 *
 * The build (scripts/bundle-cli.mjs) makes dist/program.cjs, the whole program as one CommonJS
 * script, run here with `vm.Script` and the V8 code cache the build trained beside it
 * (dist/program.cache): Node 20 has no compile cache for modules, and compiling yargs and the
 * library was most of a command's start-up. Inside it, a command's own code is initialised only
 * when that command runs (cli/commands/index.ts). A cache that V8 refuses (another Node version)
 * only costs the compile; the cache is made by the build, never written at run time. The cache
 * starts with the sha256 of the script it was made from: V8 itself checks only the script's
 * length, so a script edited in place would otherwise run the code of the old one.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
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
  /** sha256 of the script's bytes. */
  digest: Buffer;
  /** A code cache made from these very bytes was found and V8 used it. */
  cached: boolean;
}

/** The program script the build makes, and its code cache beside it (`.cache` for `.cjs`). */
export function programScript(): { file: string; cache: string } {
  const dir = join(packageRoot(), 'dist');
  return { file: join(dir, 'program.cjs'), cache: join(dir, 'program.cache') };
}

/**
 * Compiles and runs one program script. It is wrapped as a CommonJS module is, plus `__seabagUrl`
 * (its `import.meta.url`) and `__seabagImport` (its `import()`, since a script compiled by `vm`
 * cannot import on its own without an experimental flag); `"use strict"` because every source is a
 * module, and modules are strict.
 */
export function runProgramScript(path: string, cacheFile?: string): LoadedProgram {
  const file = resolve(path);
  const bytes = readFileSync(file);
  const digest = createHash('sha256').update(bytes).digest();
  const stored = cacheFile === undefined ? undefined : readOptional(cacheFile);
  const cachedData = stored !== undefined && stored.length > digest.length && stored.subarray(0, digest.length).equals(digest) ? stored.subarray(digest.length) : undefined;
  const wrapped = `(function (exports, require, module, __filename, __dirname, __seabagUrl, __seabagImport) {"use strict";${bytes.toString('utf8')}\n})`;
  const script = new Script(wrapped, { filename: file, ...(cachedData === undefined ? {} : { cachedData }) });
  const module = { exports: {} as ProgramModule };
  const body = script.runInThisContext() as (...args: unknown[]) => void;
  body.call(module.exports, module.exports, createRequire(file), module, file, dirname(file), pathToFileURL(file).href, (specifier: string) => import(specifier));
  return { exports: module.exports, script, digest, cached: cachedData !== undefined && !script.cachedDataRejected };
}

/** Writes the code cache of a loaded program (the build's training), marked with the script's sha256. */
export function writeProgramCache(loaded: LoadedProgram, cacheFile: string): void {
  writeFileSync(cacheFile, Buffer.concat([loaded.digest, loaded.script.createCachedData()]));
}

function readOptional(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
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
