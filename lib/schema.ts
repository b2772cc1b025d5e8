/**
 * JSON Schema (2020-12) validation of every document a person writes or seabag stores, with all
 * problems reported at once, each naming the file, the place in the document (and its line when
 * the document came from YAML) and what was expected.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Ajv2020, ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import { SeabagError, type ErrorCode } from './errors.js';
import { ajv2020 } from './util/lazy.js';
import { packageRoot } from './util/package.js';

export type SchemaName = 'release' | 'device-profile' | 'release-document' | 'trust-root' | 'state' | 'inventory' | 'parts' | 'journal';

export interface Problem {
  file: string;
  /** `images[2].ref`, or `(root)`. */
  path: string;
  message: string;
  /** 1-based line in the file, when known. */
  line?: number;
  /** The error code this problem calls for, when it is not the caller's usual one (never read from the message). */
  code?: 'E_IMAGE_NOT_IN_RELEASE';
}

/** Time patterns in the schemas, and how to say what they want. */
const PATTERN_WORDS: Record<string, string> = {
  '^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])T([01]\\d|2[0-3]):[0-5]\\d:([0-5]\\d|60)(\\.\\d+)?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)$': 'must be an RFC 3339 time (2027-06-01T00:00:00Z)',
  '^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])(T([01]\\d|2[0-3]):[0-5]\\d:([0-5]\\d|60)(\\.\\d+)?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d))?$':
    'must be a date (2027-06-01) or an RFC 3339 time',
};

export const SCHEMA_NAMES: readonly SchemaName[] = ['release', 'device-profile', 'release-document', 'trust-root', 'state', 'inventory', 'parts', 'journal'];

/** The export name of a schema's validator in the compiled module (`device-profile` → `device_profile`). */
export function validatorName(name: SchemaName): string {
  return name.replace(/-/g, '_');
}

const require = createRequire(import.meta.url);
let ajv: Ajv2020 | undefined;
const compiled = new Map<SchemaName, ValidateFunction>();

/**
 * The validator of a schema: from dist/validators/NAME.cjs, which the build compiles from
 * schemas/ (scripts/compile-schemas.mjs: no schema compiling at run time, which cost every command
 * a tenth of a second; one file per schema, so a command compiles only the validators it uses),
 * else compiled here with ajv (a checkout that was not built).
 */
function validator(name: SchemaName): ValidateFunction {
  let fn = compiled.get(name);
  if (fn !== undefined) return fn;
  try {
    fn = (require(join(packageRoot(), 'dist', 'validators', `${name}.cjs`)) as Record<string, ValidateFunction>)[validatorName(name)];
  } catch {
    fn = undefined;
  }
  if (fn === undefined) {
    ajv ??= new (ajv2020().Ajv2020)({ allErrors: true, strict: true, allowUnionTypes: true });
    const schema = JSON.parse(readFileSync(join(packageRoot(), 'schemas', `${name}.schema.json`), 'utf8')) as object;
    fn = ajv.compile(schema);
  }
  compiled.set(name, fn);
  return fn;
}

/** `/images/2/ref` → `images[2].ref` */
export function pointerToPath(pointer: string): string {
  if (pointer === '') return '(root)';
  return pointer
    .split('/')
    .slice(1)
    .map((seg) => seg.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, seg) => (/^\d+$/.test(seg) ? `${acc}[${seg}]` : acc === '' ? seg : `${acc}.${seg}`), '');
}

function pointerSegments(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .split('/')
    .slice(1)
    .map((seg) => seg.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((seg) => (/^\d+$/.test(seg) ? Number(seg) : seg));
}

/**
 * What a pattern wants, in words, by where it applies (the last fields of the path): a person
 * reads "must be a version like 1.4.0", not a regular expression.
 */
const PATH_WORDS: [RegExp, string][] = [
  [/(^|\/)version$/, 'must be a version like 1.4.0 (semver: MAJOR.MINOR.PATCH)'],
  [/(^|\/)name$/, 'must be lower-case letters and digits, joined by . _ or - (like awareness), at most 63 characters'],
  [/(^|\/)targets\/\d+$/, 'must be a vessel class like class-a (letters, digits, . _ -)'],
  [/(^|\/)platforms\/\d+$/, 'must be OS/ARCH or OS/ARCH/VARIANT, like linux/arm64'],
  [/(^|\/)images\/\d+\/from$/, 'must start with oci:, oci-archive:, docker-archive: or docker:// (like oci:build/layout:fusion)'],
];

const TYPE_WORDS: Record<string, string> = {
  string: 'text',
  array: 'a list (like [a, b])',
  object: 'a mapping of fields',
  number: 'a number',
  integer: 'a whole number',
  boolean: 'true or false',
};

const sources = new Map<SchemaName, unknown>();

/**
 * The fields a schema allows where an error was found (for "did you mean"): the error's schema
 * path, read in the schema file itself (only when a document has such an error).
 */
function knownFields(name: SchemaName, err: ErrorObject): string[] {
  try {
    let doc = sources.get(name);
    if (doc === undefined) {
      doc = JSON.parse(readFileSync(join(packageRoot(), 'schemas', `${name}.schema.json`), 'utf8')) as unknown;
      sources.set(name, doc);
    }
    const segments = err.schemaPath.replace(/^#\//, '').split('/').slice(0, -1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    let node: unknown = doc;
    for (const s of segments) node = (node as Record<string, unknown> | undefined)?.[s];
    return Object.keys((node as { properties?: Record<string, unknown> } | undefined)?.properties ?? {});
  } catch {
    return [];
  }
}

/** The nearest known field to a mistyped one (one or two edits, or a different case). */
function nearestField(word: string, fields: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  const same = fields.find((f) => f.toLowerCase() === lower || f.toLowerCase() === `${lower}s` || `${f.toLowerCase()}s` === lower);
  if (same !== undefined) return same;
  const distance = (a: string, b: string): number => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j += 1) (d[0] as number[])[j] = j;
    for (let i = 1; i <= a.length; i += 1) {
      for (let j = 1; j <= b.length; j += 1) {
        const row = d[i] as number[];
        const up = d[i - 1] as number[];
        row[j] = Math.min((up[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (up[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
      }
    }
    return d[a.length]?.[b.length] ?? Number.POSITIVE_INFINITY;
  };
  const best = fields.map((f) => ({ f, d: distance(lower, f.toLowerCase()) })).sort((a, b) => a.d - b.d)[0];
  return best !== undefined && best.d <= Math.min(2, Math.floor(word.length / 3)) ? best.f : undefined;
}

function describe(name: SchemaName, err: ErrorObject): { pointer: string; message: string } {
  const p = err.params as Record<string, unknown>;
  switch (err.keyword) {
    case 'required':
      return { pointer: `${err.instancePath}/${String(p['missingProperty'])}`, message: 'is required' };
    case 'additionalProperties': {
      const field = String(p['additionalProperty']);
      const fields = knownFields(name, err);
      const near = nearestField(field, fields);
      const message = near !== undefined ? `is not a known field; did you mean ${near}?` : fields.length > 0 ? `is not a known field (known here: ${fields.join(', ')})` : 'is not a known field';
      return { pointer: `${err.instancePath}/${field}`, message };
    }
    case 'type': {
      // `version: 1.4` is a number to YAML: say what a version looks like, not "must be string".
      const words = PATH_WORDS.find(([re]) => re.test(err.instancePath))?.[1];
      if (words !== undefined) return { pointer: err.instancePath, message: words };
      const types = String(p['type']).split(',');
      return { pointer: err.instancePath, message: `must be ${types.map((x) => TYPE_WORDS[x] ?? x).join(' or ')}` };
    }
    case 'minItems':
      return { pointer: err.instancePath, message: Number(p['limit']) === 1 ? 'must list at least one item' : `must list at least ${String(p['limit'])} items` };
    case 'maxItems':
      return { pointer: err.instancePath, message: `must list at most ${String(p['limit'])} items` };
    case 'minLength':
      return { pointer: err.instancePath, message: Number(p['limit']) === 1 ? 'must not be empty' : `must be at least ${String(p['limit'])} characters` };
    case 'maxLength':
      return { pointer: err.instancePath, message: `must be at most ${String(p['limit'])} characters` };
    case 'uniqueItems':
      return { pointer: err.instancePath, message: `must not list the same item twice (items ${String(p['j'])} and ${String(p['i'])} are the same)` };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return { pointer: err.instancePath, message: `must be ${String(p['comparison'])} ${String(p['limit'])}`.replace('>=', 'at least').replace('<=', 'at most').replace('>', 'more than').replace('<', 'less than') };
    case 'const':
      return { pointer: err.instancePath, message: `must be ${JSON.stringify(p['allowedValue'])}` };
    case 'enum':
      return { pointer: err.instancePath, message: `must be one of ${(p['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    case 'pattern':
      return {
        pointer: err.instancePath,
        message: PATTERN_WORDS[String(p['pattern'])] ?? PATH_WORDS.find(([re]) => re.test(err.instancePath))?.[1] ?? `must match ${String(p['pattern'])}`,
      };
    default:
      return { pointer: err.instancePath, message: err.message ?? err.keyword };
  }
}

/**
 * Validates `data` against one of seabag's schemas and returns every problem (empty when valid).
 * `lineOf` maps a path in the document to a line of its file, when the caller knows.
 */
export function schemaProblems(
  name: SchemaName,
  data: unknown,
  file: string,
  lineOf?: (segments: (string | number)[]) => number | undefined,
): Problem[] {
  const fn = validator(name);
  if (fn(data)) return [];
  const seen = new Set<string>();
  const problems: Problem[] = [];
  for (const err of fn.errors ?? []) {
    // `oneOf`/`anyOf` summaries repeat what their branches said.
    if (err.keyword === 'oneOf' || err.keyword === 'anyOf' || err.keyword === 'if') continue;
    const { pointer, message } = describe(name, err);
    const key = `${pointer} ${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const problem: Problem = { file, path: pointerToPath(pointer), message };
    const line = lineOf?.(pointerSegments(pointer)) ?? lineOf?.(pointerSegments(err.instancePath));
    if (line !== undefined) problem.line = line;
    problems.push(problem);
  }
  return problems;
}

/** `file:line: path: message` */
export function formatProblem(p: Problem): string {
  return `${p.file}${p.line === undefined ? '' : `:${p.line}`}: ${p.path}: ${p.message}`;
}

/**
 * Throws one error listing every problem, when there are any.
 *
 * @throws `code` (E_SPEC_INVALID by default) with `details.problems`
 */
export function throwProblems(problems: readonly Problem[], what: string, code: ErrorCode = 'E_SPEC_INVALID'): void {
  if (problems.length === 0) return;
  const lines = problems.map(formatProblem);
  throw new SeabagError(code, `${what} has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n  ${lines.join('\n  ')}`, {
    details: { problems },
  });
}

/**
 * Validates a document seabag itself stored or received, throwing on the first look.
 *
 * @throws `code` listing every problem
 */
export function assertSchema(name: SchemaName, data: unknown, file: string, code: ErrorCode): void {
  throwProblems(schemaProblems(name, data, file), file, code);
}
