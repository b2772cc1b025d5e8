/**
 * Dates are real dates and versions compare exactly: every time that comes from outside
 * (release.yaml, `trust init --expires`, trust.json, a release document) is read as strict
 * RFC 3339, and semver precedence uses big integers and treats build metadata as no new version.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { SeabagError } from '../lib/errors.js';
import { checkDowngrade, checkExpiry, judgementTime } from '../lib/trust/policy.js';
import { compareSemver } from '../lib/util/semver.js';
import { parseTime } from '../lib/util/time.js';
import { runCli } from './helpers/cli.js';
import { EPOCH, makeExampleImages } from './helpers/example.js';
import { tempDir } from './helpers/tools.js';

let work = '';
let layout = '';

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-time-'));
  layout = await makeExampleImages(work);
});

test.after.always(async () => {
  await rm(work, { recursive: true, force: true });
});

test('days that do not exist are refused; leap seconds and offsets are real times', (t) => {
  for (const bad of ['2027-02-31', '2027-02-29', '2027-04-31', '2027-13-01', '2027-00-10', '2027-06-01T24:00:00Z', '2027-06-01T12:00:00', 'tomorrow', '2027-6-1']) {
    t.is(parseTime(bad, { dateOnly: true }), undefined, bad);
  }
  t.is(parseTime('2028-02-29', { dateOnly: true })?.toISOString(), '2028-02-29T00:00:00.000Z');
  t.is(parseTime('2016-12-31T23:59:60Z')?.toISOString(), '2017-01-01T00:00:00.000Z');
  t.is(parseTime('2027-06-01T01:30:00+01:30')?.toISOString(), '2027-06-01T00:00:00.000Z');
  t.is(parseTime('2027-06-01'), undefined, 'a date alone only where one is allowed');
});

async function spec(dir: string, expires: string): Promise<string> {
  const file = join(dir, 'release.yaml');
  await writeFile(file, ['apiVersion: seabag.dev/v1', 'kind: Release', 'name: t', 'version: 1.0.0', `expires: ${expires}`, 'images:', '  - ref: groke/toolbox:1', `    from: oci:${layout}:toolbox-1.0.0`, ''].join('\n'));
  return file;
}

test('release.yaml expires: a day that does not exist is E_SPEC_INVALID; a leap second builds', async (t) => {
  const dir = await tempDir(t);
  for (const bad of ['2027-02-31', '"2027-02-29T00:00:00Z"', '2027-06-31T23:59:59Z']) {
    const r = await runCli(['build', await spec(dir, bad), '-o', join(dir, 'x.bundle'), '--json', '--no-progress', '--unsigned'], { SOURCE_DATE_EPOCH: EPOCH });
    t.is(r.code, 2, `${bad}: ${r.stdout}`);
    t.is(r.json.error?.code, 'E_SPEC_INVALID', bad);
  }
  const r = await runCli(['build', await spec(dir, '"2030-12-31T23:59:60Z"'), '-o', join(dir, 'leap.bundle'), '--json', '--no-progress', '--unsigned'], { SOURCE_DATE_EPOCH: EPOCH });
  t.is(r.code, 0, r.stdout);
  const inspect = await runCli(['inspect', join(dir, 'leap.bundle'), '--json']);
  t.is((inspect.json['release'] as { expires?: string }).expires, '2031-01-01T00:00:00Z');
});

test('trust init --expires and trust.json take only real times', async (t) => {
  const dir = await tempDir(t);
  const key = join(dir, 'root.key');
  t.is((await runCli(['keygen', key])).code, 0);
  for (const bad of ['2027-02-31', '2027-02-29T10:00:00Z']) {
    const r = await runCli(['trust', 'init', '--root-key', `${key}.pub`, '--release-key', `${key}.pub`, '--sign', key, '--expires', bad, '-o', join(dir, `t-${bad}.json`), '--json']);
    t.is(r.code, 2, bad);
    t.is(r.json.error?.code, 'E_USAGE', bad);
  }
  const ok = await runCli(['trust', 'init', '--root-key', `${key}.pub`, '--release-key', `${key}.pub`, '--sign', key, '--expires', '2030-06-30T23:59:60Z', '-o', join(dir, 'trust.json'), '--json']);
  t.is(ok.code, 0, ok.stdout);
  const doc = JSON.parse(await readFile(join(dir, 'trust.json'), 'utf8')) as { signed: { expires: string } };
  t.is(doc.signed.expires, '2030-07-01T00:00:00Z');
  // A hand-made trust.json with a day that does not exist is refused as invalid, never read as March.
  doc.signed.expires = '2030-02-31T00:00:00Z';
  await writeFile(join(dir, 'bad.json'), JSON.stringify(doc));
  const r = await runCli(['trust', 'rotate', join(dir, 'bad.json'), '--root-key', `${key}.pub`, '--release-key', `${key}.pub`, '--sign', key, '-o', join(dir, 'next.json'), '--json']);
  t.is(r.code, 2, r.stdout);
  t.is(r.json.error?.code, 'E_TRUST_INVALID');
});

test('a release document with an impossible or leap-second time never crashes the policy check', (t) => {
  const root = { signed: { version: 1, expires: '2099-01-01T00:00:00Z' } } as never;
  const now = new Date('2027-01-01T00:00:00Z');
  const bad = t.throws(() => checkExpiry(root, { name: 'a', version: '1.0.0', expires: '2027-02-31T00:00:00Z' } as never, now)) as SeabagError;
  t.is(bad.code, 'E_LAYOUT_INVALID');
  t.notThrows(() => checkExpiry(root, { name: 'a', version: '1.0.0', expires: '2027-12-31T23:59:60Z' } as never, now));
  t.is(judgementTime(now, '2026-12-31T23:59:60Z').toISOString(), now.toISOString());
});

test('semver precedence uses big integers: 9007199254740993.0.0 is newer than …992', (t) => {
  t.is(compareSemver('9007199254740993.0.0', '9007199254740992.0.0'), 1);
  t.is(compareSemver('1.0.0-9007199254740993', '1.0.0-9007199254740992'), 1);
  t.is(compareSemver('1.99999999999999999999.0', '1.99999999999999999998.0'), 1);
  t.is(compareSemver('2.0.0+build.1', '2.0.0+build.2'), 0);
  const err = t.throws(() => checkDowngrade({ name: 'a', version: '9007199254740992.0.0' } as never, 'sha256:b', [{ version: '9007199254740993.0.0', digest: 'sha256:a' }], false)) as SeabagError;
  t.is(err.code, 'E_DOWNGRADE');
});

test('a version already held with other build metadata is a replay, refused unless --allow-downgrade', (t) => {
  const held = [{ version: '2.0.0+build.2', digest: 'sha256:held' }];
  const err = t.throws(() => checkDowngrade({ name: 'a', version: '2.0.0+build.1' } as never, 'sha256:other', held, false)) as SeabagError;
  t.is(err.code, 'E_DOWNGRADE');
  t.notThrows(() => checkDowngrade({ name: 'a', version: '2.0.0+build.1' } as never, 'sha256:other', held, true));
  // The same release again is a re-import, not a replay.
  t.notThrows(() => checkDowngrade({ name: 'a', version: '2.0.0+build.2' } as never, 'sha256:held', held, false));
  t.notThrows(() => checkDowngrade({ name: 'a', version: '2.0.1+build.1' } as never, 'sha256:new', held, false));
});
