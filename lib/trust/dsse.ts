/**
 * DSSE v1.0.0 (secure-systems-lab/dsse `protocol.md`, `envelope.md`): signatures over the
 * pre-authentication encoding of payload type and body, verified against a threshold of distinct
 * trusted keys; the keyid in an envelope is only a hint for which key to try first.
 */
import { SeabagError } from '../errors.js';
import { signMessage, verifyMessage, type PublicKey, type SigningKey } from './keys.js';

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

export interface EnvelopeSignature {
  keyid?: string;
  sig: string;
}

export interface Envelope {
  payload: string;
  payloadType: string;
  signatures: EnvelopeSignature[];
}

/** PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in bytes. */
export function pae(payloadType: string, body: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body]);
}

/** Signs `body` with every key; the envelope carries one signature per key. */
export function signEnvelope(body: Uint8Array, payloadType: string, keys: readonly SigningKey[]): Envelope {
  const message = pae(payloadType, body);
  return {
    payload: Buffer.from(body).toString('base64'),
    payloadType,
    signatures: keys.map((k) => ({ keyid: k.keyid, sig: signMessage(k, message).toString('base64') })),
  };
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Decodes standard or URL-safe base64 (DSSE verifiers must accept both), strictly. */
export function decodeBase64(text: string, what: string): Buffer {
  if (!BASE64.test(text)) throw new SeabagError('E_SIGNATURE_INVALID', `${what} is not base64`);
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

/**
 * Most signatures one envelope may carry. Each is tried against every trusted key, so this bounds
 * the verify calls an envelope costs (64 × the role's keys) before any is made.
 */
export const MAX_ENVELOPE_SIGNATURES = 64;

/**
 * Parses an envelope's JSON.
 *
 * Limits: at most `MAX_ENVELOPE_SIGNATURES` (64) signatures, refused before any is verified.
 *
 * @throws E_LAYOUT_INVALID over the limit (details.limit); E_SIGNATURE_INVALID when it is not a DSSE envelope
 */
export function parseEnvelope(bytes: Uint8Array): Envelope {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new SeabagError('E_SIGNATURE_INVALID', 'the signature envelope is not JSON');
  }
  const e = doc as Partial<Envelope>;
  if (typeof e === 'object' && e !== null && Array.isArray(e.signatures) && e.signatures.length > MAX_ENVELOPE_SIGNATURES) {
    throw new SeabagError('E_LAYOUT_INVALID', `the signature envelope carries ${e.signatures.length} signatures; at most ${MAX_ENVELOPE_SIGNATURES} are checked`, {
      details: { limit: MAX_ENVELOPE_SIGNATURES, found: e.signatures.length },
    });
  }
  if (
    typeof e !== 'object' ||
    e === null ||
    typeof e.payload !== 'string' ||
    typeof e.payloadType !== 'string' ||
    !Array.isArray(e.signatures) ||
    !e.signatures.every((s) => typeof s === 'object' && s !== null && typeof s.sig === 'string' && (s.keyid === undefined || typeof s.keyid === 'string'))
  ) {
    throw new SeabagError('E_SIGNATURE_INVALID', 'the signature envelope is not a DSSE envelope (payload, payloadType, signatures[{keyid, sig}])');
  }
  return { payload: e.payload, payloadType: e.payloadType, signatures: e.signatures };
}

export interface EnvelopeCheck {
  /** Keyids of distinct trusted keys with a valid signature. */
  valid: string[];
  /** Signatures that verified under no trusted key, and whether their keyid hint named a trusted key. */
  invalid: { keyid?: string; hintTrusted: boolean }[];
  body: Buffer;
}

/**
 * Verifies every signature against every trusted key (the hint only orders the tries) and
 * counts distinct keys. Threshold and payload checks are the caller's.
 *
 * Limits: at most `MAX_ENVELOPE_SIGNATURES` signatures, checked before any verify call.
 *
 * @throws E_LAYOUT_INVALID over the limit
 */
export function checkEnvelope(envelope: Envelope, trusted: readonly PublicKey[]): EnvelopeCheck {
  if (envelope.signatures.length > MAX_ENVELOPE_SIGNATURES) {
    throw new SeabagError('E_LAYOUT_INVALID', `the signature envelope carries ${envelope.signatures.length} signatures; at most ${MAX_ENVELOPE_SIGNATURES} are checked`, {
      details: { limit: MAX_ENVELOPE_SIGNATURES, found: envelope.signatures.length },
    });
  }
  const body = decodeBase64(envelope.payload, 'the envelope payload');
  const message = pae(envelope.payloadType, body);
  const valid = new Set<string>();
  const invalid: EnvelopeCheck['invalid'] = [];
  for (const s of envelope.signatures) {
    let sig: Buffer;
    try {
      sig = decodeBase64(s.sig, 'a signature');
    } catch {
      invalid.push({ ...(s.keyid === undefined ? {} : { keyid: s.keyid }), hintTrusted: false });
      continue;
    }
    const ordered = [...trusted].sort((a, b) => Number(b.keyid === s.keyid) - Number(a.keyid === s.keyid));
    const signer = ordered.find((k) => verifyMessage(k, message, sig));
    if (signer !== undefined) valid.add(signer.keyid);
    else invalid.push({ ...(s.keyid === undefined ? {} : { keyid: s.keyid }), hintTrusted: trusted.some((k) => k.keyid === s.keyid) });
  }
  return { valid: [...valid].sort(), invalid, body };
}
