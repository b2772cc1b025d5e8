/**
 * Running the program as a user would: in-process through `main` (fast, same code path as the
 * binary after argument parsing), or as a child process of the built binary when a test must
 * kill it.
 */
import { Writable } from 'node:stream';
import { execa } from 'execa';
import type { CliIO } from '../../cli/io.js';
import { main } from '../../cli/program.js';

export const BIN = new URL('../../dist/seabag.mjs', import.meta.url).pathname;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed, when it is JSON. */
  json: Record<string, unknown> & { ok?: boolean; error?: { code: string; message: string; details: Record<string, unknown> } };
}

class Capture extends Writable {
  text = '';
  isTTY = false;
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/**
 * Runs `bundle ARGS` in this process with the given environment (added to a clean one); `io` adds
 * what the entry point would wire (an interrupt signal, a step observer for fault tests).
 */
export async function runCli(args: string[], env: Record<string, string> = {}, io: Pick<CliIO, 'signal' | 'onStep'> = {}): Promise<CliResult> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(args, { stdout, stderr, env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/root', ...env }, ...io });
  let json = {} as CliResult['json'];
  try {
    json = JSON.parse(stdout.text) as CliResult['json'];
  } catch {
    // not JSON output
  }
  return { code, stdout: stdout.text, stderr: stderr.text, json };
}

/** Starts the built binary as a child process (for tests that kill it). */
export function spawnCli(args: string[], env: Record<string, string> = {}) {
  return execa('node', [BIN, ...args], { env: { ...env }, extendEnv: true, reject: false, all: true });
}
