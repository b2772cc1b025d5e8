import { resolve } from 'node:path';
import { importBundle, type ImportResult } from '../../lib/vessel/import.js';
import { importFromRegistry } from '../../lib/satellite/import.js';
import { isOciAddress } from '../../lib/satellite/address.js';
import { parseRate } from '../../lib/fetch/fetch.js';
import { SeabagError } from '../../lib/errors.js';
import type { RuntimeTargets } from '../../lib/vessel/state.js';
import type { Command } from '../command.js';
import { list, registryAccess, str, vesselFlags } from '../options.js';
import { linkFlags, linkOptions } from './link.js';
import { formatBytes, printJSON, writeLine } from '../render.js';
import { printNotes, vesselOptions } from '../vessel-options.js';

/** `--runtime-config containerd:DIR` / `k3s:FILE`, as absolute paths (they are remembered). */
function runtimeTargets(values: string[]): { runtimeConfig?: RuntimeTargets } {
  if (values.length === 0) return {};
  const targets: RuntimeTargets = {};
  for (const v of values) {
    const m = /^(containerd|k3s):(.+)$/.exec(v);
    if (m === null) throw new SeabagError('E_USAGE', `--runtime-config takes containerd:DIR or k3s:FILE, not ${JSON.stringify(v)}`);
    const kind = m[1] as 'containerd' | 'k3s';
    if (targets[kind] !== undefined) throw new SeabagError('E_USAGE', `--runtime-config ${kind}: is given twice`);
    targets[kind] = resolve(m[2] as string);
  }
  return { runtimeConfig: targets };
}

export const importCommand: Command = {
  command: 'import <file>',
  path: ['import'],
  describe: "verify a bundle and stage it in the vessel's registry, changing nothing that runs",
  builder: (y) =>
    linkFlags(vesselFlags(
      y
        .positional('file', { type: 'string', describe: 'bundle, .parts.json, a part, or their folder; or oci://HOST[:PORT]/REPO:TAG (or @sha256:…) on the shore registry' })
        .option('trust', { type: 'string', describe: 'trust root to pin on the first import (later roots arrive inside bundles)' })
        .option('target', { type: 'string', describe: "this vessel's class (env SEABAG_TARGET); releases name the classes they are for" })
        .option('allow-downgrade', { type: 'boolean', default: false, describe: 'stage a release older than the newest held' })
        .option('runtime-config', {
          type: 'string',
          describe: "containerd:DIR or k3s:FILE (repeatable): write the runtime's mirror settings there now and after every later import",
        })
        .option('shore-ca-file', { type: 'string', describe: 'oci:// only: PEM file of a CA to trust for the shore registry (implies HTTPS)' })
        .option('shore-plain-http', { type: 'boolean', describe: 'oci:// only: speak plain HTTP to the shore registry' }),
    )),
  progress: true,
  examples: [
    { does: 'the first import pins the trust root and remembers the registry', run: 'bundle import aw-1.4.0.bundle --trust trust.json --registry localhost:32000' },
    { does: 'a vessel of class-a takes only releases meant for it', run: 'bundle import aw-1.4.0.bundle --target class-a' },
    { does: 'later imports remember the registry and the root', run: 'bundle import /media/usb/awareness-1.5.0.bundle' },
    { does: 'and keep containerd mirroring every host the releases use', run: 'bundle import aw.bundle --runtime-config containerd:/etc/containerd/certs.d' },
    { does: 'straight from the shore registry: only blobs this vessel lacks cross the link', run: 'bundle import oci://reg.example.com/rel/aw:1.5.0 --limit-rate 300K' },
  ],
  async run(args, ctx) {
    const target = str(args, 'target') ?? ctx.io.env['SEABAG_TARGET'];
    const trust = str(args, 'trust');
    const file = str(args, 'file') as string;
    const common = {
      ...vesselOptions(args, ctx),
      ...(trust === undefined ? {} : { trust }),
      ...(target === undefined || target === '' ? {} : { target }),
      allowDowngrade: args['allow-downgrade'] === true,
      ...runtimeTargets(list(args, 'runtime-config')),
    };
    let result: ImportResult & { source?: string; bytesDownloaded?: number };
    if (isOciAddress(file)) {
      result = await importFromRegistry(file, {
        ...common,
        ...linkOptions(args, ctx, parseRate),
        shore: registryAccess(args, ctx.io.env, 'shore-'),
      });
    } else {
      for (const flag of ['limit-rate', 'shore-ca-file', 'shore-plain-http']) {
        if (args[flag] !== undefined) throw new SeabagError('E_USAGE', `--${flag} is for imports from a registry (oci://…)`);
      }
      result = await importBundle(file, common);
    }
    ctx.progress.finish();
    printNotes(ctx, result.notes);
    if (ctx.json) {
      printJSON(ctx.io, { ok: true, ...result });
      return 0;
    }
    const { release, blobs } = result;
    const out = ctx.io.stdout;
    writeLine(out, `staged ${release.name} ${release.version}${result.alreadyHeld ? ' (already held: signature checked; its content is in the registry)' : ''}; nothing that runs has changed`);
    writeLine(out, `  release  ${release.digest}`);
    if (result.source !== undefined) writeLine(out, `  link     ${formatBytes(result.bytesDownloaded ?? 0)} from ${result.source}`);
    writeLine(out, `  blobs    ${blobs.total}: ${blobs.pushed} pushed (${formatBytes(result.bytesPushed)}), ${blobs.mounted} mounted, ${blobs.skipped} already there${blobs.omitted > 0 ? `, ${blobs.omitted} left out of the delta and found` : ''}`);
    if (result.runtimeConfig !== undefined) for (const f of result.runtimeConfig.written) writeLine(out, `  runtime  wrote ${f}`);
    if (result.rootsPinned.length > 0) writeLine(out, `  trust    pinned root version(s) ${result.rootsPinned.join(', ')}`);
    writeLine(out, `  next     bundle apply ${release.name}@${release.version}`);
    return 0;
  },
};
