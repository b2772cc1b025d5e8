import { prunePlan, pruneReleases } from '../../lib/index.js';
import type { Command } from '../command.js';
import { str, vesselFlags } from '../options.js';
import { printJSON, writeLine } from '../render.js';
import { printNotes, vesselOptions } from '../vessel-options.js';

const GC_HINT =
  "free the space with the registry's garbage collection, without --delete-untagged (staged releases are untagged): `registry garbage-collect /etc/docker/registry/config.yml` (Debian: docker-registry garbage-collect …; MicroK8s: microk8s kubectl -n container-registry exec deploy/registry -- registry garbage-collect /etc/docker/registry/config.yml)";

export const prune: Command = {
  command: 'prune',
  path: ['prune'],
  describe: 'remove releases beyond the newest N of each name (never the active one, nor the previous one without --force)',
  builder: (y) =>
    vesselFlags(
      y
        .option('keep', { type: 'number', default: 3, describe: 'releases to keep per name' })
        .option('name', { type: 'string', describe: 'only this release name' })
        .option('force', { type: 'boolean', default: false, describe: 'also remove the previous release (the rollback target)' }),
    ),
  async run(args, ctx) {
    const name = str(args, 'name');
    const choice = { keep: Number(args['keep']), force: args['force'] === true, ...(name === undefined ? {} : { name }) };
    const options = { ...vesselOptions(args, ctx), ...choice };
    // What will go, listed before anything changes; only those are removed.
    const plan = await prunePlan(options);
    if (!ctx.json) {
      for (const r of plan.remove) writeLine(ctx.io.stdout, `will remove ${r.name} ${r.version} (${r.state})`);
      for (const k of plan.keep.filter((x) => x.why === 'previous')) writeLine(ctx.io.stdout, `keeping ${k.name} ${k.version}: it is the rollback target (--force removes it)`);
    }
    const report = await pruneReleases({ ...options, only: plan.remove.map((r) => r.digest) });
    printNotes(ctx, report.notes);
    if (ctx.json) {
      printJSON(ctx.io, { ok: true, ...report, gc: GC_HINT });
      return 0;
    }
    const out = ctx.io.stdout;
    if (report.removed.length === 0) writeLine(out, 'nothing to prune');
    for (const r of report.removed) writeLine(out, `removed ${r.name} ${r.version}`);
    writeLine(out, `kept ${report.kept.map((k) => `${k.name} ${k.version} (${k.state})`).join(', ') || 'nothing'}`);
    if (report.deleteRefused) writeLine(ctx.io.stderr, 'warning: the registry refused deletes (storage.delete.enabled is off); their content stays in the registry');
    if (report.removed.length > 0) writeLine(out, `${report.manifestsDeleted} manifest(s) deleted; ${GC_HINT}`);
    return 0;
  },
};
