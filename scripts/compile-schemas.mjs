// Compiles schemas/*.schema.json into dist/validators.cjs (ajv standalone code), so commands
// validate without compiling schemas at run time. lib/schema.ts falls back to compiling with ajv
// when this file is absent.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Ajv2020 } = require('ajv/dist/2020.js');
const standaloneCode = require('ajv/dist/standalone/index.js').default;

const NAMES = ['release', 'device-profile', 'release-document', 'trust-root', 'state', 'inventory', 'parts', 'journal'];
const schemas = NAMES.map((name) => JSON.parse(readFileSync(`schemas/${name}.schema.json`, 'utf8')));
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, schemas, code: { source: true } });
const exports = Object.fromEntries(NAMES.map((name, i) => [name.replace(/-/g, '_'), schemas[i].$id]));
writeFileSync('dist/validators.cjs', standaloneCode(ajv, exports));
