import { pruneReleases } from '../../lib/vessel/operations.js';
import type { PruneReport } from '../../lib/vessel/prune.js';
import type { Command } from '../command.js';
import { confirmation, confirmFlags } from '../confirm.js';
import { vesselFlags } from '../options.js';
import { printJSON, shortDigest, writeLine } from '../render.js';
import { printNotes, vesselOptions } from '../vessel-options.js';

const GC_HINT =
  "free the space with the registry's garbage collection, without --delete-untagged (staged releases are untagged): `registry garbage-collect /etc/docker/registry/config.yml` (Debian: docker-registry garbage-collect …; MicroK8s: microk8s kubectl -n container-registry exec deploy/registry -- registry garbage-collect /etc/docker/registry/config.yml)";

/** The rollback targets a prune keeps (without --force), said so. */
function rollbackTargets(report: PruneReport): string[] {
  return report.kept.filter((k) => k.why === 'previous').map((k) => `  ${k.name} ${k.version} stays: it is the rollback target (--force removes it)`);
}

/** What a prune would remove and keep: the same list for the plan, the question and the result. */
export function pruneLines(report: PruneReport): string[] {
  if (report.removed.length === 0) return ['nothing to prune', ...rollbackTargets(report)];
  return [
    `prune removes ${report.removed.length} release${report.removed.length === 1 ? '' : 's'}:`,
    ...report.removed.map((r) => `  ${r.name} ${r.version}  ${shortDigest(r.digest)}`),
    `and keeps ${report.kept.map((k) => `${k.name} ${k.version} (${k.state})`).join(', ') || 'nothing'}`,
    ...rollbackTargets(report),
  ];
}

export const prune: Command = {
  command: 'prune',
  path: ['prune'],
  describe: 'remove releases beyond the newest N of each name (never the active one, nor the previous one without --force)',
  builder: (y) =>
    confirmFlags(
      vesselFlags(
        y
          .option('keep', { type: 'number', default: 3, describe: 'releases to keep per name' })
          .option('name', { type: 'string', describe: 'only this release name' })
          .option('force', { type: 'boolean', default: false, describe: 'also remove the previous release (the rollback target)' }),
      ),
    ),
  examples: [
    { does: 'show what would be removed, ask, then remove it', run: 'bundle prune --keep 2' },
    { does: 'only show what would be removed', run: 'bundle prune --dry-run' },
  ],
  async run(args, ctx) {
    const c = confirmation(args, ctx, (plan) => pruneLines(plan as PruneReport));
    const report = await pruneReleases({
      ...vesselOptions(args, ctx),
      keep: Number(args['keep']),
      force: args['force'] === true,
      ...(typeof args['name'] === 'string' ? { name: args['name'] } : {}),
      dryRun: c.dryRun,
      ...(c.confirm === undefined ? {} : { confirm: c.confirm }),
    });
    printNotes(ctx, report.notes);
    if (ctx.json) {
      printJSON(ctx.io, { ok: true, ...report, ...(report.dryRun === true ? {} : { gc: GC_HINT }) });
      return 0;
    }
    const out = ctx.io.stdout;
    if (report.dryRun === true) {
      for (const line of pruneLines(report)) writeLine(out, line);
      if (report.removed.length > 0) writeLine(out, 'dry run: nothing changed');
      return 0;
    }
    if (report.removed.length === 0) for (const line of pruneLines(report)) writeLine(out, line);
    else if (c.shown()) writeLine(out, `removed ${report.removed.length} release(s) as shown`);
    else for (const line of pruneLines(report)) writeLine(out, line.replace(/^prune removes/, 'removed').replace(/^and keeps/, 'kept'));
    if (report.deleteRefused) writeLine(ctx.io.stderr, 'warning: the registry refused deletes (storage.delete.enabled is off); their content stays in the registry');
    if (report.removed.length > 0) writeLine(out, `${report.manifestsDeleted} manifest(s) deleted; ${GC_HINT}`);
    return 0;
  },
};
