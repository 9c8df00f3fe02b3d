// crypto/sigv4: the primitives of AWS Signature Version 4 that both ends share — the S3 API's verifier
// (api/s3/signature) and the signed requests a gateway sends its backend (backend/object-requests).
import { createHash, createHmac } from 'node:crypto';

// ---- Protocol constants (fixed by SigV4; do not change).
export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
export const SCOPE_TERMINATOR = 'aws4_request';
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const SIGNING_KEY_CACHE_MAX = 1024;

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function hmacSha256(key: Uint8Array, data: string | Uint8Array): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

// Signing keys depend only on (secret, day, region, service): caching them saves four HMACs per request.
// The cache is keyed by a hash of the secret so secrets themselves are not held as map keys.
const signingKeyCache = new Map<string, Buffer>();

/** SigV4 signing key: HMAC chain over date, region, service and the terminator. Returns a private copy. */
export function deriveSigningKey(secret: string, date: string, region: string, service = 's3'): Buffer {
  const cacheKey = `${sha256Hex(secret)}/${date}/${region}/${service}`;
  let key = signingKeyCache.get(cacheKey);
  if (!key) {
    const kDate = hmacSha256(Buffer.from(`AWS4${secret}`, 'utf8'), date);
    const kRegion = hmacSha256(kDate, region);
    const kService = hmacSha256(kRegion, service);
    key = hmacSha256(kService, SCOPE_TERMINATOR);
    kDate.fill(0);
    kRegion.fill(0);
    kService.fill(0);
    if (signingKeyCache.size >= SIGNING_KEY_CACHE_MAX) {
      const oldest = signingKeyCache.keys().next().value;
      if (oldest !== undefined) {
        signingKeyCache.get(oldest)?.fill(0);
        signingKeyCache.delete(oldest);
      }
    }
    signingKeyCache.set(cacheKey, key);
  }
  return Buffer.from(key);
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** RFC 3986 percent-encoding as SigV4 wants it: unreserved characters kept, everything else %XX (uppercase). */
export function uriEncode(value: string, keepSlash = false): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const ch = String.fromCharCode(byte);
    if ((byte < 0x80 && UNRESERVED.test(ch)) || (keepSlash && ch === '/')) out += ch;
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

export function stringToSign(amzDate: string, scope: string, canonicalRequest: string): string {
  return [SIGV4_ALGORITHM, amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
}
