// A request refused before its body is read, on a raw socket: a large (or unsized) body is answered with
// `Connection: close` and the connection is half-closed right after the answer — while the rest of the body
// is still read, so a client still sending sees the answer, not a reset — and a refused request with no body,
// or a small one, keeps its connection for the next request.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { startServer, type TestServer } from '../../helpers/server.js';
import { signer } from './sigv4-client.js';

const BUCKET = 'refused';
const OBJECT = 'small';
const OBJECT_BODY = 'the object the next request on the connection reads';
const MiB = 1024 * 1024;
const DECLARED = 10 * MiB;

let server: TestServer;

before(async () => {
  server = await startServer();
  const s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: OBJECT, Body: OBJECT_BODY }));
  s3.destroy();
});

after(async () => {
  await server?.stop();
  server?.cleanup();
});

function amzDate(d: Date): string {
  return d.toISOString().replace(/[-:]|\.\d{3}/g, '');
}

// The head of a signed request (UNSIGNED-PAYLOAD), ending with the blank line.
async function signedHead(
  method: string,
  path: string,
  extra: Record<string, string> = {},
  secret = server.secretAccessKey,
): Promise<string> {
  const date = new Date();
  const headers = {
    host: '127.0.0.1',
    'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
    'x-amz-date': amzDate(date),
  };
  const signed = await signer({ accessKey: server.accessKeyId, secret }).sign(
    { method, protocol: 'http:', hostname: '127.0.0.1', port: server.s3Port, path, query: {}, headers },
    { signingDate: date },
  );
  const lines = Object.entries({ ...headers, ...extra, authorization: signed.headers.authorization! });
  return `${method} ${path} HTTP/1.1\r\n${lines.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

// A connection that keeps its side open when the server ends its own (as an HTTP client still sending a
// body does), with everything it receives and whether the server has ended or reset it.
class RawConnection {
  readonly socket: Socket;
  private received = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  ended = false;
  closed = false;
  error: NodeJS.ErrnoException | undefined;

  constructor(port: number) {
    this.socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const wake = () => {
      for (const w of this.waiters.splice(0)) w();
    };
    this.socket.on('data', (c: Buffer) => {
      this.received = Buffer.concat([this.received, c]);
      wake();
    });
    this.socket.on('end', () => {
      this.ended = true;
      wake();
    });
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err;
      wake();
    });
    this.socket.on('close', () => {
      this.closed = true;
      wake();
    });
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.write(data, (err) => (err ? reject(err) : resolve())),
    );
  }

  async until(done: () => boolean): Promise<void> {
    while (!done()) {
      if (this.closed)
        throw new Error(`connection closed before expected: ${this.received.toString('latin1')}`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  // The next complete answer (head and Content-Length body), taken from what was received.
  async answer(): Promise<Answer> {
    let parsed: { answer: Answer; length: number } | undefined;
    await this.until(() => (parsed = parseAnswer(this.received)) !== undefined);
    this.received = this.received.subarray(parsed!.length);
    return parsed!.answer;
  }

  get pending(): string {
    return this.received.toString('latin1');
  }
}

function parseAnswer(bytes: Buffer): { answer: Answer; length: number } | undefined {
  const text = bytes.toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  if (split < 0) return undefined;
  const [statusLine, ...lines] = text.slice(0, split).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  if (text.length < split + 4 + length) return undefined;
  return {
    answer: {
      status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine!)?.[1] ?? 0),
      headers,
      body: text.slice(split + 4, split + 4 + length),
    },
    length: split + 4 + length,
  };
}

const codeOf = (a: Answer) => /<Code>([^<]*)<\/Code>/.exec(a.body)?.[1];

// The connection, still open, answers a signed read of the object.
async function assertStillServes(conn: RawConnection): Promise<void> {
  await conn.write(await signedHead('GET', `/${BUCKET}/${OBJECT}`));
  const next = await conn.answer();
  assert.equal(next.status, 200, next.body);
  assert.equal(next.body, OBJECT_BODY);
}

describe('a large body refused before it is read', () => {
  test('NoSuchBucket with a valid key: Connection: close, the server ends the connection, the body is still read', async () => {
    const conn = new RawConnection(server.s3Port);
    const first = 256 * 1024;
    await conn.write(await signedHead('PUT', '/no-such-bucket/big', { 'content-length': String(DECLARED) }));
    await conn.write(Buffer.alloc(first));
    const answer = await conn.answer();
    assert.equal(answer.status, 404, answer.body);
    assert.equal(codeOf(answer), 'NoSuchBucket');
    assert.equal(answer.headers.connection, 'close');
    // The server's side ends right after the answer, with nearly all of the body still unsent.
    await conn.until(() => conn.ended);
    assert.equal(conn.pending, '', 'nothing after the answer');
    // ... and the server still reads what the client goes on sending: no reset, up to the body's end.
    await conn.write(Buffer.alloc(DECLARED - first));
    conn.socket.end();
    await conn.until(() => conn.closed);
    assert.equal(conn.error, undefined, `the connection was reset: ${conn.error?.code}`);
  });

  test('a wrong signature: Connection: close, and the server ends the connection though no body was sent', async () => {
    const conn = new RawConnection(server.s3Port);
    const head = await signedHead(
      'PUT',
      `/${BUCKET}/big`,
      { 'content-length': String(DECLARED) },
      'not-' + server.secretAccessKey,
    );
    await conn.write(head);
    const answer = await conn.answer();
    assert.equal(answer.status, 403, answer.body);
    assert.equal(codeOf(answer), 'SignatureDoesNotMatch');
    assert.equal(answer.headers.connection, 'close');
    await conn.until(() => conn.ended);
    conn.socket.end();
    await conn.until(() => conn.closed);
    assert.equal(conn.error, undefined, `the connection was reset: ${conn.error?.code}`);
  });

  test('a body sent without a declared size (chunked) is refused the same way', async () => {
    const conn = new RawConnection(server.s3Port);
    await conn.write(await signedHead('PUT', '/no-such-bucket/chunked', { 'transfer-encoding': 'chunked' }));
    await conn.write('10000\r\n' + 'x'.repeat(0x10000) + '\r\n');
    const answer = await conn.answer();
    assert.equal(codeOf(answer), 'NoSuchBucket', answer.body);
    assert.equal(answer.headers.connection, 'close');
    await conn.until(() => conn.ended);
    conn.socket.destroy();
  });
});

describe('a refused request with no body, or a small one, keeps its connection', () => {
  test('a refused GET and a refused empty PUT: keep-alive, and the next request is answered', async () => {
    const conn = new RawConnection(server.s3Port);
    await conn.write(await signedHead('GET', '/no-such-bucket/x'));
    const refusedGet = await conn.answer();
    assert.equal(codeOf(refusedGet), 'NoSuchBucket', refusedGet.body);
    assert.equal(refusedGet.headers.connection, 'keep-alive');
    await conn.write(await signedHead('PUT', '/no-such-bucket/empty', { 'content-length': '0' }));
    const refusedPut = await conn.answer();
    assert.equal(codeOf(refusedPut), 'NoSuchBucket', refusedPut.body);
    assert.equal(refusedPut.headers.connection, 'keep-alive');
    await assertStillServes(conn);
    conn.socket.destroy();
  });

  test('a refused PUT of 60 KiB is read to its end: keep-alive, and the next request is answered', async () => {
    const conn = new RawConnection(server.s3Port);
    const size = 60 * 1024;
    await conn.write(await signedHead('PUT', '/no-such-bucket/small', { 'content-length': String(size) }));
    const answer = await conn.answer();
    assert.equal(codeOf(answer), 'NoSuchBucket', answer.body);
    assert.equal(answer.headers.connection, 'keep-alive');
    await conn.write(Buffer.alloc(size));
    await assertStillServes(conn);
    assert.equal(conn.ended, false);
    conn.socket.destroy();
  });
});
