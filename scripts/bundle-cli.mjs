// Bundles the CLI: dist/seabag.mjs (the entry: `--version`, then the loader) and dist/program/
// (cli/program-loader.ts says how they are loaded):
//   HEAD.cjs   one CommonJS script per command word (keygen, trust, status, inspect…): yargs, the
//              program and that command's code only, so `bundle status` compiles no build, verify
//              or registry code;
//   all.cjs    every command (`--help`, completion, a mistyped command);
//   NAME.cache the V8 code cache of each, trained by running its commands (train-program-cache.mjs).
// One file each, not ES module chunks: with Node 20 each module of a chunk graph costs a resolve,
// a read and a compile of its own, and only a script can be given a code cache.
// yaml, ajv, tar-stream and execa stay outside and are loaded only by the commands that use them
// (lib/util/lazy.ts).
import { build } from 'esbuild';
import { chmod, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { trainProgramCaches } from './train-program-cache.mjs';

// The chunks of earlier builds, and the last build's scripts: nothing imports them any more.
await rm('dist/chunks', { recursive: true, force: true });
await rm('dist/program', { recursive: true, force: true });

const stringWidthLite = {
  // yargs' and cliui's string-width, swapped for a light one (scripts/string-width-lite.mjs says why).
  name: 'string-width-lite',
  setup(b) {
    b.onResolve({ filter: /^string-width$/ }, () => ({ path: new URL('./string-width-lite.mjs', import.meta.url).pathname }));
  },
};
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
      // The loader's last resort (a checkout without dist/program) is the unbundled program.
      name: 'program-modules',
      setup(b) {
        b.onResolve({ filter: /^\.\/program\.js$/ }, () => ({ path: './cli/program.js', external: true }));
      },
    },
  ],
});

// Which command words each module of cli/commands defines (from the built modules themselves).
const commandsDir = resolve('dist/cli/commands');
const headsOf = new Map();
for (const file of (await readdir(commandsDir)).filter((f) => f.endsWith('.js') && f !== 'index.js')) {
  const mod = await import(pathToFileURL(`${commandsDir}/${file}`).href);
  const heads = Object.values(mod).filter((v) => Array.isArray(v?.path) && typeof v?.run === 'function').map((c) => c.path[0]);
  if (heads.length > 0) headsOf.set(`./${file}`, new Set(heads));
}
const { commandEntries } = await import(pathToFileURL(`${commandsDir}/index.js`).href);
const heads = [...new Set(commandEntries.map((e) => e.path[0]))];

for (const group of ['all', ...heads]) {
  await build({
    entryPoints: { [group]: 'dist/cli/program.js' },
    outdir: 'dist/program',
    outExtension: { '.js': '.cjs' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external,
    define: { 'import.meta.url': '__seabagUrl' },
    logLevel: 'warning',
    plugins: [
      stringWidthLite,
      {
        // In HEAD.cjs, the other commands' modules are left out: loading one fails plainly.
        name: 'one-command',
        setup(b) {
          if (group === 'all') return;
          b.onResolve({ filter: /^\.\/[\w-]+\.js$/ }, (a) => {
            if (!a.importer.endsWith(`${commandsDir}/index.js`) || headsOf.get(a.path)?.has(group) === true) return undefined;
            return { path: a.path, namespace: 'left-out' };
          });
          b.onLoad({ filter: /.*/, namespace: 'left-out' }, (a) => ({
            contents: `throw new Error(${JSON.stringify(`internal: ${a.path} is not in dist/program/${group}.cjs`)});`,
            loader: 'js',
          }));
        },
      },
    ],
  });
  // import() of what stays outside (execa, node:worker_threads) goes through the loader's own.
  const file = `dist/program/${group}.cjs`;
  const code = (await readFile(file, 'utf8')).replace(/\bimport\("/g, '__seabagImport("');
  if (/\bimport\s*\(/.test(code.replace(/"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`/g, '""'))) {
    throw new Error(`${file} still calls import() in a form the loader does not rewrite`);
  }
  await writeFile(file, code);
}

await trainProgramCaches('dist/program');

// Run directly (the bin entries, and the CI example's `bundle` on PATH).
await chmod('dist/seabag.mjs', 0o755);
