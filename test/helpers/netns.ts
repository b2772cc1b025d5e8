/**
 * A test host of the project's own: a network namespace this test run creates (`ip netns add`),
 * joined to this machine by a veth pair carrying a random /30 from 198.18.0.0/15 (RFC 2544's
 * benchmarking range, never another real host's address). A test that needs a server on an
 * address that is not loopback runs it inside, with `run`. Needs CAP_NET_ADMIN (root here and
 * in CI); without it `createTestHost` says why and the caller skips.
 */
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import type { Teardown } from './tools.js';

type HostProcess = ResultPromise<{ buffer: false; stderr: 'inherit' }>;

export interface TestHost {
  /** The namespace's name (`seabag-<role>-<random>`). */
  name: string;
  /** The test host's address, inside the namespace. */
  address: string;
  /** This machine's end of the veth pair. */
  peerAddress: string;
  /**
   * Starts `node --import tsx script ...args` inside the namespace and resolves with its first
   * stdout line (the script's "ready" report). The process is killed by the test's teardown.
   */
  run(script: string, args: string[]): Promise<{ child: HostProcess; ready: string; lines: AsyncIterableIterator<string> }>;
}

async function ip(args: string[]): Promise<void> {
  await execa('ip', args);
}

/** Creates the namespace, or returns why it cannot be (the caller logs that and skips). */
export async function createTestHost(role: string, t: Teardown): Promise<TestHost | { unavailable: string }> {
  const id = randomBytes(3).toString('hex');
  const name = `seabag-${role}-${id}`;
  const hostEnd = `sb${id}h`;
  const nsEnd = `sb${id}n`;
  // A random /30 inside 198.18.0.0/15, so parallel runs do not collide.
  const r = randomBytes(3);
  const base = `198.${18 + (r[0]! & 1)}.${r[1]!}`;
  const low = r[2]! & 0xfc;
  const peerAddress = `${base}.${low + 1}`;
  const address = `${base}.${low + 2}`;
  try {
    await ip(['netns', 'add', name]);
  } catch (e) {
    return { unavailable: `ip netns add ${name} failed (CAP_NET_ADMIN needed): ${(e as { stderr?: string }).stderr || (e as Error).message}` };
  }
  const children: HostProcess[] = [];
  t.teardown(async () => {
    for (const c of children) {
      c.kill('SIGKILL');
      await c.catch(() => undefined);
    }
    // Deleting one end of a veth pair deletes both; deleting the namespace would too.
    await execa('ip', ['link', 'del', hostEnd], { reject: false });
    await execa('ip', ['netns', 'del', name], { reject: false });
  });
  await ip(['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', nsEnd]);
  await ip(['link', 'set', nsEnd, 'netns', name]);
  await ip(['addr', 'add', `${peerAddress}/30`, 'dev', hostEnd]);
  await ip(['link', 'set', hostEnd, 'up']);
  await ip(['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
  await ip(['netns', 'exec', name, 'ip', 'addr', 'add', `${address}/30`, 'dev', nsEnd]);
  await ip(['netns', 'exec', name, 'ip', 'link', 'set', nsEnd, 'up']);
  // Both ends are on one /30: the connected routes are all either side needs.
  return {
    name,
    address,
    peerAddress,
    async run(script, args) {
      const child = execa('ip', ['netns', 'exec', name, process.execPath, '--import', 'tsx', script, ...args], { buffer: false, stderr: 'inherit' });
      children.push(child);
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      const first = await lines.next();
      if (first.done === true) throw new Error(`${script} in ${name} exited before reporting ready: ${String((await child.catch((e: Error) => e)) ?? '')}`);
      return { child, ready: first.value, lines };
    },
  };
}
