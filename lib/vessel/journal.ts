/**
 * The journal: one file saying which vessel operation is under way, written (atomically) before
 * the operation changes anything and removed when it is done. A command that finds one left by a
 * crash finishes or reverts that operation before doing its own work; one left by a switch that
 * failed and could not be undone (`failed`) waits for the captain (`bundle recover`).
 */
import { readFile } from 'node:fs/promises';
import { fromSystemError, SeabagError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { assertSchema } from '../schema.js';
import { writeJSONAtomic } from '../util/atomic.js';
import type { DeployerName } from './deploy.js';
import type { StateDir } from './state.js';

/** One tag a switch moves: where it pointed before (absent: it did not exist) and where it goes. */
export interface TagMove {
  repository: string;
  tag: string;
  from?: Digest;
  to: Digest;
}

export interface ReleaseRef {
  version: string;
  digest: Digest;
}

interface JournalBase {
  started: string;
  pid: number;
  /** How far it got: `pushing`, `tags`, `deploy`, `commit`, `check`, `checked`, `deletes`. */
  phase?: string;
}

export interface ImportJournal extends JournalBase {
  op: 'import';
  name: string;
  to: ReleaseRef;
  /** The bundle being imported. */
  bundle?: string;
}

export interface SwitchJournal extends JournalBase {
  op: 'apply' | 'rollback';
  name: string;
  to: ReleaseRef;
  from?: ReleaseRef;
  deploy?: DeployerName;
  /** Every tag the switch moves, in order, with where it pointed before: what an undo restores. */
  moves?: TagMove[];
  /** The health check gating a switch: until it has passed (`checked`), recovery switches back. */
  check?: { source: 'cli' | 'release'; command: string[]; timeoutSeconds: number };
  /** The switch failed and undoing it failed too: nothing finishes it but `bundle recover`. */
  failed?: { code: string; error: string; undo: string; at: string };
}

export interface PruneJournal extends JournalBase {
  op: 'prune';
  /** The releases leaving state.json. */
  removed: { name: string; version: string; digest: Digest }[];
  /** The manifests to delete once they have left it. */
  deletes: { repository: string; digest: Digest }[];
}

export type Journal = ImportJournal | SwitchJournal | PruneJournal;

/** What a journal is about, for messages: `apply of awareness 1.5.0`, `prune of 2 release(s)`. */
export function describeJournal(journal: Journal): string {
  return journal.op === 'prune' ? `prune of ${journal.removed.map((r) => `${r.name} ${r.version}`).join(', ') || 'nothing'}` : `${journal.op} of ${journal.name} ${journal.to.version}`;
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
