/**
 * CommonJS scripts the build makes (dist/program.cjs, dist/yaml.cjs), run with `vm.Script` and the
 * V8 code cache the build trained beside each one (`.cache` for `.cjs`): Node 20 has no compile
 * cache for modules, and compiling a big script is most of what loading it costs.
 *
 * A cache is made by the build only, never written at run time. It starts with the sha256 of the
 * script it was made from: V8 itself checks only the script's length, so a script edited in place
 * would otherwise run the code of the old one. A cache that is missing, made from other bytes, or
 * refused by V8 (another Node version, other V8 flags) only costs the compile: the script runs
 * from its source.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Script } from 'node:vm';

/** A script, compiled and run: its exports, and the script (the build takes its code cache). */
export interface LoadedScript<T> {
  exports: T;
  script: Script;
  /** sha256 of the script's bytes. */
  digest: Buffer;
  /** A code cache made from these very bytes was found and V8 used it. */
  cached: boolean;
}

/** The code cache beside a script: `NAME.cache` for `NAME.cjs`. */
export function cacheFileOf(file: string): string {
  return file.replace(/\.cjs$/, '') + '.cache';
}

/**
 * Compiles and runs one CommonJS script, with the code cache in `cacheFile` when it was made from
 * these bytes. It is wrapped as a CommonJS module is, plus `__seabagUrl` (its `import.meta.url`)
 * and `__seabagImport` (its `import()`, since a script compiled by `vm` cannot import on its own
 * without an experimental flag: the caller's `dynamicImport`, for a script that imports);
 * `"use strict"` because every source is a module, and modules are strict.
 *
 * @throws the script's own errors; ENOENT (a Node error) when there is no script at `path`
 */
export function runCachedScript<T>(path: string, cacheFile?: string, dynamicImport?: (specifier: string) => Promise<unknown>): LoadedScript<T> {
  const file = resolve(path);
  const bytes = readFileSync(file);
  const digest = createHash('sha256').update(bytes).digest();
  const stored = cacheFile === undefined ? undefined : readOptional(cacheFile);
  const cachedData = stored !== undefined && stored.length > digest.length && stored.subarray(0, digest.length).equals(digest) ? stored.subarray(digest.length) : undefined;
  const wrapped = `(function (exports, require, module, __filename, __dirname, __seabagUrl, __seabagImport) {"use strict";${bytes.toString('utf8')}\n})`;
  const script = new Script(wrapped, { filename: file, ...(cachedData === undefined ? {} : { cachedData }) });
  const module = { exports: {} as T };
  const body = script.runInThisContext() as (...args: unknown[]) => void;
  body.call(module.exports, module.exports, createRequire(file), module, file, dirname(file), pathToFileURL(file).href, dynamicImport);
  return { exports: module.exports, script, digest, cached: cachedData !== undefined && !script.cachedDataRejected };
}

/** Writes the code cache of a loaded script (the build's training), marked with the script's sha256. */
export function writeScriptCache(loaded: LoadedScript<unknown>, cacheFile: string): void {
  writeFileSync(cacheFile, Buffer.concat([loaded.digest, loaded.script.createCachedData()]));
}

function readOptional(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}
