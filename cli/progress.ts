/**
 * Progress of long work on stderr, naming what is worked on (`push groke/fusion: 146 MiB of
 * 303 MiB (48%) 198 MiB/s ETA 1s`). On a terminal one line redrawn in place and cleared when the
 * work ends, so no stale line stays on screen; elsewhere (a log file, journald) one plain line
 * every 10 s or every 10%, whichever comes first; nothing with `--no-progress`. Retries are
 * told as they happen, in every mode. Never on stdout, so `--json` output stays one object.
 */
import type { Progress, RetryNotice } from '../lib/index.js';
import type { CliIO } from './io.js';
import { formatBytes, formatDuration, safeText } from './render.js';

export type ProgressMode = 'tty' | 'plain' | 'off';

/** A plain (non-terminal) line at least this often while work goes on… */
export const PLAIN_INTERVAL_MS = 10_000;
/** …or whenever the work has gone this many percent further. */
export const PLAIN_STEP_PERCENT = 10;

/** `registry 127.0.0.1:5000 not answering, retry 2 of 5 in 2 s…` */
export function retryLine(r: RetryNotice): string {
  const what = r.code === 'E_REGISTRY_UNREACHABLE' ? 'not answering' : r.status !== undefined ? `answered ${r.status}` : r.reason;
  const wait = r.delayMs < 1000 ? (r.delayMs / 1000).toFixed(1) : String(Math.round(r.delayMs / 1000));
  return `registry ${r.registry} ${what}, retry ${r.attempt} of ${r.of} in ${wait} s…`;
}

export class ProgressReporter {
  readonly #io: CliIO;
  readonly #mode: ProgressMode;
  #phase = '';
  #started = Date.now();
  #lastDraw = 0;
  #lastPercent = -1;
  #drawn = false;
  #lastDone = -1;
  #lastTotal: number | undefined;
  #samples: { t: number; done: number }[] = [];

  readonly #now: () => number;

  /** `now` is the clock (tests pass their own). */
  constructor(io: CliIO, mode: ProgressMode, now: () => number = Date.now) {
    this.#io = io;
    this.#mode = mode;
    this.#now = now;
    this.#started = now();
  }

  static modeFor(io: CliIO, wanted: boolean): ProgressMode {
    if (!wanted) return 'off';
    return io.stderr.isTTY === true ? 'tty' : 'plain';
  }

  /** The callback to hand to the library. */
  readonly update = (p: Progress): void => {
    if (p.retry !== undefined) {
      this.#clear();
      this.#io.stderr.write(`${retryLine(p.retry)}\n`);
      return;
    }
    if (this.#mode === 'off') return;
    const now = this.#now();
    if (p.phase !== this.#phase) {
      this.finish();
      this.#phase = p.phase;
      this.#started = now;
      this.#samples = [];
      this.#lastDraw = 0;
      this.#lastPercent = -1;
    }
    this.#samples.push({ t: now, done: p.done });
    while (this.#samples.length > 2 && now - (this.#samples[0]?.t ?? now) > 5_000) this.#samples.shift();
    const complete = p.total !== undefined && p.done >= p.total;
    if (complete && this.#lastDone === p.done && this.#lastTotal === p.total) return;
    const percent = p.total === undefined || p.total === 0 ? undefined : Math.floor((p.done / p.total) * 100);
    if (this.#mode === 'tty') {
      if (!complete && now - this.#lastDraw < 100) return;
    } else {
      const first = this.#lastDraw === 0;
      const stepped = percent !== undefined && Math.floor(percent / PLAIN_STEP_PERCENT) > Math.floor(this.#lastPercent / PLAIN_STEP_PERCENT);
      const due = now - this.#lastDraw >= PLAIN_INTERVAL_MS;
      if (!complete && !first && !stepped && !due) return;
      if (percent !== undefined) this.#lastPercent = percent;
    }
    this.#lastDone = p.done;
    this.#lastTotal = p.total;
    this.#lastDraw = now;
    this.#draw(p, now);
  };

  #rate(now: number, done: number): number {
    const first = this.#samples[0];
    if (first === undefined || now - first.t < 250) {
      const elapsed = (now - this.#started) / 1000;
      return elapsed > 0 ? done / elapsed : 0;
    }
    return (done - first.done) / ((now - first.t) / 1000);
  }

  #draw(p: Progress, now: number): void {
    const item = p.item?.replace(/^sha256:([0-9a-f]{12})[0-9a-f]{52}$/, 'sha256:$1');
    const what = `${p.phase}${item ? ` ${item}` : ''}:`;
    if (p.unit !== undefined && p.unit !== 'bytes') {
      this.#emit(`${what} ${p.done}${p.total === undefined ? '' : ` of ${p.total}`} ${p.unit}`);
      return;
    }
    const rate = this.#rate(now, p.done);
    const parts = [what, formatBytes(p.done)];
    if (p.total !== undefined) {
      const pct = p.total === 0 ? 100 : Math.min(100, (p.done / p.total) * 100);
      parts.push(`of ${formatBytes(p.total)} (${pct.toFixed(0)}%)`);
    }
    parts.push(`${formatBytes(Math.max(0, rate))}/s`);
    if (p.total !== undefined && rate > 0 && p.done < p.total) parts.push(`ETA ${formatDuration((p.total - p.done) / rate)}`);
    this.#emit(parts.join(' '));
  }

  #emit(raw: string): void {
    // Item names come from bundles and registries: escaped before our own cursor codes go on.
    const line = safeText(raw);
    if (this.#mode === 'tty') {
      const width = Math.max(20, (this.#io.stderr.columns || 80) - 1);
      this.#io.stderr.write(`\r\x1b[2K${line.slice(0, width)}`);
      this.#drawn = true;
    } else {
      this.#io.stderr.write(`${line}\n`);
    }
  }

  /** Wipes the line being redrawn on a terminal (before another line is printed there). */
  #clear(): void {
    if (this.#mode === 'tty' && this.#drawn) this.#io.stderr.write('\r\x1b[2K');
    this.#drawn = false;
  }

  /** The work ended: on a terminal the progress line is cleared, so nothing stale stays. */
  finish(): void {
    this.#clear();
  }
}
