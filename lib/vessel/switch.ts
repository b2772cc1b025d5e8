/**
 * `apply` and `rollback`: the captain's switch between held releases. The images' own tags move
 * first, then (with `--deploy kubectl`) the manifests are applied and rolled out, then the single
 * commit point moves: `seabag/NAME:current` (and the Flux artifact's `current`). The journal
 * records the switch first, so a crash at any step is finished by the next command.
 */
import { SeabagError, throwIfAborted } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseImageManifest, TITLE, type Descriptor } from '../oci/descriptor.js';
import { OCI_MANIFEST } from '../oci/media-types.js';
import { isNotFound } from '../registry/client.js';
import { readVerified } from '../oci/verify.js';
import { rewriteImageHosts } from '../bundle/k8s.js';
import { releaseRepository } from '../bundle/release.js';
import { describeFailure, runHealthCheck, type CheckOutcome, type HealthCheck } from '../runtime/check.js';
import { kubectlDeploy, type DeployOptions } from './deploy.js';
import type { ManifestFile } from './flux.js';
import { readJournal, writeJournal, type Journal } from './journal.js';
import type { Vessel } from './session.js';
import { findRelease, releasesOf, type HeldRelease } from './state.js';

export interface TagMove {
  repository: string;
  tag: string;
  from?: Digest;
  to: Digest;
}

export interface SwitchResult {
  op: 'apply' | 'rollback';
  release: { name: string; version: string; digest: Digest };
  from?: { version: string; digest: Digest };
  tags: TagMove[];
  deployed?: { applied: string[]; rolledOut: string[] };
  /** The health check that gated the switch, when one ran (it passed, or this is not returned). */
  check?: { source: HealthCheck['source']; command: string[]; output: string };
  /** The check that gates (or, in a plan, would gate) the switch. */
  gate?: { source: HealthCheck['source']; command: string[]; timeoutSeconds: number };
  /** It was already the active release: nothing moved. */
  unchanged: boolean;
  /** Only the plan: what would move (`--dry-run`, or the captain said no); nothing moved. */
  dryRun?: boolean;
}

export const CURRENT_TAG = 'current';

function manifestDesc(digest: Digest, mediaType: string): Descriptor {
  return { mediaType, digest, size: 0 };
}

/**
 * Checks that everything the release needs to run is still in the registry.
 *
 * @throws E_BLOBS_MISSING naming what is gone
 */
export async function checkHeld(vessel: Vessel, release: HeldRelease, signal?: AbortSignal): Promise<void> {
  const missing: string[] = [];
  const check = async (repository: string, digest: Digest): Promise<void> => {
    const repo = await vessel.repository(repository);
    try {
      await repo.getManifest(digest, signal ? { signal } : {});
    } catch (err) {
      if (isNotFound(err)) missing.push(`${repository}@${digest}`);
      else throw err;
    }
  };
  for (const image of release.images) await check(image.repository, image.digest);
  await check(releaseRepository(release.name), release.digest);
  if (missing.length > 0) {
    throw new SeabagError('E_BLOBS_MISSING', `${release.name} ${release.version} is no longer complete in the registry: ${missing.join(', ')}`, {
      details: { missing },
      hint: 'import its bundle again (only what is missing is pushed)',
    });
  }
}

/** The release's manifests and rendered device profiles, read back from the registry, hosts rewritten. */
export async function releaseFiles(vessel: Vessel, release: HeldRelease, signal?: AbortSignal): Promise<ManifestFile[]> {
  const repo = await vessel.repository(releaseRepository(release.name));
  const { bytes, desc } = await repo.getManifest(release.digest, signal ? { signal } : {});
  const manifest = parseImageManifest(bytes, desc, 'release manifest');
  const files: ManifestFile[] = [];
  for (const layer of manifest.layers) {
    const text = (await readVerified(await repo.fetch(layer, signal ? { signal } : {}), layer, 'release layer')).toString('utf8');
    const title = layer.annotations?.[TITLE] ?? layer.digest;
    files.push({ path: title.replace(/^manifests\//, ''), text: rewriteImageHosts(text, vessel.registryHost, title) });
  }
  return files;
}

/** Points each image's own tag at the release's digest; returns what moved. */
async function moveTags(vessel: Vessel, release: HeldRelease, signal?: AbortSignal): Promise<TagMove[]> {
  const moves: TagMove[] = [];
  for (const image of release.images) {
    throwIfAborted(signal);
    if (image.tag === undefined) continue;
    const repo = await vessel.repository(image.repository);
    const now = await repo.tagDigest(image.tag, signal ? { signal } : {});
    if (now === image.digest) continue;
    await repo.tag(manifestDesc(image.digest, image.mediaType), image.tag, signal ? { signal } : {});
    moves.push({ repository: image.repository, tag: image.tag, ...(now === undefined ? {} : { from: now }), to: image.digest });
    vessel.step('switch:tag');
  }
  return moves;
}

/** The commit point: `seabag/NAME:current`, then the Flux artifact's `current`. */
async function commit(vessel: Vessel, release: HeldRelease, signal?: AbortSignal): Promise<TagMove[]> {
  const moves: TagMove[] = [];
  const targets: [string, Digest | undefined][] = [
    [releaseRepository(release.name), release.digest],
    [release.manifestsRepository, release.fluxDigest],
  ];
  for (const [repository, digest] of targets) {
    if (digest === undefined) continue;
    const repo = await vessel.repository(repository);
    const now = await repo.tagDigest(CURRENT_TAG, signal ? { signal } : {});
    if (now === digest) continue;
    await repo.tag(manifestDesc(digest, OCI_MANIFEST), CURRENT_TAG, signal ? { signal } : {});
    moves.push({ repository, tag: CURRENT_TAG, ...(now === undefined ? {} : { from: now }), to: digest });
    vessel.step('switch:commit');
  }
  return moves;
}

/**
 * What `switchRelease` would move, read from the registry and changing nothing: the images' tags
 * that point elsewhere, then the commit point. The same list the switch itself reports.
 *
 * @throws E_BLOBS_MISSING, E_REGISTRY*
 */
export async function planSwitch(vessel: Vessel, target: HeldRelease, op: 'apply' | 'rollback', signal?: AbortSignal): Promise<SwitchResult> {
  const current = releasesOf(vessel.state, target.name).find((r) => r.state === 'active');
  await checkHeld(vessel, target, signal);
  const sig = signal ? { signal } : {};
  const tags: TagMove[] = [];
  const consider = async (repository: string, tag: string, digest: Digest): Promise<void> => {
    const now = await (await vessel.repository(repository)).tagDigest(tag, sig);
    if (now !== digest) tags.push({ repository, tag, ...(now === undefined ? {} : { from: now }), to: digest });
  };
  for (const image of target.images) if (image.tag !== undefined) await consider(image.repository, image.tag, image.digest);
  await consider(releaseRepository(target.name), CURRENT_TAG, target.digest);
  if (target.fluxDigest !== undefined) await consider(target.manifestsRepository, CURRENT_TAG, target.fluxDigest);
  const from = current !== target ? current : undefined;
  return {
    op,
    release: { name: target.name, version: target.version, digest: target.digest },
    ...(from === undefined ? {} : { from: { version: from.version, digest: from.digest } }),
    tags,
    unchanged: current === target && tags.length === 0,
    dryRun: true,
  };
}

/** Marks `target` active and `from` (what ran before) previous; any other active or previous one is staged. */
function markActive(vessel: Vessel, target: HeldRelease, from: HeldRelease | undefined): void {
  const now = new Date().toISOString();
  for (const r of releasesOf(vessel.state, target.name)) {
    if (r === target) continue;
    if (r === from) r.state = 'previous';
    else if (r.state === 'active' || r.state === 'previous') r.state = 'staged';
  }
  target.state = 'active';
  target.appliedAt = now;
  delete target.failure;
}

/** A health check gating a switch, and the environment it runs in. */
export interface SwitchGate {
  check: HealthCheck;
  env: Record<string, string | undefined>;
}

/**
 * Switches back to `back` (what ran before) after `failed` did not pass: its tags, its manifests
 * (kubectl), then the commit point, and marks `failed` failed with `reason`. Every step can be
 * repeated, so a crash here is finished by the next command the same way.
 */
async function switchBack(vessel: Vessel, failed: HeldRelease, back: HeldRelease | undefined, reason: string, deploy: DeployOptions, signal?: AbortSignal): Promise<string> {
  let how = 'there was no earlier release to switch back to: its tags stay where they are';
  if (back !== undefined && back !== failed) {
    await moveTags(vessel, back, signal);
    if (deploy.deployer === 'kubectl') await kubectlDeploy(await releaseFiles(vessel, back, signal), deploy, signal);
    await commit(vessel, back, signal);
    markActive(vessel, back, undefined);
    how = `switched back to ${back.version}`;
  }
  failed.state = 'failed';
  failed.failure = reason;
  await vessel.save();
  vessel.step('switch:reverted');
  await vessel.dir.removeJournal();
  return how;
}

/** The environment a check runs in: the caller's, and which switch it judges. */
function checkEnv(gate: SwitchGate, target: HeldRelease, from: HeldRelease | undefined, registry: string): Record<string, string | undefined> {
  return { ...gate.env, SEABAG_RELEASE: target.name, SEABAG_VERSION: target.version, SEABAG_PREVIOUS: from?.version ?? '', SEABAG_REGISTRY: registry };
}

/**
 * Switches `name` to `target`. With a gate, the check runs once the switch is committed; if it
 * fails or times out, the switch is undone (`switchBack`) and E_HEALTH_CHECK_FAILED thrown. The
 * journal carries the check from the start, so a crash before the check has passed is finished
 * by switching back.
 *
 * @throws E_BLOBS_MISSING, E_ROLLOUT_FAILED (after switching back), E_HEALTH_CHECK_FAILED (after
 *   switching back), E_ABORTED (during the check: the next command switches back), E_REGISTRY*, E_TOOL
 */
export async function switchRelease(
  vessel: Vessel,
  target: HeldRelease,
  op: 'apply' | 'rollback',
  deploy: DeployOptions,
  signal?: AbortSignal,
  resumed?: Journal,
  gate?: SwitchGate,
): Promise<SwitchResult> {
  const current = releasesOf(vessel.state, target.name).find((r) => r.state === 'active');
  const fromRelease = resumed?.from !== undefined ? findRelease(vessel.state, target.name, resumed.from.version) : current !== target ? current : undefined;
  await checkHeld(vessel, target, signal);
  const journal: Journal = {
    op,
    started: new Date().toISOString(),
    pid: process.pid,
    name: target.name,
    to: { version: target.version, digest: target.digest },
    ...(fromRelease === undefined ? {} : { from: { version: fromRelease.version, digest: fromRelease.digest } }),
    deploy: deploy.deployer,
    phase: 'tags',
    ...(gate === undefined ? {} : { check: { source: gate.check.source, command: gate.check.command, timeoutSeconds: gate.check.timeoutSeconds } }),
  };
  await writeJournal(vessel.dir, journal);
  vessel.step('switch:journal');
  const tags = await moveTags(vessel, target, signal);
  let deployed: SwitchResult['deployed'];
  if (deploy.deployer === 'kubectl') {
    await writeJournal(vessel.dir, { ...journal, phase: 'deploy' });
    try {
      deployed = await kubectlDeploy(await releaseFiles(vessel, target, signal), deploy, signal);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      let back = 'there was no earlier release to switch back to';
      if (fromRelease !== undefined) {
        try {
          await moveTags(vessel, fromRelease, signal);
          await kubectlDeploy(await releaseFiles(vessel, fromRelease, signal), deploy, signal);
          back = `switched back to ${fromRelease.version}`;
        } catch (revertErr) {
          back = `switching back to ${fromRelease.version} failed too: ${(revertErr as Error).message}`;
        }
      }
      target.state = 'failed';
      target.failure = reason;
      await vessel.save();
      await vessel.dir.removeJournal();
      throw new SeabagError('E_ROLLOUT_FAILED', `${op} of ${target.name} ${target.version} failed: ${reason}; ${back}`, {
        cause: err,
        details: { release: target.version, revertedTo: fromRelease?.version },
        hint: 'see `bundle status`; the failed release stays held and can be applied again once fixed',
      });
    }
  }
  await writeJournal(vessel.dir, { ...journal, phase: 'commit' });
  tags.push(...(await commit(vessel, target, signal)));
  const wasActive = current === target;
  markActive(vessel, target, fromRelease);
  await vessel.save();
  vessel.step('switch:saved');
  let checked: SwitchResult['check'];
  if (gate !== undefined) {
    await writeJournal(vessel.dir, { ...journal, phase: 'check' });
    vessel.step('switch:check');
    const outcome: CheckOutcome = await runHealthCheck(gate.check, checkEnv(gate, target, fromRelease, vessel.registryHost), {
      ...(signal === undefined ? {} : { signal }),
      onStarted: () => vessel.step('check:running'),
    });
    if (!outcome.passed) {
      const reason = describeFailure(outcome, gate.check);
      let how: string;
      if (wasActive && fromRelease === undefined) {
        // It was already running before this command: there is nothing to switch back to, and
        // nothing this command changed to undo.
        await vessel.dir.removeJournal();
        how = `it was already active, so nothing was switched`;
      } else {
        how = await switchBack(vessel, target, fromRelease, reason, deploy, signal);
      }
      throw new SeabagError('E_HEALTH_CHECK_FAILED', `${op} of ${target.name} ${target.version} failed its ${reason}; ${how}`, {
        details: {
          release: target.version,
          revertedTo: fromRelease?.version,
          source: gate.check.source,
          exitCode: outcome.exitCode,
          signal: outcome.signal,
          timedOut: outcome.timedOut,
          output: outcome.output,
        },
        hint: 'see `bundle status`; the failed release stays held and can be applied again once fixed',
      });
    }
    await writeJournal(vessel.dir, { ...journal, phase: 'checked' });
    vessel.step('switch:checked');
    checked = { source: gate.check.source, command: gate.check.command, output: outcome.output };
  }
  await vessel.dir.removeJournal();
  return {
    op,
    release: { name: target.name, version: target.version, digest: target.digest },
    ...(fromRelease === undefined ? {} : { from: { version: fromRelease.version, digest: fromRelease.digest } }),
    tags,
    ...(deployed === undefined ? {} : { deployed }),
    ...(checked === undefined ? {} : { check: checked }),
    ...(gate === undefined ? {} : { gate: { source: gate.check.source, command: gate.check.command, timeoutSeconds: gate.check.timeoutSeconds } }),
    unchanged: current === target && tags.length === 0,
  };
}

/**
 * Finishes or reverts what a crashed command left in the journal, and says which.
 * An import had staged nothing yet (its state write is its last step), so it is dropped; a
 * switch is finished, since the captain asked for it and every step can be repeated.
 */
export async function recoverJournal(vessel: Vessel, deploy: DeployOptions, signal?: AbortSignal): Promise<string | undefined> {
  const journal = await readJournal(vessel.dir);
  if (journal === undefined) return undefined;
  const what = `${journal.name} ${journal.to.version}`;
  if (journal.op === 'import') {
    await vessel.dir.removeJournal();
    if (findRelease(vessel.state, journal.name, journal.to.version)?.digest === journal.to.digest) {
      return `an import of ${what} had finished just before it was interrupted; nothing to do`;
    }
    return `an import of ${what} was interrupted (${journal.phase ?? 'early'}); it had staged nothing, and importing the bundle again finishes it, pushing only what is missing`;
  }
  const target = findRelease(vessel.state, journal.name, journal.to.version);
  if (target === undefined || target.digest !== journal.to.digest) {
    await vessel.dir.removeJournal();
    return `dropped an interrupted ${journal.op} of ${what}: this vessel no longer holds that release`;
  }
  const journalDeploy = { ...deploy, deployer: journal.deploy ?? deploy.deployer };
  if (journal.check !== undefined && journal.phase !== 'checked') {
    // A gated switch counts only once its check has passed; this one never did.
    const back = journal.from === undefined ? undefined : findRelease(vessel.state, journal.name, journal.from.version);
    const reason =
      journal.phase === 'check'
        ? `health check interrupted: seabag (pid ${journal.pid}) stopped while the check ran, so it never passed`
        : `health check never ran: seabag (pid ${journal.pid}) stopped at ${journal.phase ?? 'the start'} of the switch`;
    const how = await switchBack(vessel, target, back?.digest === journal.from?.digest ? back : undefined, reason, journalDeploy, signal);
    return `the interrupted ${journal.op} of ${what} never passed its health check: ${how}; ${journal.to.version} is marked failed`;
  }
  await switchRelease(vessel, target, journal.op, journalDeploy, signal, journal);
  return `finished the interrupted ${journal.op} of ${what} (it had stopped at ${journal.phase ?? 'the start'})`;
}
