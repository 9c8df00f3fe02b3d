// The crypt CLI end to end on a directory remote, with key files only (no GnuPG needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { coffre, keyOfLine, keyPair, ok, tempDir } from './helpers.js';

function objectFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'tmp') walk(p);
      } else out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

test('crypt CLI: hybrid chunked remote — put/get/ls/fsck, errors, keys add/remove, rotate with resume', async () => {
  const base = tempDir('crypt-cli');
  const env = { COFFRE_CRYPT_HOME: join(base, 'home'), GNUPGHOME: join(base, 'nognupg') };
  const remoteDir = join(base, 'remote');
  mkdirSync(remoteDir);
  const a = await keyPair(base, 'a');
  const b = await keyPair(base, 'b');
  const big = join(base, 'big.bin');
  const small = join(base, 'small.txt');
  writeFileSync(big, randomBytes(200_000));
  writeFileSync(small, 'hello\n');

  ok(
    [
      'init',
      'r',
      '--type',
      'directory',
      '--path',
      remoteDir,
      '--encryption',
      'hybrid',
      '--keyid',
      a.pub,
      '--chunk',
      '64KiB',
      '--mac',
      'HMACSHA512',
    ],
    env,
  );
  const cfg = join(base, 'home', 'r.json');
  assert.equal(statSync(cfg).mode & 0o777, 0o600);
  const asA = ['--no-gpg', '--secret-key', a.sec];

  const put = JSON.parse(ok(['put', 'r', big, small, '--json', '-j', '2', ...asA], env)) as {
    file: string;
    key: string;
  }[];
  const bigKey = put.find((p) => p.file === big)!.key;
  const smallKey = put.find((p) => p.file === small)!.key;
  assert.match(bigKey, /^SHA256E-s200000--[0-9a-f]{64}\.bin$/);
  assert.equal(smallKey, 'SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt');
  const files = objectFiles(remoteDir);
  assert.equal(files.length, 4 + 1, 'four 64 KiB chunks for 200 kB plus one for the small file');
  for (const f of files) assert.match(f, /GPGHMACSHA512--[0-9a-f]{128}$/);

  const ls = JSON.parse(ok(['ls', 'r', '--json'], env)) as { key: string; chunks: number }[];
  assert.deepEqual(ls.map((e) => e.key).sort(), [bigKey, smallKey].sort());
  assert.match(ok(['fsck', 'r', '--full', ...asA], env), /ok +SHA256E-s200000/);

  const out = join(base, 'out.bin');
  ok(['get', 'r', bigKey, '-o', out, ...asA], env);
  assert.deepEqual(readFileSync(out), readFileSync(big));

  // no secret key: one clear line naming the key id, non-zero exit
  const noKey = coffre(['get', 'r', bigKey, '-o', join(base, 'x'), '--no-gpg'], env);
  assert.notEqual(noKey.code, 0);
  assert.match(noKey.stderr, new RegExp(`no secret key for ${a.id}`));
  assert.equal(noKey.stderr.trim().split('\n').length, 1);
  // wrong secret key
  const wrong = coffre(['get', 'r', bigKey, '-o', join(base, 'x'), '--no-gpg', '--secret-key', b.sec], env);
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /cannot decrypt the cipher/);

  // corrupted object: integrity failure, and no output file appears
  const victim = files.reduce((a, b) => (statSync(a).size >= statSync(b).size ? a : b)); // a 64 KiB chunk
  chmodSync(victim, 0o644);
  const bytes = readFileSync(victim);
  bytes[bytes.length - 40] ^= 0xff;
  writeFileSync(victim, bytes);
  const bad = join(base, 'bad.bin');
  const corrupt = coffre(['get', 'r', bigKey, '-o', bad, ...asA], env);
  const corruptSmall = coffre(['get', 'r', smallKey, '-o', bad, ...asA], env);
  assert.ok(corrupt.code !== 0 || corruptSmall.code !== 0);
  assert.match(corrupt.stderr + corruptSmall.stderr, /integrity check failed/);
  assert.ok(!existsSync(bad) || readFileSync(bad).equals(readFileSync(small)));
  const fsck = coffre(['fsck', 'r', '--full', '--json', ...asA], env);
  assert.notEqual(fsck.code, 0);
  assert.equal((JSON.parse(fsck.stdout) as { ok: boolean }[]).filter((r) => !r.ok).length, 1);
  writeFileSync(
    victim,
    readFileSync(victim).map((v, i, arr) => (i === arr.length - 40 ? v ^ 0xff : v)),
  );
  ok(['fsck', 'r', '--full', ...asA], env);

  // keys add B, remove A: B now opens the cipher, the objects did not change
  ok(['keys', 'add', 'r', b.pub, ...asA], env);
  const removed = coffre(['keys', 'remove', 'r', a.id, ...asA], env);
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(removed.stderr, /does not revoke/);
  assert.deepEqual(objectFiles(remoteDir), files);
  const asB = ['--no-gpg', '--secret-key', b.sec];
  ok(['fsck', 'r', '--full', ...asB], env);
  const rm = coffre(['rm', 'r', 'not-a-key', ...asB], env);
  assert.notEqual(rm.code, 0);

  // rotate, interrupted after one key, then resumed: every key readable throughout, old objects gone at the end
  const stopped = coffre(['rotate', 'r', ...asB], { ...env, COFFRE_TEST_ROTATE_ABORT_AFTER: '1' });
  assert.notEqual(stopped.code, 0);
  ok(['fsck', 'r', '--full', ...asB], env);
  assert.match(ok(['rotate', 'r', ...asB], env), /resumed/);
  const after = objectFiles(remoteDir);
  assert.equal(after.length, files.length);
  for (const f of after) assert.ok(!files.includes(f), 'every object has a new name');
  ok(['fsck', 'r', '--full', ...asB], env);
  ok(['get', 'r', bigKey, '-o', join(base, 'again.bin'), ...asB], env);
  assert.deepEqual(readFileSync(join(base, 'again.bin')), readFileSync(big));

  // rm removes every chunk; the location log forgets the key
  ok(['rm', 'r', bigKey, ...asB], env);
  assert.equal(objectFiles(remoteDir).length, 1);
  assert.deepEqual(JSON.parse(ok(['ls', 'r', '--json'], env)), [
    { key: smallKey, size: 6, chunks: 1, paths: [small] },
  ]);
  const missing = coffre(['get', 'r', bigKey, '-o', join(base, 'gone'), ...asB], env);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /missing/);
});

test('crypt CLI: shared mode, parallel puts, unused, user mistakes give one line', () => {
  const base = tempDir('crypt-shared');
  const env = { COFFRE_CRYPT_HOME: join(base, 'home') };
  const dir = join(base, 'files');
  const remote = join(base, 'remote');
  mkdirSync(dir);
  mkdirSync(remote);
  const names: string[] = [];
  for (let i = 0; i < 12; i++) {
    const p = join(dir, `f${i}.dat`);
    writeFileSync(p, `file ${i}\n`);
    names.push(p);
  }
  ok(['init', 's', '--type', 'directory', '--path', remote, '--encryption', 'shared'], env);
  const keys = ok(['put', 's', ...names, '-j', '4'], env)
    .trim()
    .split('\n');
  assert.equal(keys.length, 12);
  assert.equal(JSON.parse(ok(['ls', 's', '--json'], env)).length, 12);
  ok(['fsck', 's', '--full', '-j', '3'], env);
  writeFileSync(join(base, 'stray.txt'), 'not in use\n');
  const stray = ok(['put', 's', join(base, 'stray.txt')], env).split(' ')[0];
  assert.deepEqual(JSON.parse(ok(['unused', 's', '--dir', dir, '--json'], env)), [stray]);

  for (const bad of [
    ['init', 's', '--type', 'directory', '--path', remote, '--encryption', 'shared'],
    ['init', 't', '--type', 'directory', '--path', join(base, 'nope'), '--encryption', 'shared'],
    ['init', 't', '--type', 'directory', '--path', remote, '--encryption', 'rot13'],
    ['init', 't', '--type', 'directory', '--path', remote, '--encryption', 'hybrid'],
    ['init', 't', '--type', 'directory', '--path', remote, '--encryption', 'shared', '--chunk', 'big'],
    ['get', 'nosuch', 'SHA256E-s1--aa'],
    ['put', 's', join(base, 'absent')],
    ['get', 's', 'garbage'],
  ]) {
    const r = coffre(bad, env);
    assert.notEqual(r.code, 0, bad.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/);
  }
});

test('crypt CLI: --store-config lets a second machine with a secret key adopt the remote and share its log', async () => {
  const base = tempDir('crypt-meta');
  const remote = join(base, 'remote');
  mkdirSync(remote);
  const a = await keyPair(base, 'a');
  const m1 = { COFFRE_CRYPT_HOME: join(base, 'machine1'), GNUPGHOME: join(base, 'nognupg') };
  const m2 = { COFFRE_CRYPT_HOME: join(base, 'machine2'), GNUPGHOME: join(base, 'nognupg') };
  const withA = ['--no-gpg', '--secret-key', a.sec];
  writeFileSync(join(base, 'one.txt'), 'first machine\n');
  writeFileSync(join(base, 'two.txt'), 'second machine\n');

  const refused = coffre(
    ['init', 'x', '--type', 'directory', '--path', remote, '--encryption', 'shared', '--store-config'],
    m1,
  );
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /would expose the cipher/);

  ok(
    [
      'init',
      'm',
      '--type',
      'directory',
      '--path',
      remote,
      '--encryption',
      'hybrid',
      '--keyid',
      a.pub,
      '--store-config',
      ...withA,
    ],
    m1,
  );
  const one = ok(['put', 'm', join(base, 'one.txt'), ...withA], m1).split(' ')[0];
  const stored = objectFiles(remote).map((f) => readFileSync(f));
  assert.ok(!stored.some((b) => b.includes(one)), 'the location log is stored encrypted');

  // machine 2: nothing but the location and a secret key
  const noKey = coffre(
    ['init', 'm', '--type', 'directory', '--path', remote, '--from-remote', '--no-gpg'],
    m2,
  );
  assert.notEqual(noKey.code, 0);
  assert.match(noKey.stderr, new RegExp(a.id));
  assert.match(
    ok(['init', 'm', '--type', 'directory', '--path', remote, '--from-remote', ...withA], m2),
    /1 key/,
  );
  assert.deepEqual(ok(['ls', 'm'], m2).trim().split('\n').map(keyOfLine), [one]);
  ok(['get', 'm', one, '-o', join(base, 'got.txt'), ...withA], m2);
  assert.equal(readFileSync(join(base, 'got.txt'), 'utf8'), 'first machine\n');
  const two = ok(['put', 'm', join(base, 'two.txt'), ...withA], m2).split(' ')[0];

  // machine 1 sees machine 2's put once it talks to the remote
  ok(['fsck', 'm', ...withA], m1);
  assert.deepEqual(ok(['ls', 'm'], m1).trim().split('\n').map(keyOfLine).sort(), [one, two].sort());
});
