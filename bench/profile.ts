/**
 * Summarises a `node --cpu-prof` profile: wall time, the share of samples spent idle (waiting on
 * I/O or other threads), and the top frames by self time.
 *
 *   node --import tsx bench/profile.ts DIR_OR_FILE.cpuprofile [--top 15]
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time by frame (ms), biggest first, and the wall time of the profile (ms). */
export function summarise(p: Profile, top = 15): { wallMs: number; frames: { frame: string; ms: number; share: number }[] } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let sum = 0;
  for (const [i, id] of p.samples.entries()) {
    const n = byId.get(id);
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    if (n === undefined) continue;
    const file = n.callFrame.url.replace(/^file:\/\/.*\//, '');
    const frame = `${n.callFrame.functionName || '(anonymous)'} ${file}${n.callFrame.lineNumber >= 0 ? `:${n.callFrame.lineNumber + 1}` : ''}`.trim();
    self.set(frame, (self.get(frame) ?? 0) + dt);
    sum += dt;
  }
  const frames = [...self].sort((a, b) => b[1] - a[1]).slice(0, top).map(([frame, ms]) => ({ frame, ms, share: sum === 0 ? 0 : ms / sum }));
  return { wallMs: (p.endTime - p.startTime) / 1000, frames };
}

export function renderSummary(title: string, s: ReturnType<typeof summarise>): string {
  return [`## ${title}`, '', `wall ${s.wallMs.toFixed(0)} ms (this thread)`, '', '| self ms | share | frame |', '|---:|---:|---|', ...s.frames.map((f) => `| ${f.ms.toFixed(1)} | ${(f.share * 100).toFixed(1)}% | \`${f.frame}\` |`), ''].join('\n');
}

if (process.argv[1]?.endsWith('profile.ts')) {
  const target = process.argv[2] as string;
  const i = process.argv.indexOf('--top');
  const top = i === -1 ? 15 : Number(process.argv[i + 1]);
  const files = (await stat(target)).isDirectory() ? (await readdir(target)).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(target, f)) : [target];
  for (const f of files) process.stdout.write(`${renderSummary(f, summarise(JSON.parse(await readFile(f, 'utf8')) as Profile, top))}\n`);
}
