import { extendChain, loadPrivateKey, loadPublicKey, loadRoot, makeRootSigned, SeabagError, signRoot, verifyRootSelf, writeJSONAtomic, type PublicKey, type TrustRoot } from '../../lib/index.js';
import type { Argv } from 'yargs';
import { checkOutputs } from '../../lib/util/outputs.js';
import type { Command, RunContext } from '../command.js';
import { list, parseWhen, str } from '../options.js';
import { printJSON, writeLine } from '../render.js';

function keyFlags(y: Argv): Argv {
  return y
    .option('root-key', { type: 'string', array: true, describe: 'public key (PEM) allowed to sign trust roots; repeatable' })
    .option('root-threshold', { type: 'number', describe: 'how many root keys must sign a root (default 1)' })
    .option('release-key', { type: 'string', array: true, describe: 'public key (PEM) allowed to sign releases; repeatable' })
    .option('release-threshold', { type: 'number', describe: 'how many release keys must sign a release (default 1)' })
    .option('expires', { type: 'string', describe: 'when the root expires: 2027-06-01, an RFC 3339 time, or 365d / 52w / 1y from now (default 1y)' })
    .option('sign', { type: 'string', array: true, demandOption: true, describe: 'private root key(s) to sign with' })
    .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'file to write' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing output file' });
}

/** `-o` must not exist (without --force) and must not be any file this command reads. */
async function guardOutput(args: Record<string, unknown>, more: string[] = []): Promise<void> {
  const reads = [...list(args, 'root-key'), ...list(args, 'release-key'), ...list(args, 'sign'), ...more];
  await checkOutputs([str(args, 'output') as string], { force: args['force'] === true, reads });
}

/**
 * The expiry of a new root: a root that has expired makes vessels refuse every bundle, so one
 * already in the past is refused.
 *
 * @throws E_USAGE
 */
function futureExpiry(args: Record<string, unknown>): Date {
  const text = str(args, 'expires') ?? '1y';
  const when = parseWhen(text);
  if (when.getTime() <= Date.now()) {
    throw new SeabagError('E_USAGE', `--expires ${text} is in the past (${when.toISOString()}); vessels refuse every bundle under an expired trust root`, {
      details: { expires: when.toISOString() },
      hint: 'give a later date, or a span such as 1y (the default) or 90d',
    });
  }
  return when;
}

function threshold(args: Record<string, unknown>, key: string, fallback: number): number {
  const v = args[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new SeabagError('E_USAGE', `--${key} must be a whole number of at least 1`);
  return v;
}

async function keys(args: Record<string, unknown>, flag: string): Promise<PublicKey[]> {
  return Promise.all(list(args, flag).map((p) => loadPublicKey(p, `--${flag}`)));
}

function report(ctx: RunContext, root: TrustRoot, output: string): number {
  const s = root.signed;
  if (ctx.json) {
    printJSON(ctx.io, { ok: true, file: output, version: s.version, expires: s.expires, roles: s.roles, signatures: root.signatures.map((x) => ({ keyid: x.keyid })) });
    return 0;
  }
  writeLine(ctx.io.stdout, `wrote ${output}: trust root version ${s.version}, expires ${s.expires}`);
  writeLine(ctx.io.stdout, `  root keys    ${s.roles.root.threshold} of ${s.roles.root.keyids.join(', ')}`);
  writeLine(ctx.io.stdout, `  release keys ${s.roles.release.threshold} of ${s.roles.release.keyids.join(', ')}`);
  return 0;
}

export const trustInit: Command = {
  command: 'init',
  path: ['trust', 'init'],
  describe: 'make the first trust root (version 1)',
  builder: (y) =>
    keyFlags(y),
  examples: [
    { does: 'one root key, one release key, valid for a year', run: 'bundle trust init --root-key root.key.pub --release-key release.key.pub --sign root.key -o trust.json' },
  ],
  async run(args, ctx) {
    await guardOutput(args);
    const rootKeys = await keys(args, 'root-key');
    const releaseKeys = await keys(args, 'release-key');
    if (rootKeys.length === 0 || releaseKeys.length === 0) throw new SeabagError('E_USAGE', 'trust init needs at least one --root-key and one --release-key');
    const signed = makeRootSigned({
      version: 1,
      expires: futureExpiry(args),
      rootKeys,
      rootThreshold: threshold(args, 'root-threshold', 1),
      releaseKeys,
      releaseThreshold: threshold(args, 'release-threshold', 1),
    });
    const root = signRoot(signed, await Promise.all(list(args, 'sign').map((p) => loadPrivateKey(p, '--sign'))));
    verifyRootSelf(root, 'the new root');
    const output = str(args, 'output') as string;
    await writeJSONAtomic(output, root);
    return report(ctx, root, output);
  },
};

export const trustRotate: Command = {
  command: 'rotate <root>',
  path: ['trust', 'rotate'],
  describe: 'make the next trust root (version N+1), signed by old and new root keys',
  builder: (y) =>
    keyFlags(y.positional('root', { type: 'string', describe: 'the current trust root' })),
  examples: [
    { does: 'replace the release key; old and new root keys sign', run: 'bundle trust rotate trust.json --release-key new.key.pub --sign root.key -o t2.json' },
  ],
  async run(args, ctx) {
    await guardOutput(args, [str(args, 'root') as string]);
    const { root: current } = await loadRoot(str(args, 'root') as string);
    const old = current.signed;
    // A role not named keeps the keys it had.
    const keep = async (flag: string, role: 'root' | 'release'): Promise<Pick<PublicKey, 'keyid' | 'pem'>[]> => {
      const given = await keys(args, flag);
      if (given.length > 0) return given;
      return old.roles[role].keyids.map((id) => ({ keyid: id, pem: old.keys[id]?.keyval.public ?? '' }));
    };
    const rootKeys = await keep('root-key', 'root');
    const releaseKeys = await keep('release-key', 'release');
    const signed = makeRootSigned({
      version: old.version + 1,
      expires: futureExpiry(args),
      rootKeys,
      rootThreshold: threshold(args, 'root-threshold', old.roles.root.threshold),
      releaseKeys,
      releaseThreshold: threshold(args, 'release-threshold', old.roles.release.threshold),
    });
    const next = signRoot(signed, await Promise.all(list(args, 'sign').map((p) => loadPrivateKey(p, '--sign'))));
    // The same rule a vessel applies: a threshold of the old root keys and of the new ones.
    extendChain(current, [next]);
    const output = str(args, 'output') as string;
    await writeJSONAtomic(output, next);
    return report(ctx, next, output);
  },
};
