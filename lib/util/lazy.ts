/**
 * Dependencies loaded on first use, so a command pays only for what it needs (loading yaml, ajv
 * and tar-stream up front cost every invocation about a tenth of a second).
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as YAML from 'yaml';
import type * as AjvModule from 'ajv/dist/2020.js';
import type TarStream from 'tar-stream';
import type * as NodeHttp from 'node:http';
import type * as NodeHttps from 'node:https';
import type * as NodeTls from 'node:tls';
import type * as NodeChildProcess from 'node:child_process';
import { cacheFileOf, runCachedScript, type LoadedScript } from './cached-script.js';
import { packageRoot } from './package.js';

const require = createRequire(import.meta.url);

function once<T>(load: () => T): () => T {
  let done = false;
  let loaded: T;
  return () => {
    if (!done) {
      loaded = load();
      done = true;
    }
    return loaded;
  };
}

// yaml is ~60 CommonJS modules: ~24 ms to resolve, read and compile one by one. The build makes
// them one script (dist/yaml.cjs, the same package; scripts/bundle-cli.mjs) and trains its V8 code
// cache (dist/yaml.cache): ~10 ms to compile and run without the cache, ~3 ms with it. The package
// itself where that script is not built.
/** The bundled yaml script as loaded (the build trains its code cache); undefined where it is not built. */
export const yamlScript = once((): LoadedScript<typeof YAML> | undefined => {
  const bundled = join(packageRoot(), 'dist', 'yaml.cjs');
  try {
    return runCachedScript<typeof YAML>(bundled, cacheFileOf(bundled));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || (err as NodeJS.ErrnoException).path !== bundled) throw err;
    return undefined;
  }
});
export const yaml = once(() => yamlScript()?.exports ?? (require('yaml') as typeof YAML));
export const ajv2020 = once(() => require('ajv/dist/2020.js') as typeof AjvModule);
export const tarStream = once(() => require('tar-stream') as typeof TarStream);

// Node's HTTP, TLS and child-process modules are not in its start-up snapshot: about 10 ms to
// load, which `bundle status` or `inspect` never needs.
export const nodeHttp = once(() => require('node:http') as typeof NodeHttp);
export const nodeHttps = once(() => require('node:https') as typeof NodeHttps);
export const nodeTls = once(() => require('node:tls') as typeof NodeTls);
export const nodeChildProcess = once(() => require('node:child_process') as typeof NodeChildProcess);

/** execa is ESM-only: imported when a program must run. */
export async function execa(): Promise<typeof import('execa')['execa']> {
  return (await import('execa')).execa;
}
