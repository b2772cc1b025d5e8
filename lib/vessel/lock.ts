/**
 * One mutating command at a time. The lock is a file made with `link(2)`, which either creates it
 * whole or fails; it names its holder. A lock whose holder process is gone (same host) is taken
 * over, by moving it aside first so two takers can't both win.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { link, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fromSystemError, SeabagError } from '../errors.js';

export interface LockHolder {
  pid: number;
  host: string;
  command: string;
  started: string;
}

export interface Lock {
  holder: LockHolder;
  /** A stale lock that was taken over, if any. */
  tookOver?: LockHolder;
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Reads who holds the lock, or undefined when nobody does. */
export async function lockHolder(path: string): Promise<LockHolder | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LockHolder;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    // Half-written by a crash between link and nothing: a link is whole, so this is damage; treat as stale.
    return { pid: 0, host: hostname(), command: 'unknown (unreadable lock file)', started: '' };
  }
}

/** Is the holder a live process on this host? Holders on other hosts are assumed alive. */
export function holderAlive(holder: LockHolder): boolean {
  return holder.host !== hostname() || (holder.pid > 0 && alive(holder.pid));
}

/**
 * Takes the lock at `path` for `command`.
 *
 * @throws E_LOCKED naming the live holder; E_IO
 */
export async function acquireLock(path: string, command: string): Promise<Lock> {
  const holder: LockHolder = { pid: process.pid, host: hostname(), command, started: new Date().toISOString() };
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(temp, `${JSON.stringify(holder)}\n`, { flag: 'wx' });
  } catch (err) {
    throw fromSystemError(err, 'create the lock', path);
  }
  let tookOver: LockHolder | undefined;
  try {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      try {
        await link(temp, path);
        const lock: Lock = {
          holder,
          async release() {
            // Only remove the lock if it is still ours.
            const now = await lockHolder(path);
            if (now !== undefined && now.pid === holder.pid && now.started === holder.started) await rm(path, { force: true });
          },
        };
        if (tookOver !== undefined) lock.tookOver = tookOver;
        return lock;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, 'create the lock', path);
      }
      const current = await lockHolder(path);
      if (current === undefined) continue;
      if (holderAlive(current)) {
        throw new SeabagError('E_LOCKED', `another seabag command holds the vessel: ${current.command} (pid ${current.pid} on ${current.host}, since ${current.started})`, {
          details: { holder: current },
          hint: 'wait for it to finish; a lock left by a process that died is taken over automatically',
        });
      }
      // Stale: move it aside, and make sure what we moved is the lock we judged stale.
      const aside = join(`${path}.stale-${randomBytes(4).toString('hex')}`);
      const before = await stat(path).catch(() => undefined);
      try {
        await rename(path, aside);
      } catch {
        continue;
      }
      const moved = await lockHolder(aside);
      const movedStat = await stat(aside).catch(() => undefined);
      if (moved !== undefined && holderAlive(moved) && movedStat?.ino !== before?.ino) {
        // We raced another taker and moved its fresh lock: put it back and report it.
        await link(aside, path).catch(() => undefined);
        await rm(aside, { force: true });
        throw new SeabagError('E_LOCKED', `another seabag command holds the vessel: ${moved.command} (pid ${moved.pid})`, { details: { holder: moved } });
      }
      await rm(aside, { force: true });
      tookOver = current;
    }
    throw new SeabagError('E_LOCKED', 'could not take the vessel lock', { details: { path } });
  } finally {
    await rm(temp, { force: true });
  }
}
