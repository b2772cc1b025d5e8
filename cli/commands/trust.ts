import { extendChain, loadRoot, makeRootSigned, signRoot, verifyRootSelf, type TrustRoot } from '../../lib/trust/root.js';
import { loadPrivateKey, loadPublicKey, type PublicKey } from '../../lib/trust/keys.js';
import { fromSystemError, SeabagError } from '../../lib/errors.js';
import { writeJSONAtomic } from '../../lib/util/atomic.js';
import type { Argv } from 'yargs';
import { readFile } from 'node:fs/promises';
import { makeTimeReset } from '../../lib/trust/time-reset.js';
import { setTrustedTime } from '../../lib/vessel/operations.js';
import { printNotes, vesselOptions } from '../vessel-options.js';
import { checkOutputs } from '../../lib/util/outputs.js';
import type { Command, RunContext } from '../command.js';
import { list, parseWhen, str, vesselFlags } from '../options.js';
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

export const trustResetTime: Command = {
  command: 'reset-time',
  path: ['trust', 'reset-time'],
  describe: "ashore: sign a statement, with the root keys, that resets a vessel's trusted time",
  builder: (y) =>
    y
      .option('root', { type: 'string', demandOption: true, describe: "the vessel's current trust root (its root keys sign)" })
      .option('time', { type: 'string', describe: 'the trusted time to set: an RFC 3339 time or date (default now)' })
      .option('valid', { type: 'string', default: '7d', describe: 'how long the statement may be used, by the vessel clock (e.g. 7d)' })
      .option('sign', { type: 'string', array: true, demandOption: true, describe: 'private root key(s) to sign with' })
      .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'file to write' })
      .option('force', { type: 'boolean', default: false, describe: 'replace an existing output file' }),
  examples: [
    { does: "reset a vessel's trusted time to now (usable 7 days)", run: 'bundle trust reset-time --root trust.json --sign root.key -o reset.json' },
    { does: 'aboard, apply it', run: 'bundle trust set-time reset.json' },
  ],
  async run(args, ctx) {
    const output = str(args, 'output') as string;
    await checkOutputs([output], { force: args['force'] === true, reads: [str(args, 'root') as string, ...list(args, 'sign')] });
    const { root } = await loadRoot(str(args, 'root') as string);
    const now = new Date();
    const time = str(args, 'time') === undefined ? now : parseWhen(str(args, 'time') as string, now);
    const notAfter = parseWhen(str(args, 'valid') as string, now);
    const reset = makeTimeReset(root, time, notAfter, await Promise.all(list(args, 'sign').map((p) => loadPrivateKey(p))));
    await writeJSONAtomic(output, reset);
    if (ctx.json) printJSON(ctx.io, { ok: true, file: output, ...reset.signed, signatures: reset.signatures.map((s) => ({ keyid: s.keyid })) });
    else writeLine(ctx.io.stdout, `wrote ${output}: trusted time ${reset.signed.time} under root version ${reset.signed.rootVersion}, usable until ${reset.signed.notAfter}`);
    return 0;
  },
};

export const trustSetTime: Command = {
  command: 'set-time <statement>',
  path: ['trust', 'set-time'],
  describe: "aboard: set the vessel's trusted time from a statement the root keys signed",
  builder: (y) => vesselFlags(y.positional('statement', { type: 'string', describe: 'the file `bundle trust reset-time` wrote' })),
  examples: [{ does: 'reset the trusted time a release dated far ahead pushed forward', run: 'bundle trust set-time /media/usb/reset.json' }],
  async run(args, ctx) {
    const file = str(args, 'statement') as string;
    const bytes = await readFile(file).catch((err: unknown) => {
      throw fromSystemError(err, 'read time reset', file);
    });
    const options = vesselOptions(args, ctx);
    const result = await setTrustedTime(bytes, options);
    printNotes(ctx, result.notes);
    if (ctx.json) printJSON(ctx.io, { ok: true, previous: result.previous ?? null, time: result.time, rootVersion: result.rootVersion });
    else writeLine(ctx.io.stdout, `trusted time ${result.previous ?? '(none)'} → ${result.time} (root version ${result.rootVersion})`);
    return 0;
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
