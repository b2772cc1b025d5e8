/**
 * Turning flags and environment into the library's vessel options.
 */
import { safeText, writeLine } from './render.js';
import { checkRegistryHost } from '../lib/registry/client.js';
import { SeabagError } from '../lib/errors.js';
import type { DeployOptions } from '../lib/vessel/deploy.js';
import type { SwitchOptions } from '../lib/vessel/recover.js';
import type { RunContext } from './command.js';
import { registryAccess, stateDir, str } from './options.js';

/** `--rollout-timeout`: seconds, above 0. */
function rolloutTimeout(value: unknown): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new SeabagError('E_USAGE', `--rollout-timeout must be a number of seconds above 0, not ${JSON.stringify(value)}`);
  return n;
}

export function vesselOptions(args: Record<string, unknown>, ctx: RunContext): SwitchOptions {
  const registry = str(args, 'registry') ?? ctx.io.env['SEABAG_REGISTRY'];
  // A URL or a path is a usage error before any work, not an unreachable host after it.
  if (registry !== undefined && registry !== '') checkRegistryHost(registry);
  const deploy: DeployOptions = {
    deployer: args['deploy'] === 'kubectl' ? 'kubectl' : 'registry',
    env: ctx.io.env,
    ...(args['rollout-timeout'] === undefined ? {} : { timeoutSeconds: rolloutTimeout(args['rollout-timeout']) }),
  };
  const kubectl = str(args, 'kubectl');
  if (kubectl !== undefined) deploy.kubectl = kubectl;
  return {
    stateDir: stateDir(args, ctx.io),
    ...(registry === undefined || registry === '' ? {} : { registry }),
    ...registryAccess(args, ctx.io.env),
    signal: ctx.signal,
    onProgress: ctx.progress.update,
    ...(ctx.io.onStep === undefined ? {} : { onStep: ctx.io.onStep }),
    deploy,
  };
}

/** Prints notes (recoveries, lock takeovers) on stderr. */
export function printNotes(ctx: RunContext, notes: readonly string[]): void {
  for (const n of notes) writeLine(ctx.io.stderr, `note: ${safeText(n)}`);
}

