/**
 * One contender in a lock race (test/vessel-robustness.test.ts): says `ready`, waits for the
 * start file, tries to take the vessel lock, prints `won` or the error code, and a winner holds
 * the lock until the end file appears. Run: node --import tsx lock-taker.ts LOCK START END
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { acquireLock } from '../../lib/vessel/lock.js';

const [path, start, end] = process.argv.slice(2) as [string, string, string];
process.stdout.write('ready\n');
while (!existsSync(start)) await sleep(2);
try {
  const lock = await acquireLock(path, `race ${process.pid}`);
  process.stdout.write('won\n');
  for (let i = 0; i < 3000 && !existsSync(end); i += 1) await sleep(10);
  await lock.release();
} catch (err) {
  process.stdout.write(`${(err as { code?: string }).code ?? `error ${(err as Error).message}`}\n`);
}
