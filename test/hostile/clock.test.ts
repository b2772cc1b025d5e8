/**
 * A signed release cannot poison the vessel's clock. A release `created` in 2100 once advanced the
 * vessel's trusted time to 2100, after which every release was refused E_EXPIRED and only a hand
 * edit of state.json recovered. Now the trusted time never passes the signing root's expiry nor
 * the clock plus a day, and a vessel whose trusted time is wrong anyway is reset by a statement
 * the root keys signed (`bundle trust reset-time` ashore, `bundle trust set-time` aboard), all
 * through the CLI against the real registry.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { runCli } from '../helpers/cli.js';
import { EPOCH, makeExampleImages } from '../helpers/example.js';
import { tempDir } from '../helpers/tools.js';
import { startVessel } from '../helpers/vessel.js';
import { outcomeOf, Report } from './report.js';

const report = new Report('clock');

test.after.always(async () => {
  await report.write();
});

const YEAR_2100 = String(Date.UTC(2100, 0, 1) / 1000);
const DAY = 24 * 60 * 60 * 1000;

async function cli(args: string[], env: Record<string, string> = {}): Promise<void> {
  const r = await runCli(args, { SOURCE_DATE_EPOCH: EPOCH, ...env });
  if (r.code !== 0) throw new Error(`bundle ${args.join(' ')}: ${r.stdout}${r.stderr}`);
}

async function trustedTime(stateDir: string): Promise<string | undefined> {
  return (JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8')) as { newestTrustedTime?: string }).newestTrustedTime;
}

/** A folder with the example images, a root key, a release key and the trust root they make. */
async function signedWorkspace(t: ExecutionContext): Promise<{ dir: string; layout: string; rootKey: string; releaseKey: string; trust: string }> {
  const dir = await tempDir(t);
  const layout = await makeExampleImages(dir);
  const rootKey = join(dir, 'root.key');
  const releaseKey = join(dir, 'release.key');
  await cli(['keygen', rootKey]);
  await cli(['keygen', releaseKey]);
  const trust = join(dir, 'trust.json');
  await cli(['trust', 'init', '--root-key', `${rootKey}.pub`, '--release-key', `${releaseKey}.pub`, '--sign', rootKey, '-o', trust]);
  return { dir, layout, rootKey, releaseKey, trust };
}

test.serial('a release dated 2100 does not poison the trusted time; a root-signed reset recovers a poisoned vessel', async (t) => {
  const { dir, layout, rootKey, releaseKey, trust } = await signedWorkspace(t);
  const bundle = async (version: string, epoch: string, expires?: string): Promise<string> => {
    const spec = join(dir, `${version}.yaml`);
    await writeFile(spec, ['apiVersion: seabag.dev/v1', 'kind: Release', 'name: clock', `version: ${version}`, ...(expires ? [`expires: ${expires}`] : []), 'images:', '  - ref: groke/toolbox:1', `    from: oci:${layout}:toolbox-1.0.0`, ''].join('\n'));
    const out = join(dir, `clock-${version}.bundle`);
    await cli(['build', spec, '-o', out, '--sign', releaseKey, '--no-progress'], { SOURCE_DATE_EPOCH: epoch });
    return out;
  };
  const poison = await bundle('1.0.0', YEAR_2100);
  const later = await bundle('1.1.0', EPOCH, '2030-01-01');
  const v = await startVessel(t);

  // 1. The release dated 2100 is staged, but the trusted time stops at the clock plus a day.
  const before = Date.now();
  const first = await v.run(['import', poison, '--trust', trust, '--json']);
  t.is(first.code, 0, first.stdout);
  const trusted = await trustedTime(v.stateDir);
  t.truthy(trusted);
  t.true(new Date(trusted as string).getTime() <= Date.now() + DAY, `trusted time ${trusted} is within a day of the clock`);
  t.true(new Date(trusted as string).getTime() >= before - 1000);
  const next = await v.run(['import', later, '--json']);
  report.add('clock', 'release created in 2100, then a release expiring in 2030', 'the second imports (exit 0)', outcomeOf(next), 'n/a');
  t.is(next.code, 0, next.stdout);

  // 2. A vessel poisoned before this rule (as an older seabag left it) refuses releases as expired...
  const state = JSON.parse(await readFile(join(v.stateDir, 'state.json'), 'utf8')) as Record<string, unknown>;
  state['newestTrustedTime'] = '2100-01-01T00:00:00Z';
  await writeFile(join(v.stateDir, 'state.json'), JSON.stringify(state, null, 2));
  const third = await bundle('1.2.0', EPOCH, '2030-01-01');
  const refused = await v.run(['import', third, '--json']);
  t.is(refused.json.error?.code, 'E_EXPIRED');

  // ...a reset whose time was changed after signing, or one signed by a release key, or one past
  // its validity, is refused and changes nothing...
  const reset = join(dir, 'reset.json');
  t.is((await runCli(['trust', 'reset-time', '--root', trust, '--sign', rootKey, '-o', reset])).code, 0);
  const doc = JSON.parse(await readFile(reset, 'utf8')) as { signed: { time: string } };
  const forged = join(dir, 'forged.json');
  await writeFile(forged, JSON.stringify({ ...doc, signed: { ...doc.signed, time: '1990-01-01T00:00:00Z' } }));
  const badSigner = await runCli(['trust', 'reset-time', '--root', trust, '--sign', releaseKey, '-o', join(dir, 'by-release-key.json'), '--json']);
  t.is(badSigner.json.error?.code, 'E_KEY_UNTRUSTED');
  const stale = join(dir, 'stale.json');
  t.is((await runCli(['trust', 'reset-time', '--root', trust, '--sign', rootKey, '--valid', '2020-01-01', '-o', stale])).code, 0);
  for (const [name, file, code] of [
    ['time changed after signing', forged, 'E_THRESHOLD_UNMET'],
    ['past its validity by the vessel clock', stale, 'E_EXPIRED'],
  ] as const) {
    const r = await v.run(['trust', 'set-time', file, '--json']);
    report.add('clock', `time reset ${name}`, `exit 1 ${code}, trusted time unchanged`, outcomeOf(r), 'n/a');
    t.is(r.json.error?.code, code, name);
    t.is(await trustedTime(v.stateDir), '2100-01-01T00:00:00Z', name);
  }
  // ...nor one carrying more signatures than a root may (each would be tried against every key).
  const padded = join(dir, 'padded.json');
  const signatures = (doc as unknown as { signatures: unknown[] }).signatures;
  await writeFile(padded, JSON.stringify({ ...doc, signatures: Array.from({ length: 65 }, () => signatures[0]) }));
  const tooMany = await v.run(['trust', 'set-time', padded, '--json']);
  report.add('clock', 'time reset carrying 65 signatures', 'exit 2 E_TRUST_INVALID before any is checked, trusted time unchanged', outcomeOf(tooMany), 'n/a');
  t.is(tooMany.code, 2);
  t.like(tooMany.json.error, { code: 'E_TRUST_INVALID', details: { limit: 64 } });
  t.is(await trustedTime(v.stateDir), '2100-01-01T00:00:00Z');

  // ...and the root-signed reset brings it back, after which releases import again.
  const set = await v.run(['trust', 'set-time', reset, '--json']);
  t.is(set.code, 0, set.stdout);
  t.is(set.json['previous'], '2100-01-01T00:00:00Z');
  t.is(await trustedTime(v.stateDir), doc.signed.time);
  const recovered = await v.run(['import', third, '--json']);
  report.add('clock', 'vessel poisoned to 2100, then reset by a root-signed statement', 'the next release imports (exit 0)', outcomeOf(recovered), 'n/a');
  t.is(recovered.code, 0, recovered.stdout);
});

test.serial('a time reset statement is applied once: replaying it, or an older one, is refused E_DOWNGRADE and the clock stays put', async (t) => {
  const { dir, layout, rootKey, releaseKey, trust } = await signedWorkspace(t);
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, ['apiVersion: seabag.dev/v1', 'kind: Release', 'name: clock', 'version: 1.0.0', 'images:', '  - ref: groke/toolbox:1', `    from: oci:${layout}:toolbox-1.0.0`, ''].join('\n'));
  const bundle = join(dir, 'clock.bundle');
  await cli(['build', spec, '-o', bundle, '--sign', releaseKey, '--no-progress']);
  const v = await startVessel(t);
  t.is((await v.run(['import', bundle, '--trust', trust, '--json'])).code, 0);

  // Two statements captured ashore: one valid 1 day, one valid 7 days (both set the clock to 2001).
  const older = join(dir, 'older.json');
  const reset = join(dir, 'reset.json');
  const newer = join(dir, 'newer.json');
  await cli(['trust', 'reset-time', '--root', trust, '--sign', rootKey, '--time', '2001-01-01', '--valid', '1d', '-o', older]);
  await cli(['trust', 'reset-time', '--root', trust, '--sign', rootKey, '--time', '2001-01-01', '--valid', '7d', '-o', reset]);
  const set = await v.run(['trust', 'set-time', reset, '--json']);
  t.is(set.code, 0, set.stdout + set.stderr);
  const state = JSON.parse(await readFile(join(v.stateDir, 'state.json'), 'utf8')) as { lastTimeReset?: { digest: string; notAfter: string; time: string } };
  t.is(state.lastTimeReset?.digest, `sha256:${createHash('sha256').update(await readFile(reset)).digest('hex')}`, 'the applied statement is recorded');
  t.is(state.lastTimeReset?.time, '2001-01-01T00:00:00Z');

  // The clock moves on (a later trusted time), then someone replays the captured statements.
  const moved = JSON.parse(await readFile(join(v.stateDir, 'state.json'), 'utf8')) as Record<string, unknown>;
  moved['newestTrustedTime'] = '2026-06-01T00:00:00Z';
  await writeFile(join(v.stateDir, 'state.json'), JSON.stringify(moved, null, 2));
  for (const [name, file] of [
    ['the same statement replayed', reset],
    ['an older statement (valid until earlier) after a newer one', older],
  ] as const) {
    const r = await v.run(['trust', 'set-time', file, '--json']);
    report.add('clock', `time reset: ${name}`, 'exit 1 E_DOWNGRADE, trusted time unchanged', outcomeOf(r), (await trustedTime(v.stateDir)) === '2026-06-01T00:00:00Z' ? 'held' : 'n/a');
    t.is(r.code, 1, name);
    t.is(r.json.error?.code, 'E_DOWNGRADE', name);
    t.is(await trustedTime(v.stateDir), '2026-06-01T00:00:00Z', name);
  }

  // A statement signed later, valid later, still works.
  await cli(['trust', 'reset-time', '--root', trust, '--sign', rootKey, '--time', '2002-01-01', '--valid', '8d', '-o', newer]);
  const fresh = await v.run(['trust', 'set-time', newer, '--json']);
  report.add('clock', 'time reset: a newer statement after one applied', 'exit 0', outcomeOf(fresh), 'n/a');
  t.is(fresh.code, 0, fresh.stdout + fresh.stderr);
  t.is(await trustedTime(v.stateDir), '2002-01-01T00:00:00Z');
});
