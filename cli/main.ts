#!/usr/bin/env node
/**
 * The `bundle` / `seabag` executable: the only place that touches `process`.
 */
import { statSync } from 'node:fs';
import { defaultLanes, PARALLEL_MIN_BYTES, prestartHashThreads } from '../lib/bundle/lane-threads.js';
import { packageVersion } from '../lib/util/package.js';
import { loadProgram, startsFromCodeCache } from './program-loader.js';

// A reader that went away (`bundle status | head -1`) is not a failure: stop writing, finish the
// work, and exit with its status.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') process.exitCode = 3;
  });
}

/** Whether `arg` names a file of at least `PARALLEL_MIN_BYTES` (a bundle worth hashing in lanes). */
function bigFile(arg: string): boolean {
  if (arg.startsWith('-')) return false;
  try {
    return statSync(arg).size >= PARALLEL_MIN_BYTES;
  } catch {
    return false;
  }
}

const controller = new AbortController();
let interrupted = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupted += 1;
    if (interrupted > 1) process.exit(130);
    controller.abort(new Error(`interrupted by ${signal}`));
  });
}

/**
 * Crash tests: SEABAG_FAILPOINT=STEP[@N] kills this process with SIGKILL the Nth time (default
 * first) a vessel operation passes STEP (import:blob, switch:tag, …; see lib/vessel). A real
 * SIGKILL, as a power cut would stop it; unset, nothing happens.
 */
function failpoint(spec: string | undefined): ((step: string) => void) | undefined {
  if (spec === undefined || spec === '') return undefined;
  const [name, count] = spec.split('@');
  let left = Number(count ?? '1');
  return (step) => {
    if (step === name && --left <= 0) process.kill(process.pid, 'SIGKILL');
  };
}

const onStep = failpoint(process.env['SEABAG_FAILPOINT']);
const argv = process.argv.slice(2);
if (argv.length === 1 && argv[0] === '--version') {
  // Asked by scripts and installers often: answered before yargs and the commands are loaded.
  process.stdout.write(`${packageVersion()}\n`);
} else {
  // A verify hashes on every core: the threads start now, beside the program's load, so they are
  // up when hashing begins (lib/bundle/lane-threads.ts), for a split bundle (named by its parts
  // file or a part: lib/bundle/parts.ts's suffixes; its parts are hashed as much as its blobs) or
  // a bundle big enough to hash in lanes. A guess only: a thread not needed is stopped unused.
  if (argv[0] === 'verify' && argv.slice(1).some((a) => /\.parts\.json$|\.\d{3,}$/.test(a) || bigFile(a))) prestartHashThreads(defaultLanes() - 1);
  // The program, from the script and code cache the build made (cli/program-loader.ts); a pull
  // from a registry streams faster without the cache (see startsFromCodeCache).
  const { main } = await loadProgram({ codeCache: startsFromCodeCache(argv) });
  process.exitCode = await main(argv, {
    // Opening stdin costs a few ms (a TTY or pipe handle): only a confirmation prompt reads it.
    get stdin() {
      return process.stdin;
    },
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    signal: controller.signal,
    ...(onStep === undefined ? {} : { onStep }),
  });
}
