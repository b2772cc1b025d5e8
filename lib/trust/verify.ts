/**
 * Is this release signed by enough of the right people? The signature is a DSSE envelope over an
 * in-toto Statement v1 (in-toto/attestation `spec/v1/statement.md`) whose subject is the release
 * manifest's digest, stored as an artifact manifest whose `subject` is the release manifest.
 */
import { createHash } from 'node:crypto';
import { SeabagError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { digestHex } from '../oci/digest.js';
import type { ReleaseDocument, SignedRelease } from '../release/model.js';
import { checkEnvelope, IN_TOTO_PAYLOAD_TYPE, parseEnvelope } from './dsse.js';
import { extendChain, parseRoot, roleKeys, type TrustRoot } from './root.js';

export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const PREDICATE_TYPE = 'https://seabag.dev/release/v1';

export interface Statement {
  _type: string;
  subject: { name: string; digest: Record<string, string> }[];
  predicateType: string;
  predicate: Record<string, unknown>;
}

/** The statement a release's signers sign. */
export function releaseStatement(release: Pick<ReleaseDocument, 'name' | 'version' | 'created'>, releaseDesc: Descriptor): Statement {
  return {
    _type: STATEMENT_TYPE,
    subject: [{ name: `seabag/${release.name}:${release.version}`, digest: { sha256: digestHex(releaseDesc.digest) } }],
    predicateType: PREDICATE_TYPE,
    predicate: { name: release.name, version: release.version, created: release.created },
  };
}

function parseStatement(body: Buffer): Statement | undefined {
  try {
    const doc = JSON.parse(body.toString('utf8')) as Partial<Statement>;
    if (doc._type !== STATEMENT_TYPE || doc.predicateType !== PREDICATE_TYPE || !Array.isArray(doc.subject)) return undefined;
    return doc as Statement;
  } catch {
    return undefined;
  }
}

export interface SignatureCheck {
  /** Distinct trusted release keys whose signatures are valid, sorted. */
  valid: string[];
  threshold: number;
}

/** Most distinct signature envelopes a release's signatures are read from (each costs up to 64 × keys verify calls). */
export const MAX_SIGNATURE_ENVELOPES = 64;

/**
 * Checks the release's signatures against the release role of `root`: at least `threshold`
 * distinct trusted keys (a key counts once, however often it appears) over a statement naming
 * this release manifest's digest.
 *
 * @throws E_UNSIGNED (no signature), E_SUBJECT_MISMATCH (a valid signature over another
 *   release), E_KEY_UNTRUSTED (signed only by keys this root does not trust), E_SIGNATURE_INVALID
 *   (a signature that does not verify, or not an in-toto statement), E_THRESHOLD_UNMET,
 *   E_LAYOUT_INVALID (over `MAX_SIGNATURE_ENVELOPES` distinct envelopes, or an envelope over
 *   `MAX_ENVELOPE_SIGNATURES` signatures: refused before any verify call)
 *
 * Limits: 64 distinct envelopes, 64 signatures per envelope.
 */
export function verifyReleaseSignatures(bundle: SignedRelease, root: TrustRoot): SignatureCheck {
  const threshold = root.signed.roles.release.threshold;
  const trusted = roleKeys(root, 'release');
  const releaseHex = digestHex(bundle.releaseDesc.digest);
  const expected = trusted.map((k) => k.keyid).sort();
  const wanted = `the trust root asks for ${threshold} of the release key${expected.length === 1 ? '' : 's'} ${expected.join(', ')}`;
  if (bundle.signatures.length === 0) {
    throw new SeabagError('E_UNSIGNED', `the bundle carries no signature; ${wanted}`, { hint: 'build it with --sign KEY', details: { threshold, expected, found: [] } });
  }
  // Every keyid the envelopes name (a hint only: a signature is judged by the keys that verify it).
  const found = new Set<string>();
  const valid = new Set<string>();
  let movedFrom: string | undefined;
  // Every failed signature named (as its hint) a key the root does not trust.
  let untrustedOnly = true;
  // Several artifacts may carry the same envelope: each distinct envelope is parsed and checked once.
  const checked = new Map<string, { envelope: ReturnType<typeof parseEnvelope>; check?: ReturnType<typeof checkEnvelope> }>();
  for (const artifact of bundle.signatures) {
    const id = createHash('sha256').update(artifact.envelope).digest('hex');
    let seen = checked.get(id);
    if (seen === undefined) {
      if (checked.size >= MAX_SIGNATURE_ENVELOPES) {
        throw new SeabagError('E_LAYOUT_INVALID', `the bundle carries more than ${MAX_SIGNATURE_ENVELOPES} distinct signature envelopes`, { details: { limit: MAX_SIGNATURE_ENVELOPES } });
      }
      const envelope = parseEnvelope(artifact.envelope);
      seen = envelope.payloadType === IN_TOTO_PAYLOAD_TYPE ? { envelope, check: checkEnvelope(envelope, trusted) } : { envelope };
      checked.set(id, seen);
    }
    for (const sg of seen.envelope.signatures) if (sg.keyid !== undefined && sg.keyid !== '') found.add(sg.keyid);
    const check = seen.check;
    if (check === undefined) {
      untrustedOnly = false;
      continue;
    }
    if (check.invalid.some((i) => i.hintTrusted || i.keyid === undefined)) untrustedOnly = false;
    if (check.valid.length === 0) continue;
    untrustedOnly = false;
    const statement = parseStatement(check.body);
    if (statement === undefined) continue;
    const names = statement.subject.map((s) => s.digest?.['sha256']).filter((d): d is string => typeof d === 'string');
    if (!names.includes(releaseHex) || artifact.manifest.subject?.digest !== bundle.releaseDesc.digest) {
      movedFrom = names[0] ?? 'an unknown release';
      continue;
    }
    for (const k of check.valid) valid.add(k);
  }
  const list = [...valid].sort();
  if (list.length === 0) {
    if (movedFrom !== undefined) {
      throw new SeabagError('E_SUBJECT_MISMATCH', `the signature is valid but for another release (sha256:${movedFrom}), not this one (${bundle.releaseDesc.digest})`, {
        details: { expected: bundle.releaseDesc.digest, found: `sha256:${movedFrom}` },
      });
    }
    const signedBy = found.size === 0 ? 'keys it does not name' : `key${found.size === 1 ? '' : 's'} ${[...found].sort().join(', ')}`;
    if (untrustedOnly) {
      throw new SeabagError('E_KEY_UNTRUSTED', `the bundle is signed by ${signedBy}, which the trust root does not list for releases; ${wanted}`, {
        details: { trusted: expected, expected, found: [...found].sort(), threshold },
        hint: 'sign with a release key of this trust root, or rotate the root to trust the new key (bundle trust rotate)',
      });
    }
    throw new SeabagError('E_SIGNATURE_INVALID', `no signature in the bundle verifies: the signed content does not match (payload changed, or signature damaged); it names ${signedBy}, and ${wanted}`, {
      details: { threshold, expected, found: [...found].sort() },
    });
  }
  if (list.length < threshold) {
    throw new SeabagError('E_THRESHOLD_UNMET', `${list.length} distinct trusted key(s) signed the release (${list.join(', ')}); ${wanted}`, {
      details: { valid: list, threshold, expected, found: [...found].sort(), missing: expected.filter((k) => !valid.has(k)) },
      hint: `have ${threshold - list.length} more of the release keys sign it (bundle build --sign KEY, once per key)`,
    });
  }
  return { valid: list, threshold };
}

/**
 * The root to judge a bundle by: `trusted`, extended by the roots the bundle carries.
 *
 * @throws E_ROOT_CHAIN_INVALID
 */
export function effectiveRoot(trusted: TrustRoot, carried: readonly Buffer[], known?: ReadonlyMap<number, string>): { root: TrustRoot; accepted: TrustRoot[] } {
  const candidates = carried.map((bytes, i) => parseRoot(bytes, `trust root ${i + 1} in the bundle`, 'E_ROOT_CHAIN_INVALID'));
  const accepted = extendChain(trusted, candidates, known);
  return { root: accepted.at(-1) ?? trusted, accepted };
}
