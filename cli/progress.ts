/**
 * Progress of long work on stderr: on a terminal one line redrawn in place (bytes, rate, ETA);
 * elsewhere a few plain lines (at most one every few seconds); nothing with `--no-progress`.
 * Never on stdout, so `--json` output stays one object.
 */
import type { Progress } from '../lib/index.js';
import type { CliIO } from './io.js';
import { formatBytes, formatDuration, safeText } from './render.js';

export type ProgressMode = 'tty' | 'plain' | 'off';

export class ProgressReporter {
  readonly #io: CliIO;
  readonly #mode: ProgressMode;
  #phase = '';
  #started = Date.now();
  #lastDraw = 0;
  #drawn = false;
  #lastDone = -1;
  #lastTotal: number | undefined;
  #samples: { t: number; done: number }[] = [];

  constructor(io: CliIO, mode: ProgressMode) {
    this.#io = io;
    this.#mode = mode;
  }

  static modeFor(io: CliIO, wanted: boolean): ProgressMode {
    if (!wanted) return 'off';
    return io.stderr.isTTY === true ? 'tty' : 'plain';
  }

  /** The callback to hand to the library. */
  readonly update = (p: Progress): void => {
    if (this.#mode === 'off') return;
    const now = Date.now();
    if (p.phase !== this.#phase) {
      this.finish();
      this.#phase = p.phase;
      this.#started = now;
      this.#samples = [];
      this.#lastDraw = 0;
    }
    this.#samples.push({ t: now, done: p.done });
    while (this.#samples.length > 2 && now - (this.#samples[0]?.t ?? now) > 5_000) this.#samples.shift();
    const complete = p.total !== undefined && p.done >= p.total;
    const interval = this.#mode === 'tty' ? 100 : 5_000;
    if (complete && this.#lastDone === p.done && this.#lastTotal === p.total) return;
    if (!complete && now - this.#lastDraw < interval) return;
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
    if (p.unit !== undefined && p.unit !== 'bytes') {
      this.#emit(`${p.phase}: ${p.done}${p.total === undefined ? '' : ` of ${p.total}`} ${p.unit}${p.item ? ` (${p.item})` : ''}`);
      return;
    }
    const rate = this.#rate(now, p.done);
    const parts = [`${p.phase}:`, formatBytes(p.done)];
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
      const width = Math.max(20, (this.#io.stderr.columns ?? 80) - 1);
      this.#io.stderr.write(`\r\x1b[2K${line.slice(0, width)}`);
      this.#drawn = true;
    } else {
      this.#io.stderr.write(`${line}\n`);
    }
  }

  /** Ends the current line on a terminal. */
  finish(): void {
    if (this.#mode === 'tty' && this.#drawn) this.#io.stderr.write('\n');
    this.#drawn = false;
  }
}
