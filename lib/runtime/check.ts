/**
 * The health gate's check: one program run after a switch, in its own process group, with a
 * deadline. Its output is kept as a bounded tail (never the whole of it in memory) and cleaned of
 * control characters before anyone shows it, since `status` prints it to the captain's terminal.
 */
import { SeabagError } from '../errors.js';
import { nodeChildProcess } from '../util/lazy.js';

export interface HealthCheck {
  /** argv; the captain's `--check CMD` is `['/bin/sh', '-c', CMD]`. */
  command: string[];
  timeoutSeconds: number;
  /** Who asked for it: the captain on the command line, or the release's signed `check:`. */
  source: 'cli' | 'release';
}

export interface CheckOutcome {
  passed: boolean;
  exitCode?: number;
  signal?: string;
  timedOut: boolean;
  /** The last lines of stdout and stderr together, trimmed and cleaned (see `trimOutput`). */
  output: string;
}

/** Bytes of output kept while the check runs: its tail. */
const KEEP_BYTES = 64 * 1024;
/** What `status` shows of it. */
export const SHOWN_LINES = 20;
export const SHOWN_CHARS = 2000;
/** After the deadline: SIGTERM to the group, then SIGKILL this much later. */
const GRACE_MS = 5_000;

/**
 * The tail of a check's output as it may be shown: ANSI escapes and other control characters
 * removed (a check's output must not drive the captain's terminal), at most `SHOWN_LINES` lines
 * and `SHOWN_CHARS` characters, the end kept since that is where failures are told.
 */
export function trimOutput(raw: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = raw.replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '').replace(/\r\n?/g, '\n').replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, '');
  let lines = clean.split('\n').map((l) => l.trimEnd());
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const cut = lines.length > SHOWN_LINES;
  lines = lines.slice(-SHOWN_LINES);
  let text = lines.join('\n').trim();
  if (text.length > SHOWN_CHARS) text = text.slice(-SHOWN_CHARS);
  return cut || text.length === SHOWN_CHARS ? `…${text}` : text;
}

/**
 * Runs a check and waits for it (or its deadline). Never throws for the check's own failure:
 * that is the outcome. Aborting `signal` kills the check's process group and throws E_ABORTED.
 *
 * @throws E_ABORTED
 */
export async function runHealthCheck(
  check: HealthCheck,
  env: Record<string, string | undefined>,
  options: { signal?: AbortSignal; onStarted?: (pid: number) => void } = {},
): Promise<CheckOutcome> {
  const [program, ...args] = check.command;
  if (program === undefined) throw new SeabagError('E_USAGE', 'the health check names no program');
  const child = nodeChildProcess().spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const chunks: Buffer[] = [];
  let kept = 0;
  const take = (chunk: Buffer): void => {
    chunks.push(chunk);
    kept += chunk.length;
    while (kept > KEEP_BYTES && chunks.length > 1) kept -= (chunks.shift() as Buffer).length;
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  const killGroup = (sig: NodeJS.Signals): void => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, sig);
    } catch {
      // already gone
    }
  };
  let timedOut = false;
  let aborted = false;
  let grace: NodeJS.Timeout | undefined;
  const stop = (): void => {
    killGroup('SIGTERM');
    grace = setTimeout(() => killGroup('SIGKILL'), GRACE_MS);
  };
  const deadline = setTimeout(() => {
    timedOut = true;
    stop();
  }, check.timeoutSeconds * 1000);
  const onAbort = (): void => {
    aborted = true;
    stop();
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  if (child.pid !== undefined) options.onStarted?.(child.pid);
  const result = await done;
  clearTimeout(deadline);
  if (grace !== undefined) clearTimeout(grace);
  // Whatever the check left running in its group goes with it.
  killGroup('SIGKILL');
  options.signal?.removeEventListener('abort', onAbort);
  if (aborted) throw new SeabagError('E_ABORTED', 'interrupted during the health check; the next command switches back', { cause: options.signal?.reason });
  let raw = Buffer.concat(chunks).toString('utf8');
  if (result.error !== undefined) raw = `${raw}\ncould not start ${program}: ${result.error.message}`;
  if (timedOut) raw = `${raw}\n(no answer within ${check.timeoutSeconds}s: stopped)`;
  return {
    passed: !timedOut && result.error === undefined && result.code === 0,
    ...(result.code === null ? {} : { exitCode: result.code }),
    ...(result.signal === null ? {} : { signal: result.signal }),
    timedOut,
    output: trimOutput(raw),
  };
}

/** One line saying how a check failed, for `status` and the error message. */
export function describeFailure(outcome: CheckOutcome, check: HealthCheck): string {
  const how = outcome.timedOut
    ? `timed out after ${check.timeoutSeconds}s`
    : outcome.exitCode !== undefined
      ? `exited ${outcome.exitCode}`
      : outcome.signal !== undefined
        ? `was killed by ${outcome.signal}`
        : 'could not start';
  return `health check (${check.source === 'cli' ? '--check' : "the release's check"}) ${how}${outcome.output === '' ? '' : `: ${outcome.output}`}`;
}
