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
