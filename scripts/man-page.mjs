// Writes docs/bundle.1, the man page, from the same help text `bundle … --help` prints, so the
// two never disagree. Run by `npm run build` (after tsc); the page is installed with the package
// (package.json "man"). No date goes in, so the page is the same bytes from the same sources.
import { readFileSync, writeFileSync } from 'node:fs';

const { helpText, commandPaths } = await import('../dist/cli/program.js');
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

/** Text as roff shows it verbatim: backslashes escaped, no line read as a request. */
function verbatim(text) {
  return text
    .trimEnd()
    .split('\n')
    .map((line) => line.replace(/\\/g, '\\e').replace(/^([.'])/, '\\&$1'))
    .join('\n');
}

const out = [
  `.TH BUNDLE 1 "" "seabag ${pkg.version}" "User Commands"`,
  '.SH NAME',
  'bundle, seabag \\- signed, content\\-addressed release bundles for clusters that are mostly offline',
  '.SH SYNOPSIS',
  '.B bundle',
  '.I command',
  '[\\fIoptions\\fR]',
  '.PP',
  'The program is installed as both',
  '.B bundle',
  'and',
  '.BR seabag .',
  '.SH DESCRIPTION',
  '.nf',
  verbatim(await helpText([], 72)),
  '.fi',
  '.SH COMMANDS',
];
for (const path of commandPaths()) {
  out.push(`.SS bundle ${path.join(' ')}`, '.nf', verbatim(await helpText(path, 72)), '.fi');
}
out.push(
  '.SH ENVIRONMENT',
  '.TP',
  '.B SEABAG_REGISTRY',
  "the vessel's registry, HOST[:PORT], for vessel commands",
  '.TP',
  '.B SEABAG_STATE_DIR',
  'the vessel state folder (default /var/lib/seabag)',
  '.TP',
  '.B SEABAG_TARGET',
  "this vessel's class, for import",
  '.TP',
  '.B SOURCE_DATE_EPOCH',
  'when set, build records this time as the release\'s creation time',
  '.SH FILES',
  '.TP',
  '.I /var/lib/seabag',
  'pinned trust roots, state.json, the journal of an operation in progress, and the lock',
  '.TP',
  '.I schemas/release.schema.json',
  'the JSON Schema of release.yaml, shipped with the package',
  '.SH SEE ALSO',
  '.BR skopeo (1),',
  '.BR ctr (8),',
  'README.md and docs/ in the package',
  '',
);
writeFileSync(new URL('../docs/bundle.1', import.meta.url), out.join('\n'));
