// SSE-C header parsing: valid headers give sse-c params, absent ones plaintext, and every malformed combination
// gives exactly the S3 error clients expect — without the key ever appearing in the error.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { S3Error } from '../../src/util/s3-error.js';
import {
  COPY_SOURCE_SSE_C_PREFIX,
  SSE_C_PREFIX,
  dispose,
  parseSseCHeaders,
  requestedServerSideEncryption,
  requireSecureTransport,
  responseHeaders,
} from '../../src/sse/params.js';
import type { HeaderValues } from '../../src/sse/params.js';

const key = randomBytes(32);
const keyB64 = key.toString('base64');
const md5B64 = createHash('md5').update(key).digest('base64');

function headers(prefix: string, alg?: string, k?: string, md5?: string): HeaderValues {
  const h: HeaderValues = { host: 'localhost' };
  if (alg !== undefined) h[`${prefix}algorithm`] = alg;
  if (k !== undefined) h[`${prefix}key`] = k;
  if (md5 !== undefined) h[`${prefix}key-md5`] = md5;
  return h;
}

test('valid SSE-C headers give the key and its MD5; none give plaintext', () => {
  for (const prefix of [SSE_C_PREFIX, COPY_SOURCE_SSE_C_PREFIX] as const) {
    const p = parseSseCHeaders(headers(prefix, 'AES256', keyB64, md5B64), prefix);
    assert.equal(p.kind, 'sse-c');
    if (p.kind !== 'sse-c') return;
    assert.ok(p.key.equals(key));
    assert.equal(p.keyMd5, md5B64);
    assert.deepEqual(parseSseCHeaders(headers(prefix), prefix), { kind: 'plaintext' });
  }
  // Headers under the other prefix are not this prefix's business.
  assert.equal(
    parseSseCHeaders(headers(COPY_SOURCE_SSE_C_PREFIX, 'AES256', keyB64, md5B64)).kind,
    'plaintext',
  );
  // Form fields keep the client's capitalisation.
  const form = { 'X-Amz-Server-Side-Encryption-Customer-Algorithm': 'AES256' } as HeaderValues;
  form['x-amz-server-side-encryption-customer-key'] = keyB64;
  form['x-amz-server-side-encryption-customer-key-MD5'] = md5B64;
  assert.equal(parseSseCHeaders(form).kind, 'sse-c');
});

test('malformed SSE-C headers give the S3 error table', () => {
  const short = randomBytes(16);
  const shortMd5 = createHash('md5').update(short).digest('base64');
  const otherMd5 = createHash('md5').update(randomBytes(32)).digest('base64');
  const cases: [string, HeaderValues, RegExp, string][] = [
    [
      'wrong algorithm',
      headers(SSE_C_PREFIX, 'AES128', keyB64, md5B64),
      /valid encryption algorithm/,
      'algorithm',
    ],
    [
      'lower-case algorithm',
      headers(SSE_C_PREFIX, 'aes256', keyB64, md5B64),
      /valid encryption algorithm/,
      'algorithm',
    ],
    [
      'algorithm missing',
      headers(SSE_C_PREFIX, undefined, keyB64, md5B64),
      /valid encryption algorithm/,
      'algorithm',
    ],
    ['key missing', headers(SSE_C_PREFIX, 'AES256', undefined, md5B64), /appropriate secret key/, 'key'],
    ['key only algorithm', headers(SSE_C_PREFIX, 'AES256'), /appropriate secret key/, 'key'],
    [
      'key too short',
      headers(SSE_C_PREFIX, 'AES256', short.toString('base64'), shortMd5),
      /secret key was invalid/,
      'key',
    ],
    [
      'key too long',
      headers(SSE_C_PREFIX, 'AES256', randomBytes(33).toString('base64'), md5B64),
      /invalid/,
      'key',
    ],
    [
      'key not base64',
      headers(SSE_C_PREFIX, 'AES256', '!'.repeat(44), md5B64),
      /secret key was invalid/,
      'key',
    ],
    [
      'key url-safe base64',
      headers(SSE_C_PREFIX, 'AES256', keyB64.replace(/\+/g, '-') + '-', md5B64),
      /invalid/,
      'key',
    ],
    ['MD5 missing', headers(SSE_C_PREFIX, 'AES256', keyB64), /client calculated MD5/, 'key-md5'],
    ['MD5 mismatch', headers(SSE_C_PREFIX, 'AES256', keyB64, otherMd5), /did not match/, 'key-md5'],
    ['MD5 not base64', headers(SSE_C_PREFIX, 'AES256', keyB64, 'zz'), /did not match/, 'key-md5'],
    [
      'MD5 in hex',
      headers(SSE_C_PREFIX, 'AES256', keyB64, createHash('md5').update(key).digest('hex')),
      /did not match/,
      'key-md5',
    ],
    [
      'duplicated key header',
      {
        [`${SSE_C_PREFIX}algorithm`]: 'AES256',
        [`${SSE_C_PREFIX}key`]: [keyB64, keyB64],
        [`${SSE_C_PREFIX}key-md5`]: md5B64,
      },
      /invalid/,
      'key',
    ],
    [
      'copy source, wrong MD5',
      headers(COPY_SOURCE_SSE_C_PREFIX, 'AES256', keyB64, otherMd5),
      /did not match/,
      'copy:key-md5',
    ],
  ];
  for (const [what, h, message, arg] of cases) {
    const prefix = arg.startsWith('copy:') ? COPY_SOURCE_SSE_C_PREFIX : SSE_C_PREFIX;
    assert.throws(
      () => parseSseCHeaders(h, prefix),
      (err: unknown) => {
        assert.ok(err instanceof S3Error, what);
        assert.equal(err.code, 'InvalidArgument', what);
        assert.equal(err.status, 400, what);
        assert.match(err.message, message, what);
        assert.equal(err.extra.ArgumentName, prefix + arg.replace('copy:', ''), what);
        const shown = JSON.stringify([err.message, err.extra]);
        assert.ok(!shown.includes(keyB64) && !shown.includes(keyB64.slice(0, 20)), `${what}: key leaked`);
        return true;
      },
      what,
    );
  }
});

test('responseHeaders echo algorithm and key MD5, never the key', () => {
  const p = parseSseCHeaders(headers(SSE_C_PREFIX, 'AES256', keyB64, md5B64));
  const h = responseHeaders(p);
  assert.deepEqual(h, {
    'x-amz-server-side-encryption-customer-algorithm': 'AES256',
    'x-amz-server-side-encryption-customer-key-MD5': md5B64,
  });
  assert.deepEqual(responseHeaders({ kind: 'plaintext' }), {});
  assert.deepEqual(responseHeaders({ kind: 'sse-s3', keyId: 'k1', rootKey: randomBytes(32) }), {
    'x-amz-server-side-encryption': 'AES256',
  });
});

test('dispose zeroes the customer key', () => {
  const p = parseSseCHeaders(headers(SSE_C_PREFIX, 'AES256', keyB64, md5B64));
  assert.equal(p.kind, 'sse-c');
  if (p.kind !== 'sse-c') return;
  const held = p.key;
  dispose(p, undefined, { kind: 'plaintext' });
  assert.ok(held.every((b) => b === 0));
  assert.ok(!key.every((b) => b === 0), 'the parsed key is a copy, not the caller buffer');
});

test('SSE-C over plain HTTP is refused except from loopback or with the operator override', () => {
  const p = parseSseCHeaders(headers(SSE_C_PREFIX, 'AES256', keyB64, md5B64));
  const facts = { encrypted: false, loopback: false, allowInsecure: false };
  assert.throws(
    () => requireSecureTransport(p, facts),
    (err: unknown) => err instanceof S3Error && err.code === 'InvalidRequest' && err.status === 400,
  );
  requireSecureTransport(p, { ...facts, encrypted: true });
  requireSecureTransport(p, { ...facts, loopback: true });
  requireSecureTransport(p, { ...facts, allowInsecure: true });
  requireSecureTransport({ kind: 'plaintext' }, facts);
});

test('x-amz-server-side-encryption: AES256 asks for SSE-S3; KMS, junk, or mixing with SSE-C is refused', () => {
  const plain = { kind: 'plaintext' } as const;
  const sse = (v: string | string[]) => ({ 'x-amz-server-side-encryption': v });
  assert.equal(requestedServerSideEncryption({}, plain), 'none');
  assert.equal(requestedServerSideEncryption(sse('AES256'), plain), 'AES256');
  const is = (code: string, status: number) => (err: unknown) =>
    err instanceof S3Error && err.code === code && err.status === status;
  assert.throws(() => requestedServerSideEncryption(sse('aws:kms'), plain), is('NotImplemented', 501));
  assert.throws(() => requestedServerSideEncryption(sse('AES128'), plain), is('InvalidArgument', 400));
  assert.throws(
    () => requestedServerSideEncryption(sse(['AES256', 'AES256']), plain),
    is('InvalidArgument', 400),
  );
  const c = parseSseCHeaders(headers(SSE_C_PREFIX, 'AES256', keyB64, md5B64));
  assert.throws(() => requestedServerSideEncryption(sse('AES256'), c), is('InvalidArgument', 400));
});
