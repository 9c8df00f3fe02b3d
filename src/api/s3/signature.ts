// AWS Signature Version 4 for S3: authenticates a request signed in its Authorization header or by a presigned
// URL, and hands back what the body decoders need (payload mode, signing key, seed signature) to keep verifying
// the payload as it streams. Pure: no HTTP objects, no I/O beyond the secret lookup.

import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import {
  EMPTY_SHA256,
  SCOPE_TERMINATOR,
  SIGV4_ALGORITHM,
  UNSIGNED_PAYLOAD,
  deriveSigningKey,
  hmacSha256,
  sha256Hex,
  stringToSign,
  uriEncode,
} from '../../crypto/sigv4.js';

export {
  EMPTY_SHA256,
  SCOPE_TERMINATOR,
  SIGV4_ALGORITHM,
  UNSIGNED_PAYLOAD,
  deriveSigningKey,
  hmacSha256,
  sha256Hex,
  stringToSign,
  uriEncode,
};

// ---- Protocol constants (fixed by SigV4; do not change).
export const STREAMING_SIGNED = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD';
export const STREAMING_SIGNED_TRAILER = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER';
export const STREAMING_UNSIGNED_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER';
/** Longest validity of a presigned URL S3 accepts: seven days. */
export const MAX_PRESIGNED_EXPIRES_S = 7 * 24 * 3600;
const DEFAULT_MAX_SKEW_MS = 15 * 60 * 1000;

export type PayloadMode =
  'signed' | 'unsigned' | 'streaming-signed' | 'streaming-unsigned-trailer' | 'streaming-signed-trailer';

export interface AuthRequest {
  method: string;
  /** Path exactly as received on the request line, before any decoding, without the query. */
  path: string;
  /** Raw query string without the leading '?' ('' when none). */
  query: string;
  headers: IncomingHttpHeaders;
}

export interface AuthOptions {
  /** The region this server answers for; a credential scoped to another region is refused. */
  region: string;
  service?: 's3';
  /** Secret access key of an access key id, or undefined when the key does not exist. */
  lookupSecret(accessKeyId: string): Promise<string | undefined>;
  now?: Date;
  maxSkewMs?: number;
}

export interface AuthContext {
  accessKeyId: string;
  payloadMode: PayloadMode;
  /** Lowercase hex SHA-256 the body must have (payloadMode 'signed'). */
  expectedSha256?: string;
  /** The request signature: chunk signatures of a streaming body chain from it. */
  seedSignature: string;
  /** SigV4 signing key for (date, region, service); a private copy the caller may zero after use. */
  signingKey: Buffer;
  /** Credential scope `yyyymmdd/region/s3/aws4_request`. */
  scope: string;
  /** Request timestamp in ISO 8601 basic form (`20130524T000000Z`), used in chunk strings to sign. */
  amzDate: string;
  presigned: boolean;
}

/** The parts of a parsed credential (`AKID/20130524/us-east-1/s3/aws4_request`). */
export interface Credential {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  scope: string;
}

/** Constant-time comparison of two hex signatures (false for any malformed or different-length input). */
export function signaturesEqual(expectedHex: string, givenHex: string): boolean {
  if (expectedHex.length !== givenHex.length || !/^[0-9a-f]*$/.test(givenHex)) return false;
  const a = Buffer.from(expectedHex, 'hex');
  const b = Buffer.from(givenHex, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---- Canonical request pieces.

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

// S3 signs the path encoded once. Clients disagree on which reserved characters they escape on the wire, so the
// path as sent and its RFC 3986 re-encoding are both acceptable canonical forms.
function canonicalPathCandidates(rawPath: string): string[] {
  const path = rawPath === '' ? '/' : rawPath;
  const decoded = safeDecode(path);
  const normalized = decoded === undefined ? path : uriEncode(decoded, true);
  return normalized === path ? [path] : [path, normalized];
}

/** Splits a raw query string into decoded [name, value] pairs ('+' read as a space by default, as form encoding does). */
export function parseQuery(rawQuery: string, plusIsSpace = true): [string, string][] {
  const out: [string, string][] = [];
  if (rawQuery === '') return out;
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const rawName = eq < 0 ? part : part.slice(0, eq);
    const rawValue = eq < 0 ? '' : part.slice(eq + 1);
    const name = safeDecode(plusIsSpace ? rawName.replace(/\+/g, ' ') : rawName);
    const value = safeDecode(plusIsSpace ? rawValue.replace(/\+/g, ' ') : rawValue);
    if (name === undefined || value === undefined) {
      throw S3Errors.invalidArgument('The query string is not correctly percent-encoded.');
    }
    out.push([name, value]);
  }
  return out;
}

function canonicalQuery(pairs: [string, string][], omit?: string): string {
  return pairs
    .filter(([name]) => name !== omit)
    .map(([name, value]) => [uriEncode(name), uriEncode(value)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

// A '+' left unescaped in a query string means a space to form encoders and a plus to others; whichever the
// client signed is accepted.
function canonicalQueryCandidates(rawQuery: string, omit?: string): string[] {
  const asSpace = canonicalQuery(parseQuery(rawQuery), omit);
  if (!rawQuery.includes('+')) return [asSpace];
  return [asSpace, canonicalQuery(parseQuery(rawQuery, false), omit)];
}

// Some clients (git-annex's S3 library) sign the Host header without the port they send in it; the port-less
// form is accepted too. The signature still covers every other signed header, the path, query and payload.
function hostCandidates(headers: IncomingHttpHeaders, signedHeaders: string[]): IncomingHttpHeaders[] {
  const host = headers.host;
  if (!host || !signedHeaders.includes('host') || !/:\d+$/.test(host)) return [headers];
  return [headers, { ...headers, host: host.replace(/:\d+$/, '') }];
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function canonicalHeaderValue(value: string): string {
  return value.trim().replace(/\s+/g, ' ');
}

function buildCanonicalRequest(
  method: string,
  path: string,
  query: string,
  headers: IncomingHttpHeaders,
  signedHeaders: string[],
  payloadHash: string,
): string {
  const lines = signedHeaders.map((h) => `${h}:${canonicalHeaderValue(headerValue(headers, h) ?? '')}\n`);
  return [method, path, query, lines.join(''), signedHeaders.join(';'), payloadHash].join('\n');
}

// ---- Parsing and checks.

function malformedHeader(message: string, extra: Record<string, string> = {}): S3Error {
  return new S3Error('AuthorizationHeaderMalformed', 400, message, extra);
}

function malformedQuery(message: string): S3Error {
  return new S3Error('AuthorizationQueryParametersError', 400, message);
}

const V2_REFUSAL =
  'The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.';

/**
 * Parses `AKID/yyyymmdd/region/service/aws4_request` and checks it belongs to this server's region and service.
 * `fail` builds the error matching where the credential came from (header, query or POST form).
 */
export function parseCredential(
  value: string,
  opts: { region: string; service?: string },
  fail: (message: string, extra?: Record<string, string>) => S3Error,
): Credential {
  const parts = value.split('/');
  if (parts.length < 5) {
    throw fail(
      `The credential '${value}' is malformed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".`,
    );
  }
  const [date, region, service, terminator] = parts.slice(-4);
  const accessKeyId = parts.slice(0, -4).join('/');
  if (accessKeyId === '' || !/^\d{8}$/.test(date) || terminator !== SCOPE_TERMINATOR) {
    throw fail(
      `The credential '${value}' is malformed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".`,
    );
  }
  if (region !== opts.region) {
    throw fail(
      `The authorization header is malformed; the region '${region}' is wrong; expecting '${opts.region}'`,
      {
        Region: opts.region,
      },
    );
  }
  const wantService = opts.service ?? 's3';
  if (service !== wantService) {
    throw fail(
      `The authorization header is malformed; incorrect service '${service}'. This endpoint belongs to '${wantService}'.`,
    );
  }
  return { accessKeyId, date, region, service, scope: `${date}/${region}/${service}/${SCOPE_TERMINATOR}` };
}

/** Parses an ISO 8601 basic timestamp (`20130524T000000Z`); undefined when malformed. */
export function parseAmzDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number);
  const t = Date.UTC(y, mo - 1, d, h, mi, s);
  const date = new Date(t);
  return date.getUTCDate() === d && date.getUTCMonth() === mo - 1 ? date : undefined;
}

function formatAmzDate(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

function payloadModeOf(value: string): { mode: PayloadMode; expectedSha256?: string } {
  switch (value) {
    case UNSIGNED_PAYLOAD:
      return { mode: 'unsigned' };
    case STREAMING_SIGNED:
      return { mode: 'streaming-signed' };
    case STREAMING_SIGNED_TRAILER:
      return { mode: 'streaming-signed-trailer' };
    case STREAMING_UNSIGNED_TRAILER:
      return { mode: 'streaming-unsigned-trailer' };
  }
  if (/^[0-9a-fA-F]{64}$/.test(value)) return { mode: 'signed', expectedSha256: value.toLowerCase() };
  if (value.startsWith('STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD')) {
    throw S3Errors.notImplemented('SigV4a (ECDSA) streaming signatures');
  }
  throw S3Errors.invalidArgument(
    'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.',
    { ArgumentName: 'x-amz-content-sha256', ArgumentValue: value },
  );
}

interface SignedParts {
  credential: Credential;
  signedHeaders: string[];
  signature: string;
  amzDate: string;
  payloadHash: string;
  canonicalQueries: string[];
  presigned: boolean;
}

function parseSignedHeaders(value: string, fail: (m: string) => S3Error): string[] {
  const list = value.split(';').map((h) => h.trim().toLowerCase());
  if (list.some((h) => h === '' || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(h))) {
    throw fail(`The SignedHeaders '${value}' are malformed.`);
  }
  if (!list.includes('host')) throw fail("The 'host' header must be signed.");
  return list;
}

function parseAuthorizationHeader(req: AuthRequest, auth: string, opts: AuthOptions, now: Date): SignedParts {
  const space = auth.indexOf(' ');
  const algorithm = space < 0 ? auth : auth.slice(0, space);
  if (algorithm === 'AWS') throw S3Errors.invalidRequest(V2_REFUSAL);
  if (algorithm !== SIGV4_ALGORITHM) {
    throw malformedHeader(`The authorization header is malformed; unsupported algorithm '${algorithm}'.`);
  }
  const fields = new Map<string, string>();
  for (const item of auth.slice(space + 1).split(',')) {
    const eq = item.indexOf('=');
    if (eq < 0) throw malformedHeader('The authorization header is malformed.');
    const name = item.slice(0, eq).trim();
    if (fields.has(name))
      throw malformedHeader(`The authorization header is malformed; ${name} appears twice.`);
    fields.set(name, item.slice(eq + 1).trim());
  }
  const credentialValue = fields.get('Credential');
  const signedHeadersValue = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (credentialValue === undefined || signedHeadersValue === undefined || signature === undefined) {
    throw malformedHeader(
      'The authorization header is malformed; it must contain Credential, SignedHeaders and Signature.',
    );
  }
  const credential = parseCredential(credentialValue, opts, malformedHeader);
  const signedHeaders = parseSignedHeaders(signedHeadersValue, malformedHeader);
  if (!/^[0-9a-f]{64}$/.test(signature))
    throw malformedHeader('The authorization header is malformed; bad Signature.');

  const amzDateHeader = headerValue(req.headers, 'x-amz-date');
  let date: Date | undefined;
  let amzDate: string;
  if (amzDateHeader !== undefined) {
    amzDate = amzDateHeader.trim();
    date = parseAmzDate(amzDate);
  } else {
    const httpDate = headerValue(req.headers, 'date');
    const ms = httpDate === undefined ? NaN : Date.parse(httpDate);
    date = Number.isNaN(ms) ? undefined : new Date(ms);
    amzDate = date ? formatAmzDate(date) : '';
  }
  if (!date) {
    throw S3Errors.accessDenied('AWS authentication requires a valid Date or x-amz-date header');
  }
  if (amzDate.slice(0, 8) !== credential.date) {
    throw malformedHeader(
      `The authorization header is malformed; Invalid credential date "${credential.date}". This date is not the same as X-Amz-Date: "${amzDate.slice(0, 8)}".`,
    );
  }
  const maxSkew = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  if (Math.abs(now.getTime() - date.getTime()) > maxSkew) {
    throw new S3Error(
      'RequestTimeTooSkewed',
      403,
      'The difference between the request time and the current time is too large.',
      {
        RequestTime: amzDate,
        ServerTime: now.toISOString(),
        MaxAllowedSkewMilliseconds: String(maxSkew),
      },
    );
  }
  const payloadHash = headerValue(req.headers, 'x-amz-content-sha256');
  if (payloadHash === undefined) {
    throw S3Errors.invalidRequest('Missing required header for this request: x-amz-content-sha256');
  }
  return {
    credential,
    signedHeaders,
    signature,
    amzDate,
    payloadHash: payloadHash.trim(),
    canonicalQueries: canonicalQueryCandidates(req.query),
    presigned: false,
  };
}

function parsePresignedQuery(
  rawQuery: string,
  pairs: [string, string][],
  opts: AuthOptions,
  now: Date,
): SignedParts {
  const params = new Map<string, string>();
  for (const [name, value] of pairs) {
    if (name.startsWith('X-Amz-') && params.has(name))
      throw malformedQuery(`Query parameter ${name} appears twice.`);
    params.set(name, value);
  }
  if (params.get('X-Amz-Algorithm') !== SIGV4_ALGORITHM) {
    throw malformedQuery('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"');
  }
  if (params.has('X-Amz-Security-Token')) {
    throw new S3Error('InvalidToken', 400, 'The provided token is malformed or otherwise invalid.');
  }
  const credentialValue = params.get('X-Amz-Credential');
  const amzDate = params.get('X-Amz-Date');
  const expiresValue = params.get('X-Amz-Expires');
  const signedHeadersValue = params.get('X-Amz-SignedHeaders');
  const signature = params.get('X-Amz-Signature');
  if (
    credentialValue === undefined ||
    amzDate === undefined ||
    expiresValue === undefined ||
    signedHeadersValue === undefined ||
    signature === undefined
  ) {
    throw malformedQuery(
      'Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.',
    );
  }
  const credential = parseCredential(credentialValue, opts, (m) => malformedQuery(m));
  const signedHeaders = parseSignedHeaders(signedHeadersValue, malformedQuery);
  if (!/^[0-9a-f]{64}$/.test(signature)) throw malformedQuery('X-Amz-Signature is malformed.');
  const date = parseAmzDate(amzDate);
  if (!date) throw malformedQuery(`X-Amz-Date must be in the ISO8601 Long Format "yyyyMMdd'T'HHmmss'Z'"`);
  if (amzDate.slice(0, 8) !== credential.date) {
    throw malformedQuery(
      `Invalid credential date "${credential.date}". This date is not the same as X-Amz-Date: "${amzDate.slice(0, 8)}".`,
    );
  }
  if (!/^\d{1,7}$/.test(expiresValue)) throw malformedQuery('X-Amz-Expires should be a number');
  const expires = Number(expiresValue);
  if (expires < 1) throw malformedQuery('X-Amz-Expires must be non-negative');
  if (expires > MAX_PRESIGNED_EXPIRES_S) {
    throw malformedQuery('X-Amz-Expires must be less than a week (in seconds) that is 604800');
  }
  const maxSkew = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  if (date.getTime() - now.getTime() > maxSkew) throw S3Errors.accessDenied('Request is not valid yet');
  if (now.getTime() > date.getTime() + expires * 1000) {
    throw new S3Error('AccessDenied', 403, 'Request has expired', {
      'X-Amz-Expires': expiresValue,
      Expires: new Date(date.getTime() + expires * 1000).toISOString(),
      ServerTime: now.toISOString(),
    });
  }
  return {
    credential,
    signedHeaders,
    signature,
    amzDate,
    payloadHash: params.get('X-Amz-Content-Sha256') ?? UNSIGNED_PAYLOAD,
    canonicalQueries: canonicalQueryCandidates(rawQuery, 'X-Amz-Signature'),
    presigned: true,
  };
}

/** True when the request carries any credentials at all (header or query); false means anonymous. */
export function hasCredentials(req: AuthRequest): boolean {
  if (headerValue(req.headers, 'authorization') !== undefined) return true;
  return /(?:^|&)(?:X-Amz-Algorithm|X-Amz-Signature|X-Amz-Credential|AWSAccessKeyId|Signature)=/.test(
    req.query,
  );
}

// A customer key and its MD5 may be sent unsigned, as S3 allows (a presigned SSE-C URL signs the algorithm
// only, and its user adds the key at request time): they choose nothing — the signed algorithm header says
// SSE-C is used, the MD5 must match the key, and a wrong key only fails to open the object.
const UNSIGNED_ALLOWED: ReadonlySet<string> = new Set([
  'x-amz-server-side-encryption-customer-key',
  'x-amz-server-side-encryption-customer-key-md5',
  'x-amz-copy-source-server-side-encryption-customer-key',
  'x-amz-copy-source-server-side-encryption-customer-key-md5',
]);

/**
 * Every x-amz-* header a request carries must be covered by its signature, as S3 requires (header-signed and
 * presigned alike): such headers choose and shape the operation (x-amz-copy-source turns a PUT into a copy,
 * x-amz-server-side-encryption changes how it is stored), so one added to a captured presigned URL would
 * otherwise change what the signer authorized.
 */
function refuseUnsignedAmzHeaders(headers: IncomingHttpHeaders, signedHeaders: readonly string[]): void {
  const signed = new Set(signedHeaders);
  const unsigned = Object.keys(headers)
    .map((h) => h.toLowerCase())
    .filter((h) => h.startsWith('x-amz-') && !signed.has(h) && !UNSIGNED_ALLOWED.has(h))
    .sort();
  if (unsigned.length > 0) {
    throw new S3Error(
      'AccessDenied',
      403,
      'There were headers present in the request which were not signed',
      {
        HeadersNotSigned: unsigned.join(', '),
      },
    );
  }
}

/**
 * Authenticates a SigV4-signed S3 request (Authorization header or presigned URL). Resolves with the caller's
 * identity and how its body must be read; rejects with the S3Error S3 would answer.
 */
export async function authenticateRequest(req: AuthRequest, opts: AuthOptions): Promise<AuthContext> {
  const now = opts.now ?? new Date();
  const authorization = headerValue(req.headers, 'authorization');
  const pairs = parseQuery(req.query);
  const queryNames = new Set(pairs.map(([n]) => n));
  const presignedV4 =
    queryNames.has('X-Amz-Algorithm') ||
    queryNames.has('X-Amz-Signature') ||
    queryNames.has('X-Amz-Credential');
  const presignedV2 = queryNames.has('AWSAccessKeyId') && queryNames.has('Signature');

  if (authorization !== undefined && (presignedV4 || presignedV2)) {
    throw S3Errors.invalidArgument(
      'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified',
      { ArgumentName: 'Authorization' },
    );
  }
  if (authorization === undefined && !presignedV4) {
    if (presignedV2) throw S3Errors.invalidRequest(V2_REFUSAL);
    throw S3Errors.accessDenied();
  }
  if (headerValue(req.headers, 'x-amz-security-token') !== undefined) {
    throw new S3Error('InvalidToken', 400, 'The provided token is malformed or otherwise invalid.');
  }

  const parts =
    authorization !== undefined
      ? parseAuthorizationHeader(req, authorization.trim(), opts, now)
      : parsePresignedQuery(req.query, pairs, opts, now);
  refuseUnsignedAmzHeaders(req.headers, parts.signedHeaders);
  const { mode, expectedSha256 } = payloadModeOf(parts.payloadHash);
  if (parts.presigned && mode !== 'signed' && mode !== 'unsigned') {
    throw malformedQuery('Presigned requests cannot use a streaming payload.');
  }

  const secret = await opts.lookupSecret(parts.credential.accessKeyId);
  if (secret === undefined) {
    throw new S3Error(
      'InvalidAccessKeyId',
      403,
      'The AWS Access Key Id you provided does not exist in our records.',
      {
        AWSAccessKeyId: parts.credential.accessKeyId,
      },
    );
  }
  const { credential } = parts;
  const signingKey = deriveSigningKey(secret, credential.date, credential.region, credential.service);
  let matched = false;
  search: for (const headers of hostCandidates(req.headers, parts.signedHeaders)) {
    for (const path of canonicalPathCandidates(req.path)) {
      for (const query of parts.canonicalQueries) {
        const canonical = buildCanonicalRequest(
          req.method.toUpperCase(),
          path,
          query,
          headers,
          parts.signedHeaders,
          parts.payloadHash,
        );
        const expected = hmacSha256(
          signingKey,
          stringToSign(parts.amzDate, credential.scope, canonical),
        ).toString('hex');
        if (signaturesEqual(expected, parts.signature)) {
          matched = true;
          break search;
        }
      }
    }
  }
  if (!matched) {
    signingKey.fill(0);
    throw new S3Error(
      'SignatureDoesNotMatch',
      403,
      'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
      { AWSAccessKeyId: credential.accessKeyId },
    );
  }
  const ctx: AuthContext = {
    accessKeyId: credential.accessKeyId,
    payloadMode: mode,
    seedSignature: parts.signature,
    signingKey,
    scope: credential.scope,
    amzDate: parts.amzDate,
    presigned: parts.presigned,
  };
  if (expectedSha256 !== undefined) ctx.expectedSha256 = expectedSha256;
  return ctx;
}
