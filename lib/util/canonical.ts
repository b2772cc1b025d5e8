/**
 * JSON Canonicalization Scheme (RFC 8785) for the values seabag signs and stores: objects with
 * keys sorted by UTF-16 code units, no whitespace, strings and numbers as ECMAScript serializes
 * them (which is what RFC 8785 specifies). Only finite numbers; no undefined inside arrays.
 */
export function canonicalJSON(value: unknown): string {
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('canonical JSON has no NaN or Infinity');
    return JSON.stringify(value);
  }
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJSON(v)).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      // Default sort compares UTF-16 code units, as RFC 8785 section 3.2.3 asks.
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJSON(v)}`).join(',')}}`;
  }
  throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
}

/** The canonical form as bytes. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJSON(value), 'utf8');
}
