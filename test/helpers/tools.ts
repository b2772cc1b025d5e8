/**
 * Shared test plumbing: temp folders removed after the test, and skopeo as an independent client.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

/** A temp folder, removed when the test ends. */
export async function tempDir(t: Teardown, prefix = 'seabag-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** skopeo's TLS flags for a test registry: plain HTTP, or HTTPS with the test CA. */
function tlsArgs(direction: 'src' | 'dest' | '', certDir?: string): string[] {
  const prefix = direction === '' ? '' : `${direction}-`;
  return certDir === undefined ? [`--${prefix}tls-verify=false`] : [`--${prefix}cert-dir=${certDir}`];
}

/** `skopeo inspect --raw` of a registry image; returns the manifest bytes. */
export async function skopeoRaw(ref: string, options: { certDir?: string; authfile?: string } = {}): Promise<Buffer> {
  const args = ['inspect', '--raw', ...tlsArgs('', options.certDir)];
  if (options.authfile) args.push('--authfile', options.authfile);
  const result = await execa('skopeo', [...args, `docker://${ref}`], { encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(result.stdout);
}

/** `skopeo inspect` (parsed JSON) of a registry image. */
export async function skopeoInspect(ref: string, options: { certDir?: string } = {}): Promise<{ Digest: string; Name: string; Architecture?: string }> {
  // --no-tags: a staged image's repository may have no tags at all (Distribution answers 404 to the list).
  const result = await execa('skopeo', ['inspect', '--no-tags', ...tlsArgs('', options.certDir), `docker://${ref}`]);
  return JSON.parse(result.stdout) as { Digest: string; Name: string };
}

/** `skopeo copy` with digests preserved and every platform of an index. */
export async function skopeoCopy(src: string, dest: string, options: { srcCertDir?: string; destCertDir?: string } = {}): Promise<void> {
  const args = ['copy', '--quiet', '--preserve-digests', '--multi-arch', 'all'];
  if (src.startsWith('docker://')) args.push(...tlsArgs('src', options.srcCertDir));
  if (dest.startsWith('docker://')) args.push(...tlsArgs('dest', options.destCertDir));
  await execa('skopeo', [...args, src, dest]);
}
