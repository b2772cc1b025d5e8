/**
 * Output files are never destroyed by surprise: no command writes over an existing file without
 * `--force`, and none ever writes over a file it reads in the same run, even with `--force`
 * (`build -o release.key --sign release.key` would replace the key it signs with). Sameness is
 * judged by device and inode, so another name, a `./` prefix, a hard link or a symlink to the same
 * file is caught too.
 */
import { lstat, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { SeabagError } from '../errors.js';

export interface OutputGuard {
  /** Replace an existing file (never one of `reads`). */
  force?: boolean;
  /** Files this run reads. */
  reads?: readonly string[];
}

async function identity(path: string): Promise<{ dev: number; ino: number } | undefined> {
  try {
    const s = await stat(path);
    return { dev: s.dev, ino: s.ino };
  } catch {
    return undefined;
  }
}

/** Does anything exist at `path` (a dangling symlink counts)? */
async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks that `outputs` may be written.
 *
 * @throws E_USAGE when an output is a file this run reads (whatever `force` says);
 *   E_FILE_EXISTS when an output exists and `force` is not set
 */
export async function checkOutputs(outputs: readonly string[], guard: OutputGuard = {}): Promise<void> {
  const read = new Map<string, string>();
  for (const r of guard.reads ?? []) {
    const id = await identity(r);
    if (id !== undefined) read.set(`${id.dev}:${id.ino}`, r);
  }
  for (const output of outputs) {
    const id = await identity(output);
    const same = id === undefined ? undefined : read.get(`${id.dev}:${id.ino}`);
    if (same !== undefined || (guard.reads ?? []).some((r) => resolve(r) === resolve(output))) {
      throw new SeabagError('E_USAGE', `${output} is also read by this command (${same ?? output}); it is never written over, even with --force`, {
        details: { output, reads: same ?? output },
        hint: 'write the output to another file',
      });
    }
    if (guard.force !== true && (await exists(output))) {
      throw new SeabagError('E_FILE_EXISTS', `${output} exists; it is not overwritten without --force`, {
        details: { output },
        hint: 'choose another name, or pass --force to replace it',
      });
    }
  }
}
