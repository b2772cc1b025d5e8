/** The node flags worker threads are started with (verify's hashing lanes, build's hashing thread). */
/**
 * A thread's node flags: not the parent's loaders (tsx in tests), only its profiling flags, so
 * `--cpu-prof` covers the threads too (with their values: `--cpu-prof-dir DIR` is two arguments).
 */
export function workerArgs(argv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i] as string;
    if (!a.startsWith('--cpu-prof')) continue;
    out.push(a);
    // `--cpu-prof-dir DIR`, `--cpu-prof-interval N`: the value is the next argument.
    if (a !== '--cpu-prof' && !a.includes('=') && i + 1 < argv.length) out.push(argv[(i += 1)] as string);
  }
  return out;
}

type WorkerThreads = typeof import('node:worker_threads');

/**
 * node:worker_threads, for the commands that start a thread (~1.5 ms to load; a thread answers its
 * first message ~20–40 ms after it is made, on another core). Made at once where node can
 * (`process.getBuiltinModule`, Node ≥ 20.16): a thread asked for while the program still loads
 * (all of it synchronous) then starts beside the load, not after it, as `import()` would.
 */
export function withWorkerThreads<T>(use: (threads: WorkerThreads) => T): Promise<T> {
  const now = (process as { getBuiltinModule?: (id: 'node:worker_threads') => WorkerThreads | undefined }).getBuiltinModule?.('node:worker_threads');
  if (now === undefined) return import('node:worker_threads').then(use);
  try {
    return Promise.resolve(use(now));
  } catch (err) {
    return Promise.reject(err);
  }
}
