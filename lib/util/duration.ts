import { SeabagError } from '../errors.js';

/** What a health check may take when nobody says: two minutes. */
export const DEFAULT_CHECK_TIMEOUT = '120s';
/** A release's own check may ask for at most an hour; the captain's `--check-timeout` up to a day. */
export const MAX_RELEASE_CHECK_SECONDS = 3600;
export const MAX_CHECK_SECONDS = 86_400;

/**
 * Parses `90`, `90s`, `5m`, `1h` into whole seconds, between 1 and `max`.
 *
 * @throws E_USAGE naming `what` (the flag or field)
 */
export function parseDuration(text: string, what: string, max: number): number {
  const m = /^\s*([0-9]{1,6})\s*(s|m|h)?\s*$/.exec(text);
  const seconds = m === null ? Number.NaN : Number(m[1]) * ({ s: 1, m: 60, h: 3600 }[(m[2] ?? 's') as 's' | 'm' | 'h'] ?? 1);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > max) {
    throw new SeabagError('E_USAGE', `${what} must be a duration from 1s to ${max / 3600}h (120s, 5m, 1h), not ${JSON.stringify(text)}`);
  }
  return seconds;
}
