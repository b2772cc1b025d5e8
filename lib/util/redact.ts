/**
 * Secrets never leave in a message. Registry upload locations carry a signed `_state` token
 * (distribution `registry/handlers/blobupload.go`), presigned object-storage URLs carry their
 * signature in the query, a URL may carry `user:password@`, and an `Authorization` value is a
 * credential by definition. Every SeabagError's message, hint and details pass through here, so
 * neither stderr nor `--json` can show one.
 */

/** Query parameters whose value is a credential (upload state, presigned-URL signatures, tokens). */
const SECRET_PARAMS =
  /([?&;](?:_state|x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token|access_token|refresh_token|password|x-goog-signature|x-goog-credential|se|sv|skoid|sktid)=)[^&#\s"'<>]*/gi;

/** `scheme://user:password@host` and `scheme://token@host`. */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>]+@/gi;

/**
 * `Basic dXNl…`, `Bearer eyJ…`: a token has a digit, an inner capital or base64 punctuation,
 * which tells it from an English word after "Basic".
 */
const AUTH_VALUE = /\b(Basic|Bearer)\s+(?=[A-Za-z0-9\-._~+/]*(?:[0-9+/=._~-]|[a-z][A-Z]))[A-Za-z0-9\-._~+/]{6,}=*/g;

/** `authorization: …` / `"authorization":"…"` in any case. */
const AUTH_HEADER = /(authorization["']?\s*[:=]\s*["']?)[^"'\r\n,}]+/gi;

const MASK = 'REDACTED';

/** Returns `text` with every credential-looking part replaced by `REDACTED`. */
export function redactText(text: string): string {
  return text
    .replace(USERINFO, `$1${MASK}@`)
    .replace(SECRET_PARAMS, `$1${MASK}`)
    .replace(AUTH_HEADER, `$1${MASK}`)
    .replace(AUTH_VALUE, `$1 ${MASK}`);
}

/** The same over any JSON-like value (strings deep inside objects and arrays). */
export function redactValue<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return redactText(value) as T;
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1)) as T;
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = /^(authorization|password|secret|token|identitytoken)$/i.test(k) && typeof v === 'string' ? MASK : redactValue(v, depth + 1);
  }
  return out as T;
}
