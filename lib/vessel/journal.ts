/**
 * The journal: one file saying which vessel operation is under way, written (atomically) before
 * the operation changes anything and removed when it is done. A command that finds one left by a
 * crash finishes or reverts that operation before doing its own work.
 */
import { readFile } from 'node:fs/promises';
import { fromSystemError, SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { assertSchema } from '../schema.js';
import { writeJSONAtomic } from '../util/atomic.js';
import type { DeployerName } from './deploy.js';
import type { StateDir } from './state.js';

export interface Journal {
  op: 'import' | 'apply' | 'rollback';
  started: string;
  pid: number;
  name: string;
  to: { version: string; digest: Digest };
  from?: { version: string; digest: Digest };
  deploy?: DeployerName;
  /** For imports: the bundle being imported. */
  bundle?: string;
  /** How far it got: `verified`, `pushing`, `tags`, `deploy`, `commit`, `check`, `checked`, `state`. */
  phase?: string;
  /** The health check gating a switch: until it has passed (`checked`), recovery switches back. */
  check?: { source: 'cli' | 'release'; command: string[]; timeoutSeconds: number };
}

/**
 * Reads the journal, or undefined when no operation is under way.
 *
 * @throws E_STATE_INVALID when it is unreadable
 */
export async function readJournal(dir: StateDir): Promise<Journal | undefined> {
  let text: string;
  try {
    text = await readFile(dir.journalPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, 'read', dir.journalPath);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new SeabagError('E_STATE_INVALID', `${dir.journalPath} is not valid JSON`, { hint: 'it is written atomically, so this is damage from outside seabag' });
  }
  assertSchema('journal', doc, dir.journalPath, 'E_STATE_INVALID');
  return doc as Journal;
}

export async function writeJournal(dir: StateDir, journal: Journal): Promise<void> {
  await writeJSONAtomic(dir.journalPath, journal);
}
