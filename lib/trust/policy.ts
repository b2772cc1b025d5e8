/**
 * Policy after the signature: expiry (judged against the later of the clock and the newest time
 * already trusted, since a ship's clock may be wrong), target vessel class, and no downgrade.
 */
import { SeabagError } from '../errors.js';
import type { ReleaseDocument } from '../release/model.js';
import { compareSemver } from '../util/semver.js';
import type { TrustRoot } from './root.js';

/** The time to judge expiry by: the clock, unless something already trusted is newer. */
export function judgementTime(clock: Date, newestTrusted?: string): Date {
  if (newestTrusted === undefined) return clock;
  const trusted = new Date(newestTrusted);
  return Number.isNaN(trusted.getTime()) || trusted <= clock ? clock : trusted;
}

/**
 * @throws E_EXPIRED when the root or the release expired at `now`
 */
export function checkExpiry(root: TrustRoot, release: ReleaseDocument, now: Date): void {
  const rootExpiry = new Date(root.signed.expires);
  if (rootExpiry <= now) {
    throw new SeabagError('E_EXPIRED', `trust root version ${root.signed.version} expired at ${root.signed.expires} (judged at ${now.toISOString()})`, {
      details: { what: 'root', expires: root.signed.expires, now: now.toISOString() },
      hint: 'rotate the trust root (bundle trust rotate) and carry the new one in the bundle with --trust',
    });
  }
  if (release.expires !== undefined && new Date(release.expires) <= now) {
    throw new SeabagError('E_EXPIRED', `release ${release.name} ${release.version} expired at ${release.expires} (judged at ${now.toISOString()})`, {
      details: { what: 'release', expires: release.expires, now: now.toISOString() },
    });
  }
}

/**
 * @throws E_TARGET_MISMATCH when the release names vessel classes and this vessel's is not one
 */
export function checkTarget(release: ReleaseDocument, target: string | undefined): void {
  if (release.targets.length === 0) return;
  if (target === undefined) {
    throw new SeabagError('E_TARGET_MISMATCH', `release ${release.name} ${release.version} is for ${release.targets.join(', ')}, and this vessel has no class`, {
      details: { targets: release.targets },
      hint: 'set the vessel class with --target CLASS or SEABAG_TARGET',
    });
  }
  if (!release.targets.includes(target)) {
    throw new SeabagError('E_TARGET_MISMATCH', `release ${release.name} ${release.version} is for ${release.targets.join(', ')}, not ${target}`, {
      details: { targets: release.targets, target },
    });
  }
}

/**
 * No release lower than the newest held of the same name, and no second, different release under
 * a version already held.
 *
 * @throws E_DOWNGRADE
 */
export function checkDowngrade(release: ReleaseDocument, digest: string, held: readonly { version: string; digest: string }[], allow: boolean): void {
  const same = held.find((h) => h.version === release.version);
  if (same !== undefined && same.digest !== digest) {
    throw new SeabagError('E_DOWNGRADE', `${release.name} ${release.version} is already held with another content (${same.digest}); a release's version is never reused`, {
      details: { version: release.version, held: same.digest, offered: digest },
    });
  }
  // The same release again (a re-import) is not a downgrade.
  if (allow || held.length === 0 || same !== undefined) return;
  const newest = held.map((h) => h.version).sort(compareSemver).at(-1) as string;
  if (compareSemver(release.version, newest) < 0) {
    throw new SeabagError('E_DOWNGRADE', `${release.name} ${release.version} is older than ${newest}, which this vessel already holds`, {
      details: { version: release.version, newest },
      hint: 'to stage it anyway, import with --allow-downgrade; to go back to a release still held, use bundle rollback',
    });
  }
}
