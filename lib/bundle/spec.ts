/**
 * Reading what people write: the release spec (`release.yaml`) and device profiles, as YAML
 * validated against `schemas/`, every problem reported at once with file, line and path.
 */
import { readdir, realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { MAX_SPEC_FILE, readRegularFile } from '../util/files.js';
import type { Document, LineCounter } from 'yaml';
import { yaml } from '../util/lazy.js';
import { fromSystemError, SeabagError } from '../errors.js';
import { parsePlatformString, type Platform } from '../oci/descriptor.js';
import { formatReference, parseReference, type Reference } from '../oci/reference.js';
import { schemaProblems, throwProblems, type Problem } from '../schema.js';
import { MAX_RELEASE_CHECK_SECONDS, parseDuration } from '../util/duration.js';
import { parseFrom } from './sources.js';
import { parseTime } from '../util/time.js';

export interface SpecImage {
  ref: string;
  from?: string;
}

export interface ReleaseSpec {
  apiVersion: 'seabag.dev/v1';
  kind: 'Release';
  name: string;
  version: string;
  targets?: string[];
  platforms?: string[];
  /** An image with none of `platforms` fails the build instead of a warning. */
  platformStrict?: boolean;
  expires?: string;
  images: SpecImage[];
  manifests?: string[];
  deviceProfiles?: string[];
  /** Public keys (files) every image must carry a cosign signature by. */
  imagePolicy?: { keys: string[] };
  /** A health check to run aboard after a switch (argv, no shell), carried signed in the release document. */
  check?: { command: string[]; timeout?: string };
}

export interface LoadedSpec {
  spec: ReleaseSpec;
  file: string;
  /** Folder that relative paths in the spec are taken from. */
  baseDir: string;
  /** Parsed image references, in spec order. */
  refs: Reference[];
  platforms: Platform[];
}

/** A YAML document's line lookup for schema problems. */
function lineLookup(doc: Document, counter: LineCounter): (segments: (string | number)[]) => number | undefined {
  return (segments) => {
    for (let n = segments.length; n >= 0; n -= 1) {
      const node = doc.getIn(segments.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node !== undefined && node !== null && Array.isArray(node.range)) return counter.linePos(node.range[0]).line;
      if (n === 0) {
        const contents = doc.contents as { range?: [number, number, number] } | null;
        if (contents?.range) return counter.linePos(contents.range[0]).line;
      }
    }
    return undefined;
  };
}

/** YAML aliases one document may expand (a "billion laughs" bomb needs far more). */
export const MAX_YAML_ALIASES = 100;

/**
 * A document's value, or a problem: an alias without its anchor, or more alias expansions than
 * `MAX_YAML_ALIASES` (a YAML bomb), is bad input, not a crash.
 */
function documentValue(doc: Document, file: string, path: string): { data?: unknown; problem?: Problem } {
  try {
    return { data: doc.toJS({ maxAliasCount: MAX_YAML_ALIASES }) };
  } catch (err) {
    const message = (err as Error).message;
    return { problem: { file, path, message: /alias count/i.test(message) ? `too many YAML alias expansions (over ${MAX_YAML_ALIASES}): refused as a resource-exhaustion attack` : message.split('\n')[0] ?? message } };
  }
}

/** Parses one YAML document, turning syntax errors (and alias bombs) into problems with lines. */
export function parseYAMLDocument(text: string, file: string): { doc: Document; data: unknown; problems: Problem[]; lineOf: (s: (string | number)[]) => number | undefined } {
  const counter = new (yaml().LineCounter)();
  const doc = yaml().parseDocument(text, { lineCounter: counter, uniqueKeys: true, prettyErrors: false });
  const problems: Problem[] = doc.errors.map((e) => ({
    file,
    path: '(yaml)',
    message: e.message.split('\n')[0] ?? e.message,
    line: counter.linePos(e.pos[0]).line,
  }));
  if (problems.length > 0) return { doc, data: undefined, problems, lineOf: lineLookup(doc, counter) };
  const value = documentValue(doc, file, '(yaml)');
  if (value.problem !== undefined) problems.push(value.problem);
  return { doc, data: value.data, problems, lineOf: lineLookup(doc, counter) };
}

/** A spec file: a regular file of at most 16 MiB (`MAX_SPEC_FILE`). @throws E_USAGE, E_SPEC_INVALID, E_FILE_NOT_FOUND, E_IO */
async function readText(path: string, what: string): Promise<string> {
  return (await readRegularFile(path, { maxBytes: MAX_SPEC_FILE, what, tooLarge: 'E_SPEC_INVALID' })).toString('utf8');
}

/**
 * Reads and validates `release.yaml`.
 *
 * @throws E_FILE_NOT_FOUND; E_SPEC_INVALID listing every problem (schema, references, platforms,
 *   sources, duplicates)
 */
export async function loadReleaseSpec(path: string): Promise<LoadedSpec> {
  const file = resolve(path);
  const text = await readText(file, 'release spec');
  // Named as the user would: relative when it is under the working folder.
  const rel = relative(process.cwd(), file);
  const shown = rel === '' || rel.startsWith('..') ? file : rel;
  const { data, problems, lineOf } = parseYAMLDocument(text, shown);
  throwProblems(problems, shown);
  const all = schemaProblems('release', data, shown, lineOf);
  const spec = data as ReleaseSpec;
  const refs: Reference[] = [];
  const platforms: Platform[] = [];
  if (all.length === 0) {
    const seen = new Map<string, number>();
    spec.images.forEach((image, i) => {
      const at = (message: string, field = 'ref'): Problem => {
        const p: Problem = { file: shown, path: `images[${i}].${field}`, message };
        const line = lineOf(['images', i, field]);
        if (line !== undefined) p.line = line;
        return p;
      };
      // A source written where the name goes: say where it belongs instead of failing to parse it.
      const source = /^(oci|oci-archive|docker-archive):|^docker:\/\//.exec(image.ref);
      if (source !== null) {
        all.push(at(`${JSON.stringify(image.ref)} says where the image comes from, not its name: put it in from: (from: ${image.ref}) and give ref: the name the manifests use (like groke/ui:1.4.0)`));
        return;
      }
      try {
        const ref = parseReference(image.ref);
        refs.push(ref);
        const key = formatReference(ref);
        if (seen.has(key)) all.push(at(`repeats images[${seen.get(key) ?? 0}] (${key})`));
        seen.set(key, i);
        if (ref.repository === 'seabag' || ref.repository.startsWith('seabag/')) all.push(at(`${key} would go to the repository ${ref.repository}, under seabag/, where the vessel keeps its releases: name the image elsewhere`));
      } catch (err) {
        all.push(at((err as Error).message));
      }
      if (image.from !== undefined) {
        try {
          parseFrom(image.from);
        } catch (err) {
          all.push(at((err as Error).message, 'from'));
        }
      }
    });
    if (spec.check?.timeout !== undefined) {
      try {
        parseDuration(spec.check.timeout, 'check.timeout', MAX_RELEASE_CHECK_SECONDS);
      } catch (err) {
        const p: Problem = { file: shown, path: 'check.timeout', message: (err as Error).message };
        const line = lineOf(['check', 'timeout']);
        if (line !== undefined) p.line = line;
        all.push(p);
      }
    }
    if (spec.expires !== undefined && parseTime(spec.expires, { dateOnly: true }) === undefined) {
      const line = lineOf(['expires']);
      all.push({ file: shown, path: 'expires', message: `${JSON.stringify(spec.expires)} is not a real date (YYYY-MM-DD) or RFC 3339 time`, ...(line === undefined ? {} : { line }) });
    }
    (spec.platforms ?? []).forEach((p, i) => {
      try {
        platforms.push(parsePlatformString(p));
      } catch (err) {
        all.push({ file: shown, path: `platforms[${i}]`, message: (err as Error).message });
      }
    });
  }
  throwProblems(all, shown);
  return { spec, file, baseDir: dirname(file), refs, platforms };
}

/**
 * The containment rule for files a release spec names and bundle build reads and signs into the
 * release (`manifests:`, `deviceProfiles:`, `imagePolicy.keys`): a relative path without `..`
 * that resolves (symlinks followed, by realpath) inside the folder of `release.yaml`.
 *
 * Not held to it, on purpose: image sources (`from: oci:DIR`, `oci-archive:FILE`,
 * `docker-archive:FILE`), which legitimately live outside the release (the example builds from
 * `oci:../build/images`), and whose content is verified by digest and carried as images, not as
 * release files; and `check:`, a command run aboard, never a file read at build time.
 */
export class ReleaseFolder {
  readonly baseDir: string;
  readonly real: string;

  private constructor(baseDir: string, real: string) {
    this.baseDir = baseDir;
    this.real = real;
  }

  /** @throws E_FILE_NOT_FOUND, E_IO (the folder itself) */
  static async open(baseDir: string): Promise<ReleaseFolder> {
    const real = await realpath(baseDir).catch((err: unknown) => {
      throw fromSystemError(err, 'read', baseDir);
    });
    return new ReleaseFolder(baseDir, real);
  }

  /** Whether a real (resolved) path is the folder or under it. */
  holds(real: string): boolean {
    return real === this.real || real.startsWith(this.real.endsWith(sep) ? this.real : `${this.real}${sep}`);
  }

  /**
   * The path of a spec entry, refused before anything is read when it is absolute or has a `..`.
   *
   * @throws E_SPEC_INVALID
   */
  entry(field: string, entry: string, hint: string): string {
    if (isAbsolute(entry) || entry.split(/[\\/]/).includes('..')) {
      throw new SeabagError('E_SPEC_INVALID', `${field} entry ${JSON.stringify(entry)} leaves the release folder: only relative paths inside it are read`, {
        details: { field, entry },
        hint,
      });
    }
    return resolve(this.baseDir, entry);
  }

  /**
   * The real path of `path` (found under `entry`), refused when it resolves outside the folder.
   *
   * @throws E_SPEC_INVALID (outside), E_FILE_NOT_FOUND, E_IO
   */
  async resolve(path: string, field: string, entry: string, hint: string): Promise<string> {
    const shown = relative(this.baseDir, path) || path;
    const real = await realpath(path).catch((err: unknown) => {
      throw fromSystemError(err, 'read', shown);
    });
    if (!this.holds(real)) {
      throw new SeabagError('E_SPEC_INVALID', `${field} entry ${JSON.stringify(entry)}: ${shown} resolves to ${real}, outside the release folder ${this.real}`, {
        details: { field, entry, path: shown, resolved: real, releaseFolder: this.real },
        hint,
      });
    }
    return real;
  }
}

/**
 * Lists YAML files from files and folders named in the spec (folders recursively, sorted by
 * path so the result is the same everywhere). Every entry, and every file found under it, must
 * resolve (symlinks followed, by realpath) inside the folder of `release.yaml`: an absolute path,
 * a `..` segment or a symlink out of it is refused, so nothing outside the release is read and
 * signed. An entry that yields no file is an error, never silently zero files.
 *
 * @throws E_SPEC_INVALID naming the entry (outside the folder, or matching nothing);
 *   E_FILE_NOT_FOUND when it does not exist
 */
export async function collectYAMLFiles(baseDir: string, entries: readonly string[], field = 'manifests'): Promise<string[]> {
  const folder = await ReleaseFolder.open(baseDir);
  const hint = 'keep manifests and device profiles inside the folder of release.yaml (copy them in; symlinks out are refused)';
  const out: string[] = [];
  const walk = async (path: string, entry: string): Promise<void> => {
    const real = await folder.resolve(path, field, entry, hint);
    const s = await stat(real);
    if (s.isDirectory()) {
      const names = (await readdir(real)).filter((n) => !n.startsWith('.')).sort();
      for (const n of names) {
        const child = join(path, n);
        const cs = await stat(child).catch(() => undefined);
        if (cs === undefined || cs.isDirectory() || /\.ya?ml$/i.test(n)) await walk(child, entry);
      }
    } else {
      out.push(path);
    }
  };
  for (const entry of entries) {
    const path = folder.entry(field, entry, 'keep manifests and device profiles inside the folder of release.yaml');
    const before = out.length;
    await walk(path, entry);
    if (out.length === before) {
      throw new SeabagError('E_SPEC_INVALID', `${field} entry ${JSON.stringify(entry)} matches no YAML file`, { details: { field, entry } });
    }
  }
  return [...new Set(out)];
}

/**
 * Reads a file a spec names, returning its text and its path relative to the spec's folder (with
 * forward slashes, as problems and bundles name it).
 *
 * Limits: a regular file (never a FIFO or a device) of at most 16 MiB (`MAX_SPEC_FILE`).
 *
 * @throws E_USAGE (not a regular file), E_SPEC_INVALID (over 16 MiB), E_FILE_NOT_FOUND, E_IO
 */
export async function readSpecFile(path: string, baseDir: string, what: string): Promise<{ rel: string; text: string }> {
  const rel = relative(baseDir, path).split('\\').join('/');
  return { rel, text: await readText(path, what) };
}

/**
 * All documents of a multi-document YAML file (empty documents skipped), with line lookups.
 * `version: '1.1'` reads them as Kubernetes does (go-yaml v2: YAML 1.1 scalars and `<<` merge
 * keys); seabag's own documents are YAML 1.2.
 */
export function parseYAMLDocuments(
  text: string,
  file: string,
  options: { version?: '1.1' | '1.2' } = {},
): { docs: { doc: Document; data: unknown; index: number; lineOf: (s: (string | number)[]) => number | undefined }[]; problems: Problem[] } {
  const counter = new (yaml().LineCounter)();
  const version = options.version === '1.1' ? ({ version: '1.1', merge: true } as const) : {};
  const parsed = yaml().parseAllDocuments(text, { lineCounter: counter, uniqueKeys: true, prettyErrors: false, ...version });
  const list = Array.isArray(parsed) ? parsed : [];
  const problems: Problem[] = [];
  const docs: { doc: Document; data: unknown; index: number; lineOf: (s: (string | number)[]) => number | undefined }[] = [];
  list.forEach((doc, index) => {
    for (const e of doc.errors) problems.push({ file, path: `document ${index + 1}`, message: e.message.split('\n')[0] ?? e.message, line: counter.linePos(e.pos[0]).line });
    if (doc.errors.length > 0 || doc.contents === null) return;
    if (!yaml().isMap(doc.contents) && !yaml().isSeq(doc.contents)) return;
    const value = documentValue(doc, file, `document ${index + 1}`);
    if (value.problem !== undefined) problems.push(value.problem);
    else docs.push({ doc, data: value.data, index, lineOf: lineLookup(doc, counter) });
  });
  return { docs, problems };
}
