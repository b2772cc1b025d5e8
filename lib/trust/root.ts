/**
 * Trust roots, after TUF (theupdateframework specification v1.0.x, "root.json" and "5.3 Update
 * the root role"): `{signed: {type, version, expires, keys, roles: {root, release}},
 * signatures}`, signed over the RFC 8785 canonical JSON of `signed`. Root N+1 is accepted only
 * when a threshold of root N's root keys and a threshold of its own root keys signed it, and its
 * version is exactly N+1.
 */
import { parseTime } from '../util/time.js';
import { readRegularFile } from '../util/files.js';
import { SeabagError } from '../errors.js';
import { describeKind, sniff } from '../util/sniff.js';
import { assertSchema } from '../schema.js';
import { canonicalBytes } from '../util/canonical.js';
import { decodeBase64 } from './dsse.js';
import { parsePublicKey, signMessage, verifyMessage, type PublicKey, type SigningKey } from './keys.js';

export const ROOT_TYPE = 'seabag-root';

export interface RoleSpec {
  keyids: string[];
  threshold: number;
}

export interface RootKey {
  keytype: 'ed25519';
  scheme: 'ed25519';
  keyval: { public: string };
}

export interface RootSigned {
  type: typeof ROOT_TYPE;
  version: number;
  expires: string;
  keys: Record<string, RootKey>;
  roles: { root: RoleSpec; release: RoleSpec };
}

export interface TrustRoot {
  signed: RootSigned;
  signatures: { keyid: string; sig: string }[];
}

export interface RootOptions {
  version: number;
  expires: Date;
  rootKeys: readonly Pick<PublicKey, 'keyid' | 'pem'>[];
  rootThreshold: number;
  releaseKeys: readonly Pick<PublicKey, 'keyid' | 'pem'>[];
  releaseThreshold: number;
}

/** Most signatures a root may carry: each is tried against every root key, so this bounds the verify calls. */
export const MAX_ROOT_SIGNATURES = 64;
/** Most keys a root may list (both roles together). */
export const MAX_ROOT_KEYS = 256;

/**
 * A root within `MAX_ROOT_SIGNATURES` and `MAX_ROOT_KEYS`, checked before any signature is.
 *
 * @throws `code` naming the limit (details.limit)
 */
export function checkRootLimits(root: { signed?: { keys?: unknown }; signatures?: unknown }, where: string, code: 'E_TRUST_INVALID' | 'E_ROOT_CHAIN_INVALID' = 'E_TRUST_INVALID'): void {
  const signatures = Array.isArray(root.signatures) ? root.signatures.length : 0;
  if (signatures > MAX_ROOT_SIGNATURES) {
    throw new SeabagError(code, `${where} carries ${signatures} signatures; at most ${MAX_ROOT_SIGNATURES} are checked`, { details: { limit: MAX_ROOT_SIGNATURES, found: signatures } });
  }
  const keys = typeof root.signed?.keys === 'object' && root.signed.keys !== null ? Object.keys(root.signed.keys).length : 0;
  if (keys > MAX_ROOT_KEYS) {
    throw new SeabagError(code, `${where} lists ${keys} keys; at most ${MAX_ROOT_KEYS} are allowed`, { details: { limit: MAX_ROOT_KEYS, found: keys } });
  }
}

function chainError(message: string, details: Record<string, unknown> = {}): SeabagError {
  return new SeabagError('E_ROOT_CHAIN_INVALID', message, { details });
}

/** The unsigned body of a root. */
export function makeRootSigned(options: RootOptions): RootSigned {
  const keys: Record<string, RootKey> = {};
  for (const k of [...options.rootKeys, ...options.releaseKeys]) keys[k.keyid] = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: k.pem } };
  const ids = (list: readonly Pick<PublicKey, 'keyid'>[]): string[] => [...new Set(list.map((k) => k.keyid))].sort();
  const signed: RootSigned = {
    type: ROOT_TYPE,
    version: options.version,
    expires: options.expires.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    keys,
    roles: {
      root: { keyids: ids(options.rootKeys), threshold: options.rootThreshold },
      release: { keyids: ids(options.releaseKeys), threshold: options.releaseThreshold },
    },
  };
  checkRootShape(signed, 'the new root');
  return signed;
}

/** Signs a root's body with each key (order kept; the same key twice is signed once). */
export function signRoot(signed: RootSigned, keys: readonly SigningKey[]): TrustRoot {
  const message = canonicalBytes(signed);
  const seen = new Set<string>();
  const signatures: TrustRoot['signatures'] = [];
  for (const k of keys) {
    if (seen.has(k.keyid)) continue;
    seen.add(k.keyid);
    signatures.push({ keyid: k.keyid, sig: signMessage(k, message).toString('base64') });
  }
  return { signed, signatures };
}

function checkRootShape(signed: RootSigned, where: string): void {
  for (const [name, role] of Object.entries(signed.roles)) {
    if (role.threshold < 1) throw new SeabagError('E_TRUST_INVALID', `${where}: the ${name} threshold must be at least 1`);
    if (role.threshold > role.keyids.length) {
      throw new SeabagError('E_TRUST_INVALID', `${where}: the ${name} threshold ${role.threshold} is more than its ${role.keyids.length} key(s)`);
    }
    for (const id of role.keyids) {
      if (signed.keys[id] === undefined) throw new SeabagError('E_TRUST_INVALID', `${where}: ${name} role names key ${id}, which is not in keys`);
    }
  }
  for (const [id, key] of Object.entries(signed.keys)) {
    const parsed = parsePublicKey(key.keyval.public, `${where}: key ${id}`);
    if (parsed.keyid !== id) throw new SeabagError('E_TRUST_INVALID', `${where}: key listed as ${id} has keyid ${parsed.keyid}`);
  }
}

/**
 * Parses and checks a root document (schema, keyids, thresholds). Signatures are checked by
 * `verifyRootSelf` and `extendChain`.
 *
 * Limits: at most `MAX_ROOT_SIGNATURES` (64) signatures and `MAX_ROOT_KEYS` (256) keys.
 *
 * @throws `code` (E_TRUST_INVALID for files a person gave, E_ROOT_CHAIN_INVALID for roots from a bundle)
 */
export function parseRoot(bytes: Uint8Array, where: string, code: 'E_TRUST_INVALID' | 'E_ROOT_CHAIN_INVALID' = 'E_TRUST_INVALID'): TrustRoot {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new SeabagError(code, `${where} is not JSON: ${(err as Error).message}`);
  }
  if (typeof doc === 'object' && doc !== null) checkRootLimits(doc as TrustRoot, where, code);
  assertSchema('trust-root', doc, where, code);
  const root = doc as TrustRoot;
  if (parseTime(root.signed.expires) === undefined) {
    throw new SeabagError(code, `${where}: expires ${JSON.stringify(root.signed.expires)} is not a real RFC 3339 time`, { details: { expires: root.signed.expires } });
  }
  try {
    checkRootShape(root.signed, where);
  } catch (err) {
    if (err instanceof SeabagError && code !== 'E_TRUST_INVALID') throw new SeabagError(code, err.message, { cause: err });
    throw err;
  }
  return root;
}

/** Largest trust root file read (a root with hundreds of keys is a few hundred KiB). */
export const MAX_ROOT_FILE = 4 * 1024 * 1024;

/**
 * Reads a root file a person named (`--trust`): a regular file of at most 4 MiB.
 *
 * @throws E_USAGE (not a regular file), E_TRUST_INVALID (too large, malformed), E_FILE_NOT_FOUND, E_IO
 */
export async function loadRoot(path: string): Promise<{ root: TrustRoot; bytes: Buffer }> {
  const bytes = await readRegularFile(path, { maxBytes: MAX_ROOT_FILE, what: 'trust root', tooLarge: 'E_TRUST_INVALID' });
  const kind = sniff(bytes);
  if (kind === 'private-key' || kind === 'public-key' || kind === 'pem') {
    throw new SeabagError('E_TRUST_INVALID', `${path} is a key, not a trust root (make one with \`bundle trust init\`)`, {
      details: { file: path, kind },
      hint: 'a trust root is the trust.json that `bundle trust init --root-key … --release-key … --sign … -o trust.json` writes',
    });
  }
  if (kind !== 'trust-root' && kind !== 'json' && kind !== 'unknown') {
    throw new SeabagError('E_TRUST_INVALID', `${path} is ${describeKind(kind)}, not a trust root (make one with \`bundle trust init\`)`, { details: { file: path, kind } });
  }
  return { root: parseRoot(bytes, path), bytes };
}

/** The public keys of a role. */
export function roleKeys(root: TrustRoot, role: 'root' | 'release'): PublicKey[] {
  return root.signed.roles[role].keyids.map((id) => parsePublicKey((root.signed.keys[id] as RootKey).keyval.public, `key ${id}`));
}

/**
 * Distinct keys of `role` in `by` that signed `root`.
 *
 * Limits: `root` within `MAX_ROOT_SIGNATURES` signatures, `by` within `MAX_ROOT_KEYS` keys, before any verify call.
 *
 * @throws E_TRUST_INVALID over a limit
 */
export function countRootSignatures(root: TrustRoot, by: TrustRoot): string[] {
  checkRootLimits(root, `trust root version ${root.signed.version}`);
  checkRootLimits(by, `trust root version ${by.signed.version}`);
  return rootKeysThatSigned(root.signed, root.signatures, by);
}

/**
 * The distinct root keys of `by` whose signature over the canonical JSON of `signed` is among
 * `signatures` (a signature's keyid is a hint, tried first; undecodable ones count for nothing).
 * The caller bounds `signatures` first (`MAX_ROOT_SIGNATURES`).
 */
export function rootKeysThatSigned(signed: unknown, signatures: readonly { keyid: string; sig: string }[], by: TrustRoot): string[] {
  const message = canonicalBytes(signed);
  const keys = roleKeys(by, 'root');
  const valid = new Set<string>();
  for (const s of signatures) {
    let sig: Buffer;
    try {
      sig = decodeBase64(s.sig, 'a root-key signature');
    } catch {
      continue;
    }
    const ordered = [...keys].sort((a, b) => Number(b.keyid === s.keyid) - Number(a.keyid === s.keyid));
    const signer = ordered.find((k) => verifyMessage(k, message, sig));
    if (signer !== undefined) valid.add(signer.keyid);
  }
  return [...valid];
}

/**
 * A root is self-consistent when a threshold of its own root keys signed it.
 *
 * @throws `code` when not
 */
export function verifyRootSelf(root: TrustRoot, where: string, code: 'E_TRUST_INVALID' | 'E_ROOT_CHAIN_INVALID' = 'E_TRUST_INVALID'): void {
  const valid = countRootSignatures(root, root);
  if (valid.length < root.signed.roles.root.threshold) {
    throw new SeabagError(code, `${where} (version ${root.signed.version}) carries ${valid.length} valid signature(s) of its own root keys; its threshold is ${root.signed.roles.root.threshold}`, {
      details: { version: root.signed.version, valid, threshold: root.signed.roles.root.threshold },
    });
  }
}

/**
 * Extends a trusted root with newer roots (TUF 5.3): each must be exactly the next version,
 * signed by a threshold of the previous root's root keys and of its own. Roots at or below the
 * trusted version are ignored when identical to what is trusted and refused when they differ.
 *
 * @returns the chain of newly accepted roots, oldest first (empty when nothing is newer)
 * @throws E_ROOT_CHAIN_INVALID naming the version and what was wrong
 */
export function extendChain(trusted: TrustRoot, candidates: readonly TrustRoot[], knownVersions: ReadonlyMap<number, string> = new Map()): TrustRoot[] {
  const byVersion = new Map<number, TrustRoot>();
  for (const c of candidates) {
    const v = c.signed.version;
    const canonical = canonicalBytes(c).toString('base64');
    if (v <= trusted.signed.version) {
      const known = knownVersions.get(v) ?? (v === trusted.signed.version ? canonicalBytes(trusted).toString('base64') : undefined);
      if (known !== undefined && known !== canonical) {
        throw chainError(`the bundle carries a root version ${v} that differs from the one this vessel trusts`, { version: v });
      }
      continue;
    }
    const other = byVersion.get(v);
    if (other !== undefined && canonicalBytes(other).toString('base64') !== canonical) {
      throw chainError(`the bundle carries two different roots with version ${v}`, { version: v });
    }
    byVersion.set(v, c);
  }
  const accepted: TrustRoot[] = [];
  let current = trusted;
  const versions = [...byVersion.keys()].sort((a, b) => a - b);
  for (const v of versions) {
    const next = byVersion.get(v) as TrustRoot;
    if (v !== current.signed.version + 1) {
      throw chainError(`root version ${v} does not follow version ${current.signed.version}: each rotation must be exactly one version up`, {
        trusted: current.signed.version,
        found: v,
      });
    }
    const byOld = countRootSignatures(next, current);
    if (byOld.length < current.signed.roles.root.threshold) {
      throw chainError(`root version ${v} is signed by ${byOld.length} of version ${current.signed.version}'s root keys; ${current.signed.roles.root.threshold} needed`, {
        version: v,
        valid: byOld,
        threshold: current.signed.roles.root.threshold,
      });
    }
    verifyRootSelf(next, `root version ${v}`, 'E_ROOT_CHAIN_INVALID');
    accepted.push(next);
    current = next;
  }
  return accepted;
}
