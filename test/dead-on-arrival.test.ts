/**
 * No dead-on-arrival bundles, and specs that explain themselves, through the real CLI: build
 * needs --sign (or --unsigned on purpose), refuses an expires already past and warns under 30
 * days; trust init refuses a past expiry; the same inputs give the same bytes with or without
 * SOURCE_DATE_EPOCH; a different bundle under a held version is refused with a hint to bump the
 * version; schema problems read as sentences.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { runCli } from './helpers/cli.js';
import { EPOCH, exampleCopy } from './helpers/example.js';
import { startVessel } from './helpers/vessel.js';

let work: string;
let example: string;
let key: string;
let trust: string;

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'seabag-doa-'));
  example = await exampleCopy(work);
  key = join(work, 'release.key');
  const root = join(work, 'root.key');
  for (const k of [key, root]) if ((await runCli(['keygen', k])).code !== 0) throw new Error('keygen');
  trust = join(work, 'trust.json');
  const r = await runCli(['trust', 'init', '--root-key', `${root}.pub`, '--release-key', `${key}.pub`, '--sign', root, '-o', trust]);
  if (r.code !== 0) throw new Error(r.stderr);
});

test.after.always(async () => {
  await rm(work, { recursive: true, force: true });
});

/** The 1.4.0 spec of the example with its text changed, written beside the original. */
async function variant(name: string, change: (text: string) => string): Promise<string> {
  const spec = join(example, '1.4.0', `${name}.yaml`);
  await writeFile(spec, change(await readFile(join(example, '1.4.0', 'release.yaml'), 'utf8')));
  return spec;
}

const day = (n: number): string => new Date(Date.now() + n * 86_400_000).toISOString().slice(0, 10);
const sha256 = async (path: string): Promise<string> => createHash('sha256').update(await readFile(path)).digest('hex');

test('build without --sign fails E_UNSIGNED and writes nothing; --unsigned builds one on purpose', async (t) => {
  const spec = join(example, '1.4.0', 'release.yaml');
  const out = join(work, 'unsigned.bundle');
  const r = await runCli(['build', spec, '-o', out, '--no-progress']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^error\[E_UNSIGNED\]: build needs --sign KEY: every vessel refuses an unsigned bundle\n  hint: .*--unsigned/m);
  t.is(await stat(out).catch(() => undefined), undefined, 'no bundle written');
  const on = await runCli(['build', spec, '-o', out, '--unsigned', '--no-progress']);
  t.is(on.code, 0, on.stderr);
  t.regex(on.stderr, /warning: the bundle is unsigned \(--unsigned\); vessels will refuse it/);
  const both = await runCli(['build', spec, '-o', join(work, 'x.bundle'), '--unsigned', '--sign', key]);
  t.is(both.code, 2);
});

test('build refuses an expires already past (exit 2) and warns when it is under 30 days away', async (t) => {
  const past = await variant('past', (x) => x.replace('expires: 2030-06-01', `expires: ${day(-1)}`));
  const r = await runCli(['build', past, '-o', join(work, 'past.bundle'), '--sign', key, '--no-progress']);
  t.is(r.code, 2);
  t.regex(r.stderr, new RegExp(`^error\\[E_SPEC_INVALID\\]: expires: ${day(-1)}T00:00:00Z is in the past; every vessel would refuse the bundle`, 'm'));
  t.is(await stat(join(work, 'past.bundle')).catch(() => undefined), undefined);

  const soon = await variant('soon', (x) => x.replace('expires: 2030-06-01', `expires: ${day(11)}`));
  const s = await runCli(['build', soon, '-o', join(work, 'soon.bundle'), '--sign', key, '--no-progress']);
  t.is(s.code, 0, s.stderr);
  t.regex(s.stderr, new RegExp(`^warning: the release expires on ${day(11)}T00:00:00Z, in 10 day\\(s\\)`, 'm'));
  const far = await runCli(['build', join(example, '1.4.0', 'release.yaml'), '-o', join(work, 'far.bundle'), '--sign', key, '--no-progress']);
  t.notRegex(far.stderr, /expires/);
});

test('trust init and trust rotate refuse an expiry in the past', async (t) => {
  const root = join(work, 'root.key');
  for (const when of ['2020-01-01', '2026-01-01T00:00:00Z', day(-1)]) {
    const r = await runCli(['trust', 'init', '--root-key', `${root}.pub`, '--release-key', `${key}.pub`, '--sign', root, '--expires', when, '-o', join(work, `t-${when}.json`), '--json']);
    t.is(r.code, 2, when);
    t.like(r.json.error, { code: 'E_USAGE' });
    t.regex(r.json.error?.message ?? '', /is in the past/);
    t.is(await stat(join(work, `t-${when}.json`)).catch(() => undefined), undefined);
  }
  const rot = await runCli(['trust', 'rotate', trust, '--sign', root, '--expires', '2020-01-01', '-o', join(work, 't2.json')]);
  t.is(rot.code, 2);
});

test('reproducible by default: the same spec and inputs give the same bytes, with or without SOURCE_DATE_EPOCH', async (t) => {
  const spec = join(example, '1.4.0', 'release.yaml');
  const build = async (name: string, env: Record<string, string>): Promise<string> => {
    const out = join(work, name);
    const r = await runCli(['build', spec, '-o', out, '--sign', key, '--no-progress'], env);
    t.is(r.code, 0, r.stderr);
    return sha256(out);
  };
  const a = await build('r-a.bundle', {});
  const b = await build('r-b.bundle', {});
  t.is(a, b, 'two builds without SOURCE_DATE_EPOCH are byte-identical');
  const inspect = await runCli(['inspect', join(work, 'r-a.bundle'), '--json']);
  t.is((inspect.json['release'] as { created?: string }).created, undefined, 'no build time written');
  t.regex((await runCli(['inspect', join(work, 'r-a.bundle')])).stdout, /created   not recorded \(a reproducible build\)/);
  const c = await build('r-c.bundle', { SOURCE_DATE_EPOCH: EPOCH });
  const d = await build('r-d.bundle', { SOURCE_DATE_EPOCH: EPOCH });
  t.is(c, d, 'and with it');
  t.not(a, c, 'SOURCE_DATE_EPOCH is recorded');
  const withTime = await runCli(['inspect', join(work, 'r-c.bundle'), '--json']);
  t.is((withTime.json['release'] as { created?: string }).created, new Date(Number(EPOCH) * 1000).toISOString().replace('.000Z', 'Z'));
});

test('a bundle that differs from the one held under the same version is refused, with a hint to bump the version', async (t) => {
  const v = await startVessel(t);
  const first = join(work, 'same-1.bundle');
  t.is((await runCli(['build', join(example, '1.4.0', 'release.yaml'), '-o', first, '--sign', key, '--no-progress'])).code, 0);
  t.is((await v.run(['import', first, '--trust', trust, '--target', 'class-a'])).code, 0);
  const again = join(work, 'same-2.bundle');
  t.is((await runCli(['build', join(example, '1.4.0', 'release.yaml'), '-o', again, '--sign', key, '--no-progress'])).code, 0);
  t.is((await v.run(['import', again])).code, 0, 'a rebuild of the same inputs is the same release: accepted');
  const changed = await variant('changed', (x) => x.replace('expires: 2030-06-01', 'expires: 2030-07-01'));
  const other = join(work, 'same-3.bundle');
  t.is((await runCli(['build', changed, '-o', other, '--sign', key, '--no-progress'])).code, 0);
  const r = await v.run(['import', other]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^error\[E_DOWNGRADE\]: awareness 1\.4\.0 is already held with another content/m);
  t.regex(r.stderr, /hint: something changed since 1\.4\.0 was built: bump the version in release\.yaml \(e\.g\. 1\.4\.1\) and build again/);
});

test('schema problems read as sentences; a source written in ref: points to from:', async (t) => {
  const spec = await variant('bad', (x) =>
    x
      .replace('version: 1.4.0', 'version: 1.4')
      .replace('name: awareness', 'name: Awareness')
      .replace('targets: [class-a]', 'targets: [class-a, class-a]')
      .replace('deviceProfiles:', 'deviceProfile:')
      .replace('  - ref: shore.example.com/groke/radar:2.0.0\n', '  - ref: oci:../build/images:radar-2.0.0\n'),
  );
  const r = await runCli(['build', spec, '-o', join(work, 'bad.bundle'), '--sign', key]);
  t.is(r.code, 2);
  for (const line of [
    /bad\.yaml:\d+: version: must be a version like 1\.4\.0/,
    /bad\.yaml:\d+: name: must be lower-case letters and digits/,
    /bad\.yaml:\d+: targets: must not list the same item twice/,
    /bad\.yaml:\d+: deviceProfile: is not a known field; did you mean deviceProfiles\?/,
  ]) {
    t.regex(r.stderr, line);
  }
  const refSpec = await variant('ref', (x) => x.replace('  - ref: shore.example.com/groke/radar:2.0.0\n    from: oci:../build/images:radar-2.0.0\n', '  - ref: oci:../build/images:radar-2.0.0\n'));
  const ref = await runCli(['build', refSpec, '-o', join(work, 'ref.bundle'), '--sign', key]);
  t.is(ref.code, 2);
  t.regex(ref.stderr, /ref\.yaml:\d+: images\[1\]\.ref: "oci:\.\.\/build\/images:radar-2\.0\.0" says where the image comes from, not its name: put it in from: \(from: oci:\.\.\/build\/images:radar-2\.0\.0\) and give ref: the name the manifests use/);
});
