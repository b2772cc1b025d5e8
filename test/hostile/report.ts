/**
 * The hostile suite reports itself: every case adds a row (what was done, how often, what was
 * expected, what happened, whether the vessel's invariant held), and each file writes its rows to
 * test-results/hostile/; `npm test` then turns them into docs/hostile-world.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Row {
  category: string;
  case: string;
  /** What must happen: an exit status and error code, or a plain description. */
  expected: string;
  runs: number;
  /** Outcome (exit status and code, or "accepted") → how many runs had it. */
  outcomes: Record<string, number>;
  /** The vessel invariant after the case: held in every run, or not applicable. */
  invariant: 'held' | 'n/a';
}

export const RESULTS_DIR = fileURLToPath(new URL('../../test-results/hostile/', import.meta.url));

export class Report {
  readonly #suite: string;
  readonly rows: Row[] = [];

  constructor(suite: string) {
    this.#suite = suite;
  }

  /** Adds one run of a case (rows with the same category and case are merged). */
  add(category: string, name: string, expected: string, outcome: string, invariant: 'held' | 'n/a'): void {
    let row = this.rows.find((r) => r.category === category && r.case === name);
    if (row === undefined) {
      row = { category, case: name, expected, runs: 0, outcomes: {}, invariant };
      this.rows.push(row);
    }
    row.runs += 1;
    row.outcomes[outcome] = (row.outcomes[outcome] ?? 0) + 1;
  }

  async write(): Promise<void> {
    await mkdir(RESULTS_DIR, { recursive: true });
    const soak = process.env['SEABAG_SOAK'] === '1';
    await writeFile(join(RESULTS_DIR, `${this.#suite}.json`), `${JSON.stringify({ suite: this.#suite, written: new Date().toISOString(), soak, rows: this.rows }, null, 2)}\n`);
  }
}

/** "exit 1 E_DIGEST_MISMATCH" from a CLI result. */
export function outcomeOf(r: { code: number; json: { error?: { code: string } } }): string {
  return r.code === 0 ? 'exit 0' : `exit ${r.code} ${r.json.error?.code ?? '(no code)'}`;
}
