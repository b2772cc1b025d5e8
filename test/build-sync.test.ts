/**
 * `bundle build --no-sync`: the same bytes, without the fsyncs (scratch builds only). strace is the
 * outside witness that the default build syncs the bundle before naming it and --no-sync does not.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { BIN, runCli } from './helpers/cli.js';
import { buildRandomImage } from './helpers/images.js';
import { tempDir } from './helpers/tools.js';

const env = { SOURCE_DATE_EPOCH: '1790000000' };

async function syncCalls(log: string): Promise<number> {
  return (await readFile(log, 'utf8')).split('\n').filter((l) => /\b(fsync|fdatasync)\(/.test(l)).length;
}

test('build fsyncs the bundle by default; --no-sync writes the same bytes with no fsync at all', async (t) => {
  const dir = await tempDir(t);
  await runCli(['keygen', join(dir, 'release.key')]);
  await buildRandomImage(join(dir, 'layout'), 'app', [200_000, 300_000], 'sync');
  const spec = join(dir, 'release.yaml');
  await writeFile(spec, `apiVersion: seabag.dev/v1\nkind: Release\nname: app\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/groke/app:1.0.0\n    from: oci:${join(dir, 'layout')}:app\n`);
  const run = async (name: string, extra: string[]): Promise<number> => {
    const log = join(dir, `${name}.strace`);
    await execa('strace', ['-f', '-qq', '-e', 'trace=fsync,fdatasync', '-o', log, 'node', BIN, 'build', spec, '-o', join(dir, name), '--sign', join(dir, 'release.key'), '--no-progress', ...extra], { env });
    return syncCalls(log);
  };
  t.true((await run('synced.bundle', [])) >= 2, 'the bundle and its folder are synced');
  t.is(await run('scratch.bundle', ['--no-sync']), 0, 'nothing is synced');
  t.deepEqual(await readFile(join(dir, 'scratch.bundle')), await readFile(join(dir, 'synced.bundle')));
});
