// Compiles each schemas/NAME.schema.json into dist/validators/NAME.cjs (ajv standalone code), so
// commands validate without compiling schemas at run time, and each loads only the validators it
// uses (all eight in one file cost every `bundle inspect` about 4 ms to compile). lib/schema.ts
// falls back to compiling with ajv when a file is absent.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Ajv2020 } = require('ajv/dist/2020.js');
const standaloneCode = require('ajv/dist/standalone/index.js').default;

const NAMES = ['release', 'device-profile', 'release-document', 'trust-root', 'state', 'inventory', 'parts', 'journal'];
const schemas = NAMES.map((name) => JSON.parse(readFileSync(`schemas/${name}.schema.json`, 'utf8')));
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, schemas, code: { source: true } });
// The single file of earlier builds: nothing reads it any more.
rmSync('dist/validators.cjs', { force: true });
mkdirSync('dist/validators', { recursive: true });
for (const [i, name] of NAMES.entries()) {
  writeFileSync(`dist/validators/${name}.cjs`, standaloneCode(ajv, { [name.replace(/-/g, '_')]: schemas[i].$id }));
}
