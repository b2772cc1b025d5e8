/**
 * One error type for the whole library, with a stable code from a closed union.
 *
 * Codes are API: the CLI maps each to an exit status and tests match on them, never on message
 * text. Whether an error is worth retrying is decided once, where the error is made
 * (`temporary`), the way go-containerregistry's transport errors carry it.
 */
import { redactText, redactValue } from './util/redact.js';

/** Exit status classes of the CLI contract (DESIGN.md, "CLI contract"). */
export const EXIT = {
  ok: 0,
  rejected: 1,
  usage: 2,
  environment: 3,
} as const;

const CODES = {
  // 1: the input was read and refused.
  E_DIGEST_MISMATCH: EXIT.rejected,
  E_SIZE_MISMATCH: EXIT.rejected,
  E_ARCHIVE_UNSAFE: EXIT.rejected,
  E_ARCHIVE_TRUNCATED: EXIT.rejected,
  E_LAYOUT_INVALID: EXIT.rejected,
  E_UNSIGNED: EXIT.rejected,
  E_SIGNATURE_INVALID: EXIT.rejected,
  E_KEY_UNTRUSTED: EXIT.rejected,
  E_SUBJECT_MISMATCH: EXIT.rejected,
  E_THRESHOLD_UNMET: EXIT.rejected,
  E_ROOT_CHAIN_INVALID: EXIT.rejected,
  E_EXPIRED: EXIT.rejected,
  E_DOWNGRADE: EXIT.rejected,
  E_TARGET_MISMATCH: EXIT.rejected,
  E_BLOBS_MISSING: EXIT.rejected,
  E_PART_MISSING: EXIT.rejected,
  E_PART_CORRUPT: EXIT.rejected,
  E_TRUST_MISMATCH: EXIT.rejected,
  E_IMAGE_UNSIGNED: EXIT.rejected,
  E_IMAGE_SIGNATURE_INVALID: EXIT.rejected,
  /** An applied release failed its health check; seabag switched back. */
  E_HEALTH_CHECK_FAILED: EXIT.rejected,
  /** The person asked (`Proceed? [y/N]`) said no. */
  E_DECLINED: EXIT.rejected,
  // 2: the request itself is wrong.
  E_USAGE: EXIT.usage,
  E_SPEC_INVALID: EXIT.usage,
  E_IMAGE_NOT_IN_RELEASE: EXIT.usage,
  E_FILE_NOT_FOUND: EXIT.usage,
  E_FILE_EXISTS: EXIT.usage,
  /** A file of the wrong kind: a public key for --sign, a release spec for a bundle… */
  E_FILE_KIND: EXIT.usage,
  E_REFERENCE_INVALID: EXIT.usage,
  E_DIGEST_INVALID: EXIT.usage,
  E_KEY_INVALID: EXIT.usage,
  E_TRUST_INVALID: EXIT.usage,
  E_TRUST_REQUIRED: EXIT.usage,
  E_RELEASE_UNKNOWN: EXIT.usage,
  E_NOT_FOUND: EXIT.usage,
  E_PLATFORM_UNAVAILABLE: EXIT.usage,
  E_FOREIGN_LAYER_MISSING: EXIT.usage,
  E_INVENTORY_INVALID: EXIT.usage,
  /** A folder (or something else) where a file is expected. */
  E_NOT_A_FILE: EXIT.usage,
  // 3: the world around us failed.
  E_REGISTRY: EXIT.environment,
  E_REGISTRY_UNREACHABLE: EXIT.environment,
  E_FOREIGN_LAYERS_REFUSED: EXIT.environment,
  E_AUTH: EXIT.environment,
  E_LOCKED: EXIT.environment,
  E_IO: EXIT.environment,
  E_DISK_FULL: EXIT.environment,
  E_STATE_INVALID: EXIT.environment,
  E_ROLLOUT_FAILED: EXIT.environment,
  E_FETCH: EXIT.environment,
  E_TOOL: EXIT.environment,
  E_ABORTED: EXIT.environment,
  /** A switch failed and undoing it failed too: `bundle recover --abort|--finish` decides. */
  E_SWITCH_INCOMPLETE: EXIT.environment,
  /** A bug in seabag: anything thrown that is not a SeabagError. */
  E_INTERNAL: EXIT.environment,
} as const;

export type ErrorCode = keyof typeof CODES;

export interface SeabagErrorOptions {
  cause?: unknown;
  /** Structured facts for `--json` output and for tests (expected/found, file, path…). */
  details?: Record<string, unknown>;
  /** One line telling the user what to do next. */
  hint?: string;
  /** Retrying the same operation may succeed (connection reset, 5xx, 429). */
  temporary?: boolean;
}

export class SeabagError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  readonly hint: string | undefined;
  readonly temporary: boolean;

  constructor(code: ErrorCode, message: string, options: SeabagErrorOptions = {}) {
    // Redacted here, once, so no message or --json detail can carry a credential (redact.ts).
    super(redactText(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SeabagError';
    this.code = code;
    this.details = redactValue(options.details ?? {});
    this.hint = options.hint === undefined ? undefined : redactText(options.hint);
    this.temporary = options.temporary ?? false;
  }

  /** The CLI exit status for this error's code. */
  get exitStatus(): number {
    return CODES[this.code];
  }
}

export function isSeabagError(err: unknown, code?: ErrorCode): err is SeabagError {
  return err instanceof SeabagError && (code === undefined || err.code === code);
}

/** Exit status for any error: a SeabagError by its code, anything else is an environment failure. */
export function exitStatusOf(err: unknown): number {
  return err instanceof SeabagError ? err.exitStatus : EXIT.environment;
}

/**
 * Turns a Node.js system error (ENOENT, ENOSPC, EACCES…) into a SeabagError that names the file.
 * Errors that are already SeabagErrors pass through unchanged.
 */
export function fromSystemError(err: unknown, action: string, file?: string): SeabagError {
  if (err instanceof SeabagError) return err;
  const sys = err as NodeJS.ErrnoException;
  const where = file === undefined ? '' : ` ${file}`;
  const details: Record<string, unknown> = { syscall: sys.syscall, errno: sys.code };
  if (file !== undefined) details['file'] = file;
  switch (sys.code) {
    case 'ENOENT':
      return new SeabagError('E_FILE_NOT_FOUND', `cannot ${action}${where}: no such file or directory`, { cause: err, details });
    case 'ENOSPC':
    case 'EDQUOT':
      return new SeabagError('E_DISK_FULL', `cannot ${action}${where}: no space left on device`, {
        cause: err,
        details,
        hint: 'free some space and run the command again; nothing was half-written',
      });
    case 'EISDIR':
    case 'ENOTDIR':
      return new SeabagError('E_NOT_A_FILE', `cannot ${action}${where}: ${sys.code === 'EISDIR' ? 'it is a folder, not a file' : 'a part of the path is not a folder'}`, { cause: err, details });
    case 'ABORT_ERR':
      return new SeabagError('E_ABORTED', `${action} was cancelled`, { cause: err });
    default:
      return new SeabagError('E_IO', `cannot ${action}${where}: ${sys.message ?? String(err)}`, { cause: err, details });
  }
}

/** Throws E_ABORTED when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new SeabagError('E_ABORTED', 'the operation was cancelled', { cause: signal.reason });
}
