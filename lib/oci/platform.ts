/**
 * Platform selection as containerd does it (containerd/platforms v0.2 `database.go`
 * `normalizeArch`, `compare.go` `platformVector`/`Only`, `platforms.go` `Normalize`/`matcher`),
 * and the filter a release build applies to an image index:
 *
 * - names are normalised before they are compared: os and arch are lower-cased, `x86_64` is
 *   `amd64` (and `amd64/v1` is `amd64`), `aarch64` and `arm64/v8` are `arm64`, `arm` alone is
 *   `arm/v7`, `armhf` is `arm/v7`, `armel` is `arm/v6`, `i386` is `386`;
 * - a wanted platform also accepts what containerd would run in its place, best first
 *   (`Only`): `amd64/v3` → `amd64/v2`, `amd64`, `386`; `arm/v7` → `arm/v6`, `arm/v5`;
 *   `arm64` → `arm/v8`…`arm/v5`; `arm64/v8.2` → `arm64/v8.1`, `arm64`, then arm;
 * - in each index, for each wanted platform, only the best-ranked entries are kept, as
 *   containerd's pull keeps one manifest per index (`images.LimitManifests(…, 1)`); an entry
 *   without a platform is kept (`images.FilterPlatforms`), and a child index is filtered in turn;
 * - buildx attestation manifests (`vnd.docker.reference.type: attestation-manifest`) are kept
 *   with the manifest they describe (`vnd.docker.reference.digest`), and dropped with it.
 */
import type { Descriptor, Platform } from './descriptor.js';
import { isIndex } from './media-types.js';

/** The annotations buildx writes on an attestation manifest inside an image index. */
export const DOCKER_REFERENCE_TYPE = 'vnd.docker.reference.type';
export const DOCKER_REFERENCE_DIGEST = 'vnd.docker.reference.digest';
export const ATTESTATION_MANIFEST = 'attestation-manifest';

/** containerd `normalizeOS`: lower case, `macos` is `darwin`. */
function normalizeOS(os: string): string {
  const lower = os.toLowerCase();
  return lower === 'macos' ? 'darwin' : lower;
}

/** containerd `normalizeArch`. */
function normalizeArch(architecture: string, variant: string): { architecture: string; variant: string } {
  let arch = architecture.toLowerCase();
  let v = variant.toLowerCase();
  switch (arch) {
    case 'i386':
      arch = '386';
      v = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      arch = 'amd64';
      if (v === 'v1') v = '';
      break;
    case 'aarch64':
    case 'arm64':
      arch = 'arm64';
      if (v === '8' || v === 'v8') v = '';
      break;
    case 'armhf':
      arch = 'arm';
      v = 'v7';
      break;
    case 'armel':
      arch = 'arm';
      v = 'v6';
      break;
    case 'arm':
      if (v === '' || v === '7') v = 'v7';
      else if (v === '5' || v === '6' || v === '8') v = `v${v}`;
      break;
    default:
      break;
  }
  return { architecture: arch, variant: v };
}

/** The canonical form of a platform (containerd `Normalize`); an empty variant is left out. */
export function normalizePlatform(p: Platform): Platform {
  const { architecture, variant } = normalizeArch(p.architecture, p.variant ?? '');
  const out: Platform = { os: normalizeOS(p.os), architecture };
  if (variant !== '') out.variant = variant;
  if (p['os.version'] !== undefined) out['os.version'] = p['os.version'];
  if (p['os.features'] !== undefined && p['os.features'].length > 0) out['os.features'] = [...new Set(p['os.features'])].sort();
  return out;
}

function withVariant(p: Platform, architecture: string, variant: string): Platform {
  const out: Platform = { ...p, architecture };
  if (variant === '') delete out.variant;
  else out.variant = variant;
  return out;
}

/**
 * What a host of `platform` runs, best first (containerd `platformVector`, on a normalised
 * platform). The first entry is the platform itself.
 */
export function platformVector(platform: Platform): Platform[] {
  const vector: Platform[] = [platform];
  const variant = platform.variant ?? '';
  switch (platform.architecture) {
    case 'amd64': {
      const n = /^v?(\d+)$/.exec(variant)?.[1];
      if (n !== undefined && Number(n) > 1) {
        // amd64/v1 is plain amd64 once normalised.
        for (let v = Number(n) - 1; v >= 1; v -= 1) vector.push(withVariant(platform, 'amd64', v === 1 ? '' : `v${v}`));
      }
      vector.push(withVariant(platform, '386', ''));
      break;
    }
    case 'arm': {
      const n = /^v?(\d+)$/.exec(variant)?.[1];
      if (n !== undefined && Number(n) > 5) for (let v = Number(n) - 1; v >= 5; v -= 1) vector.push(withVariant(platform, 'arm', `v${v}`));
      break;
    }
    case 'arm64': {
      let v = variant === '' ? 'v8' : variant;
      const m = /^v(\d+)(?:\.(\d+))?$/.exec(v);
      if (m !== null && Number(m[1]) >= 8) {
        let major = Number(m[1]);
        let minor = m[2] !== undefined && v.length === 4 ? Number(m[2]) : 0;
        const name = (maj: number, min: number): string => (min === 0 ? `v${maj}` : `v${maj}.${min}`);
        if (major === 9) {
          for (let k = minor - 1; k >= 0; k -= 1) vector.push(withVariant(platform, 'arm64', name(9, k)));
          // v9.x is compatible with v8.(x+5).
          minor += 5;
          major = 8;
          vector.push(withVariant(platform, 'arm64', `v8.${minor}`));
        }
        for (let k = minor - 1; k >= 0; k -= 1) vector.push(withVariant(platform, 'arm64', name(major, k)));
      }
      if (v.startsWith('v8.') || v.startsWith('v9.')) v = 'v8';
      vector.push(...platformVector(withVariant(platform, 'arm', v)));
      break;
    }
    default:
      break;
  }
  return vector;
}

/** containerd `matcher.Match`: same os, arch and variant once normalised; features a subset. */
function sameAs(wanted: Platform, candidate: Platform): boolean {
  const c = normalizePlatform(candidate);
  if (wanted.os !== c.os || wanted.architecture !== c.architecture || (wanted.variant ?? '') !== (c.variant ?? '')) return false;
  const want = new Set(wanted['os.features'] ?? []);
  return (c['os.features'] ?? []).every((f) => want.has(f));
}

/**
 * How well `candidate` serves `wanted`: 0 for the platform itself, higher for what containerd
 * would fall back to, -1 when a host of `wanted` would not run it.
 */
export function platformRank(candidate: Platform | undefined, wanted: Platform): number {
  if (candidate === undefined) return -1;
  return platformVector(normalizePlatform(wanted)).findIndex((p) => sameAs(normalizePlatform(p), candidate));
}

/** Does `candidate` exactly match `wanted` once both are normalised (containerd `OnlyStrict`)? */
export function platformEquals(candidate: Platform | undefined, wanted: Platform): boolean {
  return candidate !== undefined && sameAs(normalizePlatform(wanted), candidate);
}

/** Is this index entry a buildx attestation manifest? */
export function isAttestation(desc: Descriptor): boolean {
  return desc.annotations?.[DOCKER_REFERENCE_TYPE] === ATTESTATION_MANIFEST;
}

/** The manifest a buildx attestation manifest describes. */
export function attestationSubject(desc: Descriptor): string | undefined {
  return isAttestation(desc) ? desc.annotations?.[DOCKER_REFERENCE_DIGEST] : undefined;
}

export interface IndexSelection {
  /** Entries (by position) to resolve now: platform matches, entries without a platform, child indexes. */
  keep: Set<number>;
  /** For each wanted platform that an exact entry was not found for, the fallback chosen. */
  fallbacks: { wanted: Platform; chosen: Platform }[];
}

/**
 * Chooses the entries of one index for the wanted platforms: for each, the best-ranked entries;
 * entries without a platform and child indexes (filtered later, at their own level) are kept,
 * attestation manifests are left to `keepAttestations`.
 */
export function selectEntries(entries: readonly Descriptor[], wanted: readonly Platform[]): IndexSelection {
  const keep = new Set<number>();
  const fallbacks: IndexSelection['fallbacks'] = [];
  entries.forEach((e, i) => {
    if (isAttestation(e)) return;
    if (e.platform === undefined) keep.add(i);
    else if (isIndex(e.mediaType) && wanted.some((w) => platformRank(e.platform, w) >= 0)) keep.add(i);
  });
  for (const w of wanted) {
    let best = Infinity;
    const ranks = entries.map((e) => (isAttestation(e) || isIndex(e.mediaType) || e.platform === undefined ? -1 : platformRank(e.platform, w)));
    for (const r of ranks) if (r >= 0 && r < best) best = r;
    if (best === Infinity) continue;
    ranks.forEach((r, i) => {
      if (r === best) keep.add(i);
    });
    const chosen = entries[ranks.indexOf(best)]?.platform;
    if (best > 0 && chosen !== undefined) fallbacks.push({ wanted: w, chosen });
  }
  return { keep, fallbacks };
}

/**
 * The attestation manifests to keep: those whose described manifest was kept. With `keep` false
 * (`--no-referrers`), none.
 */
export function keepAttestations(entries: readonly Descriptor[], kept: ReadonlySet<string>, keep: boolean): Set<number> {
  const out = new Set<number>();
  if (!keep) return out;
  entries.forEach((e, i) => {
    const subject = attestationSubject(e);
    if (subject !== undefined && kept.has(subject)) out.add(i);
  });
  return out;
}
