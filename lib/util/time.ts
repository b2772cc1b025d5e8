/**
 * Times that come from outside (release.yaml, `--expires`, trust.json, a release document) read
 * strictly as RFC 3339 §5.6 `date-time` (or a `full-date` where one is allowed): the day must exist
 * in its month (`2027-02-31` is refused, never rolled over into March), and a leap second
 * (`23:59:60`, §5.7) is a valid time, read as the first instant of the next minute.
 */
const FULL = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt]([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)(\.\d+)?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$/;

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * Parses `YYYY-MM-DD` (start of that day, UTC; only with `dateOnly`) or an RFC 3339 date-time.
 * Returns undefined for anything else, including days that do not exist.
 */
export function parseTime(text: string, options: { dateOnly?: boolean } = {}): Date | undefined {
  const m = FULL.exec(text);
  if (m === null) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return undefined;
  if (m[4] === undefined) return options.dateOnly === true ? new Date(Date.UTC(year, month - 1, day)) : undefined;
  const second = Number(m[6]);
  const fraction = m[7] === undefined ? 0 : Math.floor(Number(`0${m[7]}`) * 1000);
  const zone = m[8] ?? 'Z';
  const offset = /^[Zz]$/.test(zone) ? 0 : (zone.startsWith('-') ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)));
  // A leap second counts as :59 plus one second (the next minute's first instant).
  const ms = Date.UTC(year, month - 1, day, Number(m[4]), Number(m[5]), Math.min(second, 59)) + (second === 60 ? 1000 : 0) + fraction - offset * 60_000;
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** `2027-06-01T00:00:00Z`: whole seconds, UTC. */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
