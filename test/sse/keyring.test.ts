// The SSE-S3 keyring: master keys sealed to operators' OpenPGP keys, unlocked by any one of them, rotation that
// keeps old objects readable, resealing to another set of operators, and GnuPG-exported keys.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { UserError } from '../../src/util/errors.js';
import { Keyring } from '../../src/sse/keyring.js';
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
    [{ ...ring, format: 'other' }, /not an SSE-S3 keyring/],
    [{ ...ring, v: 2 }, /unsupported/],
    [{ ...ring, current: 'nope' }, /no current key/],
    // An entry moved under another id is refused: the id is sealed with the key.
    [{ ...ring, current: 'ffff', keys: [{ ...ring.keys[0], id: 'ffff' }] }, /does not hold a master key/],
  ];
  for (const [file, message] of attempts) {
    const text = typeof file === 'string' ? file : JSON.stringify(file);
    await assert.rejects(Keyring.unlock(text, alice.privateKey), message);
  }
  await assert.rejects(Keyring.create([]), UserError);
  await assert.rejects(Keyring.create(['not a key']), UserError);
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
