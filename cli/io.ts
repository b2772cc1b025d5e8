/**
 * What a command may touch of the outside world, passed in so tests can run `main` in-process.
 */
import type { Writable } from 'node:stream';

export interface CliIO {
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  /** Fires on Ctrl-C (the entry point wires SIGINT/SIGTERM to it). */
  signal?: AbortSignal;
  /** Told of each durable step of a vessel operation (the entry point wires crash-test failpoints here). */
  onStep?: (step: string) => void;
}
