#!/usr/bin/env node
/**
 * The `bundle` / `seabag` executable: the only place that touches `process`.
 */
import { main } from './program.js';

const controller = new AbortController();
let interrupted = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupted += 1;
    if (interrupted > 1) process.exit(130);
    controller.abort(new Error(`interrupted by ${signal}`));
  });
}

process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
});
