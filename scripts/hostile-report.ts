/**
 * Turns what the hostile suite recorded (test-results/hostile/*.json) into docs/hostile-world.md:
 * every attack and fault, how often it ran, what was expected, what happened, and whether the
 * vessel's invariant held. Run by `npm test` after the tests pass.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Row } from '../test/hostile/report.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const results = join(root, 'test-results', 'hostile');
const SUITES = ['archive', 'trust', 'faults', 'credentials', 'release-input', 'admission', 'outputs', 'terminal', 'clock'];
const ORDER = ['archive', 'bit flips', 'fuzz', 'limits', 'trust', 'credentials', 'release input', 'outputs', 'terminal', 'clock', 'kills', 'registry', 'vessel'];

async function main(): Promise<void> {
  if (!existsSync(results)) {
    process.stdout.write('hostile-report: no results (the hostile suite did not run); docs/hostile-world.md left as it is\n');
    return;
  }
  const files = (await readdir(results)).filter((n) => n.endsWith('.json'));
  const missing = SUITES.filter((s) => !files.includes(`${s}.json`));
  if (missing.length > 0) {
    process.stdout.write(`hostile-report: results of ${missing.join(', ')} missing (a partial run); docs/hostile-world.md left as it is\n`);
    return;
  }
  const rows: Row[] = [];
  let soak = false;
  for (const file of files) {
    const doc = JSON.parse(await readFile(join(results, file), 'utf8')) as { rows: Row[]; soak?: boolean };
    rows.push(...doc.rows);
    soak ||= doc.soak === true;
  }
  rows.sort((a, b) => ORDER.indexOf(a.category) - ORDER.indexOf(b.category));
  const cell = (s: string): string => s.replace(/\|/g, '\\|');
  const lines = [
    '# A hostile world: the attack and fault suite',
    '',
    'Written by `npm test` from what `test/hostile/*.test.ts` recorded on its last passing run; do not edit by hand.',
    'Every case states the attack or fault, the expected exit status and error code, and whether the vessel invariant held:',
    'the active release and every staged one unchanged and pullable, `state.json` valid (byte for byte unchanged where nothing was',
    'to change), no journal left, and a re-run succeeding where the input was good. Seeds are fixed; `npm run soak` runs ten times',
    'as many random cases.',
    '',
    `Runs in all: ${rows.reduce((n, r) => n + r.runs, 0)}${soak ? ' (soak)' : ''}.`,
    '',
    '| area | case | runs | expected | outcome | invariant |',
    '|---|---|---:|---|---|---|',
    ...rows.map((r) => {
      const outcomes = Object.entries(r.outcomes)
        .sort((a, b) => b[1] - a[1])
        .map(([o, n]) => (Object.keys(r.outcomes).length === 1 && r.runs === n ? o : `${o} ×${n}`))
        .join('; ');
      return `| ${cell(r.category)} | ${cell(r.case)} | ${r.runs} | ${cell(r.expected)} | ${cell(outcomes)} | ${r.invariant} |`;
    }),
    '',
  ];
  await writeFile(join(root, 'docs', 'hostile-world.md'), lines.join('\n'));
  process.stdout.write(`hostile-report: docs/hostile-world.md written (${rows.length} cases)\n`);
}

await main();
