// Bad input against a real server: malformed and oversized XML, bad and missing signatures, unknown keys,
// clock skew, expired presigned URLs, unsatisfiable ranges, invalid bucket names and keys, oversized headers,
// unknown operations and garbage on the socket. Each gets the S3 error code and HTTP status S3 gives (HEAD
// errors with no body), and after each one the server still answers a normal request.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { connect } from 'node:net';
import { startServer, type TestServer } from '../../helpers/server.js';
import { signer, toQueryString } from './sigv4-client.js';

const BUCKET = 'badinput';
const OBJECT = 'hundred-bytes';
const OBJECT_BODY = randomBytes(100);

let server: TestServer;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface SendOptions {
  method?: string;
  path: string; // already percent-encoded as it goes on the wire
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Buffer | string;
  auth?: 'header' | 'presign' | 'none';
  date?: Date;
  expiresIn?: number;
  accessKey?: string;
  secret?: string;
  signedPayload?: boolean; // sign the body's SHA-256 rather than UNSIGNED-PAYLOAD
  tamper?: (req: { query: Record<string, string>; headers: Record<string, string> }) => void;
}

// Sends one request on its own connection, signed (by default) with the SDK's reference SigV4 signer.
async function send(opts: SendOptions): Promise<Reply> {
  const method = opts.method ?? 'GET';
  const body = opts.body === undefined ? undefined : Buffer.from(opts.body);
  const host = `127.0.0.1:${server.s3Port}`;
  let headers: Record<string, string> = { host, ...opts.headers };
  let query: Record<string, string> = { ...opts.query };
  const auth = opts.auth ?? 'header';
  if (auth !== 'none') {
    const s = signer({
      accessKey: opts.accessKey ?? server.accessKeyId,
      secret: opts.secret ?? server.secretAccessKey,
    });
    const payloadHash =
      opts.signedPayload && body ? createHash('sha256').update(body).digest('hex') : 'UNSIGNED-PAYLOAD';
    const request = {
      method,
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: server.s3Port,
      path: opts.path,
      query,
      // For a presigned URL the signer moves this into the query, as the SDK's presigner does.
      headers: { ...headers, 'x-amz-content-sha256': payloadHash },
    };
    const signed =
      auth === 'header'
        ? await s.sign(request, { signingDate: opts.date ?? new Date() })
        : await s.presign(request, {
            signingDate: opts.date ?? new Date(),
            expiresIn: opts.expiresIn ?? 3600,
          });
    headers = signed.headers;
    query = (signed.query ?? {}) as Record<string, string>;
  }
  opts.tamper?.({ query, headers });
  const qs = toQueryString(query);
  // A keep-alive connection of its own, as SDK clients use: the server answers a refused upload while the
  // body is still arriving, then keeps reading it, so the client sees the answer rather than a reset.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return new Promise<Reply>((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: server.s3Port,
        method,
        path: opts.path + (qs ? `?${qs}` : ''),
        headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) },
        agent,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  }).finally(() => agent.destroy());
}

function codeOf(reply: Reply): string | undefined {
  return /<Code>([^<]*)<\/Code>/.exec(reply.body)?.[1];
}

function assertError(reply: Reply, status: number, code: string): void {
  assert.equal(reply.status, status, `expected ${status} ${code}, got ${reply.status}: ${reply.body}`);
  assert.match(String(reply.headers['content-type']), /xml/);
  assert.match(reply.body, /^<\?xml[^>]*>\s*<Error>/);
  assert.equal(codeOf(reply), code, reply.body);
}

// The server still serves: a signed read of a known object succeeds.
async function assertServes(): Promise<void> {
  const reply = await send({ path: `/${BUCKET}/${OBJECT}` });
  assert.equal(reply.status, 200, `server stopped serving: ${reply.status} ${reply.body}`);
  assert.equal(reply.body.length > 0, true);
}

// Writes raw bytes on a fresh connection and returns everything the server sends until it closes (or
// until `timeoutMs`, after which the connection is closed by us).
function rawExchange(bytes: Buffer | string, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(server.s3Port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the server has answered and closed is fine.
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return;
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.write(bytes);
  });
}

function parseRaw(raw: Buffer): { status: number; head: string; body: string } {
  const text = raw.toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  const head = split >= 0 ? text.slice(0, split) : text;
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0),
    head,
    body: split >= 0 ? text.slice(split + 4) : '',
  };
}

before(async () => {
  server = await startServer();
  const created = await send({ method: 'PUT', path: `/${BUCKET}` });
  assert.equal(created.status, 200, created.body);
  const put = await send({
    method: 'PUT',
    path: `/${BUCKET}/${OBJECT}`,
    body: OBJECT_BODY,
    signedPayload: true,
  });
  assert.equal(put.status, 200, put.body);
});

after(async () => {
  await server.kill();
  server.cleanup();
});

describe('malformed and oversized XML', () => {
  const deleteBody = (inner: string) => `<?xml version="1.0" encoding="UTF-8"?><Delete>${inner}</Delete>`;

  test('DeleteObjects with broken, foreign or empty XML is MalformedXML', async () => {
    for (const body of [
      '<Delete><Object><Key>a</Key></Object>', // unclosed
      'this is not xml at all',
      '<Delete><Object><Key>a</Key></Objet></Delete>', // mismatched tag
      '<?xml version="1.0"?><NotDelete><Object><Key>a</Key></Object></NotDelete>',
      deleteBody(''), // no objects
      deleteBody('<Object><Key></Key></Object>'), // empty key
      deleteBody('<Object></Object>'),
      deleteBody('<Object><Key>a</Key></Object>'.repeat(1001)), // more than 1000 keys
    ]) {
      const reply = await send({ method: 'POST', path: `/${BUCKET}`, query: { delete: '' }, body });
      assertError(reply, 400, 'MalformedXML');
    }
    await assertServes();
  });

  test('XML entities are never expanded without bound', async () => {
    // Nested entities (the "billion laughs") are left unexpanded; a flat entity referenced until the
    // expansion would exceed the parser's limit is refused. Either way the server answers at once.
    const nested =
      '<?xml version="1.0"?><!DOCTYPE Delete [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">' +
      '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">' +
      '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]>' +
      '<Delete><Object><Key>&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;</Key></Object></Delete>';
    const reply = await send({ method: 'POST', path: `/${BUCKET}`, query: { delete: '' }, body: nested });
    assert.ok(reply.body.length < 10_000, `expanded: ${reply.body.length} bytes`);
    assert.doesNotMatch(reply.body, /a{100}/);
    const flat =
      `<?xml version="1.0"?><!DOCTYPE Delete [<!ENTITY a "${'x'.repeat(5000)}">]>` +
      `<Delete><Object><Key>${'&a;'.repeat(100_000)}</Key></Object></Delete>`;
    assertError(
      await send({ method: 'POST', path: `/${BUCKET}`, query: { delete: '' }, body: flat }),
      400,
      'MalformedXML',
    );
    await assertServes();
  });

  test('DeleteObjects over 1 MiB is MaxMessageLengthExceeded, declared or streamed', async () => {
    const big = deleteBody('<Object><Key>k</Key></Object>'.repeat(40_000)); // ~1.1 MiB
    assert.ok(big.length > 1024 * 1024);
    assertError(
      await send({ method: 'POST', path: `/${BUCKET}`, query: { delete: '' }, body: big }),
      400,
      'MaxMessageLengthExceeded',
    );
    await assertServes();
  });

  test('CompleteMultipartUpload with malformed XML is MalformedXML, over 4 MiB MaxMessageLengthExceeded', async () => {
    const created = await send({ method: 'POST', path: `/${BUCKET}/mp`, query: { uploads: '' } });
    assert.equal(created.status, 200, created.body);
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.body)![1]!;
    for (const body of [
      '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>',
      'garbage',
      '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"x"</ETag></Part></CompleteMultipartUpload><extra>',
    ]) {
      assertError(
        await send({ method: 'POST', path: `/${BUCKET}/mp`, query: { uploadId }, body }),
        400,
        'MalformedXML',
      );
    }
    const part = '<Part><PartNumber>1</PartNumber><ETag>"0123456789abcdef0123456789abcdef"</ETag></Part>';
    const huge = `<CompleteMultipartUpload>${part.repeat(Math.ceil((4 * 1024 * 1024) / part.length) + 10)}</CompleteMultipartUpload>`;
    assertError(
      await send({ method: 'POST', path: `/${BUCKET}/mp`, query: { uploadId }, body: huge }),
      400,
      'MaxMessageLengthExceeded',
    );
    // The upload is untouched by the refusals and can still be aborted.
    const aborted = await send({ method: 'DELETE', path: `/${BUCKET}/mp`, query: { uploadId } });
    assert.equal(aborted.status, 204, aborted.body);
    await assertServes();
  });

  test('PutBucketCors with malformed XML is MalformedXML, over 1 MiB MaxMessageLengthExceeded', async () => {
    for (const body of ['<CORSConfiguration><CORSRule>', 'not xml', '<Other/>']) {
      assertError(
        await send({ method: 'PUT', path: `/${BUCKET}`, query: { cors: '' }, body }),
        400,
        'MalformedXML',
      );
    }
    const rule =
      '<CORSRule><AllowedOrigin>https://example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>';
    const huge = `<CORSConfiguration>${rule.repeat(Math.ceil((1024 * 1024) / rule.length) + 10)}</CORSConfiguration>`;
    assertError(
      await send({ method: 'PUT', path: `/${BUCKET}`, query: { cors: '' }, body: huge }),
      400,
      'MaxMessageLengthExceeded',
    );
    await assertServes();
  });

  test('an oversized XML body sent without Content-Length (chunked) is cut off at the limit', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const reply = await new Promise<Reply>((resolve, reject) => {
      void (async () => {
        const s = signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey });
        const signed = await s.sign(
          {
            method: 'POST',
            protocol: 'http:',
            hostname: '127.0.0.1',
            port: server.s3Port,
            path: `/${BUCKET}`,
            query: { delete: '' },
            headers: { host: `127.0.0.1:${server.s3Port}`, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
          },
          { signingDate: new Date() },
        );
        const req = http.request(
          {
            host: '127.0.0.1',
            port: server.s3Port,
            method: 'POST',
            path: `/${BUCKET}?delete=`,
            headers: { ...signed.headers, 'transfer-encoding': 'chunked' },
            agent,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode!,
                headers: res.headers,
                body: Buffer.concat(chunks).toString(),
              }),
            );
          },
        );
        req.on('error', reject);
        req.write('<Delete>');
        const piece = '<Object><Key>k</Key></Object>'.repeat(1000);
        // Up to 4 MiB, stopping early once the server has answered.
        for (let sent = 0; sent < 4 * 1024 * 1024 && !req.destroyed; sent += piece.length) {
          if (!req.write(piece)) await new Promise((r) => req.once('drain', r).once('close', r));
        }
        if (!req.destroyed) req.end('</Delete>');
      })().catch(reject);
    }).finally(() => agent.destroy());
    assertError(reply, 400, 'MaxMessageLengthExceeded');
    await assertServes();
  });
});

describe('authentication', () => {
  test('a malformed Authorization header is AuthorizationHeaderMalformed; SigV2 is refused', async () => {
    const date = amzDate(new Date());
    for (const authorization of [
      'AWS4-HMAC-SHA256 garbage',
      'AWS4-HMAC-SHA256 Credential=only-this',
      `AWS4-HMAC-SHA256 Credential=${server.accessKeyId}/20200101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=zz`,
    ]) {
      const reply = await send({
        path: `/${BUCKET}/${OBJECT}`,
        auth: 'none',
        headers: { authorization, 'x-amz-date': date, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
      });
      assertError(reply, 400, 'AuthorizationHeaderMalformed');
    }
    const v2 = await send({
      path: `/${BUCKET}/${OBJECT}`,
      auth: 'none',
      headers: { authorization: `AWS ${server.accessKeyId}:c2lnbmF0dXJl`, date: new Date().toUTCString() },
    });
    assertError(v2, 400, 'InvalidRequest');
    await assertServes();
  });

  test('an altered signature is SignatureDoesNotMatch', async () => {
    const reply = await send({
      path: `/${BUCKET}/${OBJECT}`,
      tamper: ({ headers }) => {
        headers.authorization = headers.authorization!.replace(
          /Signature=([0-9a-f])/,
          (_, c: string) => `Signature=${c === '0' ? '1' : '0'}`,
        );
      },
    });
    assertError(reply, 403, 'SignatureDoesNotMatch');
    await assertServes();
  });

  test('a request signed with the wrong secret is SignatureDoesNotMatch', async () => {
    assertError(
      await send({ path: `/${BUCKET}/${OBJECT}`, secret: 'not-the-secret' }),
      403,
      'SignatureDoesNotMatch',
    );
    await assertServes();
  });

  test('a signed header changed after signing is SignatureDoesNotMatch', async () => {
    const reply = await send({
      path: `/${BUCKET}/${OBJECT}`,
      headers: { 'x-amz-meta-color': 'blue' },
      tamper: ({ headers }) => {
        headers['x-amz-meta-color'] = 'red';
      },
    });
    assertError(reply, 403, 'SignatureDoesNotMatch');
  });

  test('a body that does not match its signed SHA-256 is refused and not stored', async () => {
    const reply = await send({
      method: 'PUT',
      path: `/${BUCKET}/tampered-body`,
      body: 'original body',
      signedPayload: true,
      tamper: ({ headers }) => {
        headers['x-amz-content-sha256'] = createHash('sha256').update('other body').digest('hex');
      },
    });
    // The header itself is signed, so changing it breaks the signature.
    assertError(reply, 403, 'SignatureDoesNotMatch');
    const missing = await send({ path: `/${BUCKET}/tampered-body` });
    assertError(missing, 404, 'NoSuchKey');
  });

  test('an anonymous request (no signature at all) is AccessDenied', async () => {
    assertError(await send({ path: `/${BUCKET}/${OBJECT}`, auth: 'none' }), 403, 'AccessDenied');
    assertError(await send({ path: '/', auth: 'none' }), 403, 'AccessDenied');
    assertError(
      await send({ method: 'PUT', path: `/${BUCKET}/anon`, auth: 'none', body: 'x' }),
      403,
      'AccessDenied',
    );
    await assertServes();
  });

  test('an unknown access key is InvalidAccessKeyId', async () => {
    assertError(
      await send({
        path: `/${BUCKET}/${OBJECT}`,
        accessKey: 'GK000000000000000000000000',
        secret: 'whatever',
      }),
      403,
      'InvalidAccessKeyId',
    );
    assertError(
      await send({
        path: `/${BUCKET}/${OBJECT}`,
        auth: 'presign',
        accessKey: 'GKunknown',
        secret: 'whatever',
      }),
      403,
      'InvalidAccessKeyId',
    );
    await assertServes();
  });

  test('a request dated 20 minutes off is RequestTimeTooSkewed', async () => {
    for (const offset of [-20 * 60_000, 20 * 60_000]) {
      const reply = await send({ path: `/${BUCKET}/${OBJECT}`, date: new Date(Date.now() + offset) });
      assertError(reply, 403, 'RequestTimeTooSkewed');
    }
    await assertServes();
  });

  test('an expired presigned URL is AccessDenied; a valid one works; a tampered one does not', async () => {
    const expired = await send({
      path: `/${BUCKET}/${OBJECT}`,
      auth: 'presign',
      date: new Date(Date.now() - 2 * 3600_000),
      expiresIn: 60,
    });
    assertError(expired, 403, 'AccessDenied');
    assert.match(expired.body, /expired/i);
    const valid = await send({ path: `/${BUCKET}/${OBJECT}`, auth: 'presign', expiresIn: 60 });
    assert.equal(valid.status, 200, valid.body);
    const tampered = await send({
      path: `/${BUCKET}/${OBJECT}`,
      auth: 'presign',
      tamper: ({ query }) => {
        query['X-Amz-Expires'] = '604800';
      },
    });
    assertError(tampered, 403, 'SignatureDoesNotMatch');
    await assertServes();
  });
});

describe('ranges, names and keys', () => {
  test('unsatisfiable ranges are 416 InvalidRange; HEAD gets the status with no body', async () => {
    for (const range of ['bytes=100-', 'bytes=100-200', 'bytes=5000-6000', 'bytes=-0']) {
      const reply = await send({ path: `/${BUCKET}/${OBJECT}`, headers: { range } });
      assertError(reply, 416, 'InvalidRange');
    }
    const head = await send({
      method: 'HEAD',
      path: `/${BUCKET}/${OBJECT}`,
      headers: { range: 'bytes=100-' },
    });
    assert.equal(head.status, 416);
    assert.equal(head.body, '');
    // Satisfiable edge cases still work.
    const last = await send({ path: `/${BUCKET}/${OBJECT}`, headers: { range: 'bytes=99-' } });
    assert.equal(last.status, 206);
    assert.equal(last.headers['content-range'], 'bytes 99-99/100');
    const suffix = await send({ path: `/${BUCKET}/${OBJECT}`, headers: { range: 'bytes=-1000' } });
    assert.equal(suffix.status, 206);
    assert.equal(suffix.headers['content-range'], 'bytes 0-99/100');
    await assertServes();
  });

  test('invalid bucket names are InvalidBucketName', async () => {
    for (const name of [
      'ab',
      'a'.repeat(64),
      'Upper-Case',
      'under_score',
      'double..dot',
      '-leading-dash',
      'trailing-dash-',
      '192.168.1.1',
      'xn--punycode',
      'name-s3alias',
    ]) {
      const reply = await send({ method: 'PUT', path: `/${encodeURIComponent(name)}` });
      assertError(reply, 400, 'InvalidBucketName');
    }
    await assertServes();
  });

  test('keys over 1024 bytes are KeyTooLongError for every object operation, and never an internal error', async () => {
    const long = 'k'.repeat(1025);
    const longUtf8 = 'é'.repeat(513); // 1026 bytes, 513 characters
    for (const key of [long, longUtf8]) {
      const path = `/${BUCKET}/${encodeURIComponent(key)}`;
      assertError(await send({ method: 'PUT', path, body: 'x' }), 400, 'KeyTooLongError');
    }
    const path = `/${BUCKET}/${long}`;
    assertError(
      await send({ method: 'PUT', path, headers: { 'x-amz-copy-source': `/${BUCKET}/${OBJECT}` } }),
      400,
      'KeyTooLongError',
    );
    assertError(await send({ method: 'POST', path, query: { uploads: '' } }), 400, 'KeyTooLongError');
    // Reads, deletes and copies name a key too long to exist the same way, whatever its length.
    for (const key of ['r'.repeat(1025), 'r'.repeat(15_000)]) {
      const p = `/${BUCKET}/${key}`;
      assertError(await send({ path: p }), 400, 'KeyTooLongError');
      assertError(await send({ method: 'DELETE', path: p }), 400, 'KeyTooLongError');
      const head = await send({ method: 'HEAD', path: p });
      assert.equal(head.status, 400);
      assert.equal(head.body, '');
    }
    const copyFromLong = await send({
      method: 'PUT',
      path: `/${BUCKET}/copy-target`,
      headers: { 'x-amz-copy-source': `/${BUCKET}/${'s'.repeat(15_000)}` },
    });
    assertError(copyFromLong, 400, 'KeyTooLongError');
    // A batch delete naming such a key: it does not exist, so it is reported deleted like any missing key.
    const batch = await send({
      method: 'POST',
      path: `/${BUCKET}`,
      query: { delete: '' },
      body: `<Delete><Object><Key>${'d'.repeat(300_000)}</Key></Object><Object><Key>absent</Key></Object></Delete>`,
    });
    assert.equal(batch.status, 200, batch.body.slice(0, 500));
    assert.equal(batch.body.match(/<Deleted>/g)?.length, 2);
    // Listing from or under a longer-than-possible key is a plain listing.
    const from = await send({
      path: `/${BUCKET}`,
      query: { 'list-type': '2', 'start-after': 'a'.repeat(1500) },
    });
    assert.equal(from.status, 200, from.body);
    assert.match(from.body, new RegExp(`<Key>${OBJECT}</Key>`));
    const under = await send({
      path: `/${BUCKET}`,
      query: { 'list-type': '2', prefix: OBJECT + 'x'.repeat(1500) },
    });
    assert.equal(under.status, 200, under.body);
    assert.match(under.body, /<KeyCount>0<\/KeyCount>/);
    const marker = await send({ path: `/${BUCKET}`, query: { marker: 'a'.repeat(1500) } });
    assert.equal(marker.status, 200, marker.body);
    assert.match(marker.body, new RegExp(`<Key>${OBJECT}</Key>`));
    // Exactly 1024 bytes is allowed.
    const ok = await send({ method: 'PUT', path: `/${BUCKET}/${'k'.repeat(1024)}`, body: 'x' });
    assert.equal(ok.status, 200, ok.body);
    await assertServes();
  });

  test('a path that is not valid percent-encoding is InvalidArgument', async () => {
    assertError(await send({ path: `/${BUCKET}/%E0%A4%A` }), 400, 'InvalidArgument');
    await assertServes();
  });

  test('a PUT without Content-Length or chunked encoding is MissingContentLength', async () => {
    const raw = parseRaw(
      await rawExchange(
        `PUT /${BUCKET}/no-length HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
          `x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: ${amzDate(new Date())}\r\n` +
          `Authorization: ${await authorizationFor('PUT', `/${BUCKET}/no-length`)}\r\n\r\n`,
      ),
    );
    assert.equal(raw.status, 411, raw.head);
    assert.match(raw.body, /<Code>MissingContentLength<\/Code>/);
    await assertServes();
  });
});

function amzDate(d: Date): string {
  return d.toISOString().replace(/[-:]|\.\d{3}/g, '');
}

async function authorizationFor(method: string, path: string): Promise<string> {
  const s = signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey });
  const date = new Date();
  const signed = await s.sign(
    {
      method,
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: server.s3Port,
      path,
      query: {},
      headers: { host: '127.0.0.1', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'x-amz-date': amzDate(date) },
    },
    { signingDate: date },
  );
  return signed.headers.authorization!;
}

describe('oversized headers, unknown operations, garbage', () => {
  test('a header section over 16 KiB gets a 400 with an S3 XML error', async () => {
    const raw = parseRaw(
      await rawExchange(
        `GET /${BUCKET}/${OBJECT} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-amz-meta-big: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
      ),
    );
    assert.equal(raw.status, 400, raw.head);
    assert.match(raw.head, /content-type: application\/xml/i);
    assert.match(raw.body, /<Error><Code>RequestHeaderSectionTooLarge<\/Code>/);
    // Many small headers adding up past the limit too.
    const many = Array.from({ length: 400 }, (_, i) => `x-amz-meta-h${i}: ${'b'.repeat(50)}\r\n`).join('');
    const raw2 = parseRaw(await rawExchange(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n${many}\r\n`));
    assert.equal(raw2.status, 400, raw2.head);
    assert.match(raw2.body, /<Code>RequestHeaderSectionTooLarge<\/Code>/);
    await assertServes();
  });

  test('user metadata over 2 KiB is MetadataTooLarge', async () => {
    const reply = await send({
      method: 'PUT',
      path: `/${BUCKET}/meta`,
      headers: { 'x-amz-meta-big': 'm'.repeat(3000) },
      body: 'x',
    });
    assertError(reply, 400, 'MetadataTooLarge');
    await assertServes();
  });

  test('unknown sub-resources are NotImplemented, unknown methods MethodNotAllowed', async () => {
    for (const [method, path, query] of [
      ['GET', `/${BUCKET}`, { analytics: '' }],
      ['PUT', `/${BUCKET}`, { inventory: '', id: 'x' }],
      ['PUT', `/${BUCKET}`, { website: '' }],
      ['PUT', `/${BUCKET}`, { replication: '' }],
      ['GET', `/${BUCKET}/${OBJECT}`, { versions: '' }],
      ['GET', `/${BUCKET}/${OBJECT}`, { torrent: '' }],
      ['POST', `/${BUCKET}/${OBJECT}`, { restore: '' }],
      ['POST', `/${BUCKET}/${OBJECT}`, { select: '', 'select-type': '2' }],
    ] as const) {
      assertError(await send({ method, path, query: { ...query } }), 501, 'NotImplemented');
    }
    for (const [method, path] of [
      ['PATCH', `/${BUCKET}/${OBJECT}`],
      ['POST', `/${BUCKET}/${OBJECT}`],
      ['DELETE', '/'],
      ['PUT', '/'],
      ['PATCH', `/${BUCKET}`],
    ] as const) {
      assertError(await send({ method, path }), 405, 'MethodNotAllowed');
    }
    // A method node's parser does not know at all.
    const raw = parseRaw(await rawExchange(`FROBNICATE / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
    assert.equal(raw.status, 400, raw.head);
    assert.match(raw.body, /<Error>/);
    await assertServes();
  });

  test('HEAD errors carry a status and no body', async () => {
    for (const [path, opts, status] of [
      [`/${BUCKET}/missing`, {}, 404],
      ['/no-such-bucket-here', {}, 404],
      [`/${BUCKET}/${OBJECT}`, { secret: 'wrong' }, 403],
      [`/${BUCKET}/${OBJECT}`, { auth: 'none' as const }, 403],
    ] as const) {
      const head = await send({ method: 'HEAD', path, ...opts });
      assert.equal(head.status, status, path);
      assert.equal(head.body, '');
    }
    // On the wire: a HEAD error followed by a GET on the same connection; the first response must have no
    // body, or its bytes would be read as the second response.
    const auth = await authorizationFor('GET', `/${BUCKET}/${OBJECT}`);
    const raw = (
      await rawExchange(
        `HEAD /${BUCKET}/missing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n` +
          `GET /${BUCKET}/${OBJECT} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
          `x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: ${amzDate(new Date())}\r\nAuthorization: ${auth}\r\n\r\n`,
      )
    ).toString('latin1');
    const responses = raw.split(/(?=HTTP\/1\.1 \d{3})/);
    assert.equal(responses.length, 2, raw);
    assert.match(responses[0]!, /^HTTP\/1\.1 403/); // the HEAD is anonymous
    assert.ok(
      responses[0]!.endsWith('\r\n\r\n'),
      `HEAD response has a body: ${JSON.stringify(responses[0])}`,
    );
    assert.match(responses[1]!, /^HTTP\/1\.1 200/);
  });

  test('garbage bytes on the socket get a 400 or a closed connection, never a crash', async () => {
    for (const garbage of [
      randomBytes(4096),
      Buffer.from('\x00\x01\x02\x03\r\n\r\n'),
      Buffer.from('GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n'), // header without colon
      Buffer.from('GET / HTTP/9.9\r\n\r\n'),
      Buffer.from('POST /badinput?delete HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'),
      Buffer.from('POST /badinput?delete HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'),
      Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'), // a TLS ClientHello on the plain port
    ]) {
      const raw = parseRaw(await rawExchange(garbage, 3000));
      assert.ok(raw.status === 0 || (raw.status >= 400 && raw.status < 500), raw.head);
      if (raw.status !== 0) assert.match(raw.body, /<Error>/);
    }
    await assertServes();
  });

  test('a small upload refused before its body is read gets its error, and the connection goes on', async () => {
    // The error is written while the client is still sending its 48 KiB: the server reads and discards the
    // rest, so the client sees NoSuchBucket rather than a reset, and the request after it on the same
    // connection is parsed and answered. (A larger body ends the connection instead: refused-body.test.ts.)
    const size = 48 * 1024;
    const putPath = '/no-such-bucket-for-upload/big';
    const put =
      `PUT ${putPath} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${size}\r\n` +
      `x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: ${amzDate(new Date())}\r\n` +
      `Authorization: ${await authorizationFor('PUT', putPath)}\r\n\r\n`;
    const get =
      `GET /${BUCKET}/${OBJECT} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
      `x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: ${amzDate(new Date())}\r\n` +
      `Authorization: ${await authorizationFor('GET', `/${BUCKET}/${OBJECT}`)}\r\n\r\n`;
    const raw = (
      await rawExchange(Buffer.concat([Buffer.from(put), Buffer.alloc(size), Buffer.from(get)]), 10_000)
    )
      .toString('latin1')
      .split(/(?=HTTP\/1\.1 \d{3})/);
    assert.equal(raw.length, 2, raw.map((r) => r.slice(0, 200)).join('\n---\n'));
    assert.match(raw[0]!, /^HTTP\/1\.1 404/);
    assert.match(raw[0]!, /<Code>NoSuchBucket<\/Code>/);
    assert.match(raw[1]!, /^HTTP\/1\.1 200/);
    assert.ok(raw[1]!.endsWith(OBJECT_BODY.toString('latin1')), 'second response has the object');
  });

  test('a body cut short by the client leaves no object and the server serving', async () => {
    const auth = await authorizationFor('PUT', `/${BUCKET}/cut-short`);
    await rawExchange(
      `PUT /${BUCKET}/cut-short HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n` +
        `x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: ${amzDate(new Date())}\r\nAuthorization: ${auth}\r\n\r\n` +
        'only a few bytes',
      300,
    );
    assertError(await send({ path: `/${BUCKET}/cut-short` }), 404, 'NoSuchKey');
    await assertServes();
  });
});
