// The encryption decision for one request, made once from its headers and carried as one value
// (EncryptionParams) so that every code path asks it instead of re-reading headers. Parsing follows S3's SSE-C
// rules and refuses exactly as AWS and MinIO do (table in docs/formats-sse.md); nothing here knows about HTTP
// beyond a plain record of header values.
//
// The customer key lives only in the EncryptionParams of the request that carried it: callers must `dispose`
// the params when the request ends, which zeroes the key.

import { createHash } from 'node:crypto';
import { S3Errors } from '../util/s3-error.js';
import { constantTimeEqual } from '../crypto/keys.js';

/** Header prefix of SSE-C parameters for the object a request writes or reads. */
export const SSE_C_PREFIX = 'x-amz-server-side-encryption-customer-';
/** Header prefix of SSE-C parameters for the source object of CopyObject / UploadPartCopy. */
export const COPY_SOURCE_SSE_C_PREFIX = 'x-amz-copy-source-server-side-encryption-customer-';
export type SseCHeaderPrefix = typeof SSE_C_PREFIX | typeof COPY_SOURCE_SSE_C_PREFIX;

/** The only algorithm S3 defines for SSE-C. */
export const SSE_C_ALGORITHM = 'AES256';
/** Bytes in an SSE-C customer key. */
export const SSE_C_KEY_SIZE = 32;

/** How a request's object is (to be) encrypted. */
export type EncryptionParams =
  | { kind: 'plaintext' }
  /** key: the customer's raw 32-byte key (zeroed by dispose); keyMd5: base64 MD5 of it, echoed in responses. */
  | { kind: 'sse-c'; key: Buffer; keyMd5: string }
  /**
   * SSE-S3: keyId names the master key in the node's keyring. With `wrappedKey` (every object written since
   * keys are wrapped), rootKey is the object's own random key, which `wrappedKey` holds sealed under that
   * master key (sse/keyring.ts): the params own it and dispose zeroes it; re-wrapping it under another master
   * key changes only the stored record. Without, rootKey is the master key itself, owned by the keyring.
   */
  | { kind: 'sse-s3'; keyId: string; rootKey: Buffer; wrappedKey?: string };

/** Header values as node:http gives them (lower-case names) or as PostObject form fields give them. */
export type HeaderValues = Record<string, string | string[] | undefined>;

const PLAINTEXT: EncryptionParams = Object.freeze({ kind: 'plaintext' });

// Standard base64 only, with padding: S3 clients send exactly this, and a lenient decoder would accept keys
// that differ from what the client believes it sent.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const MESSAGES = {
  algorithm:
    'Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.',
  keyMissing:
    'Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.',
  keyInvalid: 'The secret key was invalid for the specified algorithm.',
  md5Missing:
    'Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.',
  md5Mismatch: 'The calculated MD5 hash of the key did not match the hash that was provided.',
  insecure:
    'Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.',
} as const;

function lookup(headers: HeaderValues, name: string): string | string[] | undefined {
  const direct = headers[name];
  if (direct !== undefined) return direct;
  // Form fields (PostObject) keep the client's capitalisation, e.g. ...-customer-key-MD5.
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === name) return v;
  return undefined;
}

function single(headers: HeaderValues, name: string, message: string): string | undefined {
  const v = lookup(headers, name);
  if (Array.isArray(v)) {
    // Never echo a value: one of them may be the key.
    if (v.length > 1) throw S3Errors.invalidArgument(message, { ArgumentName: name });
    return v[0];
  }
  return v;
}

/**
 * Reads the three SSE-C headers under `prefix`. None present → `{ kind: 'plaintext' }`; all present and
 * valid → `{ kind: 'sse-c', … }`; anything else → S3Error InvalidArgument (400), checked in the order
 * algorithm, key, key MD5. Error details name the header, and never contain the key.
 */
export function parseSseCHeaders(
  headers: HeaderValues,
  prefix: SseCHeaderPrefix = SSE_C_PREFIX,
): EncryptionParams {
  const algName = `${prefix}algorithm`;
  const keyName = `${prefix}key`;
  const md5Name = `${prefix}key-md5`;
  const alg = single(headers, algName, MESSAGES.algorithm);
  const keyB64 = single(headers, keyName, MESSAGES.keyInvalid);
  const md5B64 = single(headers, md5Name, MESSAGES.md5Mismatch);
  if (alg === undefined && keyB64 === undefined && md5B64 === undefined) return PLAINTEXT;

  if (alg === undefined || alg === '')
    throw S3Errors.invalidArgument(MESSAGES.algorithm, { ArgumentName: algName });
  if (alg !== SSE_C_ALGORITHM) {
    throw S3Errors.invalidArgument(MESSAGES.algorithm, {
      ArgumentName: algName,
      ArgumentValue: alg.slice(0, 64),
    });
  }
  if (keyB64 === undefined || keyB64 === '') {
    throw S3Errors.invalidArgument(MESSAGES.keyMissing, { ArgumentName: keyName });
  }
  if (!BASE64.test(keyB64) || (keyB64.length * 3) / 4 - padding(keyB64) !== SSE_C_KEY_SIZE) {
    throw S3Errors.invalidArgument(MESSAGES.keyInvalid, { ArgumentName: keyName });
  }
  const key = Buffer.from(keyB64, 'base64');
  try {
    if (md5B64 === undefined || md5B64 === '') {
      throw S3Errors.invalidArgument(MESSAGES.md5Missing, { ArgumentName: md5Name });
    }
    const actual = createHash('md5').update(key).digest();
    const claimed = BASE64.test(md5B64) ? Buffer.from(md5B64, 'base64') : Buffer.alloc(0);
    if (!constantTimeEqual(actual, claimed)) {
      throw S3Errors.invalidArgument(MESSAGES.md5Mismatch, { ArgumentName: md5Name });
    }
    return { kind: 'sse-c', key, keyMd5: actual.toString('base64') };
  } catch (err) {
    key.fill(0);
    throw err;
  }
}

function padding(b64: string): number {
  return b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0;
}

/** Header by which a request asks for SSE-S3 (`AES256`) or SSE-KMS (`aws:kms`, `aws:kms:dsse`). */
export const SSE_HEADER = 'x-amz-server-side-encryption';

/**
 * What `x-amz-server-side-encryption` asks for on a write: `'none'` when absent, `'AES256'` for SSE-S3.
 * KMS is 501 NotImplemented; any other value, or the header together with SSE-C headers (`sseC`), is
 * 400 InvalidArgument. The caller turns `'AES256'` into params with the node's keyring.
 */
export function requestedServerSideEncryption(
  headers: HeaderValues,
  sseC: EncryptionParams,
): 'none' | 'AES256' {
  const value = lookup(headers, SSE_HEADER);
  if (value === undefined) return 'none';
  const v = Array.isArray(value) ? value : [value];
  if (v.length !== 1 || v[0] === undefined || v[0] === '') {
    throw S3Errors.invalidArgument('The encryption method specified is not supported', {
      ArgumentName: SSE_HEADER,
    });
  }
  if (sseC.kind === 'sse-c') {
    throw S3Errors.invalidArgument(
      'Server Side Encryption with Customer provided key is incompatible with the encryption method specified',
      { ArgumentName: SSE_HEADER, ArgumentValue: v[0].slice(0, 64) },
    );
  }
  if (v[0] === 'AES256') return 'AES256';
  if (v[0] === 'aws:kms' || v[0] === 'aws:kms:dsse') throw S3Errors.notImplemented('SSE-KMS');
  throw S3Errors.invalidArgument('The encryption method specified is not supported', {
    ArgumentName: SSE_HEADER,
    ArgumentValue: v[0].slice(0, 64),
  });
}

/** Response headers that state how the object is encrypted: algorithm and key MD5 for SSE-C, never the key. */
export function responseHeaders(params: EncryptionParams): Record<string, string> {
  switch (params.kind) {
    case 'plaintext':
      return {};
    case 'sse-c':
      return {
        'x-amz-server-side-encryption-customer-algorithm': SSE_C_ALGORITHM,
        'x-amz-server-side-encryption-customer-key-MD5': params.keyMd5,
      };
    case 'sse-s3':
      return { 'x-amz-server-side-encryption': 'AES256' };
  }
}

/** Facts about the connection a request came over, for the SSE-C transport rule. */
export interface TransportFacts {
  /** The request arrived over TLS. */
  encrypted: boolean;
  /** The peer address is a loopback address (127.0.0.0/8, ::1): the key never crossed a network. */
  loopback: boolean;
  /** The operator declared a trusted TLS-terminating proxy in front of this node. */
  allowInsecure: boolean;
}

/**
 * Refuses SSE-C over plain HTTP (400 InvalidRequest, as AWS and MinIO do): the key would cross the network in
 * clear. Loopback and an explicit operator override are allowed.
 */
export function requireSecureTransport(params: EncryptionParams, transport: TransportFacts): void {
  if (params.kind !== 'sse-c') return;
  if (transport.encrypted || transport.loopback || transport.allowInsecure) return;
  throw S3Errors.invalidRequest(MESSAGES.insecure);
}

/** Zeroes the customer key, or an SSE-S3 object's own key, carried by `params`. Call when the request ends. */
export function dispose(...all: (EncryptionParams | undefined)[]): void {
  for (const params of all) {
    if (params?.kind === 'sse-c') params.key.fill(0);
    else if (params?.kind === 'sse-s3' && params.wrappedKey !== undefined) params.rootKey.fill(0);
  }
}
