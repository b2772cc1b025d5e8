/**
 * Rendering for people and for programs: `error[E_CODE]: message` plus a hint on stderr, or with
 * `--json` exactly one JSON object on stdout; byte counts and small tables.
 */
import { exitStatusOf, SeabagError } from '../lib/index.js';
import type { CliIO } from './io.js';

export function writeLine(stream: CliIO['stdout'], line = ''): void {
  stream.write(`${line}\n`);
}

/** The one JSON object a `--json` command prints. */
export function printJSON(io: CliIO, value: Record<string, unknown>): void {
  writeLine(io.stdout, JSON.stringify(value, null, 2));
}

/** Turns anything thrown into a SeabagError (unknown errors become E_IO with their message). */
export function asSeabagError(err: unknown): SeabagError {
  if (err instanceof SeabagError) return err;
  const e = err as NodeJS.ErrnoException;
  return new SeabagError('E_IO', e?.message ?? String(err), { cause: err });
}

/**
 * Reports a failure and returns the exit status for it.
 */
export function reportError(io: CliIO, err: unknown, json: boolean): number {
  const e = asSeabagError(err);
  if (json) {
    printJSON(io, { ok: false, error: { code: e.code, message: e.message, details: e.details, ...(e.hint ? { hint: e.hint } : {}) } });
  } else {
    writeLine(io.stderr, `error[${e.code}]: ${e.message}`);
    if (e.hint !== undefined) writeLine(io.stderr, `  hint: ${e.hint}`);
    if (io.env['SEABAG_DEBUG'] === '1') {
      for (let c: unknown = e; c instanceof Error; c = c.cause) writeLine(io.stderr, c.stack ?? String(c));
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
