/**
 * Trusted time and its recovery. A vessel judges expiry by the later of its clock and the newest
 * time it already trusted (a ship's clock may be set back). That trusted time advances only as far
 * as the release's `created`, the signing root's own expiry, and the clock plus
 * `TRUSTED_TIME_TOLERANCE_MS`, whichever is earliest, so a signed release dated 2100 cannot lock
 * the vessel out of every later release.
 *
 * If the trusted time is wrong anyway (a vessel poisoned before this rule, or a clock far ahead),
 * the holders of the root keys can reset it: `bundle trust reset-time` ashore signs a statement
 * `{type: "time-reset", rootVersion, time, notAfter}` with a threshold of the root keys, and
 * `bundle trust set-time` aboard checks it against the vessel's newest pinned root (that version,
 * its root keys, its threshold) and the local clock (`notAfter`, since the trusted time is the
 * thing in doubt), then sets the trusted time to `time`, backwards if need be. The vessel records
 * the statement it applied (sha256, notAfter, time) and refuses it, or any statement whose
 * `notAfter` is not later than that one's, again: a captured statement cannot be replayed to set
 * the clock back once more.
 */
import { SeabagError } from '../errors.js';
import { canonicalBytes } from '../util/canonical.js';
import { isoSeconds, parseTime } from '../util/time.js';
import { signMessage, type SigningKey } from './keys.js';
import { MAX_ROOT_SIGNATURES, rootKeysThatSigned, type TrustRoot } from './root.js';

/** How far past the vessel's clock a release may move its trusted time: one day. */
export const TRUSTED_TIME_TOLERANCE_MS = 24 * 60 * 60 * 1000;

/**
 * The trusted time after admitting a release created at `created` under `root`: never earlier
 * than `current`, never later than the root's expiry or `clock` + the tolerance.
 */
export function advanceTrustedTime(current: string | undefined, created: string | undefined, rootExpires: string, clock: Date): string | undefined {
  const at = created === undefined ? undefined : parseTime(created);
  if (at === undefined) return current;
  const limits = [at.getTime(), clock.getTime() + TRUSTED_TIME_TOLERANCE_MS];
  const expiry = parseTime(rootExpires);
  if (expiry !== undefined) limits.push(expiry.getTime());
  const candidate = new Date(Math.min(...limits));
  const now = current === undefined ? undefined : parseTime(current);
  if (now !== undefined && now >= candidate) return current;
  return isoSeconds(candidate);
}

export interface TimeResetSigned {
  type: 'time-reset';
  /** The root version whose root keys sign; the vessel's newest pinned root must be this one. */
  rootVersion: number;
  /** The trusted time to set. */
  time: string;
  /** Refused after this instant of the vessel's own clock. */
  notAfter: string;
}

export interface TimeReset {
  signed: TimeResetSigned;
  signatures: { keyid: string; sig: string }[];
}

/** Makes a reset statement signed by `keys` (root keys of `root`). */
export function makeTimeReset(root: TrustRoot, time: Date, notAfter: Date, keys: readonly SigningKey[]): TimeReset {
  const signed: TimeResetSigned = { type: 'time-reset', rootVersion: root.signed.version, time: isoSeconds(time), notAfter: isoSeconds(notAfter) };
  const message = canonicalBytes(signed);
  const rootKeyids = new Set(root.signed.roles.root.keyids);
  const signatures: TimeReset['signatures'] = [];
  for (const k of keys) {
    if (!rootKeyids.has(k.keyid)) throw new SeabagError('E_KEY_UNTRUSTED', `key ${k.keyid} is not a root key of trust root version ${root.signed.version}`, { details: { keyid: k.keyid } });
    if (signatures.some((s) => s.keyid === k.keyid)) continue;
    signatures.push({ keyid: k.keyid, sig: signMessage(k, message).toString('base64') });
  }
  const reset = { signed, signatures };
  checkSignatures(reset, root);
  return reset;
}

function checkSignatures(reset: TimeReset, root: TrustRoot): void {
  if (reset.signatures.length > MAX_ROOT_SIGNATURES) {
    throw new SeabagError('E_TRUST_INVALID', `the time reset carries ${reset.signatures.length} signatures; at most ${MAX_ROOT_SIGNATURES} are checked`, { details: { limit: MAX_ROOT_SIGNATURES, found: reset.signatures.length } });
  }
  const valid = rootKeysThatSigned(reset.signed, reset.signatures, root);
  const threshold = root.signed.roles.root.threshold;
  if (valid.length < threshold) {
    throw new SeabagError('E_THRESHOLD_UNMET', `the time reset carries ${valid.length} valid root signature(s) of trust root version ${root.signed.version}; ${threshold} are needed`, {
      details: { valid, threshold },
    });
  }
}

/**
 * Checks a reset statement against the vessel's newest root and its clock; returns the time to set.
 *
 * @throws E_TRUST_INVALID (not a reset statement, or over 64 signatures), E_ROOT_CHAIN_INVALID (another root version),
 *   E_EXPIRED (past notAfter by the clock), E_THRESHOLD_UNMET (too few root signatures)
 */
export function verifyTimeReset(bytes: Uint8Array, root: TrustRoot, clock: Date, where = 'the time reset'): { time: Date; notAfter: Date } {
  let doc: TimeReset;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as TimeReset;
  } catch (err) {
    throw new SeabagError('E_TRUST_INVALID', `${where} is not JSON: ${(err as Error).message}`);
  }
  const s = doc?.signed;
  const time = typeof s?.time === 'string' ? parseTime(s.time) : undefined;
  const notAfter = typeof s?.notAfter === 'string' ? parseTime(s.notAfter) : undefined;
  if (s?.type !== 'time-reset' || !Number.isInteger(s.rootVersion) || time === undefined || notAfter === undefined || !Array.isArray(doc.signatures)) {
    throw new SeabagError('E_TRUST_INVALID', `${where} is not a time reset statement (make one with \`bundle trust reset-time\`)`);
  }
  if (s.rootVersion !== root.signed.version) {
    throw new SeabagError('E_ROOT_CHAIN_INVALID', `${where} is signed under trust root version ${s.rootVersion}; this vessel's root is version ${root.signed.version}`, {
      details: { rootVersion: s.rootVersion, vesselRoot: root.signed.version },
    });
  }
  if (notAfter <= clock) {
    throw new SeabagError('E_EXPIRED', `${where} was valid until ${s.notAfter} (this vessel's clock says ${isoSeconds(clock)})`, { details: { notAfter: s.notAfter, clock: isoSeconds(clock) } });
  }
  checkSignatures(doc, root);
  return { time, notAfter };
}

/** What the vessel keeps of the last time reset it applied (state.json `lastTimeReset`). */
export interface AppliedTimeReset {
  /** sha256 of the statement file's bytes. */
  digest: string;
  notAfter: string;
  time: string;
  appliedAt: string;
}

/**
 * Refuses a statement already applied, or one not newer (by `notAfter`) than the last applied:
 * each statement moves the trusted time at most once, and an older one never again.
 *
 * @throws E_DOWNGRADE
 */
export function checkNotReplayed(digest: string, notAfter: Date, last: AppliedTimeReset | undefined, where = 'the time reset'): void {
  if (last === undefined) return;
  const lastNotAfter = parseTime(last.notAfter);
  const details = { digest, notAfter: isoSeconds(notAfter), lastApplied: last };
  if (digest === last.digest) {
    throw new SeabagError('E_DOWNGRADE', `${where} was already applied on ${last.appliedAt}; a time reset statement is used once`, {
      details,
      hint: 'ashore, sign a new statement with `bundle trust reset-time` (it is valid later than the last one)',
    });
  }
  if (lastNotAfter !== undefined && notAfter.getTime() <= lastNotAfter.getTime()) {
    throw new SeabagError('E_DOWNGRADE', `${where} is valid until ${isoSeconds(notAfter)}, not later than the last reset applied (valid until ${last.notAfter}); an older statement is not replayed`, {
      details,
      hint: 'ashore, sign a new statement with `bundle trust reset-time`',
    });
  }
}
