// coffre reads what the real git-annex wrote: annex-fixtures.sh builds encrypted directory remotes in every mode,
// MAC and chunk setting (and a hybrid remote whose keys changed); coffre imports each, gets every object
// byte-identical and passes fsck --full.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { coffre, missingTools, ok, tempDir, stopGpgAgent } from '../crypt/helpers.js';

// A copy of the project's shared fixture builder, so a clean clone (CI) has it.
const SCRIPT = resolve('test/crypt/annex-fixtures.sh');
const REMOTES = [
  'r-none',
  'r-shared',
  'r-hybrid',
  'r-pubkey',
  'r-sharedpub',
  'r-shared256',
  'r-sharedchk',
  'r-hybridchk',
  'r-nonechk',
];
const FILES = ['small.txt', 'empty.bin', 'big.bin'];

const skip = missingTools(['git-annex', 'gpg', 'python3', 'git']);
let fx = '';
let keys: Record<string, string> = {};
let ids: Record<string, string> = {};

after(() => {
  if (!skip) stopGpgAgent(join(fx, 'gnupg'));
});

before(() => {
  if (skip) return;
  const base = tempDir('annex-fx');
  const r = spawnSync('bash', [SCRIPT, base], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`annex-fixtures.sh failed: ${r.stderr}`);
  fx = join(base, 'fixtures');
  const find = spawnSync('git', ['-C', join(fx, 'repo'), 'annex', 'find', '--format=${file} ${key}\\n'], {
    encoding: 'utf8',
  });
  keys = Object.fromEntries(
    find.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(' ')),
  );
  ids = Object.fromEntries(
    readFileSync(join(fx, 'keys.txt'), 'utf8')
      .split(/\s+/)
      .filter((w) => w.startsWith('KEYID_'))
      .map((w) => w.split('=')),
  );
});

test('import-annex + get + fsck --full for every fixture remote (secret keys from GnuPG)', { skip }, () => {
  const env = { COFFRE_CRYPT_HOME: tempDir('annex-home'), GNUPGHOME: join(fx, 'gnupg') };
  const repo = join(fx, 'repo');
  for (const remote of REMOTES) {
    const imported = JSON.parse(ok(['import-annex', '--repo', repo, '--remote', remote, '--json'], env));
    assert.equal(imported.keys, 3, remote);
    assert.match(ok(['fsck', remote, '--full'], env), /^(ok .*\n){3}$/);
    const outDir = tempDir(`annex-get-${remote}`);
    ok(['get', remote, ...FILES.map((f) => keys[f]), '-o', outDir, '-j', '2'], env);
    for (const f of FILES)
      assert.deepEqual(readFileSync(join(outDir, keys[f])), readFileSync(join(repo, f)), `${remote} ${f}`);
  }
});

test('the keyid-changed hybrid remote opens with key B only; key files work without GnuPG', { skip }, () => {
  const env = { COFFRE_CRYPT_HOME: tempDir('annex-home2'), GNUPGHOME: tempDir('empty-gnupg') };
  const repo = join(fx, 'repo');
  ok(
    [
      'import-annex',
      '--repo',
      repo,
      '--remote',
      'r-hybrid',
      '--as',
      'before',
      '--path',
      join(fx, 'remotes', 'r-hybrid-before-keyid-change'),
    ],
    env,
  );
  const withB = ['--no-gpg', '--secret-key', join(fx, 'keyB.sec.asc')];
  const withA = ['--no-gpg', '--secret-key', join(fx, 'keyA.sec.asc')];
  // the objects did not change when the keys did: the copy taken before keyid+=/-= opens with the new cipher blob
  ok(['fsck', 'before', '--full', ...withB], env);
  const denied = coffre(['fsck', 'before', '--full', ...withA], env);
  assert.notEqual(denied.code, 0);
  assert.match(
    denied.stderr,
    new RegExp(`cannot decrypt the cipher of remote before: .* are not among its keys ${ids.KEYID_B}`),
  );
  // pubkey mode: each object needs the secret key; without it, the message names the missing key
  ok(['import-annex', '--repo', repo, '--remote', 'r-pubkey'], env);
  ok(['fsck', 'r-pubkey', '--full', ...withA], env);
  const none = coffre(['get', 'r-pubkey', keys['small.txt'], '-o', join(tempDir('x'), 'f'), '--no-gpg'], env);
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, new RegExp(ids.KEYID_A));
  // sharedpubkey: names need no secret key (presence check works), content does
  ok(['import-annex', '--repo', repo, '--remote', 'r-sharedpub'], env);
  ok(['fsck', 'r-sharedpub', '--no-gpg'], env);
  const noSecret = coffre(['fsck', 'r-sharedpub', '--full', '--no-gpg'], env);
  assert.notEqual(noSecret.code, 0);
  assert.match(noSecret.stdout + noSecret.stderr, /no secret key/);
  ok(['fsck', 'r-sharedpub', '--full', ...withA], env);
  // every key the remote holds is referenced by a file of the repository
  assert.deepEqual(JSON.parse(ok(['unused', 'r-pubkey', '--repo', repo, '--json'], env)), []);
});
