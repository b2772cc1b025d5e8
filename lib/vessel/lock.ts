/**
 * One mutating command at a time. The lock is a file made with `link(2)`, which either creates it
 * whole or fails; it names its holder: pid, host, and the process's start time and boot, so a pid
 * the kernel gave to another process since is not mistaken for the holder.
 *
 * A stale lock (holder gone, pid reused, or a file that is not a lock at all) is taken over
 * without a window for two winners: a taker first claims the right to replace that exact lock
 * (by its bytes) with a marker made by `link(2)`, then checks the lock still holds those bytes
 * and renames its own over it. A taker that dies holding a marker is passed by a marker named
 * after the dead one, so one dead taker never wedges the vessel.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { fromSystemError, SeabagError } from '../errors.js';

export interface LockHolder {
  pid: number;
  host: string;
  command: string;
  started: string;
  /** The process's start time in clock ticks since boot (`/proc/PID/stat` field 22), where known. */
  startTicks?: number;
  /** `/proc/sys/kernel/random/boot_id` when the lock was taken, where known. */
  boot?: string;
}

export interface Lock {
  holder: LockHolder;
  /** A stale lock that was taken over, if any. */
  tookOver?: LockHolder;
  release(): Promise<void>;
}

/** At most this many dead takers in a row are passed before giving up (each one is a crash). */
const MAX_TAKEOVER_CHAIN = 8;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A process's start time in clock ticks since boot, or undefined where /proc can't tell. */
export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isSafeInteger(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** A lock file's text as a holder, or undefined when it is not one (null, `{}`, garbage). */
export function parseHolder(text: string): LockHolder | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return undefined;
  const h = doc as Record<string, unknown>;
  if (!Number.isSafeInteger(h['pid']) || (h['pid'] as number) <= 0) return undefined;
  if (typeof h['host'] !== 'string' || h['host'] === '' || typeof h['command'] !== 'string' || typeof h['started'] !== 'string') return undefined;
  if (h['startTicks'] !== undefined && !Number.isSafeInteger(h['startTicks'])) return undefined;
  if (h['boot'] !== undefined && typeof h['boot'] !== 'string') return undefined;
  return {
    pid: h['pid'] as number,
    host: h['host'],
    command: h['command'],
    started: h['started'],
    ...(h['startTicks'] === undefined ? {} : { startTicks: h['startTicks'] as number }),
    ...(h['boot'] === undefined ? {} : { boot: h['boot'] as string }),
  };
}

const UNREADABLE: Omit<LockHolder, 'host'> = { pid: 0, command: 'unknown (not a lock file)', started: '' };

/** Reads who holds the lock, or undefined when nobody does. A file that is not a lock has a dead holder. */
export async function lockHolder(path: string): Promise<LockHolder | undefined> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw fromSystemError(err, 'read the lock', path);
  });
  if (text === undefined) return undefined;
  return parseHolder(text) ?? { ...UNREADABLE, host: hostname() };
}

/**
 * Is the holder a live process on this host, the same one that took the lock? A pid that is
 * alive but started at another time (or in another boot) is another process: the holder is gone.
 * Holders on other hosts are assumed alive.
 */
export function holderAlive(holder: LockHolder): boolean {
  if (holder.host !== hostname()) return true;
  if (!(holder.pid > 0) || !alive(holder.pid)) return false;
  const boot = bootId();
  if (holder.boot !== undefined && boot !== undefined && holder.boot !== boot) return false;
  if (holder.startTicks !== undefined) {
    const now = processStartTicks(holder.pid);
    if (now !== undefined && now !== holder.startTicks) return false;
  }
  return true;
}

function lockedError(holder: LockHolder, how = 'holds the vessel'): SeabagError {
  return new SeabagError('E_LOCKED', `another seabag command ${how}: ${holder.command} (pid ${holder.pid} on ${holder.host}, since ${holder.started})`, {
    details: { holder },
    hint: 'wait for it to finish; a lock left by a process that died is taken over automatically',
  });
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

async function readText(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw fromSystemError(err, 'read the lock', path);
  });
}

/**
 * Claims the right to replace the stale lock whose text is `stale`. Returns the marker files made
 * (the last is ours) or the live taker that has the claim.
 */
async function claimTakeover(path: string, stale: string, ours: string): Promise<{ markers: string[] } | { taker: LockHolder }> {
  const markers: string[] = [];
  let name = `${path}.takeover-${hash(stale)}`;
  for (let depth = 0; depth < MAX_TAKEOVER_CHAIN; depth += 1) {
    try {
      await link(ours, name);
      return { markers: [...markers, name] };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, 'take over the lock', path);
    }
    const text = await readText(name);
    if (text === undefined) continue; // its taker cleaned up: try the same name again
    const taker = parseHolder(text);
    if (taker !== undefined && holderAlive(taker)) return { taker };
    // That taker died holding the claim: pass it.
    markers.push(name);
    name = `${name}.${hash(text)}`;
  }
  throw new SeabagError('E_LOCKED', `could not take over the stale lock ${path}: ${MAX_TAKEOVER_CHAIN} takers died in a row`, { details: { path } });
}

/**
 * Takes the lock at `path` for `command`.
 *
 * @throws E_LOCKED naming the live holder; E_IO
 */
export async function acquireLock(path: string, command: string): Promise<Lock> {
  const startTicks = processStartTicks(process.pid);
  const boot = bootId();
  const holder: LockHolder = {
    pid: process.pid,
    host: hostname(),
    command,
    started: new Date().toISOString(),
    ...(startTicks === undefined ? {} : { startTicks }),
    ...(boot === undefined ? {} : { boot }),
  };
  const text = `${JSON.stringify(holder)}\n`;
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(temp, text, { flag: 'wx' });
  } catch (err) {
    throw fromSystemError(err, 'create the lock', path);
  }
  const made = (tookOver?: LockHolder): Lock => ({
    holder,
    ...(tookOver === undefined ? {} : { tookOver }),
    async release() {
      // Only remove the lock if it is still ours (nobody takes over a live holder's lock).
      if ((await readText(path).catch(() => undefined)) === text) await rm(path, { force: true });
    },
  });
  try {
    for (let attempt = 0; attempt < 8; attempt += 1) {
      try {
        await link(temp, path);
        return made();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, 'create the lock', path);
      }
      const stale = await readText(path);
      if (stale === undefined) continue;
      const current = parseHolder(stale) ?? { ...UNREADABLE, host: hostname() };
      if (holderAlive(current)) throw lockedError(current);
      const claim = await claimTakeover(path, stale, temp);
      if ('taker' in claim) throw lockedError(claim.taker, 'is taking over a stale lock');
      try {
        // The claim is for these exact bytes: if the lock changed meanwhile, start again.
        if ((await readText(path)) !== stale) continue;
        const next = `${temp}.take`;
        await writeFile(next, text, { flag: 'wx' });
        await rename(next, path);
        return made(current);
      } finally {
        for (const m of claim.markers) await rm(m, { force: true });
      }
    }
    throw new SeabagError('E_LOCKED', 'could not take the vessel lock: it kept changing', { details: { path } });
  } finally {
    await rm(temp, { force: true });
  }
}

/**
 * Removes what killed processes left in a state folder: lock temp files and takeover markers of
 * dead processes, and atomic-write temp files (`.NAME.PID.RANDOM.tmp`) of dead processes. Called
 * with the lock held. Returns the names removed.
 */
export async function removeLeftovers(dir: string, lockPath: string): Promise<string[]> {
  const lockName = basename(lockPath);
  const removed: string[] = [];
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    let dead = false;
    const lockTemp = new RegExp(`^${lockName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)\\.[0-9a-f]+(\\.take)?$`).exec(name);
    const atomicTemp = /^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$/.exec(name);
    if (lockTemp !== null || atomicTemp !== null) {
      const pid = Number((lockTemp ?? atomicTemp)?.[1]);
      dead = pid !== process.pid && !alive(pid);
    } else if (name.startsWith(`${lockName}.takeover-`) || name.startsWith(`${lockName}.stale-`)) {
      const holder = parseHolder((await readText(join(dir, name)).catch(() => undefined)) ?? '');
      dead = holder === undefined || !holderAlive(holder);
    }
    if (dead) {
      await rm(join(dir, name), { force: true });
      removed.push(name);
    }
  }
  return removed;
}
