/**
 * Policy after the signature: expiry (judged against the later of the clock and the newest time
 * already trusted, since a ship's clock may be wrong), target vessel class, and no downgrade.
 */
import { SeabagError } from '../errors.js';
import type { ReleaseDocument } from '../release/model.js';
import { compareSemver } from '../util/semver.js';
import { parseTime } from '../util/time.js';
import type { TrustRoot } from './root.js';

/** The time to judge expiry by: the clock, unless something already trusted is newer. */
export function judgementTime(clock: Date, newestTrusted?: string): Date {
  if (newestTrusted === undefined) return clock;
  const trusted = parseTime(newestTrusted);
  return trusted === undefined || trusted <= clock ? clock : trusted;
}

/**
 * @throws E_EXPIRED when the root or the release expired at `now`
 */
export function checkExpiry(root: TrustRoot, release: ReleaseDocument, now: Date): void {
  const rootExpiry = parseTime(root.signed.expires);
  if (rootExpiry === undefined) throw new SeabagError('E_TRUST_INVALID', `trust root version ${root.signed.version}: expires ${JSON.stringify(root.signed.expires)} is not a real time`);
  const releaseExpiry = release.expires === undefined ? undefined : parseTime(release.expires);
  if (release.expires !== undefined && releaseExpiry === undefined) {
    throw new SeabagError('E_LAYOUT_INVALID', `release ${release.name} ${release.version}: expires ${JSON.stringify(release.expires)} is not a real time`, { details: { expires: release.expires } });
  }
  if (rootExpiry <= now) {
    throw new SeabagError('E_EXPIRED', `trust root version ${root.signed.version} expired at ${root.signed.expires} (judged at ${now.toISOString()})`, {
      details: { what: 'root', expires: root.signed.expires, now: now.toISOString() },
      hint: 'rotate the trust root (bundle trust rotate) and carry the new one in the bundle with --trust',
    });
  }
  if (releaseExpiry !== undefined && releaseExpiry <= now) {
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
 * a version already held. A version that differs from one held only in build metadata
 * (`2.0.0+build.1` beside `2.0.0+build.2`) has the same precedence (semver.org §10): it is a
 * replay, refused unless `allow`.
 *
 * @throws E_DOWNGRADE
 */
/** 1.4.0 → 1.4.1; 1.5.0-rc.1 → 1.5.0-rc.2 where it can; else VERSION.1 is not offered. */
function nextPatch(version: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:-(.*?)(\d+))?(\+.*)?$/.exec(version);
  if (m === null) return 'a higher version';
  if (m[4] !== undefined && m[5] !== undefined) return `${m[1]}.${m[2]}.${m[3]}-${m[4]}${Number(m[5]) + 1}`;
  return `${m[1]}.${m[2]}.${Number(m[3]) + 1}`;
}

export function checkDowngrade(release: ReleaseDocument, digest: string, held: readonly { version: string; digest: string }[], allow: boolean): void {
  const same = held.find((h) => h.version === release.version);
  if (same !== undefined && same.digest !== digest) {
    throw new SeabagError('E_DOWNGRADE', `${release.name} ${release.version} is already held with another content (${same.digest}); a release's version is never reused`, {
      details: { version: release.version, held: same.digest, offered: digest },
      hint: `something changed since ${release.version} was built: bump the version in release.yaml (e.g. ${nextPatch(release.version)}) and build again`,
    });
  }
  // The same release again (a re-import) is not a downgrade.
  if (allow || held.length === 0 || same !== undefined) return;
  const twin = held.find((h) => compareSemver(h.version, release.version) === 0);
  if (twin !== undefined) {
    throw new SeabagError('E_DOWNGRADE', `${release.name} ${release.version} has the same precedence as ${twin.version}, which this vessel already holds: build metadata does not make a new version`, {
      details: { version: release.version, held: twin.version },
      hint: 'give the release a new version; to stage it anyway, import with --allow-downgrade',
    });
  }
  const newest = held.map((h) => h.version).sort(compareSemver).at(-1) as string;
  if (compareSemver(release.version, newest) < 0) {
    throw new SeabagError('E_DOWNGRADE', `${release.name} ${release.version} is older than ${newest}, which this vessel already holds`, {
      details: { version: release.version, newest },
      hint: 'to stage it anyway, import with --allow-downgrade; to go back to a release still held, use bundle rollback',
    });
  }
}
