// Test helper: signs requests with the AWS SDK's own SigV4 signer (@smithy/signature-v4) so the server-side
// verifier is checked against the reference client implementation, not against itself.

import { createHash, createHmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AuthRequest } from '../../../src/api/s3/signature.js';

export const ACCESS_KEY = 'AKIAIOSFODNN7EXAMPLE';
export const SECRET_KEY = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
export const REGION = 'us-east-1';

// The signer takes a hash constructor with the @aws-crypto interface: optional HMAC secret, async digest.
class NodeSha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    const key =
      secret === undefined
        ? undefined
        : typeof secret === 'string'
          ? Buffer.from(secret, 'utf8')
          : ArrayBuffer.isView(secret)
            ? Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength)
            : Buffer.from(secret);
    this.h = key ? createHmac('sha256', key) : createHash('sha256');
  }
  update(data: string | Uint8Array): void {
    this.h.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
  reset(): void {
    throw new Error('not supported');
  }
}

export function signer(opts: { region?: string; secret?: string; accessKey?: string } = {}): SignatureV4 {
  return new SignatureV4({
    service: 's3',
    region: opts.region ?? REGION,
    credentials: { accessKeyId: opts.accessKey ?? ACCESS_KEY, secretAccessKey: opts.secret ?? SECRET_KEY },
    sha256: NodeSha256,
    uriEscapePath: false,
    applyChecksum: true,
  });
}

/** Query encoding as the SDK serialises it (encodeURIComponent plus !'()*). */
export function sdkEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

export function toQueryString(query: Record<string, string> = {}): string {
  return Object.entries(query)
    .map(([k, v]) => `${sdkEncode(k)}=${sdkEncode(v)}`)
    .join('&');
}

export interface TestRequest {
  method?: string;
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
}

function toAuthRequest(
  method: string,
  path: string,
  query: Record<string, string>,
  headers: Record<string, string>,
): AuthRequest {
  const h: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) h[k.toLowerCase()] = v;
  return { method, path, query: toQueryString(query), headers: h };
}

/** Signs with the Authorization header; returns the request as the server would see it. */
export async function signHeader(
  req: TestRequest,
  opts: { date: Date; region?: string; secret?: string; accessKey?: string; payloadHash?: string },
): Promise<AuthRequest> {
  const headers: Record<string, string> = {
    host: 'localhost:3900',
    'x-amz-content-sha256': opts.payloadHash ?? 'UNSIGNED-PAYLOAD',
    ...req.headers,
  };
  const signed = await signer(opts).sign(
    {
      method: req.method ?? 'GET',
      protocol: 'http:',
      hostname: 'localhost',
      port: 3900,
      path: req.path,
      query: req.query ?? {},
      headers,
    },
    { signingDate: opts.date },
  );
  return toAuthRequest(
    signed.method,
    req.path,
    (signed.query ?? {}) as Record<string, string>,
    signed.headers,
  );
}

/** Presigns; returns the request as a client following the URL would send it. */
export async function presign(
  req: TestRequest,
  opts: { date: Date; expiresIn?: number; region?: string; secret?: string },
): Promise<AuthRequest> {
  const headers: Record<string, string> = {
    host: 'localhost:3900',
    'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
    ...req.headers,
  };
  const signed = await signer(opts).presign(
    {
      method: req.method ?? 'GET',
      protocol: 'http:',
      hostname: 'localhost',
      port: 3900,
      path: req.path,
      query: req.query ?? {},
      headers,
    },
    { signingDate: opts.date, expiresIn: opts.expiresIn ?? 3600 },
  );
  return toAuthRequest(
    signed.method,
    req.path,
    (signed.query ?? {}) as Record<string, string>,
    signed.headers,
  );
}
