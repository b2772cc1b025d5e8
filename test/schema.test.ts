/**
 * The schemas: compiled at build time into dist/validators/NAME.cjs (what commands use), and the
 * same answers as ajv compiling them at run time.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import test from 'ava';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { SCHEMA_NAMES, schemaProblems, validatorName, type SchemaName } from '../lib/schema.js';

const require = createRequire(import.meta.url);
const compiled = (name: SchemaName): ValidateFunction | undefined => (require(`../dist/validators/${name}.cjs`) as Record<string, ValidateFunction>)[validatorName(name)];

test('every schema has a compiled validator that agrees with ajv at run time', (t) => {
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  const samples: unknown[] = [{}, { apiVersion: 'seabag.dev/v1' }, [], 'x', { apiVersion: 'seabag.dev/v1', kind: 'Release', name: 'A', version: '1', images: [] }];
  for (const name of SCHEMA_NAMES) {
    const fromBuild = compiled(name);
    t.truthy(fromBuild, name);
    const runtime = ajv.compile(JSON.parse(readFileSync(new URL(`../schemas/${name}.schema.json`, import.meta.url), 'utf8')) as object);
    for (const sample of samples) {
      t.is(fromBuild?.(sample), runtime(sample), `${name}: ${JSON.stringify(sample)}`);
      t.deepEqual(fromBuild?.errors ?? null, runtime.errors ?? null, `${name}: the same errors`);
    }
  }
});

test('times are checked as RFC 3339 and named so in problems', (t) => {
  const base = { apiVersion: 'seabag.dev/v1', kind: 'Inventory', releases: [], blobs: [] };
  t.deepEqual(schemaProblems('inventory', { ...base, created: '2026-11-26T18:00:00Z' }, 'inv.json'), []);
  for (const bad of ['2026-13-01T00:00:00Z', '2026-11-26', 'yesterday', '2026-11-26T25:00:00Z']) {
    const [problem] = schemaProblems('inventory', { ...base, created: bad }, 'inv.json');
    t.like(problem, { path: 'created', message: 'must be an RFC 3339 time (2027-06-01T00:00:00Z)' }, bad);
  }
});
