/**
 * Descriptors, manifests and indexes (OCI image-spec v1.1.0 `descriptor.md`, `manifest.md`,
 * `image-index.md`), parsed defensively: content from a bundle or a registry is untrusted until
 * its structure has been checked here.
 */
import { SeabagError } from '../errors.js';
import { parseDigest, type Digest } from './digest.js';

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
  urls?: string[];
  /** The bytes themselves, for small content (image-spec `data`); carried, never trusted. */
  data?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** Manifests, configs and index.json are held in memory; anything larger is refused (Distribution's own limit). */
export const MAX_METADATA_SIZE = 4 * 1024 * 1024;

export const REF_NAME = 'org.opencontainers.image.ref.name';
export const TITLE = 'org.opencontainers.image.title';

function invalid(where: string, message: string): SeabagError {
  return new SeabagError('E_LAYOUT_INVALID', `${where}: ${message}`, { details: { where } });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringMap(value: unknown, where: string): Record<string, string> {
  if (!isRecord(value)) throw invalid(where, 'must be an object of strings');
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw invalid(`${where}.${key}`, 'must be a string');
  }
  return value as Record<string, string>;
}

/**
 * Checks that `value` is a descriptor and returns it, keeping only the fields seabag knows.
 *
 * @throws E_LAYOUT_INVALID naming `where` and the field
 */
export function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isRecord(value)) throw invalid(where, 'must be a descriptor object');
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== 'string' || mediaType.length === 0 || mediaType.length > 255) {
    throw invalid(`${where}.mediaType`, 'must be a media type');
  }
  let parsed: Digest;
  try {
    parsed = parseDigest(digest, `${where}.digest`);
  } catch (err) {
    throw invalid(`${where}.digest`, (err as Error).message);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size`, 'must be a non-negative integer');
  }
  const desc: Descriptor = { mediaType, digest: parsed, size };
  if (value['annotations'] !== undefined) desc.annotations = stringMap(value['annotations'], `${where}.annotations`);
  if (value['artifactType'] !== undefined) {
    if (typeof value['artifactType'] !== 'string') throw invalid(`${where}.artifactType`, 'must be a string');
    desc.artifactType = value['artifactType'];
  }
  if (value['platform'] !== undefined) desc.platform = parsePlatform(value['platform'], `${where}.platform`);
  if (value['urls'] !== undefined) {
    const urls = value['urls'];
    if (!Array.isArray(urls) || !urls.every((u) => typeof u === 'string')) throw invalid(`${where}.urls`, 'must be strings');
    desc.urls = urls as string[];
  }
  if (value['data'] !== undefined) {
    if (typeof value['data'] !== 'string') throw invalid(`${where}.data`, 'must be base64');
    desc.data = value['data'];
  }
  return desc;
}

function parsePlatform(value: unknown, where: string): Platform {
  if (!isRecord(value)) throw invalid(where, 'must be an object');
  const { os, architecture, variant } = value;
  if (typeof os !== 'string' || typeof architecture !== 'string') throw invalid(where, 'needs os and architecture');
  const platform: Platform = { architecture, os };
  if (variant !== undefined) {
    if (typeof variant !== 'string') throw invalid(`${where}.variant`, 'must be a string');
    platform.variant = variant;
  }
  if (typeof value['os.version'] === 'string') platform['os.version'] = value['os.version'];
  if (Array.isArray(value['os.features'])) platform['os.features'] = value['os.features'].map(String);
  return platform;
}

/** Parses JSON held in memory, naming `where` when it is not JSON. */
export function parseJSON(data: Uint8Array, where: string): unknown {
  try {
    return JSON.parse(Buffer.from(data).toString('utf8')) as unknown;
  } catch (err) {
    throw invalid(where, `not valid JSON (${(err as Error).message})`);
  }
}

function checkHeader(doc: Record<string, unknown>, desc: Descriptor, where: string): void {
  if (doc['schemaVersion'] !== 2) throw invalid(`${where}.schemaVersion`, 'must be 2');
  // A manifest that claims another type than its descriptor is a confusion attack
  // (image-spec v1.1.0 manifest.md: "mediaType ... when used, MUST" match).
  if (doc['mediaType'] !== undefined && doc['mediaType'] !== desc.mediaType) {
    throw invalid(`${where}.mediaType`, `says ${String(doc['mediaType'])} but its descriptor says ${desc.mediaType}`);
  }
}

/**
 * Parses an image manifest whose bytes were already verified against `desc`.
 *
 * @throws E_LAYOUT_INVALID
 */
export function parseImageManifest(data: Uint8Array, desc: Descriptor, where: string = desc.digest): ImageManifest {
  const doc = parseJSON(data, where);
  if (!isRecord(doc)) throw invalid(where, 'a manifest must be a JSON object');
  checkHeader(doc, desc, where);
  if (!Array.isArray(doc['layers'])) throw invalid(`${where}.layers`, 'must be an array');
  const manifest: ImageManifest = {
    schemaVersion: 2,
    config: parseDescriptor(doc['config'], `${where}.config`),
    layers: doc['layers'].map((l: unknown, i: number) => parseDescriptor(l, `${where}.layers[${i}]`)),
  };
  if (typeof doc['mediaType'] === 'string') manifest.mediaType = doc['mediaType'];
  if (typeof doc['artifactType'] === 'string') manifest.artifactType = doc['artifactType'];
  if (doc['subject'] !== undefined) manifest.subject = parseDescriptor(doc['subject'], `${where}.subject`);
  if (doc['annotations'] !== undefined) manifest.annotations = stringMap(doc['annotations'], `${where}.annotations`);
  return manifest;
}

/**
 * Parses an image index (or Docker manifest list) whose bytes were verified against `desc`.
 *
 * @throws E_LAYOUT_INVALID
 */
export function parseIndex(data: Uint8Array, desc: Descriptor, where: string = desc.digest): ImageIndex {
  const doc = parseJSON(data, where);
  return parseIndexDocument(doc, desc, where);
}

/** Like `parseIndex`, for a document already parsed (`index.json` of a layout). */
export function parseIndexDocument(doc: unknown, desc: Pick<Descriptor, 'mediaType'>, where: string): ImageIndex {
  if (!isRecord(doc)) throw invalid(where, 'an index must be a JSON object');
  checkHeader(doc, desc as Descriptor, where);
  if (!Array.isArray(doc['manifests'])) throw invalid(`${where}.manifests`, 'must be an array');
  const index: ImageIndex = {
    schemaVersion: 2,
    manifests: doc['manifests'].map((m: unknown, i: number) => parseDescriptor(m, `${where}.manifests[${i}]`)),
  };
  if (typeof doc['mediaType'] === 'string') index.mediaType = doc['mediaType'];
  if (typeof doc['artifactType'] === 'string') index.artifactType = doc['artifactType'];
  if (doc['subject'] !== undefined) index.subject = parseDescriptor(doc['subject'], `${where}.subject`);
  if (doc['annotations'] !== undefined) index.annotations = stringMap(doc['annotations'], `${where}.annotations`);
  return index;
}

/** `os/arch[/variant]`, as `--platform` writes it. */
export function formatPlatform(p: Platform): string {
  return p.variant === undefined ? `${p.os}/${p.architecture}` : `${p.os}/${p.architecture}/${p.variant}`;
}

/**
 * Parses `os/arch[/variant]`.
 *
 * @throws E_USAGE
 */
export function parsePlatformString(value: string): Platform {
  const parts = value.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[A-Za-z0-9._-]+$/.test(p))) {
    throw new SeabagError('E_USAGE', `invalid platform ${JSON.stringify(value)}: expected os/arch[/variant], e.g. linux/arm64`);
  }
  // Case is not significant (containerd lower-cases os and architecture before comparing).
  const [os, architecture, variant] = parts.map((p) => p.toLowerCase()) as [string, string, string | undefined];
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

/**
 * Does `candidate` satisfy `wanted`? A wanted platform without a variant accepts any variant.
 * (Selection from an index follows containerd's rules instead: see `platform.ts`.)
 */
export function platformMatches(candidate: Platform | undefined, wanted: Platform): boolean {
  if (candidate === undefined) return false;
  if (candidate.os !== wanted.os || candidate.architecture !== wanted.architecture) return false;
  return wanted.variant === undefined || candidate.variant === wanted.variant;
}
