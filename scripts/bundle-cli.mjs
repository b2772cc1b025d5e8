// Bundles the CLI (dist/seabag.mjs and its chunks): a command starts in about half the time when
// Node does not resolve and compile a few hundred modules first. yaml, ajv, tar-stream and execa
// stay outside and are loaded only by the commands that use them (lib/util/lazy.ts).
import { build } from 'esbuild';
import { rm } from 'node:fs/promises';

// Chunk names carry a hash: drop the last build's, which nothing imports any more.
await rm('dist/chunks', { recursive: true, force: true });

await build({
  // The entry (dist/seabag.mjs) is small; what it imports on demand (the program, with yargs and
  // the commands) lands in dist/chunks/, so `bundle --version` compiles none of it.
  entryPoints: { seabag: 'dist/cli/main.js' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['yaml', 'ajv', 'ajv/*', 'tar-stream', 'execa'],
  banner: { js: "import { createRequire as __seabagRequire } from 'node:module'; const require = __seabagRequire(import.meta.url);" },
  logLevel: 'warning',
  plugins: [
    {
      // yargs' and cliui's string-width, swapped for a light one (scripts/string-width-lite.mjs says why).
      name: 'string-width-lite',
      setup(b) {
        b.onResolve({ filter: /^string-width$/ }, () => ({ path: new URL('./string-width-lite.mjs', import.meta.url).pathname }));
      },
    },
  ],
});

// Run directly (the bin entries, and the CI example's `bundle` on PATH).
const { chmod } = await import('node:fs/promises');
await chmod('dist/seabag.mjs', 0o755);
