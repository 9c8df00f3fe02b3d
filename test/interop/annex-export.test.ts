// git-annex reads what coffre wrote: coffre stores files in a directory remote (hybrid chunked, shared, pubkey),
// export-annex writes the remote into a git-annex repository's branch, then the real `git annex enableremote`,
// `fsck --from` and `get` succeed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { missingTools, ok, tempDir, stopGpgAgent } from '../crypt/helpers.js';

const skip = missingTools(['git-annex', 'gpg', 'git']);
const gitEnv = {
  GIT_AUTHOR_NAME: 't',
  GIT_AUTHOR_EMAIL: 't@example.invalid',
  GIT_COMMITTER_NAME: 't',
  GIT_COMMITTER_EMAIL: 't@example.invalid',
};
let base = '';
let env: Record<string, string> = {};
let keyId = '';

function sh(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { cwd, env: { ...process.env, ...env, ...gitEnv }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

after(() => {
  if (!skip) stopGpgAgent(env.GNUPGHOME);
});

before(() => {
  if (skip) return;
  base = tempDir('annex-export');
  env = { COFFRE_CRYPT_HOME: join(base, 'home'), GNUPGHOME: join(base, 'gnupg') };
  mkdirSync(env.GNUPGHOME, { mode: 0o700 });
  sh('gpg', [
    '--batch',
    '--passphrase',
    '',
    '--quick-gen-key',
    'Export Test <e@example.invalid>',
    'future-default',
    'default',
    'never',
  ]);
  keyId = sh('gpg', ['--list-keys', '--with-colons'])
    .split('\n')
    .find((l) => l.startsWith('pub:'))!
    .split(':')[4];
});

function annexRepo(name: string): { repo: string; files: Record<string, Buffer> } {
  const repo = join(base, name);
  sh('git', ['init', '-q', repo]);
  sh('git', ['annex', 'init', '-q', name], repo);
  const files: Record<string, Buffer> = {
    'a.txt': Buffer.from('hello from coffre\n'),
    'big.bin': randomBytes(2_500_000),
    'empty.dat': Buffer.alloc(0),
  };
  for (const [f, data] of Object.entries(files)) writeFileSync(join(repo, f), data);
  sh('git', ['annex', 'add', '-q', ...Object.keys(files)], repo);
  sh('git', ['commit', '-q', '-m', 'files'], repo);
  return { repo, files };
}

for (const [mode, extra] of [
  ['hybrid', ['--chunk', '1MiB', '--mac', 'HMACSHA256']],
  ['shared', ['--pad']],
  ['pubkey', ['--chunk', '1MiB']],
] as const) {
  test(`git-annex reads a coffre ${mode} directory remote after export-annex`, { skip }, () => {
    const name = `c-${mode}`;
    const { repo, files } = annexRepo(`repo-${mode}`);
    const remoteDir = join(base, `remote-${mode}`);
    mkdirSync(remoteDir);
    const keyArgs = mode === 'shared' ? [] : ['--keyid', keyId];
    ok(
      ['init', name, '--type', 'directory', '--path', remoteDir, '--encryption', mode, ...keyArgs, ...extra],
      env,
    );
    const put = ok(['put', name, ...Object.keys(files).map((f) => join(repo, f))], env);
    const annexKeys = sh('git', ['annex', 'find', '--format=${key}\\n'], repo).trim().split('\n').sort();
    assert.deepEqual(
      put
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[0])
        .sort(),
      annexKeys,
      'coffre computes the same keys',
    );

    ok(['export-annex', name, '--repo', repo], env);
    sh('git', ['annex', 'enableremote', name, `directory=${remoteDir}`], repo);
    sh('git', ['annex', 'fsck', '--from', name], repo);
    const whereis = sh('git', ['annex', 'whereis', 'big.bin'], repo);
    assert.match(whereis, new RegExp(name));
    sh('git', ['annex', 'drop', '--force', '.'], repo);
    sh('git', ['annex', 'get', '--from', name, '.'], repo);
    for (const [f, data] of Object.entries(files)) assert.deepEqual(readFileSync(join(repo, f)), data, f);
    sh('git', ['annex', 'fsck'], repo);
  });
}

test(
  'git-annex writes, coffre re-imports after git-annex added content to a coffre-made remote',
  { skip },
  () => {
    const { repo } = annexRepo('repo-roundtrip');
    const remoteDir = join(base, 'remote-roundtrip');
    mkdirSync(remoteDir);
    ok(
      [
        'init',
        'rt',
        '--type',
        'directory',
        '--path',
        remoteDir,
        '--encryption',
        'hybrid',
        '--keyid',
        keyId,
        '--chunk',
        '1MiB',
      ],
      env,
    );
    ok(['export-annex', 'rt', '--repo', repo, '--as', 'rt-annex'], env);
    sh('git', ['annex', 'enableremote', 'rt-annex', `directory=${remoteDir}`], repo);
    sh('git', ['annex', 'copy', '--to', 'rt-annex', '.'], repo);
    ok(['import-annex', '--repo', repo, '--remote', 'rt-annex', '--as', 'rt2'], env);
    assert.match(ok(['fsck', 'rt2', '--full'], env), /^(ok .*\n){3}$/);
  },
);
