import { open, rm } from 'node:fs/promises';
import { fromSystemError, SeabagError } from '../../lib/errors.js';
import { generateKeyPair } from '../../lib/trust/keys.js';
import { checkOutputs } from '../../lib/util/outputs.js';
import type { Command } from '../command.js';
import { str } from '../options.js';
import { printJSON, writeLine } from '../render.js';

async function writeNew(path: string, data: string, mode: number, force: boolean): Promise<void> {
  if (force) await rm(path, { force: true });
  let handle;
  try {
    handle = await open(path, 'wx', mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SeabagError('E_FILE_EXISTS', `${path} exists; a key is never overwritten`, { hint: 'choose another name, or pass --force to replace it' });
    }
    throw fromSystemError(err, 'write key', path);
  }
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export const keygen: Command = {
  command: 'keygen <file>',
  path: ['keygen'],
  describe: 'make an Ed25519 key pair: FILE (private, mode 0600) and FILE.pub; prints the keyid',
  builder: (y) =>
    y
      .positional('file', { type: 'string', describe: 'private key file to create (PKCS#8 PEM)' })
      .option('force', { type: 'boolean', default: false, describe: 'replace existing key files' }),
  examples: [
    { does: 'a release key: release.key (keep it secret) and release.key.pub', run: 'bundle keygen release.key' },
  ],
  async run(args, ctx) {
    const file = str(args, 'file') as string;
    const force = args['force'] === true;
    // Both names are checked first: a key without its .pub (or with another key's) is never left.
    await checkOutputs([file, `${file}.pub`], { force });
    const pair = generateKeyPair();
    await writeNew(file, pair.privatePem, 0o600, force);
    await writeNew(`${file}.pub`, pair.publicPem, 0o644, force);
    if (ctx.json) printJSON(ctx.io, { ok: true, keyid: pair.keyid, private: file, public: `${file}.pub` });
    else writeLine(ctx.io.stdout, pair.keyid);
    return 0;
  },
};
