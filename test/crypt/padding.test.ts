import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MIN_PADDED, padme } from '../../src/crypt/padding.js';
import { collect, decryptMessage, encryptMessage } from '../../src/crypt/openpgp.js';
import { hasTool, tempDir } from './helpers.js';

const pass = Buffer.from('q'.repeat(428));
const seal = (data: Buffer, padTo?: number) =>
  collect(
    encryptMessage(
      [data.subarray(0, 3), data.subarray(3)],
      data.length,
      { kind: 'passphrase', passphrase: pass },
      padTo,
    ),
  );

test('Padmé rounds up by at most ~12% and never below the minimum', () => {
  assert.equal(padme(0), MIN_PADDED);
  assert.equal(padme(12), MIN_PADDED);
  assert.equal(padme(1048576), 1048576);
  assert.equal(padme(1048577), 1081344);
  for (const n of [5000, 70000, 3_000_000, 1e9]) {
    assert.ok(padme(n) >= n && padme(n) <= n * 1.125, String(n));
  }
});

test('padded objects of sizes in one bucket are the same length and decrypt to the exact content', async () => {
  const lengths = new Set<number>();
  for (const size of [0, 1, 500, 1024]) {
    const data = randomBytes(size);
    const sealed = await seal(data, padme(size));
    lengths.add(sealed.length);
    assert.deepEqual(
      await collect(decryptMessage([sealed], { passphrase: pass }, { maxLength: data.length })),
      data,
    );
  }
  assert.equal(lengths.size, 1);
  const a = await seal(randomBytes(66_000), padme(66_000));
  const b = await seal(randomBytes(67_000), padme(67_000));
  assert.equal(a.length, b.length);
  assert.notEqual((await seal(randomBytes(66_000))).length, (await seal(randomBytes(67_000))).length);
});

test('gpg reads padded objects', { skip: hasTool('gpg') ? false : 'needs gpg' }, async () => {
  const dir = tempDir('pad-gpg');
  const home = join(dir, 'gnupg');
  mkdirSync(home, { mode: 0o700 });
  writeFileSync(join(dir, 'pass'), pass);
  for (const size of [0, 70_000, 200_001]) {
    const data = randomBytes(size);
    writeFileSync(join(dir, 'obj'), await seal(data, padme(size)));
    const r = spawnSync(
      'gpg',
      [
        '--batch',
        '-q',
        '--pinentry-mode',
        'loopback',
        '--passphrase-file',
        join(dir, 'pass'),
        '--decrypt',
        join(dir, 'obj'),
      ],
      {
        env: { ...process.env, GNUPGHOME: home },
        maxBuffer: 1 << 24,
      },
    );
    assert.equal(r.status, 0, r.stderr.toString());
    assert.deepEqual(r.stdout, data);
  }
});
