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
let compiledModule: Record<string, ValidateFunction> | null | undefined;
let ajv: Ajv2020 | undefined;
const compiled = new Map<SchemaName, ValidateFunction>();

/**
 * The validator of a schema: from dist/validators.cjs, which the build compiles from schemas/
 * (scripts/compile-schemas.mjs: no schema compiling at run time, which cost every command a
 * tenth of a second), else compiled here with ajv (a checkout that was not built).
 */
function validator(name: SchemaName): ValidateFunction {
  let fn = compiled.get(name);
  if (fn !== undefined) return fn;
  if (compiledModule === undefined) {
    try {
      compiledModule = require(join(packageRoot(), 'dist', 'validators.cjs')) as Record<string, ValidateFunction>;
    } catch {
      compiledModule = null;
    }
  }
  fn = compiledModule?.[validatorName(name)];
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

function describe(err: ErrorObject): { pointer: string; message: string } {
  const p = err.params as Record<string, unknown>;
  switch (err.keyword) {
    case 'required':
      return { pointer: `${err.instancePath}/${String(p['missingProperty'])}`, message: 'is required' };
    case 'additionalProperties':
      return { pointer: `${err.instancePath}/${String(p['additionalProperty'])}`, message: 'is not a known field' };
    case 'const':
      return { pointer: err.instancePath, message: `must be ${JSON.stringify(p['allowedValue'])}` };
    case 'enum':
      return { pointer: err.instancePath, message: `must be one of ${(p['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    case 'pattern':
      return { pointer: err.instancePath, message: PATTERN_WORDS[String(p['pattern'])] ?? `must match ${String(p['pattern'])}` };
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
    const { pointer, message } = describe(err);
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
