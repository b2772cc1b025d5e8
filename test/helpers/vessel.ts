/**
 * A vessel for a test: a real registry, a state folder, and the environment the crew's commands
 * read (SEABAG_STATE_DIR, SEABAG_REGISTRY), shared by in-process runs and spawned ones.
 */
import { join } from 'node:path';
import { RegistryClient } from '../../lib/registry/client.js';
import { runCli, spawnCli, type CliResult } from './cli.js';
import { startRegistry, type RegistryHandle, type RegistryOptions } from './registry.js';
import { tempDir, type Teardown } from './tools.js';

export interface TestVessel {
  registry: RegistryHandle;
  stateDir: string;
  env: Record<string, string>;
  run(args: string[], env?: Record<string, string>, io?: Parameters<typeof runCli>[2]): Promise<CliResult>;
  spawn(args: string[], env?: Record<string, string>): ReturnType<typeof spawnCli>;
  client(): Promise<RegistryClient>;
  /** The digest a tag points at in the registry, or undefined. */
  tag(repository: string, tag: string): Promise<string | undefined>;
  tags(repository: string): Promise<string[]>;
}

export async function startVessel(t: Teardown & { teardown(fn: () => Promise<void>): void }, registryOptions: RegistryOptions = {}): Promise<TestVessel> {
  const registry = await startRegistry(registryOptions, t.teardown.bind(t));
  const dir = await tempDir(t, 'seabag-vessel-');
  const stateDir = join(dir, 'state');
  const env = { SEABAG_STATE_DIR: stateDir, SEABAG_REGISTRY: registry.host };
  let client: RegistryClient | undefined;
  t.teardown(async () => client?.close());
  const getClient = async (): Promise<RegistryClient> => (client ??= await RegistryClient.create(registry.host));
  return {
    registry,
    stateDir,
    env,
    run: (args, extra = {}, io = {}) => runCli([...args, '--no-progress'], { ...env, ...extra }, io),
    spawn: (args, extra = {}) => spawnCli([...args, '--no-progress'], { ...env, ...extra }),
    client: getClient,
    tag: async (repository, tag) => (await getClient()).repository(repository).tagDigest(tag),
    tags: async (repository) => (await (await getClient()).repository(repository).listTags()).sort(),
  };
}
