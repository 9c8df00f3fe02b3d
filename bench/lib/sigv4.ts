// bench/lib/sigv4: a minimal SigV4 header signer for benchmark requests (UNSIGNED-PAYLOAD, path-style, no
// query), so the client spends its time moving bytes rather than in an SDK's middleware stack.
import { createHash, createHmac } from 'node:crypto';

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

const UNSIGNED = 'UNSIGNED-PAYLOAD';

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

// RFC 3986 encoding of each path segment, as SigV4's canonical URI wants for S3.
export function encodePath(path: string): string {
  return path
    .split('/')
    .map((s) =>
      encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase()),
    )
    .join('/');
}

// Headers (including Authorization) for `method path` with an unsigned payload, plus `extra`; every x-amz-*
// header among them is signed, as coffre (and AWS) require.
export function signedHeaders(
  creds: Credentials,
  method: string,
  encodedPath: string,
  host: string,
  extra: Record<string, string> = {},
  now = new Date(),
): Record<string, string> {
  const amzDate = now.toISOString().replace(/[-:]|\.\d{3}/g, '');
  const day = amzDate.slice(0, 8);
  const lowered = Object.fromEntries(Object.entries(extra).map(([k, v]) => [k.toLowerCase(), v]));
  const signedExtra = Object.fromEntries(
    Object.entries(lowered)
      .filter(([k]) => k.startsWith('x-amz-'))
      .map(([k, v]) => [k, v.trim()]),
  );
  const headers: Record<string, string> = {
    host,
    'x-amz-content-sha256': UNSIGNED,
    'x-amz-date': amzDate,
    ...signedExtra,
  };
  const names = Object.keys(headers).sort();
  const canonical = [
    method,
    encodedPath,
    '',
    ...names.map((n) => `${n}:${headers[n]}`),
    '',
    names.join(';'),
    UNSIGNED,
  ].join('\n');
  const scope = `${day}/${creds.region}/s3/aws4_request`;
  const toSign = [
    'AWS4-HMAC-SHA256',
    amzDate,
    scope,
    createHash('sha256').update(canonical).digest('hex'),
  ].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${creds.secretAccessKey}`, day), creds.region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  return {
    ...lowered,
    ...headers,
    authorization: `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`,
  };
}
