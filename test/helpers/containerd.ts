/**
 * containerd (Debian's) with its own config, root, state and socket under a temp folder, and
 * `ctr` to pull from the test registry and run what it pulled: an outside witness that what
 * seabag staged and applied really runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';

export interface Containerd {
  address: string;
  /** `ctr --address … ARGS` */
  ctr(...args: string[]): Promise<string>;
  /** Pulls IMAGE over plain HTTP and runs it once; returns its output. */
  pullAndRun(image: string): Promise<string>;
  stop(): Promise<void>;
}

let runs = 0;

export async function startContainerd(teardown: (fn: () => Promise<void>) => void): Promise<Containerd> {
  // Short path: the socket path must stay under 108 bytes.
  const dir = await mkdtemp('/tmp/sbc-');
  const address = join(dir, 'c.sock');
  const config = join(dir, 'config.toml');
  await writeFile(
    config,
    [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${address}"`,
      '[ttrpc]',
      `  address = "${address}.ttrpc"`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = "${join(dir, 'opt')}"`,
      '',
    ].join('\n'),
  );
  const log = openSync(join(dir, 'containerd.log'), 'a');
  const child: ChildProcess = spawn('containerd', ['--config', config], { stdio: ['ignore', log, log] });
  closeSync(log);
  const ctr = async (...args: string[]): Promise<string> => (await execa('ctr', ['--address', address, ...args])).stdout;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await ctr('version');
      break;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`containerd did not start; see ${join(dir, 'containerd.log')}`);
      await sleep(100);
    }
  }
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await execa('sh', ['-c', `grep -o "${dir}[^ ]*" /proc/mounts | sort -r | xargs -r umount -l`], { reject: false });
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  };
  teardown(stop);
  return {
    address,
    ctr,
    async pullAndRun(image) {
      await ctr('images', 'pull', '--plain-http', image);
      runs += 1;
      return (await ctr('run', '--rm', image, `seabag-test-${process.pid}-${runs}`)).trim();
    },
    stop,
  };
}
