import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { AwsCrc32 } from '@aws-crypto/crc32';
import { AwsCrc32c } from '@aws-crypto/crc32c';
import { Crc64Nvme } from '@aws-sdk/crc64-nvme';
import { S3Error } from '../../../src/util/s3-error.js';
import {
  BodyVerifier,
  bodyExpectationsFromHeaders,
  computeChecksum,
  crc32,
  crc32c,
  createDigester,
  type BodyExpectations,
} from '../../../src/api/s3/checksum.js';

const CHECK = Buffer.from('123456789');

test('known answers for "123456789"', () => {
  assert.equal(crc32c(CHECK).toString(16), 'e3069283');
  assert.equal(crc32(CHECK).toString(16), 'cbf43926');
  const crc64 = createDigester('CRC64NVME');
  crc64.update(CHECK);
  assert.equal(crc64.digest().toString('hex'), 'ae8b14860a799888');
  assert.equal(computeChecksum('CRC32C', CHECK), Buffer.from('e3069283', 'hex').toString('base64'));
  assert.equal(computeChecksum('SHA1', CHECK), createHash('sha1').update(CHECK).digest('base64'));
});

test('CRCs agree with the AWS SDK implementations on random data split anywhere', async () => {
  for (const len of [0, 1, 7, 8, 9, 63, 1000, 65536 + 3]) {
    const data = randomBytes(len);
    for (const [alg, Ref] of [
      ['CRC32', AwsCrc32],
      ['CRC32C', AwsCrc32c],
      ['CRC64NVME', Crc64Nvme],
    ] as const) {
      const ref = new Ref();
      ref.update(data);
      const expected = Buffer.from(await ref.digest()).toString('hex');
      const d = createDigester(alg);
      const cut = Math.floor(len / 3);
      d.update(data.subarray(0, cut));
      d.update(data.subarray(cut));
      assert.equal(d.digest().toString('hex'), expected, `${alg} of ${len} bytes`);
    }
  }
});

async function verify(expect: BodyExpectations, data: Buffer): Promise<BodyVerifier> {
  const v = new BodyVerifier(expect);
  await pipeline(
    Readable.from([data.subarray(0, 10), data.subarray(10)]),
    v,
    new Writable({ write: (_c, _e, cb) => cb() }),
  );
  return v;
}

async function rejectsS3(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof S3Error, String(err));
    assert.equal(err.code, code, err.message);
    return true;
  });
}

const DATA = randomBytes(5000);
const b64 = (alg: string) => createHash(alg).update(DATA).digest('base64');

test('Content-MD5: match, mismatch (BadDigest) and malformed (InvalidDigest)', async () => {
  const v = await verify({ contentMd5: b64('md5') }, DATA);
  assert.equal(v.result.md5Hex, createHash('md5').update(DATA).digest('hex'));
  assert.equal(v.result.length, DATA.length);
  await rejectsS3(verify({ contentMd5: createHash('md5').update('x').digest('base64') }, DATA), 'BadDigest');
  assert.throws(
    () => new BodyVerifier({ contentMd5: 'abc' }),
    (e: unknown) => (e as S3Error).code === 'InvalidDigest',
  );
});

test('x-amz-content-sha256 mismatch is XAmzContentSHA256Mismatch', async () => {
  const hex = createHash('sha256').update(DATA).digest('hex');
  assert.equal((await verify({ contentSha256: hex }, DATA)).result.sha256Hex, hex);
  await rejectsS3(verify({ contentSha256: 'a'.repeat(64) }, DATA), 'XAmzContentSHA256Mismatch');
});

test('x-amz-checksum-* headers: computed, checked, malformed values refused', async () => {
  for (const alg of ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'] as const) {
    const value = computeChecksum(alg, DATA);
    const headers = { [`x-amz-checksum-${alg.toLowerCase()}`]: value };
    const v = await verify(bodyExpectationsFromHeaders(headers), DATA);
    assert.deepEqual(v.result.checksum, { algorithm: alg, value });
    const wrong = computeChecksum(alg, Buffer.from('other'));
    await rejectsS3(
      verify(bodyExpectationsFromHeaders({ [`x-amz-checksum-${alg.toLowerCase()}`]: wrong }), DATA),
      'BadDigest',
    );
    assert.throws(
      () =>
        new BodyVerifier(
          bodyExpectationsFromHeaders({ [`x-amz-checksum-${alg.toLowerCase()}`]: 'AAAA' + value }),
        ),
      (e: unknown) => (e as S3Error).code === 'InvalidRequest',
    );
  }
  assert.equal(b64('sha256'), computeChecksum('SHA256', DATA));
});

test('checksum header combinations', async () => {
  assert.throws(
    () =>
      bodyExpectationsFromHeaders({
        'x-amz-checksum-crc32': computeChecksum('CRC32', DATA),
        'x-amz-checksum-sha1': computeChecksum('SHA1', DATA),
      }),
    (e: unknown) => (e as S3Error).code === 'InvalidRequest',
  );
  // The SDK names the algorithm alone: compute it so the response can carry it.
  const v = await verify(bodyExpectationsFromHeaders({ 'x-amz-sdk-checksum-algorithm': 'CRC32C' }), DATA);
  assert.equal(v.result.checksum?.value, computeChecksum('CRC32C', DATA));
  assert.throws(
    () =>
      bodyExpectationsFromHeaders({
        'x-amz-sdk-checksum-algorithm': 'SHA1',
        'x-amz-checksum-crc32': computeChecksum('CRC32', DATA),
      }),
    (e: unknown) => (e as S3Error).code === 'InvalidRequest',
  );
  assert.throws(
    () => bodyExpectationsFromHeaders({ 'x-amz-checksum-md4': 'AAAA' }),
    (e: unknown) => (e as S3Error).code === 'InvalidRequest',
  );
  // A declared trailer needs a chunked body to come from.
  assert.throws(
    () => bodyExpectationsFromHeaders({ 'x-amz-trailer': 'x-amz-checksum-crc32' }),
    (e: unknown) => (e as S3Error).code === 'InvalidRequest',
  );
  // Sha256 checksum and signed payload share one hash and both are checked.
  const both = bodyExpectationsFromHeaders(
    { 'x-amz-checksum-sha256': computeChecksum('SHA256', DATA) },
    { expectedSha256: createHash('sha256').update(DATA).digest('hex') },
  );
  assert.equal((await verify(both, DATA)).result.checksum?.algorithm, 'SHA256');
  await rejectsS3(verify({ ...both, contentSha256: 'b'.repeat(64) }, DATA), 'XAmzContentSHA256Mismatch');
});

test('declared length is enforced', async () => {
  await verify({ contentLength: DATA.length }, DATA);
  await rejectsS3(verify({ contentLength: DATA.length + 1 }, DATA), 'IncompleteBody');
  await rejectsS3(verify({ contentLength: DATA.length - 1 }, DATA), 'InvalidRequest');
});
