import { inspectBundle } from '../../lib/bundle/inspect.js';
import type { Command } from '../command.js';
import { str } from '../options.js';
import { formatBytes, printJSON, shortDigest, table, writeLine } from '../render.js';

export const inspect: Command = {
  command: 'inspect <file>',
  path: ['inspect'],
  describe: 'show what a bundle holds (FILE: the bundle, its .parts.json, any part, or their folder)',
  builder: (y) => y.positional('file', { type: 'string', describe: 'bundle, .parts.json, a part, or a folder' }),
  examples: [
    { does: 'what a bundle holds: release, images, manifests, signers', run: 'bundle inspect awareness-1.5.0.bundle' },
    { does: 'the same, for a program', run: 'bundle inspect /media/usb/awareness-1.5.0.bundle.parts.json --json' },
  ],
  async run(args, ctx) {
    const report = await inspectBundle(str(args, 'file') as string);
    if (ctx.json) {
      printJSON(ctx.io, { ok: true, ...report });
      return 0;
    }
    const out = ctx.io.stdout;
    const r = report.release;
    writeLine(out, `${r.name} ${r.version}  (${report.file}, ${formatBytes(report.size)}${report.parts > 1 ? ` in ${report.parts} parts` : ''})`);
    writeLine(out, `  created   ${r.created ?? 'not recorded (a reproducible build)'}${r.expires ? `; expires ${r.expires}` : ''}`);
    writeLine(out, `  targets   ${r.targets.length === 0 ? 'any vessel' : r.targets.join(', ')}`);
    writeLine(out, `  release   ${r.digest}`);
    writeLine(out);
    writeLine(out, 'images:');
    for (const line of table([['REF', 'DIGEST', 'PLATFORMS', 'SIZE'], ...report.images.map((i) => [i.ref, shortDigest(i.digest), i.platforms.join(',') || '-', formatBytes(i.size)])])) {
      writeLine(out, `  ${line}`);
    }
    const attested = report.images.filter((i) => (i.attestations?.length ?? 0) > 0);
    if (attested.length > 0) {
      writeLine(out);
      writeLine(out, 'attestations (buildx provenance/SBOM manifests, carried with their images):');
      for (const i of attested) {
        for (const a of i.attestations ?? []) writeLine(out, `  ${i.ref}  ${shortDigest(a.digest)} for ${a.platform ?? shortDigest(a.subject)}`);
      }
    }
    const withReferrers = report.images.filter((i) => i.referrers.length > 0);
    if (withReferrers.length > 0) {
      writeLine(out);
      writeLine(out, 'referrers (signatures, attestations, SBOMs):');
      for (const i of withReferrers) {
        writeLine(out, `  ${i.ref}`);
        const rows = i.referrers.map((x) => [x.kind, x.tag ?? (x.artifactType ?? x.mediaType), shortDigest(x.digest), `of ${shortDigest(x.subject)}`]);
        for (const line of table(rows)) writeLine(out, `    ${line}`);
      }
    }
    if (report.imagePolicy !== undefined) writeLine(out, `image policy: every image cosign-signed by ${report.imagePolicy.keyids.join(' or ')}`);
    writeLine(out);
    writeLine(out, `manifests: ${report.manifests.map((m) => `${m.file} (${m.documents} doc${m.documents === 1 ? '' : 's'})`).join(', ') || 'none'}`);
    writeLine(out, `device profiles: ${report.deviceProfiles.map((d) => `${d.name} (${d.discovery}${d.node ? ` on ${d.node}` : ''})`).join(', ') || 'none'}`);
    if (report.check !== undefined) writeLine(out, `health check: ${report.check.command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')} (timeout ${report.check.timeoutSeconds}s; runs aboard only with apply --release-check)`);
    writeLine(out, `signatures: ${report.signatures.length === 0 ? 'none (unsigned)' : report.signatures.map((s) => s.keyid).join(', ')}  (not verified here: run bundle verify)`);
    if (report.roots.length > 0) writeLine(out, `trust roots carried: ${report.roots.map((x) => `v${x.version}`).join(', ')}`);
    if (report.omittedBlobs.length > 0) {
      writeLine(out, `delta: ${report.omittedBlobs.length} blob(s) left out, ${formatBytes(report.omittedBytes)} saved (the vessel must hold them)`);
    } else {
      writeLine(out, 'blobs left out: none (a full bundle)');
    }
    return 0;
  },
};
