/**
 * Keys and outputs are never destroyed: no command writes over an existing file without --force,
 * none writes over a file it reads in the same run (even with --force; judged by inode, so another
 * spelling of the path is caught), `keygen` never leaves a mismatched pair, and `fetch` refuses a
 * hostile parts file (names that are not NAME.NNN of its bundle) before writing anything. Files
 * are served by Debian's nginx, the real thing.
 */
import { createHash } from 'node:crypto';
import { link, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { runCli, type CliResult } from '../helpers/cli.js';
import { EPOCH, makeExampleImages } from '../helpers/example.js';
import { tempDir } from '../helpers/tools.js';
import { startNginx } from '../helpers/web.js';
import { outcomeOf, Report } from './report.js';

const report = new Report('outputs');

test.after.always(async () => {
  await report.write();
});

function sha(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function fingerprint(files: string[]): Promise<string[]> {
  return Promise.all(files.map(async (f) => sha(await readFile(f).catch(() => Buffer.from('(missing)')))));
}

/** Runs a command that must be refused, and proves `files` were left byte for byte. */
async function refused(t: { is: (a: unknown, b: unknown, m?: string) => void; deepEqual: (a: unknown, b: unknown, m?: string) => void }, name: string, args: string[], code: string, files: string[]): Promise<CliResult> {
  const before = await fingerprint(files);
  const r = await runCli([...args, '--json'], { SOURCE_DATE_EPOCH: EPOCH });
  const after = await fingerprint(files);
  const kept = before.every((h, i) => h === after[i]);
  report.add('outputs', name, `exit 2 ${code}, files untouched`, kept ? outcomeOf(r) : `${outcomeOf(r)}, a file was changed`, 'n/a');
  t.is(r.json.error?.code, code, `${name}: ${r.stdout}`);
  t.is(r.code, 2, name);
  t.deepEqual(after, before, `${name}: files untouched`);
  return r;
}

test('build, trust init, trust rotate and inventory never write over an existing file without --force, nor over what they read', async (t) => {
  const dir = await tempDir(t);
  const layout = await makeExampleImages(dir);
  await mkdir(join(dir, 'rel', 'k8s'), { recursive: true });
  const spec = join(dir, 'rel', 'release.yaml');
  const manifest = join(dir, 'rel', 'k8s', 'ns.yaml');
  await writeFile(manifest, 'apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n');
  await writeFile(spec, ['apiVersion: seabag.dev/v1', 'kind: Release', 'name: a', 'version: 1.0.0', 'images:', '  - ref: groke/toolbox:1', `    from: oci:${layout}:toolbox-1.0.0`, 'manifests: [k8s/]', ''].join('\n'));
  const key = join(dir, 'k1.key');
  t.is((await runCli(['keygen', key])).code, 0);
  const keys = [key, `${key}.pub`];
  const trust = join(dir, 'trust.json');
  t.is((await runCli(['trust', 'init', '--root-key', `${key}.pub`, '--release-key', `${key}.pub`, '--sign', key, '-o', trust])).code, 0);
  const out = join(dir, 'a.bundle');
  t.is((await runCli(['build', spec, '-o', out, '--sign', key], { SOURCE_DATE_EPOCH: EPOCH })).code, 0);
  const hardLink = join(dir, 'also-k1.key');
  await link(key, hardLink);

  await refused(t, 'build -o over an existing bundle, no --force', ['build', spec, '-o', out, '--sign', key], 'E_FILE_EXISTS', [out]);
  await refused(t, 'build -o over the key it signs with, no --force', ['build', spec, '-o', key, '--sign', key], 'E_USAGE', keys);
  await refused(t, 'build -o over the key it signs with, --force', ['build', spec, '-o', key, '--sign', key, '--force'], 'E_USAGE', keys);
  await refused(t, 'build -o over the signing key by a hard link, --force', ['build', spec, '-o', hardLink, '--sign', key, '--force'], 'E_USAGE', keys);
  await refused(t, 'build -o over its own release.yaml, --force', ['build', join(dir, 'rel', '.', 'release.yaml'), '-o', spec, '--sign', key, '--force'], 'E_USAGE', [spec]);
  await refused(t, 'build -o over a manifest it pins, --force', ['build', spec, '-o', manifest, '--sign', key, '--force'], 'E_USAGE', [manifest]);
  await refused(t, 'build -o over the --trust root it carries, --force', ['build', spec, '-o', trust, '--sign', key, '--trust', trust, '--force'], 'E_USAGE', [trust]);
  await refused(t, 'trust init -o over the key it signs with, no --force', ['trust', 'init', '--root-key', `${key}.pub`, '--release-key', `${key}.pub`, '--sign', key, '-o', key], 'E_USAGE', keys);
  await refused(t, 'trust init -o over an existing file, no --force', ['trust', 'init', '--root-key', `${key}.pub`, '--release-key', `${key}.pub`, '--sign', key, '-o', out], 'E_FILE_EXISTS', [out]);
  await refused(t, 'trust init -o over the key it signs with, --force', ['trust', 'init', '--root-key', `${key}.pub`, '--release-key', `${key}.pub`, '--sign', key, '-o', key, '--force'], 'E_USAGE', keys);
  await refused(t, 'trust rotate -o over the root it reads, --force', ['trust', 'rotate', trust, '--sign', key, '-o', trust, '--force'], 'E_USAGE', [trust]);
  await refused(t, 'inventory -o over an existing file, no --force', ['inventory', '-o', out, '--state-dir', join(dir, 'state')], 'E_FILE_EXISTS', [out]);
  await refused(t, "inventory -o over the vessel's state.json, --force", ['inventory', '-o', join(dir, 'state', 'state.json'), '--state-dir', join(dir, 'state'), '--force'], 'E_USAGE', []);

  // --force replaces an output that nothing reads.
  const again = await runCli(['build', spec, '-o', out, '--sign', key, '--force', '--json'], { SOURCE_DATE_EPOCH: EPOCH });
  t.is(again.code, 0, again.stdout);
});

test('keygen when k.pub exists leaves no mismatched pair', async (t) => {
  const dir = await tempDir(t);
  const k = join(dir, 'k');
  await writeFile(`${k}.pub`, 'someone else\'s public key\n');
  await refused(t, 'keygen k when k.pub exists', ['keygen', k], 'E_FILE_EXISTS', [`${k}.pub`]);
  t.deepEqual(await readdir(dir), ['k.pub'], 'no private key was written without its public half');
  await writeFile(k, 'an old private key\n');
  await rm(`${k}.pub`);
  await refused(t, 'keygen k when k exists', ['keygen', k], 'E_FILE_EXISTS', [k]);
  t.deepEqual(await readdir(dir), ['k'], 'no public key was written beside another private key');
  const forced = await runCli(['keygen', k, '--force', '--json']);
  t.is(forced.code, 0);
  t.deepEqual((await readdir(dir)).sort(), ['k', 'k.pub']);
});

test('fetch refuses hostile parts.json names before writing anything, and never replaces a file without --force', async (t) => {
  const root = await tempDir(t);
  const web = await startNginx(t, root);
  const part = Buffer.from('part one of the bundle\n');
  const partsFile = (names: string[], bundle = 'aw.bundle'): string =>
    JSON.stringify({ apiVersion: 'seabag.dev/v1', kind: 'BundleParts', bundle, size: part.length * names.length, sha256: sha(Buffer.concat(names.map(() => part))), partSize: part.length, count: names.length, parts: names.map((name) => ({ name, size: part.length, sha256: sha(part) })) });
  const hostile: Record<string, { names: string[]; bundle?: string; code?: string }> = {
    'a part named notes.txt': { names: ['notes.txt'] },
    'a part named .profile': { names: ['.profile'] },
    'a good part, then .bashrc': { names: ['aw.bundle.001', '.bashrc'] },
    'parts out of order': { names: ['aw.bundle.002', 'aw.bundle.001'] },
    "another bundle's part": { names: ['other.bundle.001'] },
    'a dotfile bundle (the URL names .x.parts.json)': { names: ['.x.001'], bundle: '.x', code: 'E_USAGE' },
  };
  for (const name of ['notes.txt', '.profile', '.bashrc', 'aw.bundle.001', 'aw.bundle.002', 'other.bundle.001', '.x.001']) await writeFile(join(root, name), part);
  for (const [name, c] of Object.entries(hostile)) {
    const file = `${c.bundle ?? 'aw.bundle'}.parts.json`;
    await writeFile(join(root, file), partsFile(c.names, c.bundle));
    const into = join(root, 'in', name.replace(/\W+/g, '-'));
    const r = await runCli(['fetch', `${web.url}/${file}`, '-o', into, '--json', '--retries', '0']);
    const written = await readdir(into).catch(() => []);
    const code = c.code ?? 'E_PART_CORRUPT';
    const status = code === 'E_USAGE' ? 2 : 1;
    report.add('outputs', `fetch: parts file with ${name}`, `exit ${status} ${code}, nothing written`, written.length === 0 ? outcomeOf(r) : `${outcomeOf(r)}, wrote ${written.join(' ')}`, 'n/a');
    t.is(r.json.error?.code, code, `${name}: ${r.stdout}`);
    t.is(r.code, status, name);
    t.deepEqual(written, [], `${name}: nothing written`);
  }
  // A bundle already in the folder is not replaced without --force.
  const into = join(root, 'in', 'existing');
  await mkdir(into, { recursive: true });
  await writeFile(join(into, 'notes.txt'), 'the captain\'s notes\n');
  const r = await runCli(['fetch', `${web.url}/notes.txt`, '-o', into, '--json', '--retries', '0']);
  report.add('outputs', 'fetch over an existing file of the same name, no --force', 'exit 2 E_FILE_EXISTS', outcomeOf(r), 'n/a');
  t.is(r.json.error?.code, 'E_FILE_EXISTS');
  t.is(await readFile(join(into, 'notes.txt'), 'utf8'), 'the captain\'s notes\n');
});
