// Bundles the CLI (cli/program-loader.ts says how the pieces are loaded):
//   dist/seabag.mjs     the entry: `--version`, else it loads the program;
//   dist/program.cjs    the whole program (yargs, every command, the library) as one CommonJS
//                       script: with Node 20 each module of an ES module graph costs a resolve, a
//                       read and a compile of its own, and only a script can be given a code cache;
//   dist/program.cache  its V8 code cache, trained by running commands (train-program-cache.mjs);
//   dist/yaml.cjs       yaml (the package) as one script, and dist/yaml.cache its code cache.
// A command's own modules are initialised only when it runs (cli/commands/index.ts imports them
// on demand). yaml, ajv, tar-stream and execa stay outside and are loaded only by the commands
// that use them (lib/util/lazy.ts).
import { build } from 'esbuild';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { trainProgramCaches, trainYamlCache } from './train-program-cache.mjs';

// What earlier builds made and nothing loads any more.
await rm('dist/chunks', { recursive: true, force: true });
await rm('dist/program', { recursive: true, force: true });

const external = ['yaml', 'ajv', 'ajv/*', 'tar-stream', 'execa'];

await build({
  entryPoints: { seabag: 'dist/cli/main.js' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external,
  logLevel: 'warning',
  plugins: [
    {
      // The loader's last resort (a checkout without dist/program.cjs) is the unbundled program.
      name: 'program-modules',
      setup(b) {
        b.onResolve({ filter: /^\.\/program\.js$/ }, () => ({ path: './cli/program.js', external: true }));
      },
    },
  ],
});

/** The CommonJS scripts beside the entry (the program, yaml): one file each in dist/, `.cjs`. */
const script = { outdir: 'dist', outExtension: { '.js': '.cjs' }, bundle: true, platform: 'node', format: 'cjs', target: 'node20', logLevel: 'warning' };

await build({
  ...script,
  entryPoints: { program: 'dist/cli/program.js' },
  external,
  define: { 'import.meta.url': '__seabagUrl' },
  plugins: [
    {
      // yargs' and cliui's string-width, and yargs' assert, swapped for light ones
      // (scripts/string-width-lite.mjs and scripts/assert-lite.mjs say why).
      name: 'lite-dependencies',
      setup(b) {
        b.onResolve({ filter: /^string-width$/ }, () => ({ path: new URL('./string-width-lite.mjs', import.meta.url).pathname }));
        b.onResolve({ filter: /^assert$/ }, (a) => (/[\\/]node_modules[\\/]yargs[\\/]/.test(a.importer) ? { path: new URL('./assert-lite.mjs', import.meta.url).pathname } : undefined));
      },
    },
  ],
});
// yaml as one script (lib/util/lazy.ts loads it, when a command reads YAML): ~60 modules
// resolved, read and compiled one by one cost ~24 ms, one file ~10 ms, one file from its code
// cache ~3 ms.
await build({ ...script, entryPoints: { yaml: 'yaml' } });
await trainYamlCache('dist/yaml.cache');
// import() of what stays outside (execa, node:worker_threads) goes through the loader's own.
const code = (await readFile('dist/program.cjs', 'utf8')).replace(/\bimport\("/g, '__seabagImport("');
const outsideStrings = code.replace(/"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`/g, '""');
if (/\bimport\s*\(/.test(outsideStrings)) throw new Error('dist/program.cjs calls import() in a form the loader does not rewrite');
await writeFile('dist/program.cjs', code);

await trainProgramCaches('dist/program.cjs', 'dist/program.cache');

// Run directly (the bin entries, and the CI example's `bundle` on PATH).
await chmod('dist/seabag.mjs', 0o755);
