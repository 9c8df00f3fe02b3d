// Test helper: raw HTTP requests to a node's admin API (exact headers, bodies and cookies, as an attacker or
// the console's page sends them), and a console sign-in that returns the session cookie and CSRF token.
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import type { TestServer } from './server.js';

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json(): Record<string, unknown>;
}

export function call(
  server: TestServer,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: string | Buffer; ca?: Buffer } = {},
): Promise<Answer> {
  const url = new URL(path, server.adminEndpoint);
  const tls = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const req = (tls ? https : http).request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method,
        headers: {
          ...(opts.body !== undefined ? { 'content-length': String(Buffer.byteLength(opts.body)) } : {}),
          ...opts.headers,
        },
        ...(tls ? { ca: opts.ca, servername: 'localhost' } : {}),
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          const body = Buffer.concat(parts);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            json: () => JSON.parse(body.toString('utf8')) as Record<string, unknown>,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

export async function signIn(
  server: TestServer,
  ca?: Buffer,
): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const r = await call(server, 'POST', '/v1/session', {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: server.adminToken }),
    ca,
  });
  assert.equal(r.status, 200, r.body.toString());
  const setCookie = String(r.headers['set-cookie']?.[0]);
  return { cookie: setCookie.split(';')[0]!, csrf: r.json().csrfToken as string, setCookie };
}

/** The bearer-token admin API as the CLI uses it: its headers, and a PATCH of one bucket's settings. */
export function bearerApi(server: TestServer): {
  headers: Record<string, string>;
  patchBucket(bucket: string, body: unknown): Promise<Answer>;
} {
  const headers = { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' };
  return {
    headers,
    patchBucket: (bucket, body) =>
      call(server, 'PATCH', `/v1/buckets/${bucket}`, { headers, body: JSON.stringify(body) }),
  };
}
