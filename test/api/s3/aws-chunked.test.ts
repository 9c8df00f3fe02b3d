import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { AwsCrc32 } from '@aws-crypto/crc32';
import { AwsCrc32c } from '@aws-crypto/crc32c';
import { getAwsChunkedEncodingStream } from '@smithy/util-stream';
import { S3Error } from '../../../src/util/s3-error.js';
import { authenticateRequest, type AuthContext } from '../../../src/api/s3/signature.js';
import { AwsChunkedDecoder, awsChunkedDecoderFor } from '../../../src/api/s3/aws-chunked.js';
import { BodyVerifier, bodyExpectationsFromHeaders } from '../../../src/api/s3/checksum.js';
import { ACCESS_KEY, REGION, SECRET_KEY, signHeader } from './sigv4-client.js';

// ---- The chunked upload example of the AWS S3 SigV4 documentation (PUT of 66560 bytes of 'a').
const DOC_SEED = '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9';
const DOC_CHUNK_SIGS = [
  'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648',
  '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497',
  'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9',
];
const DOC_HEADERS: IncomingHttpHeaders = {
  host: 's3.amazonaws.com',
  'x-amz-date': '20130524T000000Z',
  'x-amz-storage-class': 'REDUCED_REDUNDANCY',
  authorization: `AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=${DOC_SEED}`,
  'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
  'content-encoding': 'aws-chunked',
  'x-amz-decoded-content-length': '66560',
  'content-length': '66824',
};

function docBody(): Buffer {
  return Buffer.concat([
    Buffer.from(`10000;chunk-signature=${DOC_CHUNK_SIGS[0]}\r\n`),
    Buffer.alloc(65536, 'a'),
    Buffer.from(`\r\n400;chunk-signature=${DOC_CHUNK_SIGS[1]}\r\n`),
    Buffer.alloc(1024, 'a'),
    Buffer.from(`\r\n0;chunk-signature=${DOC_CHUNK_SIGS[2]}\r\n\r\n`),
  ]);
}

const lookupSecret = async (id: string) => (id === ACCESS_KEY ? SECRET_KEY : undefined);

async function docAuth(): Promise<AuthContext> {
  return authenticateRequest(
    { method: 'PUT', path: '/examplebucket/chunkObject.txt', query: '', headers: DOC_HEADERS },
    { region: REGION, lookupSecret, now: new Date('2013-05-24T00:00:10Z') },
  );
}

/** Feeds `body` to `stream` in pieces of `piece` bytes; resolves with the concatenated output. */
async function run(stream: NodeJS.ReadWriteStream, body: Buffer, piece = 65536): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < body.length; i += piece) parts.push(body.subarray(i, i + piece));
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(parts),
    stream,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

async function rejectsS3(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof S3Error, String(err));
    assert.equal(err.code, code, err.message);
    return true;
  });
}

test('the documented AWS chunked upload verifies, whatever the read boundaries', async () => {
  const auth = await docAuth();
  assert.equal(auth.payloadMode, 'streaming-signed');
  assert.equal(auth.seedSignature, DOC_SEED);
  for (const piece of [1, 7, 88, 4096, 65536, 1 << 20]) {
    if (piece === 1) {
      // Byte-by-byte over the header region only: the whole body one byte at a time would be slow for no gain.
      const body = docBody();
      const head = 200;
      const parts: Buffer[] = [...body.subarray(0, head)].map((b) => Buffer.from([b]));
      parts.push(body.subarray(head));
      const dec = awsChunkedDecoderFor(auth, DOC_HEADERS);
      const out: Buffer[] = [];
      await pipeline(Readable.from(parts), dec, new Writable({ write: (c, _e, cb) => (out.push(c), cb()) }));
      assert.deepEqual(Buffer.concat(out), Buffer.alloc(66560, 'a'));
      continue;
    }
    const out = await run(awsChunkedDecoderFor(auth, DOC_HEADERS), docBody(), piece);
    assert.equal(out.length, 66560);
    assert.ok(out.equals(Buffer.alloc(66560, 'a')));
  }
});

test('a tampered, reordered or truncated chunked body is refused', async () => {
  const auth = await docAuth();
  const tampered = docBody();
  tampered[1000] = 'b'.charCodeAt(0);
  await rejectsS3(run(awsChunkedDecoderFor(auth, DOC_HEADERS), tampered), 'SignatureDoesNotMatch');

  const swapped = Buffer.from(
    docBody().toString('latin1').replace(DOC_CHUNK_SIGS[1], DOC_CHUNK_SIGS[0]),
    'latin1',
  );
  await rejectsS3(run(awsChunkedDecoderFor(auth, DOC_HEADERS), swapped), 'SignatureDoesNotMatch');

  const lastSig = docBody().toString('latin1').replace(DOC_CHUNK_SIGS[2], '0'.repeat(64));
  await rejectsS3(
    run(awsChunkedDecoderFor(auth, DOC_HEADERS), Buffer.from(lastSig, 'latin1')),
    'SignatureDoesNotMatch',
  );

  const body = docBody();
  await rejectsS3(run(awsChunkedDecoderFor(auth, DOC_HEADERS), body.subarray(0, 60000)), 'IncompleteBody');
  // Dropping the final zero-size chunk is truncation too.
  await rejectsS3(
    run(awsChunkedDecoderFor(auth, DOC_HEADERS), body.subarray(0, body.length - 86)),
    'IncompleteBody',
  );

  const shorter = { ...DOC_HEADERS, 'x-amz-decoded-content-length': '66000' };
  await rejectsS3(run(awsChunkedDecoderFor(auth, shorter), docBody()), 'InvalidRequest');
  const longer = { ...DOC_HEADERS, 'x-amz-decoded-content-length': '70000' };
  await rejectsS3(run(awsChunkedDecoderFor(auth, longer), docBody()), 'IncompleteBody');
  const missing = { ...DOC_HEADERS };
  delete missing['x-amz-decoded-content-length'];
  assert.throws(
    () => awsChunkedDecoderFor(auth, missing),
    (e: unknown) => (e as S3Error).code === 'MissingContentLength',
  );

  await rejectsS3(
    run(awsChunkedDecoderFor(auth, DOC_HEADERS), Buffer.concat([docBody(), Buffer.from('x')])),
    'InvalidRequest',
  );
});

test('garbage is rejected after a bounded number of bytes', async () => {
  const auth = await docAuth();
  let pulled = 0;
  const endless = new Readable({
    read() {
      pulled += 4096;
      this.push(Buffer.alloc(4096, 'f'));
    },
  });
  await rejectsS3(
    pipeline(endless, awsChunkedDecoderFor(auth, DOC_HEADERS), new Writable({ write: (_c, _e, cb) => cb() })),
    'InvalidRequest',
  );
  assert.ok(pulled < 64 * 1024, `pulled ${pulled} bytes before refusing`);
  const notHex = Buffer.from(`zz;chunk-signature=${DOC_CHUNK_SIGS[0]}\r\n`);
  await rejectsS3(run(awsChunkedDecoderFor(auth, DOC_HEADERS), notHex), 'InvalidRequest');
  const noSig = Buffer.from('10000\r\n');
  await rejectsS3(run(awsChunkedDecoderFor(auth, DOC_HEADERS), noSig), 'InvalidRequest');
  const bareLf = Buffer.from(`10000;chunk-signature=${DOC_CHUNK_SIGS[0]}\n`);
  await rejectsS3(run(awsChunkedDecoderFor(auth, DOC_HEADERS), bareLf), 'InvalidRequest');
});

// ---- The signed trailer example of the same documentation: CRC-32C trailer and its trailer signature.
const TRAILER_SEED = '106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e';
const TRAILER_CHUNK_SIGS = [
  'b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2',
  '1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7',
  '2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992',
];
const TRAILER_SIG = 'd81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435';
const TRAILER_HEADERS: IncomingHttpHeaders = {
  host: 's3.amazonaws.com',
  'x-amz-date': '20130524T000000Z',
  'x-amz-storage-class': 'REDUCED_REDUNDANCY',
  authorization: `AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,Signature=${TRAILER_SEED}`,
  'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
  'content-encoding': 'aws-chunked',
  'x-amz-decoded-content-length': '66560',
  'x-amz-trailer': 'x-amz-checksum-crc32c',
};

function trailerDocBody(trailerValue = 'sOO8/Q==', ending = '\r\n'): Buffer {
  return Buffer.concat([
    Buffer.from(`10000;chunk-signature=${TRAILER_CHUNK_SIGS[0]}\r\n`),
    Buffer.alloc(65536, 'a'),
    Buffer.from(`\r\n400;chunk-signature=${TRAILER_CHUNK_SIGS[1]}\r\n`),
    Buffer.alloc(1024, 'a'),
    Buffer.from(`\r\n0;chunk-signature=${TRAILER_CHUNK_SIGS[2]}\r\n`),
    Buffer.from(
      `x-amz-checksum-crc32c:${trailerValue}\r\nx-amz-trailer-signature:${TRAILER_SIG}\r\n${ending}`,
    ),
  ]);
}

test('the documented AWS signed-trailer upload verifies, CRC-32C included', async () => {
  const auth = await authenticateRequest(
    { method: 'PUT', path: '/examplebucket/chunkObject.txt', query: '', headers: TRAILER_HEADERS },
    { region: REGION, lookupSecret, now: new Date('2013-05-24T00:00:10Z') },
  );
  assert.equal(auth.payloadMode, 'streaming-signed-trailer');
  for (const ending of ['\r\n', '']) {
    const { out, verifier, decoder } = await decodeAndVerify(
      auth,
      TRAILER_HEADERS,
      trailerDocBody('sOO8/Q==', ending),
    );
    assert.equal(out.length, 66560);
    assert.deepEqual(decoder.trailers, { 'x-amz-checksum-crc32c': 'sOO8/Q==' });
    assert.deepEqual(verifier.result.checksum, { algorithm: 'CRC32C', value: 'sOO8/Q==' });
  }
  // Any other trailer value, even a well-formed one, breaks the trailer signature.
  await rejectsS3(
    decodeAndVerify(auth, TRAILER_HEADERS, trailerDocBody('AAAAAA==')),
    'SignatureDoesNotMatch',
  );
});

// ---- Trailers. The unsigned form is produced by the AWS SDK's own aws-chunked encoder.

async function sdkUnsignedTrailerBody(
  data: Buffer,
  checksum: typeof AwsCrc32 | typeof AwsCrc32c,
  name: string,
): Promise<Buffer> {
  const source = Readable.from([data.subarray(0, 40000), data.subarray(40000)]);
  const encoded = getAwsChunkedEncodingStream(source, {
    base64Encoder: (b: Uint8Array) => Buffer.from(b).toString('base64'),
    bodyLengthChecker: (b: unknown) => (b as Buffer).length,
    checksumAlgorithmFn: checksum,
    checksumLocationName: name,
    // Listens alongside the encoder (as the SDK's own hasher does) rather than consuming the source.
    streamHasher: (Ctor, stream) =>
      new Promise((resolve, reject) => {
        const h = new (Ctor as typeof AwsCrc32)();
        (stream as Readable).on('data', (c: Buffer) => h.update(c));
        (stream as Readable).on('error', reject);
        (stream as Readable).on('end', () => resolve(h.digest()));
      }),
  });
  const out: Buffer[] = [];
  for await (const c of encoded) out.push(Buffer.from(c as Buffer));
  return Buffer.concat(out);
}

async function unsignedTrailerRequest(
  trailerName: string,
  decodedLength: number,
): Promise<{ auth: AuthContext; headers: IncomingHttpHeaders }> {
  const date = new Date();
  const req = await signHeader(
    {
      method: 'PUT',
      path: '/bucket/key',
      headers: {
        'content-encoding': 'aws-chunked',
        'x-amz-decoded-content-length': String(decodedLength),
        'x-amz-trailer': trailerName,
      },
    },
    { date, payloadHash: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' },
  );
  const auth = await authenticateRequest(req, { region: REGION, lookupSecret });
  return { auth, headers: req.headers };
}

async function decodeAndVerify(
  auth: AuthContext,
  headers: IncomingHttpHeaders,
  body: Buffer,
): Promise<{ out: Buffer; verifier: BodyVerifier; decoder: AwsChunkedDecoder }> {
  const decoder = awsChunkedDecoderFor(auth, headers);
  const verifier = new BodyVerifier(
    bodyExpectationsFromHeaders(headers, {
      expectedSha256: auth.expectedSha256,
      trailers: () => decoder.trailers,
    }),
  );
  const out: Buffer[] = [];
  await pipeline(
    Readable.from([body]),
    decoder,
    verifier,
    new Writable({ write: (c, _e, cb) => (out.push(c), cb()) }),
  );
  return { out: Buffer.concat(out), verifier, decoder };
}

test('unsigned trailers from the AWS SDK encoder: crc32 and crc32c checked', async () => {
  const data = randomBytes(100_000);
  for (const [ctor, name] of [
    [AwsCrc32, 'x-amz-checksum-crc32'],
    [AwsCrc32c, 'x-amz-checksum-crc32c'],
  ] as const) {
    const body = await sdkUnsignedTrailerBody(data, ctor, name);
    const { auth, headers } = await unsignedTrailerRequest(name, data.length);
    assert.equal(auth.payloadMode, 'streaming-unsigned-trailer');
    const { out, verifier, decoder } = await decodeAndVerify(auth, headers, body);
    assert.ok(out.equals(data));
    const expected = Buffer.from(
      await (() => {
        const h = new ctor();
        h.update(data);
        return h.digest();
      })(),
    ).toString('base64');
    assert.equal(decoder.trailers[name], expected);
    assert.equal(verifier.result.checksum?.value, expected);
    assert.equal(verifier.result.md5Hex, createHash('md5').update(data).digest('hex'));

    const wrong = Buffer.from(
      body.toString('latin1').replace(expected, Buffer.alloc(4).toString('base64')),
      'latin1',
    );
    await rejectsS3(decodeAndVerify(auth, headers, wrong), 'BadDigest');
    const invalid = Buffer.from(body.toString('latin1').replace(expected, 'not base64!'), 'latin1');
    await rejectsS3(decodeAndVerify(auth, headers, invalid), 'InvalidRequest');
  }
});

test('a trailer not announced in x-amz-trailer is refused', async () => {
  const data = randomBytes(1000);
  const body = await sdkUnsignedTrailerBody(data, AwsCrc32, 'x-amz-checksum-crc32');
  const { auth, headers } = await unsignedTrailerRequest('x-amz-checksum-crc32c', data.length);
  await rejectsS3(decodeAndVerify(auth, headers, body), 'InvalidRequest');
});

// ---- Signed trailers: encoded here from the published algorithm (chunk and trailer strings to sign).

function hmacHex(key: Buffer, s: string): string {
  return createHmac('sha256', key).update(s).digest('hex');
}

function encodeSignedTrailer(auth: AuthContext, chunks: Buffer[], trailers: [string, string][]): Buffer {
  const empty = createHash('sha256').update('').digest('hex');
  let prev = auth.seedSignature;
  const out: Buffer[] = [];
  for (const c of [...chunks, Buffer.alloc(0)]) {
    const sts = [
      'AWS4-HMAC-SHA256-PAYLOAD',
      auth.amzDate,
      auth.scope,
      prev,
      empty,
      createHash('sha256').update(c).digest('hex'),
    ].join('\n');
    prev = hmacHex(auth.signingKey, sts);
    out.push(Buffer.from(`${c.length.toString(16)};chunk-signature=${prev}\r\n`), c);
    if (c.length > 0) out.push(Buffer.from('\r\n'));
  }
  const canonical = trailers.map(([n, v]) => `${n}:${v}\n`).join('');
  const sts = [
    'AWS4-HMAC-SHA256-TRAILER',
    auth.amzDate,
    auth.scope,
    prev,
    createHash('sha256').update(canonical).digest('hex'),
  ].join('\n');
  for (const [n, v] of trailers) out.push(Buffer.from(`${n}:${v}\r\n`));
  out.push(Buffer.from(`x-amz-trailer-signature:${hmacHex(auth.signingKey, sts)}\r\n\r\n`));
  return Buffer.concat(out);
}

test('signed trailers: sha256 checksum and trailer signature verified', async () => {
  const data = randomBytes(3 * 65536 + 17);
  const sha = createHash('sha256').update(data).digest('base64');
  const date = new Date();
  const req = await signHeader(
    {
      method: 'PUT',
      path: '/bucket/key',
      headers: {
        'content-encoding': 'aws-chunked',
        'x-amz-decoded-content-length': String(data.length),
        'x-amz-trailer': 'x-amz-checksum-sha256',
      },
    },
    { date, payloadHash: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER' },
  );
  const auth = await authenticateRequest(req, { region: REGION, lookupSecret });
  assert.equal(auth.payloadMode, 'streaming-signed-trailer');
  const chunks = [data.subarray(0, 65536), data.subarray(65536, 131072), data.subarray(131072)];
  const body = encodeSignedTrailer(auth, chunks, [['x-amz-checksum-sha256', sha]]);
  const { out, verifier } = await decodeAndVerify(auth, req.headers, body);
  assert.ok(out.equals(data));
  assert.equal(verifier.result.checksum?.value, sha);

  // A trailer altered in transit breaks the trailer signature, even when its value is well formed.
  const forged = Buffer.from(
    body.toString('latin1').replace(sha, createHash('sha256').update('x').digest('base64')),
    'latin1',
  );
  await rejectsS3(decodeAndVerify(auth, req.headers, forged), 'SignatureDoesNotMatch');
  // Correctly signed but wrong checksum: BadDigest.
  const wrongSum = encodeSignedTrailer(auth, chunks, [
    ['x-amz-checksum-sha256', createHash('sha256').update('x').digest('base64')],
  ]);
  await rejectsS3(decodeAndVerify(auth, req.headers, wrongSum), 'BadDigest');
  const noSig = Buffer.from(
    body.toString('latin1').replace(/x-amz-trailer-signature:[0-9a-f]+\r\n/, ''),
    'latin1',
  );
  await rejectsS3(decodeAndVerify(auth, req.headers, noSig), 'InvalidRequest');
});

test('1 MiB chunks stream through without copying the data', async () => {
  const data = randomBytes(4 << 20);
  const date = new Date();
  const req = await signHeader(
    { method: 'PUT', path: '/bucket/big', headers: { 'x-amz-decoded-content-length': String(data.length) } },
    { date, payloadHash: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD' },
  );
  const auth = await authenticateRequest(req, { region: REGION, lookupSecret });
  const chunks = [0, 1, 2, 3].map((i) => data.subarray(i << 20, (i + 1) << 20));
  const body = encodeSignedTrailer(auth, chunks, []).subarray(0);
  // Strip the trailer part: plain signed streaming ends with CRLF after the final chunk.
  const text = body.toString('latin1');
  const end = text.lastIndexOf('x-amz-trailer-signature:');
  const plain = Buffer.concat([body.subarray(0, end), Buffer.from('\r\n')]);
  const decoder = awsChunkedDecoderFor(auth, req.headers);
  let outputs = 0;
  let sameMemory = true;
  const inputs = new Set<ArrayBufferLike>();
  const pieces: Buffer[] = [];
  for (let i = 0; i < plain.length; i += 65536) pieces.push(plain.subarray(i, i + 65536));
  pieces.forEach((p) => inputs.add(p.buffer));
  const hash = createHash('sha256');
  await pipeline(
    Readable.from(pieces),
    decoder,
    new Writable({
      write(c: Buffer, _e, cb) {
        outputs += c.length;
        if (!inputs.has(c.buffer)) sameMemory = false;
        hash.update(c);
        cb();
      },
    }),
  );
  assert.equal(outputs, data.length);
  assert.ok(sameMemory, 'decoded data should be slices of the input buffers');
  assert.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
});
