/**
 * Rendering for people and for programs: `error[E_CODE]: message` plus a hint on stderr, or with
 * `--json` exactly one JSON object on stdout; byte counts and small tables.
 */
import { exitStatusOf, fromSystemError, SeabagError } from '../lib/errors.js';
import type { CliIO } from './io.js';
import { redactText } from '../lib/util/redact.js';

/**
 * Characters that drive a terminal rather than show on it: C0 controls (ESC, CR, BEL, backspace…),
 * DEL, C1 controls (U+0080–U+009F, CSI among them), and the bidirectional overrides and isolates
 * that reorder what is shown ("Trojan Source", CVE-2021-42574), plus the Unicode line separators.
 */
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c: string): string {
  const code = c.codePointAt(0) ?? 0;
  if (c === '\n') return '\\n';
  if (c === '\r') return '\\r';
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
}

/**
 * Text from a bundle, a registry or a spec, made safe to print: every control character is shown
 * escaped (`\x1b`, `\r`, `\u{202e}`), never sent raw to the terminal. Tabs stay.
 */
export function safeText(text: string): string {
  return text.replace(CONTROL, escapeChar);
}

/** Writes one line (or several, split on the newlines the program put there), every control character escaped. */
export function writeLine(stream: CliIO['stdout'], line = ''): void {
  stream.write(`${line.split('\n').map(safeText).join('\n')}\n`);
}

/**
 * The one JSON object a `--json` command prints. JSON.stringify escapes C0 controls itself; DEL,
 * C1 controls, bidi overrides and line separators are escaped as `\uXXXX` too, which keeps the
 * JSON valid and the same once parsed.
 */
export function printJSON(io: CliIO, value: Record<string, unknown>): void {
  // Outside strings JSON has only its own newlines and spaces; C0 inside strings is already escaped.
  const text = JSON.stringify(value, null, 2).replace(JSON_UNSAFE, (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`);
  io.stdout.write(`${text}\n`);
}

/** The exit status of a command stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it). */
export const EXIT_INTERRUPTED = 130;

/**
 * Turns anything thrown into a SeabagError: a system error the library did not wrap keeps its
 * errno's code (E_IO, E_DISK_FULL…); anything else is a bug: E_INTERNAL, asking for a report.
 */
export function asSeabagError(err: unknown): SeabagError {
  if (err instanceof SeabagError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  if (typeof e?.code === 'string' && typeof e.syscall === 'string') return fromSystemError(err, e.syscall);
  return new SeabagError('E_INTERNAL', `unexpected failure: ${e?.message ?? String(err)}`, {
    cause: err,
    hint: 'this is a bug in seabag: please report it with the output of the same command run with SEABAG_DEBUG=1',
  });
}

/**
 * Reports a command stopped by Ctrl-C or SIGTERM: what changed (the error's `details.changed`,
 * else nothing that runs) and how to go on; returns 130.
 */
export function reportInterrupt(io: CliIO, err: unknown, json: boolean): number {
  const e = asSeabagError(err);
  const changed = typeof e.details['changed'] === 'string' ? e.details['changed'] : 'nothing that runs has changed';
  const next = e.code === 'E_SWITCH_INCOMPLETE' ? 'run `bundle status`, then `bundle recover --abort` or `--finish`' : 'run the same command to resume';
  const message = `interrupted: ${changed}; ${next}`;
  if (json) printJSON(io, { ok: false, error: { code: 'E_ABORTED', message, details: { ...e.details, interrupted: true } } });
  else writeLine(io.stderr, message);
  return EXIT_INTERRUPTED;
}

/**
 * Reports a failure and returns the exit status for it.
 */
export function reportError(io: CliIO, err: unknown, json: boolean): number {
  const e = asSeabagError(err);
  if (json) {
    printJSON(io, { ok: false, error: { code: e.code, message: e.message, details: e.details, ...(e.hint ? { hint: e.hint } : {}) } });
  } else {
    // A message is one line: a newline inside it (from a registry, say) is shown, not obeyed.
    writeLine(io.stderr, `error[${e.code}]: ${safeText(e.message)}`);
    if (e.hint !== undefined) writeLine(io.stderr, `  hint: ${safeText(e.hint)}`);
    if (io.env['SEABAG_DEBUG'] === '1') {
      // Causes are Node's own errors, which may quote a URL with its upload token: redacted too.
      for (let c: unknown = e; c instanceof Error; c = c.cause) writeLine(io.stderr, redactText(c.stack ?? String(c)));
    }
  }
  return exitStatusOf(e);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${UNITS[unit]}`;
}

/** Seconds → "1h02m", "3m05s", "12s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** Left-aligned columns with two spaces between them. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}

/** `sha256:abcdef…` shortened for tables. */
export function shortDigest(digest: string): string {
  return digest.startsWith('sha256:') ? `sha256:${digest.slice(7, 19)}` : digest;
}
