/**
 * Flags shared by several verbs, and reading them back with the environment's defaults.
 */
import { parseTime } from '../lib/util/time.js';
import type { Argv } from 'yargs';
import { SeabagError } from '../lib/errors.js';
import { CredentialStore } from '../lib/registry/auth.js';
import type { CliIO } from './io.js';

export function registryFlags(y: Argv): Argv {
  return y
    .option('plain-http', { type: 'boolean', describe: 'speak plain HTTP to the registry (loopback registries do by default, as with Docker; --no-plain-http for HTTPS there)' })
    .option('ca-file', { type: 'string', describe: 'PEM file of a CA to trust for the registry certificate (implies HTTPS)' });
}

/**
 * How to reach a registry, from its flags (`--plain-http`, `--ca-file`; with `prefix` `shore-`,
 * the shore registry's `--shore-plain-http`, `--shore-ca-file`) and the docker login credentials
 * of the environment. HTTP or HTTPS: --plain-http says plain, --no-plain-http or a CA file says
 * TLS; neither leaves it to the library (loopback plain, anything else TLS).
 */
export function registryAccess(args: Record<string, unknown>, env: NodeJS.ProcessEnv, prefix: '' | 'shore-' = ''): { credentials: CredentialStore; plainHttp?: boolean; caFile?: string } {
  const caFile = str(args, `${prefix}ca-file`);
  const plain = args[`${prefix}plain-http`] === true ? true : args[`${prefix}plain-http`] === false || caFile !== undefined ? false : undefined;
  return {
    credentials: new CredentialStore({ env }),
    ...(plain === undefined ? {} : { plainHttp: plain }),
    ...(caFile === undefined ? {} : { caFile }),
  };
}

/** The `--registry` flag with `SEABAG_REGISTRY` as its default. */
export function registryFlag(y: Argv, required: boolean): Argv {
  return y.option('registry', {
    type: 'string',
    describe: `the vessel's registry, HOST[:PORT] (env SEABAG_REGISTRY)${required ? '' : '; remembered from the first import'}`,
  });
}

export function stateDirFlag(y: Argv): Argv {
  return y.option('state-dir', { type: 'string', describe: 'vessel state folder (env SEABAG_STATE_DIR, default /var/lib/seabag)' });
}

export function str(args: Record<string, unknown>, key: string): string | undefined {
  const v = args[key];
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) throw new SeabagError('E_USAGE', `--${key} is given more than once`);
  return String(v);
}

/** A boolean flag, also when given more than once (`--yes --yes`). */
export function flag(args: Record<string, unknown>, key: string): boolean {
  const v = args[key];
  return Array.isArray(v) ? v.at(-1) === true : v === true;
}

export function list(args: Record<string, unknown>, key: string): string[] {
  const v = args[key];
  if (v === undefined || v === null) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}

export function stateDir(args: Record<string, unknown>, io: CliIO): string {
  return str(args, 'state-dir') ?? io.env['SEABAG_STATE_DIR'] ?? '/var/lib/seabag';
}

/** `SOURCE_DATE_EPOCH` (reproducible-builds.org) as a Date, when set. */
export function sourceDateEpoch(io: CliIO): Date | undefined {
  const raw = io.env['SOURCE_DATE_EPOCH'];
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) throw new SeabagError('E_USAGE', `SOURCE_DATE_EPOCH must be seconds since 1970, not ${JSON.stringify(raw)}`);
  return new Date(Number(raw) * 1000);
}

/**
 * A point in time from `2027-06-01`, an RFC 3339 time, or a span from now (`90d`, `12w`, `1y`).
 */
export function parseWhen(text: string, now = new Date()): Date {
  const span = /^(\d+)\s*([dwy])$/.exec(text.trim());
  if (span !== null) {
    const days = Number(span[1]) * ({ d: 1, w: 7, y: 365 }[span[2] as 'd' | 'w' | 'y'] ?? 1);
    return new Date(now.getTime() + days * 86_400_000);
  }
  const date = parseTime(text.trim(), { dateOnly: true });
  if (date === undefined) throw new SeabagError('E_USAGE', `invalid time ${JSON.stringify(text)}: use 2027-06-01, an RFC 3339 time, or a span like 365d, 52w, 1y`);
  return date;
}

/** Flags every vessel command takes. */
export function vesselFlags(y: Argv): Argv {
  return registryFlags(stateDirFlag(registryFlag(y, false)));
}

/** Flags of the commands that switch releases. */
export function deployFlags(y: Argv): Argv {
  return y
    .option('deploy', { choices: ['registry', 'kubectl'], default: 'registry', describe: 'registry: move tags only (a GitOps controller follows them); kubectl: also apply the manifests and wait for rollouts' })
    .option('kubectl', { type: 'string', describe: 'the kubectl program (env SEABAG_KUBECTL; default kubectl)' })
    .option('rollout-timeout', { type: 'number', default: 300, describe: 'seconds to wait for each rollout (--deploy kubectl)' });
}
