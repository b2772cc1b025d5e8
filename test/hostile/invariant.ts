/**
 * The invariant every hostile case must leave standing on a vessel: state.json is byte for byte
 * what it was and valid; no tag moved; no journal is left; and every release the vessel holds is
 * still complete and pullable from the registry.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { StateDir, type HeldRelease } from '../../lib/index.js';
import type { TestVessel } from '../helpers/vessel.js';

export interface Snapshot {
  state: string;
  tags: Record<string, Record<string, string | undefined>>;
  releases: HeldRelease[];
}

function repositories(releases: readonly HeldRelease[]): string[] {
  return [...new Set(releases.flatMap((r) => Object.keys(r.content)))].sort();
}

export async function snapshot(v: TestVessel): Promise<Snapshot> {
  const state = await readFile(join(v.stateDir, 'state.json'), 'utf8');
  const releases = (await new StateDir(v.stateDir).load()).releases;
  const tags: Snapshot['tags'] = {};
  for (const repo of repositories(releases)) {
    tags[repo] = {};
    for (const tag of await v.tags(repo)) tags[repo][tag] = await v.tag(repo, tag);
  }
  return { state, tags, releases };
}

/**
 * Checks the invariant; returns true when it held (and records assertions in `t`).
 * `pull` also checks every digest of every held release is in the registry (slower).
 */
export async function invariantHolds(t: ExecutionContext, v: TestVessel, before: Snapshot, what: string, pull = true, options: { newRelease?: boolean } = {}): Promise<boolean> {
  let ok = true;
  const check = (cond: boolean, message: string): void => {
    if (!cond) ok = false;
    t.true(cond, `${what}: ${message}`);
  };
  const state = await readFile(join(v.stateDir, 'state.json'), 'utf8');
  if (options.newRelease === true) {
    // A release was added: every one held before is still there, exactly as it was.
    const now = (await new StateDir(v.stateDir).load()).releases;
    for (const r of before.releases) check(JSON.stringify(now.find((x) => x.digest === r.digest)) === JSON.stringify(r), `${r.name} ${r.version} unchanged in state.json`);
  } else {
    check(state === before.state, 'state.json unchanged');
  }
  const loaded = await new StateDir(v.stateDir).load().then(
    () => true,
    () => false,
  );
  check(loaded, 'state.json valid');
  check((await stat(join(v.stateDir, 'journal.json')).catch(() => undefined)) === undefined, 'no journal left');
  const now = await snapshot(v);
  for (const [repo, tags] of Object.entries(before.tags)) {
    for (const [tag, digest] of Object.entries(tags)) check(now.tags[repo]?.[tag] === digest, `${repo}:${tag} did not move`);
    if (options.newRelease !== true) check(Object.keys(now.tags[repo] ?? {}).length === Object.keys(tags).length, `no tag added in ${repo}`);
  }
  if (pull) {
    const client = await v.client();
    for (const r of before.releases) {
      for (const [repo, digests] of Object.entries(r.content)) {
        for (const d of digests) {
          if (!(await client.repository(repo).has(d))) {
            check(false, `${r.name} ${r.version}: ${repo}@${d} still in the registry`);
          }
        }
      }
      for (const image of r.images) {
        const got = await client.repository(image.repository).getManifest(image.digest).then(
          () => true,
          () => false,
        );
        check(got, `${r.name} ${r.version}: ${image.repository}@${image.digest} pullable`);
      }
    }
  }
  return ok;
}
