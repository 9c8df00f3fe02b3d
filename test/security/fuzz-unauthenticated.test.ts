// Fuzz, seeded and bounded: thousands of malformed requests from someone who holds no key, against every
// surface a stranger can reach — the S3 port, the admin port and the RPC handshake. Each request must get a
// prompt answer that is not a server error (501 NotImplemented aside), the node must stay up, its memory
// bounded, and nothing may be written outside its directories. The seed is printed: replay a failure with
// COFFRE_FUZZ_SEED=<seed>.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ListBucketsCommand, PutObjectCommand, CreateBucketCommand } from '@aws-sdk/client-s3';
import { CANARY, HOSTILE_STRINGS, Rng, fuzzSeed, residentBytes } from '../helpers/fuzz.js';
import { startServer, type TestServer } from '../helpers/server.js';

const S3_REQUESTS = 2500;
const ADMIN_REQUESTS = 1500;
const HANDSHAKES = 600;
const IN_FLIGHT = 8;
// Well above what a loopback answer takes on a loaded machine; a request still unanswered by then hangs.
const ANSWER_WITHIN_MS = 20_000;
const MAX_RSS = 600 * 1024 * 1024;

const seed = fuzzSeed();
let server: TestServer;
let secrets: Buffer[];

before(async () => {
  server = await startServer();
  const s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: 'fuzzed' }));
  await s3.send(new PutObjectCommand({ Bucket: 'fuzzed', Key: 'kept', Body: Buffer.from('kept bytes') }));
  s3.destroy();
  secrets = [
    readFileSync(join(server.dir, 'meta', 'node_key')).subarray(0, 32),
    Buffer.from(server.adminToken),
    Buffer.from(server.secretAccessKey),
  ];
});

after(async () => {
  await server?.stop();
  server?.cleanup();
});

interface Answer {
  status?: number;
  raw: Buffer;
}

// Sends raw bytes on a fresh connection, half-closes, and collects whatever comes back until the node closes.
function exchange(port: number, request: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1', () => socket.end(request));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms`));
    }, ANSWER_WITHIN_MS);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => {}); // a reset is an answer too: the close below settles it
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks);
      // The final answer: past any interim 100 Continue.
      const text = raw.subarray(0, 4096).toString('latin1');
      const status = [...text.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3})/g)]
        .map((m) => m[1]!)
        .find((code) => !code.startsWith('1'));
      resolve({ status: status === undefined ? undefined : Number(status), raw });
    });
  });
}

// A request as a failure message shows it: long runs of one character shortened, so headers stay visible.
function shown(request: Buffer): string {
  return request
    .toString('latin1')
    .replace(/(.)\1{40,}/g, (run, c: string) => `${c}{${run.length}}`)
    .slice(0, 3000);
}

async function runAll(
  count: number,
  make: (i: number) => Buffer,
  port: number,
  allowed: (status: number, request: Buffer) => boolean = (status) => status < 500 || status === 501,
): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const request = make(i);
      const answer = await exchange(port, request).catch((err: Error) => {
        throw new Error(`${err.message} (seed ${seed}, request ${i}):\n${shown(request)}`);
      });
      const status = answer.status ?? 0;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      assert.ok(
        allowed(status, request),
        `answered ${status} (seed ${seed}, request ${i}):\n${shown(request)}\n---\n${answer.raw.toString('latin1').slice(0, 600)}`,
      );
      for (const s of secrets)
        assert.ok(!answer.raw.includes(s), `a secret was sent (seed ${seed}, request ${i})`);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return statuses;
}

const METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE', 'GeT', 'X'];
const SUBRESOURCES = [
  'acl',
  'uploads',
  'uploadId=x',
  'uploadId=',
  'partNumber=-1',
  'partNumber=99999999999',
  'partNumber=abc',
  'versionId=null',
  'list-type=2',
  'max-keys=-1',
  'max-keys=1e30',
  'max-uploads=abc',
  'continuation-token=%ff',
  'delete',
  'tagging',
  'cors',
  'encryption',
  'policy',
  'location',
  'versioning',
  'x-id=PutObject',
  'X-Amz-Algorithm=AWS4-HMAC-SHA256',
  'X-Amz-Credential=AKIAFUZZ%2F20260101%2Fus-east-1%2Fs3%2Faws4_request',
  'X-Amz-Credential=%2F%2F%2F%2F',
  'X-Amz-Date=20261301T256161Z',
  'X-Amz-Expires=-5',
  'X-Amz-Expires=99999999999999',
  'X-Amz-SignedHeaders=host',
  'X-Amz-Signature=' + '0'.repeat(64),
  'X-Amz-Signature=zz',
  'AWSAccessKeyId=x&Signature=y&Expires=1',
  'prefix=%00',
  'delimiter=%ff',
  '%ff=%ff',
  '=',
  '&&&',
];
const AUTHORIZATIONS = [
  'AWS4-HMAC-SHA256',
  'AWS4-HMAC-SHA256 ',
  'AWS4-HMAC-SHA256 Credential=AKIAFUZZ/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=' +
    '0'.repeat(64),
  'AWS4-HMAC-SHA256 Credential=/, SignedHeaders=, Signature=',
  'AWS4-HMAC-SHA256 Credential=a/b/c/d/e/f/g, SignedHeaders=host;;;x-amz-date, Signature=xyz',
  'AWS4-HMAC-SHA256 Credential=AKIAFUZZ/20260101/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=00,Signature=11',
  'AWS AKIAFUZZ:c2lnbmF0dXJl',
  'Bearer x',
  'Basic YTpi',
  '\u00ff\u00fe',
];

function s3Request(rng: Rng, port: number): Buffer {
  const method = rng.pick(METHODS);
  const segments = Array.from({ length: rng.int(0, 4) }, () =>
    rng.pick([
      'fuzzed',
      'kept',
      'missing',
      '..',
      '.',
      '%ff',
      '%',
      '%2e%2e',
      '%00',
      '',
      'a'.repeat(300),
      rng.text(20),
    ]),
  );
  let path = '/' + segments.join('/');
  if (rng.chance(0.6))
    path += '?' + Array.from({ length: rng.int(1, 3) }, () => rng.pick(SUBRESOURCES)).join('&');
  if (rng.chance(0.05)) path = rng.pick(['*', 'http://evil/', '//', '/%', '\u00ff', '/' + 'x'.repeat(9000)]);
  const headers: string[] = [];
  const host = rng.pick([
    `127.0.0.1:${port}`,
    `fuzzed.s3.localhost:${port}`,
    `..s3.localhost`,
    '',
    'a'.repeat(300),
  ]);
  if (rng.chance(0.9)) headers.push(`Host: ${host}`);
  if (rng.chance(0.6)) headers.push(`Authorization: ${rng.pick(AUTHORIZATIONS)}`);
  if (rng.chance(0.5))
    headers.push(
      `X-Amz-Date: ${rng.pick(['20261202T120000Z', '20261301T256161Z', 'yesterday', '', rng.text(20)])}`,
    );
  if (rng.chance(0.5))
    headers.push(
      `X-Amz-Content-Sha256: ${rng.pick([
        'UNSIGNED-PAYLOAD',
        'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
        'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
        '0'.repeat(64),
        'junk',
      ])}`,
    );
  if (rng.chance(0.2))
    headers.push(`X-Amz-Copy-Source: ${rng.pick(['/fuzzed/kept', '%ff', '/', '../../x', ''])}`);
  if (rng.chance(0.2))
    headers.push(
      `Range: ${rng.pick(['bytes=0-', 'bytes=-0', 'bytes=5-1', 'bytes=0-1,2-3', 'x', 'bytes=99999999999999999999-'])}`,
    );
  if (rng.chance(0.15))
    headers.push(
      `X-Amz-Server-Side-Encryption-Customer-Algorithm: ${rng.pick(['AES256', 'x'])}`,
      `X-Amz-Server-Side-Encryption-Customer-Key: ${rng.pick(['', 'AAAA', rng.bytes(32).toString('base64')])}`,
    );
  if (rng.chance(0.1)) headers.push(`Content-MD5: ${rng.pick(['', 'x', rng.bytes(16).toString('base64')])}`);
  if (rng.chance(0.1)) headers.push('Expect: 100-continue');
  if (rng.chance(0.1))
    headers.push(
      `Origin: ${rng.pick(['http://a', '*', ''])}`,
      `Access-Control-Request-Method: ${rng.pick(METHODS)}`,
    );
  if (rng.chance(0.2))
    headers.push(`${rng.pick(['X-Amz-', 'X-', ''])}${rng.text(12) || 'h'}: ${rng.text(40)}`);
  let body: Buffer = Buffer.alloc(0);
  if (method === 'POST' && rng.chance(0.6)) {
    const boundary = rng.pick(['b', '', '----x', '"q"', 'a'.repeat(80)]);
    headers.push(`Content-Type: multipart/form-data; boundary=${boundary}`);
    const fields = rng.pick([
      `--${boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\n${rng.pick(HOSTILE_STRINGS)}\r\n--${boundary}\r\nContent-Disposition: form-data; name="policy"\r\n\r\n${rng.text(60)}\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\nDATA\r\n--${boundary}--\r\n`,
      `--${boundary}\r\nContent-Disposition: form-data; name="x-amz-signature"\r\n\r\n00\r\n`,
      `--${boundary}\r\n\r\n`,
      rng.text(200),
    ]);
    body = Buffer.from(fields, 'latin1');
  } else if (rng.chance(0.3)) {
    body = rng.chance(0.3)
      ? Buffer.from(
          rng.pick([
            '10;chunk-signature=00\r\n0123456789abcdef\r\n0;chunk-signature=00\r\n\r\n',
            'zz\r\n\r\n',
            '0\r\n',
          ]),
        )
      : rng.bytes(rng.int(0, 4096));
  }
  const length = rng.pick(['exact', 'exact', 'exact', 'none', 'short', 'negative', 'huge', 'chunked']);
  if (length === 'exact') headers.push(`Content-Length: ${body.length}`);
  else if (length === 'short') headers.push(`Content-Length: ${body.length + rng.int(1, 100)}`);
  else if (length === 'negative') headers.push('Content-Length: -1');
  else if (length === 'huge') headers.push('Content-Length: 99999999999999999999');
  else if (length === 'chunked') {
    headers.push('Transfer-Encoding: chunked');
    body = Buffer.concat([
      Buffer.from(`${rng.pick([body.length.toString(16), 'zz', '-1', 'ffffffffffffffff'])}\r\n`),
      body,
      Buffer.from('\r\n0\r\n\r\n'),
    ]);
  }
  headers.push('Connection: close');
  return Buffer.concat([
    Buffer.from(`${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1'),
    body,
  ]);
}

function adminRequest(rng: Rng, token: string): Buffer {
  const method = rng.pick(METHODS);
  const path =
    rng.pick([
      '/',
      '/health',
      '/metrics',
      '/v1/status',
      '/v1/keys',
      '/v1/buckets',
      '/v1/layout',
      '/v1/sse-s3',
      '/v1/sse-s3/unlock',
      '/v1/nodes',
      '/v1/%ff',
      '/%ff',
      '/v1/keys/%2e%2e',
      '//v1//keys',
      '/v1/' + 'x'.repeat(5000),
    ]) + (rng.chance(0.3) ? '?' + rng.text(30) : '');
  const headers = ['Host: 127.0.0.1'];
  if (rng.chance(0.7))
    headers.push(
      `Authorization: ${rng.pick([
        'Bearer ',
        'Bearer x',
        `Bearer ${token.slice(0, -1)}`,
        `Bearer ${token}x`,
        `bearer ${token.toUpperCase()}`,
        `Basic ${token}`,
        rng.text(40),
      ])}`,
    );
  const body = Buffer.from(
    rng.pick([
      '',
      '{}',
      '{"name":"..%2f"}',
      '{"keys":{"a":"AAAA"}}',
      '[]',
      'null',
      '{',
      rng.text(200),
      JSON.stringify(rng.value()),
    ]),
  );
  headers.push('Content-Type: application/json', `Content-Length: ${body.length}`, 'Connection: close');
  return Buffer.concat([
    Buffer.from(`${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1'),
    body,
  ]);
}

async function assertStillServing(): Promise<void> {
  assert.equal(server.process.exitCode, null, `the node exited (seed ${seed}):\n${server.stderr()}`);
  const s3 = server.client();
  try {
    const buckets = await s3.send(new ListBucketsCommand({}));
    assert.deepEqual(
      buckets.Buckets?.map((b) => b.Name),
      ['fuzzed'],
    );
  } finally {
    s3.destroy();
  }
  const health = await fetch(`${server.adminEndpoint}/health`);
  assert.equal(health.status, 200);
  assert.ok(residentBytes(server.process.pid!) < MAX_RSS, 'memory grew past its bound');
  assert.ok(!existsSync(CANARY), `a file was written outside the node's directories (seed ${seed})`);
  assert.ok(existsSync(join(server.dir, 'meta', 'node_key')) && existsSync(server.configPath));
}

test(
  `${S3_REQUESTS} malformed unauthenticated S3 requests: prompt non-5xx answers, the node serves on`,
  { timeout: 180_000 },
  async (t) => {
    t.diagnostic(`seed ${seed}`);
    const rng = new Rng(seed);
    const statuses = await runAll(S3_REQUESTS, () => s3Request(rng, server.s3Port), server.s3Port);
    t.diagnostic(`statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    // Nothing a stranger sent got past authentication.
    assert.equal(statuses.get(200) ?? 0, 0, 'an unauthenticated request succeeded');
    // Nor learned whether a bucket or key exists: refusals come before any lookup.
    assert.equal(statuses.get(404) ?? 0, 0, 'an unauthenticated request was told something does not exist');
    await assertStillServing();
  },
);

test(
  `${ADMIN_REQUESTS} malformed admin requests without the token: refused, the node serves on`,
  { timeout: 180_000 },
  async (t) => {
    t.diagnostic(`seed ${seed + 1}`);
    const rng = new Rng(seed + 1);
    // Nothing but /health and the web console's pages (GET or HEAD of its fixed files, which hold nothing
    // secret) answers 2xx without the token; nothing answers 5xx.
    const allowed = (status: number, request: Buffer) =>
      status < 500 &&
      (status >= 300 ||
        /^[A-Za-z]+ \/health[ ?]/.test(request.toString('latin1')) ||
        /^(GET|HEAD) \/(index\.html|console\/[a-z]+\.[a-z]+)?[ ?#]/.test(request.toString('latin1')));
    const statuses = await runAll(
      ADMIN_REQUESTS,
      () => adminRequest(rng, server.adminToken),
      server.adminPort,
      allowed,
    );
    t.diagnostic(`statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    await assertStillServing();
  },
);

test(
  `${HANDSHAKES} malformed RPC handshakes: each connection is closed, the node serves on`,
  { timeout: 180_000 },
  async (t) => {
    t.diagnostic(`seed ${seed + 2}`);
    const rng = new Rng(seed + 2);
    let next = 0;
    const worker = async () => {
      while (next < HANDSHAKES) {
        next++;
        // The first Secret Handshake message is 64 bytes; try around it, and in pieces.
        const length = rng.pick([0, 1, 32, 63, 64, 65, 128, 4096, rng.int(0, 300)]);
        const answer = await exchange(server.rpcPort, rng.bytes(length)).catch((err: Error) => {
          throw new Error(`${err.message} (seed ${seed + 2}, ${length} bytes)`);
        });
        for (const s of secrets) assert.ok(!answer.raw.includes(s));
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    await assertStillServing();
  },
);
