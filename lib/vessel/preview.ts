/**
 * What a switch would change, told from the state alone (no registry round trip), for
 * `bundle status`: the release a rollback returns to, and the images an apply of each other
 * held release would move.
 */
import type { Digest } from '../oci/digest.js';
import { releasesOf, type HeldRelease, type VesselState } from './state.js';

export interface ImageChange {
  repository: string;
  tag?: string;
  /** The digest the active release runs there now; absent for an image the active one lacks. */
  from?: Digest;
  /** The tag of the image running there now, when it differs from `tag` (fusion 1.5.0 → 1.4.0). */
  fromTag?: string;
  to: Digest;
}

/** The images of `target` whose digests differ from what the active release of its name runs. */
export function imageChanges(state: VesselState, target: HeldRelease): ImageChange[] {
  const active = releasesOf(state, target.name).find((r) => r.state === 'active');
  if (active === target) return [];
  const changes: ImageChange[] = [];
  for (const image of target.images) {
    const now =
      active?.images.find((i) => i.repository === image.repository && i.tag === image.tag) ??
      active?.images.find((i) => i.repository === image.repository);
    if (now?.digest === image.digest) continue;
    changes.push({
      repository: image.repository,
      ...(image.tag === undefined ? {} : { tag: image.tag }),
      ...(now === undefined ? {} : { from: now.digest }),
      ...(now?.tag !== undefined && now.tag !== image.tag ? { fromTag: now.tag } : {}),
      to: image.digest,
    });
  }
  return changes;
}

/** The release `bundle rollback NAME` (without --to) would switch to, if any. */
export function rollbackTarget(state: VesselState, name: string): HeldRelease | undefined {
  return releasesOf(state, name).find((r) => r.state === 'previous');
}
