/**
 * What a command may touch of the outside world, passed in so tests can run `main` in-process.
 */
import type { Readable, Writable } from 'node:stream';

export interface CliIO {
  /** Where a person at a terminal answers `Proceed? [y/N]` (absent: never asked). */
  stdin?: Readable & { isTTY?: boolean };
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  /** Fires on Ctrl-C (the entry point wires SIGINT/SIGTERM to it). */
  signal?: AbortSignal;
  /** Told of each durable step of a vessel operation (the entry point wires crash-test failpoints here). */
  onStep?: (step: string) => void;
}
