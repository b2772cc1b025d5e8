/**
 * Files shipped beside the code (schemas, package.json), found from this module whether it runs
 * from `lib/` (tests, tsx) or `dist/lib/` (the installed program).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SeabagError } from '../errors.js';

let root: string | undefined;

/** The folder holding seabag's package.json. */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'schemas'))) {
      root = dir;
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new SeabagError('E_INTERNAL', 'cannot find the seabag package root (package.json beside schemas/): the installation is incomplete');
    dir = up;
  }
}

/** seabag's version, from its package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
