// Bundles the CLI into one file (dist/seabag.mjs): a command starts in about half the time when
// Node does not resolve and compile a few hundred modules first. yaml, ajv, tar-stream and execa
// stay outside and are loaded only by the commands that use them (lib/util/lazy.ts).
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/seabag.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['yaml', 'ajv', 'ajv/*', 'tar-stream', 'execa'],
  banner: { js: "import { createRequire as __seabagRequire } from 'node:module'; const require = __seabagRequire(import.meta.url);" },
  logLevel: 'warning',
});

// Run directly (the bin entries, and the CI example's `bundle` on PATH).
const { chmod } = await import('node:fs/promises');
await chmod('dist/seabag.mjs', 0o755);
