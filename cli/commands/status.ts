import { vesselStatus, type StatusReport } from '../../lib/vessel/operations.js';
import type { Command } from '../command.js';
import { stateDirFlag, str } from '../options.js';
import { printJSON, shortDigest, table, writeLine } from '../render.js';
import { printNotes, vesselOptions } from '../vessel-options.js';

type Change = NonNullable<StatusReport['releases'][number]['changes']>[number];

function changeLines(changes: readonly Change[]): string[] {
  return changes.map((c) => {
    // Another tag runs now (fusion 1.5.0 → 1.4.0): name both, since the tag itself does not move.
    if (c.fromTag !== undefined && c.from !== undefined) {
      return `    ${c.repository}  ${c.fromTag} (${shortDigest(c.from)}) → ${c.tag ?? 'untagged'} (${shortDigest(c.to)})`;
    }
    return `    ${c.repository}${c.tag === undefined ? '' : `:${c.tag}`}  ${c.from === undefined ? '(new)' : shortDigest(c.from)} → ${shortDigest(c.to)}`;
  });
}

function images(n: number): string {
  return `${n} image${n === 1 ? '' : 's'}`;
}

/** What a rollback would return to, and what an apply of each staged release would change. */
function whatIf(report: StatusReport): string[] {
  const lines: string[] = [];
  const names = [...new Set(report.releases.map((r) => r.name))];
  for (const name of names) {
    const own = report.releases.filter((r) => r.name === name);
    const active = own.find((r) => r.state === 'active');
    const back = report.rollback.find((b) => b.name === name);
    lines.push('');
    if (active === undefined) {
      lines.push(`${name}: nothing of it runs yet`);
    } else if (back === undefined) {
      lines.push(`${name}: ${active.version} runs; a rollback has nothing to return to (no release ran before it)`);
    } else {
      const target = own.find((r) => r.version === back.version);
      const changes = target?.changes ?? [];
      lines.push(`${name}: ${active.version} runs; bundle rollback ${name} returns to ${back.version}, changing ${images(changes.length)}${changes.length > 0 ? ':' : ''}`);
      lines.push(...changeLines(changes));
    }
    for (const r of own.filter((x) => x.state === 'staged' || x.state === 'failed')) {
      const changes = r.changes ?? [];
      lines.push(`  bundle apply ${name}@${r.version} would change ${images(changes.length)}${changes.length > 0 ? ':' : ''}`);
      lines.push(...changeLines(changes));
    }
  }
  return lines;
}

export const status: Command = {
  command: 'status [name]',
  path: ['status'],
  describe: 'what the vessel holds and runs, and any operation under way',
  // No registry flags: status reads the state folder only (a crashed switch it finishes uses the registry remembered there).
  builder: (y) => stateDirFlag(y.positional('name', { type: 'string', describe: 'only this release name' })),
  examples: [
    { does: 'what is held, what runs, what a rollback would return to', run: 'bundle status' },
    { does: 'one release, for a program', run: 'bundle status awareness --json' },
  ],
  async run(args, ctx) {
    const name = str(args, 'name');
    const report = await vesselStatus({ ...vesselOptions(args, ctx), ...(name === undefined ? {} : { name }) });
    printNotes(ctx, report.notes);
    if (ctx.json) {
      printJSON(ctx.io, { ok: true, ...report });
      return 0;
    }
    const out = ctx.io.stdout;
    if (report.releases.length === 0) {
      writeLine(out, `no releases held (state in ${report.stateDir})`);
    } else {
      const rows = report.releases.map((r) => [r.name, r.version, r.state, shortDigest(r.digest), r.importedAt.slice(0, 16).replace('T', ' '), r.appliedAt?.slice(0, 16).replace('T', ' ') ?? '-']);
      for (const line of table([['NAME', 'VERSION', 'STATE', 'DIGEST', 'IMPORTED', 'APPLIED'], ...rows])) writeLine(out, line);
      for (const r of report.releases) if (r.failure) writeLine(out, `  ${r.name} ${r.version} failed: ${r.failure.split('\n').join('\n    ')}`);
      for (const r of report.releases) {
        if (r.complete === false) writeLine(out, `  ${r.name} ${r.version} is INCOMPLETE: the registry lacks ${r.missing?.length ?? 0} blob(s) or manifest(s) it needs; import its bundle again to repair it`);
      }
      for (const line of whatIf(report)) writeLine(out, line);
    }
    if (report.pending !== null) {
      const p = report.pending;
      if (p.failed !== undefined) {
        writeLine(out, `pending: the ${p.what} FAILED half-way (${p.failed.code}: ${p.failed.error}) and undoing it failed too (${p.failed.undo})`);
        for (const m of p.tags ?? []) {
          const where = m.now === null ? 'unknown (registry not reachable)' : m.now === m.to ? `${p.to?.version ?? 'the new release'} (moved)` : m.now === m.from ? 'as before (not moved)' : m.now === undefined ? 'missing' : shortDigest(m.now);
          writeLine(out, `  ${m.repository}:${m.tag}  now ${where}`);
        }
        writeLine(out, '  decide: bundle recover --abort (put the tags back) or bundle recover --finish (complete the switch)');
      } else {
        writeLine(out, `pending: ${p.what}${p.running ? ` in progress (pid ${p.pid})` : ' interrupted'}${p.phase ? `, at ${p.phase}` : ''}`);
      }
    }
    writeLine(out, `registry ${report.registry ?? '(not set)'}; class ${report.target ?? '(any)'}; trust root ${report.trustRoot ? `v${report.trustRoot.version}, expires ${report.trustRoot.expires}` : '(none pinned)'}`);
    return 0;
  },
};
