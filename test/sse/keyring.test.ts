// The SSE-S3 keyring: master keys sealed to operators' OpenPGP keys, unlocked by any one of them, rotation that
// keeps old objects readable, resealing to another set of operators, GnuPG-exported keys; entries bound to
// their keyring and place and a MAC over the list, so that entries added, copied in, removed or reordered by
// someone without the master keys are refused; version 1 keyrings still read.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { lengthPrefixed } from '../../src/crypto/keys.js';
import { UserError } from '../../src/util/errors.js';
import {
  Keyring,
  MAX_OPENED_ENTRY_BYTES,
  openSealedEntry,
  parseKeyringFile,
  recipientUserIds,
} from '../../src/sse/keyring.js';
import { ObjectCrypto, storedEncryptionFor } from '../../src/sse/object-crypto.js';

const identity = { bucketId: 'b', versionId: 'v', objectKey: 'k' };

async function operator(name: string, passphrase?: string) {
  const { publicKey, privateKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name, email: `${name}@example.test` }],
    passphrase,
    format: 'armored',
  });
  return { publicKey, privateKey };
}

test('create, unlock, rotate, reseal', async () => {
  const alice = await operator('alice');
  const bob = await operator('bob', 'correct horse');
  const ring = await Keyring.create([alice.publicKey]);
  const params = ring.paramsForWrite();
  assert.equal(params.kind, 'sse-s3');
  const stored = storedEncryptionFor(params);
  const sealedMeta = ObjectCrypto.open(params, identity)!.encryptMetadata({ a: '1' });

  const file = ring.serialize();
  if (params.kind === 'sse-s3') {
    assert.ok(
      !file.includes(params.rootKey.toString('hex')) && !file.includes(params.rootKey.toString('base64')),
    );
  }
  const opened = await Keyring.unlock(file, alice.privateKey);
  assert.equal(opened.currentKeyId, ring.currentKeyId);
  assert.deepEqual(ObjectCrypto.open(opened.paramsForRead(stored), identity)!.checkKeyMatches(sealedMeta), {
    a: '1',
  });
  await assert.rejects(Keyring.unlock(file, bob.privateKey, 'correct horse'), UserError);

  // Rotation: new objects use the new key; the old object still opens.
  const oldId = opened.currentKeyId;
  const newId = await opened.rotate([alice.publicKey]);
  assert.notEqual(newId, oldId);
  assert.equal(storedEncryptionFor(opened.paramsForWrite()).kind, 'sse-s3');
  // Reseal to alice and bob: bob (passphrase-protected key) can now open both keys.
  await opened.reseal([alice.publicKey, bob.publicKey]);
  const byBob = await Keyring.unlock(opened.serialize(), bob.privateKey, 'correct horse');
  assert.equal(byBob.currentKeyId, newId);
  assert.deepEqual(ObjectCrypto.open(byBob.paramsForRead(stored), identity)!.checkKeyMatches(sealedMeta), {
    a: '1',
  });
  await assert.rejects(Keyring.unlock(opened.serialize(), bob.privateKey, 'wrong'), UserError);

  byBob.lock();
  assert.throws(() => byBob.paramsForRead(stored), /not in the keyring/);
});

test('damaged or foreign keyring files are refused with a clear message', async () => {
  const alice = await operator('alice');
  const ring = JSON.parse((await Keyring.create([alice.publicKey])).serialize());
  const attempts: [unknown, RegExp][] = [
    ['{', /not valid JSON/],
    [[], /not an SSE-S3 keyring/],
    [{ ...ring, format: 'other' }, /not an SSE-S3 keyring/],
    [{ ...ring, v: 3 }, /unsupported/],
    [{ ...ring, current: 'nope' }, /no current key/],
    [{ ...ring, keys: [] }, /no current key/],
    [{ ...ring, keyring: 'short' }, /keyring id is not 32 hex digits/],
    [{ ...ring, mac: undefined }, /MAC is not 64 hex digits/],
    [{ ...ring, keys: [{ ...ring.keys[0], check: undefined }] }, /check value/],
    [{ ...ring, keys: [{ ...ring.keys[0], recipients: 'x' }] }, /recipients is not a list/],
    [{ ...ring, keys: [ring.keys[0], ring.keys[0]] }, /appears twice/],
    // An entry moved under another id is refused: the id is sealed with the key.
    [
      { ...ring, current: 'ffffffffffffffff', keys: [{ ...ring.keys[0], id: 'ffffffffffffffff' }] },
      /holds master key [0-9a-f]{16}/,
    ],
    [{ ...ring, keys: [{ ...ring.keys[0], created: '2001-01-01T00:00:00.000Z' }] }, /another creation time/],
  ];
  for (const [file, message] of attempts) {
    const text = typeof file === 'string' ? file : JSON.stringify(file);
    await assert.rejects(Keyring.unlock(text, alice.privateKey), message);
  }
  await assert.rejects(Keyring.create([]), UserError);
  await assert.rejects(Keyring.create(['not a key']), UserError);
});

test('entries are bound to their keyring and place, and the MAC covers the list', async () => {
  const alice = await operator('alice');
  const ring = await Keyring.create([alice.publicKey]);
  await ring.rotate([alice.publicKey]);
  await ring.rotate([alice.publicKey]);
  const file = JSON.parse(ring.serialize());
  const [k0, k1, k2] = file.keys;
  const other = JSON.parse((await Keyring.create([alice.publicKey])).serialize());
  const attempts: [string, unknown, RegExp][] = [
    [
      'copied from another keyring',
      { ...file, keys: [k0, k1, k2, other.keys[0]], current: other.keys[0].id },
      /sealed for keyring/,
    ],
    ['reordered', { ...file, keys: [k1, k0, k2] }, /sealed at position/],
    ['oldest removed', { ...file, keys: [k1, k2] }, /sealed at position/],
    ['newest removed', { ...file, keys: [k0, k1], current: k1.id }, /MAC does not match/],
    ['older made current', { ...file, current: k0.id }, /not its newest/],
    [
      'recipients edited',
      { ...file, keys: [k0, k1, { ...k2, recipients: ['someone'] }] },
      /MAC does not match/,
    ],
    ['MAC of another keyring', { ...file, mac: other.mac }, /MAC does not match/],
  ];
  const keys = ring.masterKeys();
  for (const [what, tampered, message] of attempts) {
    const text = JSON.stringify(tampered);
    await assert.rejects(Keyring.unlock(text, alice.privateKey), message, what);
  }
  // The node, handed the keys, checks the same MAC.
  assert.throws(
    () => Keyring.fromUnlockedKeys(JSON.stringify({ ...file, keys: [k0, k1], current: k1.id }), keys),
    /MAC/,
  );
  assert.equal(Keyring.fromUnlockedKeys(ring.serialize(), keys).currentKeyId, k2.id);
  assert.equal((await Keyring.unlock(ring.serialize(), alice.privateKey)).keyringId, file.keyring);
});

test('a version 1 keyring still opens, refuses rotation, and comes out of reseal in version 2', async () => {
  const alice = await operator('alice');
  const key = randomBytes(32);
  const id = randomBytes(8).toString('hex');
  const payload = Buffer.concat([
    Buffer.from('coffre/sse-s3-master-key/v1\0'),
    lengthPrefixed(Buffer.from(id)),
    key,
  ]);
  const sealed = await openpgp.encrypt({
    message: await openpgp.createMessage({ binary: payload }),
    encryptionKeys: await openpgp.readKey({ armoredKey: alice.publicKey }),
  });
  const v1 = JSON.stringify({
    format: 'coffre-sse-s3-keyring',
    v: 1,
    current: id,
    keys: [{ id, created: new Date().toISOString(), recipients: [], sealed }],
  });
  const ring = await Keyring.unlock(v1, alice.privateKey);
  assert.equal(ring.keyringId, undefined);
  assert.deepEqual(ring.masterKeys().get(id), key);
  assert.equal(Keyring.fromUnlockedKeys(v1, new Map([[id, key]])).currentKeyId, id);
  await assert.rejects(ring.rotate([alice.publicKey]), /format 1.*reseal/);
  await ring.reseal([alice.publicKey]);
  const upgraded = JSON.parse(ring.serialize());
  assert.equal(upgraded.v, 2);
  assert.match(upgraded.keyring, /^[0-9a-f]{32}$/);
  const reopened = await Keyring.unlock(ring.serialize(), alice.privateKey);
  assert.deepEqual(reopened.masterKeys().get(id), key);
  await reopened.rotate([alice.publicKey]);
});

const gpgMissing =
  spawnSync('gpg', ['--version'], { stdio: 'ignore' }).status !== 0 ? 'gpg is not installed' : false;

test('keys exported from GnuPG work as operator keys', { skip: gpgMissing }, async () => {
  const home = mkdtempSync(join(tmpdir(), 'coffre-gpg-'));
  const gpg = (...args: string[]) => {
    const r = spawnSync('gpg', [
      '--homedir',
      home,
      '--batch',
      '--pinentry-mode',
      'loopback',
      '--passphrase',
      '',
      ...args,
    ]);
    assert.equal(r.status, 0, r.stderr.toString());
    return r.stdout.toString();
  };
  try {
    gpg('--quick-gen-key', 'operator <operator@example.test>', 'default', 'default', 'never');
    const publicKey = gpg('--armor', '--export', 'operator@example.test');
    const privateKey = gpg('--armor', '--export-secret-keys', 'operator@example.test');
    const ring = await Keyring.create([publicKey]);
    const opened = await Keyring.unlock(ring.serialize(), privateKey);
    assert.equal(opened.currentKeyId, ring.currentKeyId);
  } finally {
    spawnSync('gpgconf', ['--homedir', home, '--kill', 'gpg-agent'], { stdio: 'ignore' });
    rmSync(home, { recursive: true, force: true });
  }
});

test('a sealed entry that decompresses past what an entry holds is refused, not inflated', async () => {
  const op = await operator('bomb');
  const publicKey = await openpgp.readKey({ armoredKey: op.publicKey });
  const privateKey = await openpgp.readPrivateKey({ armoredKey: op.privateKey });
  // Anyone with the operator's public key can seal this: 64 MiB of zeros, compressed to a few tens of KiB.
  const bomb = (await openpgp.encrypt({
    message: await openpgp.createMessage({ binary: new Uint8Array(64 * 1024 * 1024) }),
    encryptionKeys: publicKey,
    config: { preferredCompressionAlgorithm: openpgp.enums.compression.zlib },
  })) as string;
  assert.ok(bomb.length < 1024 * 1024, `the bomb is small (${bomb.length} chars)`);
  await assert.rejects(openSealedEntry(bomb, privateKey), /decompress/i);
  // An entry-sized message still opens.
  const fits = (await openpgp.encrypt({
    message: await openpgp.createMessage({ binary: new Uint8Array(MAX_OPENED_ENTRY_BYTES / 2) }),
    encryptionKeys: publicKey,
    config: { preferredCompressionAlgorithm: openpgp.enums.compression.zlib },
  })) as string;
  assert.equal((await openSealedEntry(fits, privateKey)).length, MAX_OPENED_ENTRY_BYTES / 2);
});

test('the keyring names its operators by user id from the public keys it keeps, never a private key', async () => {
  const alice = await operator('alice');
  const bob = await operator('bob');
  // A private key given where a public key was expected seals to its public part; only that is kept.
  const ring = await Keyring.create([alice.privateKey, bob.publicKey]);
  const fps = async (armored: string) => (await openpgp.readKey({ armoredKey: armored })).getFingerprint();
  const [aliceFp, bobFp] = [await fps(alice.publicKey), await fps(bob.publicKey)];
  assert.doesNotMatch(ring.serialize(), /PRIVATE KEY/);
  assert.deepEqual(await ring.recipientUserIds(), {
    [aliceFp]: 'alice <alice@example.test>',
    [bobFp]: 'bob <bob@example.test>',
  });
  // Rotating to alice alone keeps bob's key: the first master key is still sealed to him.
  await ring.rotate([alice.publicKey]);
  assert.equal(Object.keys(await ring.recipientUserIds()).length, 2);
  // Resealing to alice alone forgets him.
  await ring.reseal([alice.publicKey]);
  assert.deepEqual(await ring.recipientUserIds(), { [aliceFp]: 'alice <alice@example.test>' });
  const file = JSON.parse(ring.serialize()) as { publicKeys: string[] };
  assert.equal(file.publicKeys.length, 1);
  // The list is outside the MAC, so whoever writes the file may change it: a key planted there counts only
  // for its own fingerprint, which no entry names, and a malformed one names no one.
  const mallory = await operator('alice-the-admin');
  const planted = { ...file, publicKeys: [mallory.publicKey, 'not a key', ...file.publicKeys] };
  const text = JSON.stringify(planted);
  assert.deepEqual(await recipientUserIds(parseKeyringFile(text)), {
    [aliceFp]: 'alice <alice@example.test>',
  });
  await Keyring.unlock(text, alice.privateKey); // and the keyring still opens
  // Not a list of bounded strings: the file is damaged, as for any other field.
  for (const bad of [{ k: 1 }, [42], ['x'.repeat(70 * 1024)]])
    assert.throws(
      () => parseKeyringFile(JSON.stringify({ ...file, publicKeys: bad })),
      /damaged/,
      JSON.stringify(bad).slice(0, 40),
    );
  // Without the list (a keyring written before it was kept), no user id is known.
  const { publicKeys: _dropped, ...older } = file;
  assert.deepEqual(await recipientUserIds(parseKeyringFile(JSON.stringify(older))), {});
});

test('an object key re-wrapped under a newer master key opens to the same key; the old master key can then go', async () => {
  const alice = await operator('alice');
  const ring = await Keyring.create([alice.publicKey]);
  const old = ring.currentKeyId;
  const written = ring.paramsForWrite();
  assert.ok(written.kind === 'sse-s3' && written.wrappedKey);
  const stored = storedEncryptionFor(written);
  assert.equal(ring.rewrapped(stored), undefined, 'already under the current key');
  await ring.rotate([alice.publicKey]);
  const moved = ring.rewrapped(stored)!;
  assert.ok(moved.kind === 'sse-s3');
  assert.equal(moved.keyId, ring.currentKeyId);
  assert.notEqual(moved.wrappedKey, stored.kind === 'sse-s3' ? stored.wrappedKey : '');
  await assert.rejects(ring.drop(ring.currentKeyId, [alice.publicKey]), /current key/);
  await ring.drop(old, [alice.publicKey]);
  // The resealed keyring opens with the operator's key, holds only the newer key, and reads the object.
  const reopened = await Keyring.unlock(ring.serialize(), alice.privateKey);
  assert.deepEqual(
    reopened.summary().keys.map((k) => k.id),
    [moved.keyId],
  );
  const read = reopened.paramsForRead(moved);
  assert.ok(read.kind === 'sse-s3');
  assert.deepEqual(read.rootKey, written.rootKey);
  // The record before the re-wrap names a key that is gone: a server fault, not a wrong read.
  assert.throws(() => reopened.paramsForRead(stored), /not in the keyring/);
  // A wrapped key moved onto another key id does not open.
  assert.throws(
    () => reopened.paramsForRead({ ...moved, wrappedKey: (stored as { wrappedKey: string }).wrappedKey }),
    /does not open/,
  );
});

test('an object written before keys were wrapped gets a wrapped key: it reads the same once its master key is dropped', async () => {
  const alice = await operator('alice');
  const ring = await Keyring.create([alice.publicKey]);
  const old = ring.currentKeyId;
  // Its record names the master key and carries no wrapped key: its keys derive from the master key itself.
  const legacy = { v: 2 as const, kind: 'sse-s3' as const, alg: 'AES256' as const, keyId: old };
  const before = ring.paramsForRead(legacy);
  assert.ok(before.kind === 'sse-s3' && before.wrappedKey === undefined);
  const root = Buffer.from(before.rootKey);
  await ring.rotate([alice.publicKey]);
  const moved = ring.rewrapped(legacy)!;
  assert.ok(moved.kind === 'sse-s3' && moved.wrappedKey !== undefined);
  assert.equal(moved.keyId, ring.currentKeyId);
  // Under the current key now: a second pass leaves it.
  assert.equal(ring.rewrapped(moved), undefined);
  await ring.drop(old, [alice.publicKey]);
  const reopened = await Keyring.unlock(ring.serialize(), alice.privateKey);
  const read = reopened.paramsForRead(moved);
  assert.ok(read.kind === 'sse-s3');
  assert.deepEqual(read.rootKey, root);
  assert.throws(() => reopened.paramsForRead(legacy), /not in the keyring/);
});
