import { runtimeConfig } from '../../lib/runtime/config.js';
import { SeabagError } from '../../lib/errors.js';
import type { Command } from '../command.js';
import { str, vesselFlags } from '../options.js';
import { printJSON, writeLine } from '../render.js';
import { vesselOptions } from '../vessel-options.js';

export const runtimeConfigCommand: Command = {
  command: 'runtime-config',
  path: ['runtime-config'],
  describe: "write the mirror settings that make containerd, K3s or MicroK8s pull every held release's images from the vessel registry",
  builder: (y) =>
    vesselFlags(
      y
        .option('containerd', { type: 'boolean', describe: "containerd's config_path layout: OUT/HOST/hosts.toml (MicroK8s: args/certs.d/)" })
        .option('k3s', { type: 'boolean', describe: "K3s's registries.yaml (mirrors and configs) in the file OUT" })
        .option('output', { alias: 'o', type: 'string', describe: 'folder (--containerd) or file (--k3s) to write' })
        .option('upstream-fallback', { type: 'boolean', default: false, describe: 'let the runtime try the upstream registry when the vessel lacks an image (off: the link is metered)' })
        .option('force', { type: 'boolean', default: false, describe: 'replace files that seabag did not write' })
        .conflicts('containerd', 'k3s'),
    ),
  examples: [
    { does: 'containerd (config_path) and MicroK8s (args/certs.d)', run: 'bundle runtime-config --containerd -o /etc/containerd/certs.d' },
    { does: 'K3s, with the CA of a TLS vessel registry', run: 'bundle runtime-config --k3s -o registries.yaml --ca-file ca.pem' },
    { does: 'the hosts and the endpoint, written nowhere', run: 'bundle runtime-config --json' },
  ],
  more: 'Every upstream host of the held releases (docker.io, ghcr.io, shore.example.com, ...) is sent to the vessel registry; import --runtime-config keeps the files current. K3s reads registries.yaml at start: restart k3s. containerd reads hosts.toml at each pull.',
  async run(args, ctx) {
    const output = str(args, 'output');
    const kind = args['containerd'] === true ? 'containerd' : args['k3s'] === true ? 'k3s' : undefined;
    if (kind === undefined && !ctx.json) throw new SeabagError('E_USAGE', 'say what to write: --containerd -o DIR, --k3s -o FILE, or --json for the list');
    if (kind !== undefined && output === undefined) throw new SeabagError('E_USAGE', `--${kind} needs -o ${kind === 'k3s' ? 'FILE' : 'DIR'}`);
    if (kind === undefined && output !== undefined) throw new SeabagError('E_USAGE', '-o needs --containerd or --k3s');
    const result = await runtimeConfig({
      ...vesselOptions(args, ctx),
      ...(kind === undefined || output === undefined ? {} : { [kind]: output }),
      upstreamFallback: args['upstream-fallback'] === true,
      force: args['force'] === true,
    });
    for (const c of result.collisions) writeLine(ctx.io.stderr, `warning: ${c.hosts.join(' and ')} both have ${c.repository}; on the vessel they are one repository`);
    if (ctx.json) {
      printJSON(ctx.io, { ok: true, ...result });
      return 0;
    }
    const out = ctx.io.stdout;
    writeLine(out, `${result.hosts.length} host(s) pull from the vessel registry ${result.registry.url}${result.registry.caFile ? ` (CA ${result.registry.caFile})` : ''}:`);
    for (const h of result.hosts) writeLine(out, `  ${h.host}${h.self ? ' (the vessel registry itself)' : ''}`);
    for (const f of result.written) writeLine(out, `wrote ${f}`);
    writeLine(out, kind === 'k3s' ? 'next: restart k3s (or k3s-agent) on every node that has this file' : 'containerd reads hosts.toml at each pull: no restart needed once config_path points at this folder');
    return 0;
  },
};
