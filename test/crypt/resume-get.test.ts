// An interrupted get of a chunked key resumes from the chunks already retrieved, and a partial file that does
// not match the key never becomes the output: the whole content is checked against the key at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { coffre, ok, tempDir } from './helpers.js';

test('crypt get resumes a chunked key from its partial file, and refuses a partial file that is not the key', () => {
  const base = tempDir('crypt-resume');
  const remote = join(base, 'remote');
  mkdirSync(remote);
  const env = { COFFRE_CRYPT_HOME: join(base, 'home'), GNUPGHOME: join(base, 'nognupg') };
  ok(
    ['init', 'r', '--type', 'directory', '--path', remote, '--encryption', 'shared', '--chunk', '64KiB'],
    env,
  );
  const content = randomBytes(200_000);
  writeFileSync(join(base, 'big.bin'), content);
  const key = ok(['put', 'r', join(base, 'big.bin')], env).split(' ')[0]!;
  const digest = /--([0-9a-f]{64})/.exec(key)![1]!;
  const out = join(base, 'out.bin');
  const partial = join(base, `.out.bin.coffre-partial-${digest.slice(0, 16)}`);

  // A get interrupted after one and a half chunks: the whole chunk is kept, the rest fetched.
  writeFileSync(partial, content.subarray(0, 100_000));
  ok(['get', 'r', key, '-o', out], env);
  assert.ok(readFileSync(out).equals(content));
  assert.equal(existsSync(partial), false);

  // A partial file whose chunks are not the key's: the get fails (it used the partial file rather than
  // fetching everything), no output appears, and the bad partial file is gone so the next get succeeds.
  const out2 = join(base, 'out2.bin');
  const partial2 = join(base, `.out2.bin.coffre-partial-${digest.slice(0, 16)}`);
  writeFileSync(partial2, randomBytes(131_072));
  const bad = coffre(['get', 'r', key, '-o', out2], env);
  assert.notEqual(bad.code, 0);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  assert.match(bad.stderr, /does not match its hash/);
  assert.equal(existsSync(out2), false);
  assert.equal(existsSync(partial2), false);
  ok(['get', 'r', key, '-o', out2], env);
  assert.ok(readFileSync(out2).equals(content));
});
