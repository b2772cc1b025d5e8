/**
 * A tool that explains itself: every command's --help fits 80 columns with whole, pasteable
 * examples; build --help documents every release.yaml field; the man page is made from the same
 * text; completion scripts; a mistyped command gets the nearest one; a flag a command does not
 * take is an error.
 */
import { readFileSync } from 'node:fs';
import test from 'ava';
import { execa } from 'execa';
import { commandPaths } from '../cli/program.js';
import { BIN, runCli } from './helpers/cli.js';

const root = new URL('..', import.meta.url);
const paths = commandPaths();

/** The lines of the `Examples:` block of a help text. */
function examplesOf(help: string): string[] {
  const start = help.split('\n').indexOf('Examples:');
  if (start < 0) return [];
  const lines: string[] = [];
  for (const line of help.split('\n').slice(start + 1)) {
    if (line.trim() === '') break;
    lines.push(line);
  }
  return lines;
}

test('every command has --help of at most 80 columns, with examples whole and pasteable', async (t) => {
  for (const path of [[], ...paths]) {
    const r = await runCli([...path, '--help']);
    const what = `bundle ${path.join(' ')} --help`;
    t.is(r.code, 0, what);
    for (const line of r.stdout.split('\n')) t.true(line.length <= 80, `${what}: ${line.length} columns: ${line}`);
    t.false(/DESIGN\.md/.test(r.stdout), `${what} names DESIGN.md, which the package does not ship`);
    if (path.length === 0) continue;
    const examples = examplesOf(r.stdout);
    t.true(examples.length >= 2, `${what} has examples`);
    // Each example is a `# what it does` line, then one command: a line starting with `bundle`,
    // continued only by lines that the one before ends with ` \` (the shell's continuation).
    let command: string[] = [];
    const commands: string[] = [];
    for (const line of examples) {
      const text = line.trim();
      const continued = command.length > 0 && (command.at(-1) ?? '').endsWith(' \\');
      if (continued) {
        t.true(line.startsWith('      '), `${what}: continuation indented: ${line}`);
        command.push(text);
        continue;
      }
      if (command.length > 0) commands.push(command.map((l) => l.replace(/ \\$/, '')).join(' '));
      command = [];
      if (text.startsWith('# ')) continue;
      t.true(text.startsWith('bundle '), `${what}: an example line that is neither a note nor a command: ${line}`);
      command = [text];
    }
    if (command.length > 0) commands.push(command.map((l) => l.replace(/ \\$/, '')).join(' '));
    t.true(commands.length >= 1, `${what} has at least one example command`);
    for (const c of commands) {
      t.false(c.endsWith('\\'), `${what}: example cut mid-command: ${c}`);
      // Each example parses: its command and flags are ones the program takes.
      const words = c.split(' ').slice(1);
      const first = words[0] as string;
      t.true(paths.some((p) => p[0] === first), `${what}: example runs a real command: ${c}`);
    }
  }
});

test('--version and --progress appear only where they mean something', async (t) => {
  const top = await runCli(['--help']);
  t.regex(top.stdout, /--version/);
  for (const path of paths) {
    const help = (await runCli([...path, '--help'])).stdout;
    t.false(/--version/.test(help), `bundle ${path.join(' ')} --help offers --version`);
    const long = ['build', 'verify', 'import', 'fetch', 'push', 'pull'].includes(path[0] as string);
    if (['keygen', 'trust', 'inspect', 'status', 'inventory', 'completion'].includes(path[0] as string)) {
      t.false(/--progress/.test(help), `bundle ${path.join(' ')} --help offers --progress, which it never shows`);
    }
    if (long) t.regex(help, /--progress/, `bundle ${path.join(' ')} shows progress`);
  }
  const v = await runCli(['status', '--version']);
  t.is(v.code, 2, 'a command does not take --version');
});

test('build --help describes every release.yaml field with an example, and points to the schema', async (t) => {
  const help = (await runCli(['build', '--help'])).stdout;
  t.regex(help, /schemas\/release\.schema\.json/);
  const schema = JSON.parse(readFileSync(new URL('schemas/release.schema.json', root), 'utf8')) as {
    properties: Record<string, unknown>;
  } & { properties: { images: { items: { properties: Record<string, unknown> } } } };
  const fields = [...Object.keys(schema.properties), ...Object.keys(schema.properties.images.items.properties)];
  t.true(fields.length >= 10);
  for (const field of fields) {
    // `  field: example   what it is`
    t.regex(help, new RegExp(`^ +(- )?${field}:( \\S+)?`, 'm'), `release.yaml field ${field} is described in build --help`);
  }
});

test('the man page docs/bundle.1 is made from the help text and installed with the package', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { man: string[]; files: string[]; scripts: Record<string, string> };
  t.deepEqual(pkg.man, ['./docs/bundle.1']);
  t.true(pkg.files.includes('docs/bundle.1'));
  t.regex(pkg.scripts['build'] ?? '', /man-page\.mjs/);
  const page = readFileSync(new URL('docs/bundle.1', root), 'utf8');
  t.regex(page, /^\.TH BUNDLE 1 /);
  for (const path of paths) t.true(page.includes(`.SS bundle ${path.join(' ')}\n`), `man page has bundle ${path.join(' ')}`);
  // The same words as --help: the build command's release.yaml field list is there verbatim.
  t.true(page.includes('  apiVersion: seabag.dev/v1     always this'));
  const rendered = await execa('man', ['-l', new URL('docs/bundle.1', root).pathname], { env: { MANWIDTH: '80', MAN_KEEP_FORMATTING: '0' }, reject: false });
  if (rendered.exitCode === 0) t.regex(rendered.stdout, /bundle apply <release>/);
});

test('bundle completion bash completes commands, subcommands and each command\'s own flags', async (t) => {
  const script = (await runCli(['completion', 'bash'])).stdout;
  const complete = async (words: string[]): Promise<string[]> => {
    const r = await execa('bash', ['-c', `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _bundle; printf '%s\\n' "\${COMPREPLY[@]}"`]);
    return r.stdout.split('\n').filter((l) => l !== '');
  };
  t.deepEqual(await complete(['bundle', 'sta']), ['status']);
  t.deepEqual(await complete(['bundle', 'trust', 'ro']), ['rotate']);
  t.deepEqual(await complete(['bundle', 'build', 'release.yaml', '--sp']), ['--split']);
  t.deepEqual(await complete(['bundle', 'apply', 'x@1', '--dry']), ['--dry-run']);
  t.deepEqual(await complete(['bundle', 'status', '--reg']), [], 'status takes no --registry');
  const zsh = (await runCli(['completion', 'zsh'])).stdout;
  t.regex(zsh, /^#compdef bundle seabag/);
  t.regex(zsh, /"build"\) compadd -- .*--split/);
  const hasZsh = await execa('zsh', ['-n', '-c', zsh], { reject: false }).catch(() => undefined);
  if (hasZsh !== undefined && hasZsh.exitCode !== 127 && hasZsh.failed === false) t.is(hasZsh.exitCode, 0);
  const bad = await runCli(['completion', 'fish']);
  t.is(bad.code, 2);
});

test('a mistyped command suggests the nearest one and exits 2', async (t) => {
  const r = await execa('node', [BIN, 'stauts'], { reject: false });
  t.is(r.exitCode, 2);
  t.regex(r.stderr, /^error\[E_USAGE\]: unknown command "stauts"; did you mean `bundle status`\?/m);
  const j = await runCli(['improt', 'x.bundle', '--json']);
  t.is(j.code, 2);
  t.like(j.json, { ok: false, error: { code: 'E_USAGE', details: { suggestion: 'import' } } });
  const sub = await runCli(['trust', 'rotat', 'trust.json']);
  t.regex(sub.stderr, /did you mean `bundle trust rotate`/);
  const far = await runCli(['frobnicate']);
  t.is(far.code, 2);
  t.notRegex(far.stderr, /did you mean/);
});

test('a flag a command does not take is an error, not ignored: status --registry', async (t) => {
  const r = await runCli(['status', '--registry', 'localhost:5000']);
  t.is(r.code, 2);
  t.regex(r.stderr, /^error\[E_USAGE\]: Unknown argument: registry/m);
  t.regex(r.stderr, /bundle status --help/);
  const k = await runCli(['keygen', 'x.key', '--registry', 'h']);
  t.is(k.code, 2);
});
