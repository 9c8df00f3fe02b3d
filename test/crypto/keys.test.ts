// Key derivation is deterministic, separates purposes and identities, and length-prefixes its fields.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { constantTimeEqual, deriveObjectKey, lengthPrefixed, zeroize } from '../../src/crypto/keys.js';

const id = { bucketId: 'b1', versionId: 'v1', objectKey: 'photos/cat.jpg' };

test('deriveObjectKey is deterministic and matches the documented construction', () => {
  const root = Buffer.alloc(32, 7);
  const k = deriveObjectKey(root, 'data', id);
  assert.equal(k.length, 32);
  assert.ok(k.equals(deriveObjectKey(root, 'data', id)));
  const lp = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const expected = createHmac('sha256', root)
    .update(Buffer.concat([Buffer.from('coffre/object-key/v1\0', 'ascii'), lp('data'), lp('b1'), lp('v1')]))
    .update(lp('photos/cat.jpg'))
    .digest();
  assert.ok(k.equals(expected));
});

test('every input changes the key; shifted field boundaries do not collide', () => {
  const root = randomBytes(32);
  const base = deriveObjectKey(root, 'data', id).toString('hex');
  const variants = [
    deriveObjectKey(root, 'metadata', id),
    deriveObjectKey(randomBytes(32), 'data', id),
    deriveObjectKey(root, 'data', { ...id, bucketId: 'b2' }),
    deriveObjectKey(root, 'data', { ...id, versionId: 'v2' }),
    deriveObjectKey(root, 'data', { ...id, objectKey: 'photos/cat.jpeg' }),
    deriveObjectKey(root, 'data', { bucketId: 'b', versionId: '1v1', objectKey: id.objectKey }),
    deriveObjectKey(root, 'data', { ...id, objectKey: '' }),
  ].map((b) => b.toString('hex'));
  assert.equal(new Set([base, ...variants]).size, variants.length + 1);
});

test('deriveObjectKey refuses a short root key and an empty identity', () => {
  assert.throws(() => deriveObjectKey(randomBytes(16), 'data', id), RangeError);
  assert.throws(() => deriveObjectKey(randomBytes(32), 'data', { ...id, versionId: '' }), RangeError);
});

test('lengthPrefixed, constantTimeEqual and zeroize', () => {
  assert.deepEqual([...lengthPrefixed(Buffer.from('ab'), Buffer.alloc(0))], [0, 0, 0, 2, 97, 98, 0, 0, 0, 0]);
  assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abc')), true);
  assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abd')), false);
  assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('ab')), false);
  const a = randomBytes(32);
  const b = randomBytes(8);
  zeroize(a, undefined, b, null);
  assert.ok(a.every((x) => x === 0) && b.every((x) => x === 0));
});
