// coffre crypt the everyday way: `put` records each file's path with its key in the location log (which, on a
// --store-config remote, travels encrypted with the cipher), and get, ls, rm and fsck take that path as well as
// the annex key. Mistakes are one line and exit 1 or 2: a path that names nothing, a --secret-key that does not
// open the remote (GnuPG is then not asked, even when it holds the right key), a self-signed S3 endpoint (the
// line names NODE_EXTRA_CA_CERTS); fsck states each problem once.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { httpsClient, startTlsServer } from '../security/ssec-helpers.js';
import { coffre, keyPair, missingTools, ok, stopGpgAgent, tempDir } from './helpers.js';

const oneLine = (stderr: string) => assert.equal(stderr.trim().split('\n').length, 1, stderr);

async function setup(prefix: string, extraInit: string[] = []) {
  const base = tempDir(prefix);
  const store = join(base, 'store');
  mkdirSync(store);
  const a = await keyPair(base, 'alice');
  const env = { COFFRE_CRYPT_HOME: join(base, 'home'), GNUPGHOME: join(base, 'nognupg') };
  const as = ['--no-gpg', '--secret-key', a.sec];
  ok(
    [
      'init',
      'r',
      '--type',
      'directory',
      '--path',
      store,
      '--encryption',
      'hybrid',
      '--keyid',
      a.pub,
      ...as,
      ...extraInit,
    ],
    env,
  );
  mkdirSync(join(base, 'photos'));
  const file = join(base, 'photos', 'beach.jpg');
  writeFileSync(file, 'not really a photo\n');
  return { base, store, a, env, as, file };
}

test('put records the path; get, ls, rm and fsck take it as well as the key', async () => {
  const { base, env, as } = await setup('everyday');
  const put = spawnSync(
    process.execPath,
    [join(process.cwd(), 'bin/coffre.js'), 'crypt', 'put', 'r', './photos/beach.jpg', ...as],
    {
      cwd: base,
      env: { ...process.env, ...env },
      encoding: 'utf8',
    },
  );
  assert.equal(put.status, 0, put.stderr);
  const key = put.stdout.split(/\s+/)[0]!;
  // ls shows each key with the path it came from (normalized), and filters by path.
  assert.equal(ok(['ls', 'r'], env), `${key}  photos/beach.jpg\n`);
  const listed = JSON.parse(ok(['ls', 'r', 'photos/beach.jpg', '--json'], env)) as {
    key: string;
    paths: string[];
  }[];
  assert.deepEqual(
    listed.map((r) => [r.key, r.paths]),
    [[key, ['photos/beach.jpg']]],
  );
  // get by path: verified, written under the file's own name (or -o).
  const out = join(base, 'out');
  mkdirSync(out);
  ok(['get', 'r', 'photos/beach.jpg', '-o', out, ...as], env);
  assert.equal(readFileSync(join(out, 'beach.jpg'), 'utf8'), 'not really a photo\n');
  ok(['get', 'r', './photos//beach.jpg', '-o', join(out, 'again.jpg'), ...as], env);
  assert.equal(readFileSync(join(out, 'again.jpg'), 'utf8'), 'not really a photo\n');
  assert.match(ok(['fsck', 'r', 'photos/beach.jpg', '--full', ...as], env), new RegExp(`^ok +${key}\n$`));
  // The key still works everywhere a path does.
  ok(['fsck', 'r', key, ...as], env);
  ok(['rm', 'r', 'photos/beach.jpg', ...as], env);
  assert.equal(ok(['ls', 'r'], env), '');
});

test('a path or a word where a key was expected is one line with exit 2, never an unexpected error', async () => {
  const { env, as } = await setup('notakey');
  for (const args of [
    ['get', 'r', 'holiday.jpg', ...as],
    ['rm', 'r', 'holiday.jpg', ...as],
    ['fsck', 'r', 'holiday.jpg', ...as],
    ['ls', 'r', 'holiday.jpg'],
  ]) {
    const r = coffre(args, env);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    oneLine(r.stderr);
    assert.match(r.stderr, /^coffre: r: holiday\.jpg is neither an annex key .* nor a file stored with put/);
    assert.doesNotMatch(r.stderr, /unexpected/);
  }
});

test('a --secret-key that does not open the remote is one line, and GnuPG is not asked instead', async (t) => {
  const skip = missingTools(['gpg']);
  if (skip) return t.skip(skip);
  const { base, env, a, file } = await setup('wrongkey');
  ok(['put', 'r', file, '--no-gpg', '--secret-key', a.sec], env);
  // GnuPG holds alice's key: a run with --secret-key bob must still fail, not open the remote through gpg.
  const gnupg = join(base, 'gnupg');
  mkdirSync(gnupg, { mode: 0o700 });
  const imported = spawnSync('gpg', ['--batch', '--import', a.sec], {
    env: { ...process.env, GNUPGHOME: gnupg },
  });
  assert.equal(imported.status, 0, String(imported.stderr));
  t.after(() => stopGpgAgent(gnupg));
  const bob = await keyPair(base, 'bob');
  const withGpg = { ...env, GNUPGHOME: gnupg };
  const r = coffre(['get', 'r', file, '-o', join(base, 'got'), '--secret-key', bob.sec], withGpg);
  assert.equal(r.code, 1, r.stderr);
  oneLine(r.stderr);
  assert.match(
    r.stderr,
    new RegExp(
      `secret key\\(s\\) in ${bob.sec.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(${bob.id}\\) are not among its keys ${a.id}`,
    ),
  );
  assert.ok(!existsSync(join(base, 'got')));
  // Without --secret-key, GnuPG is asked and opens it.
  ok(['get', 'r', file, '-o', join(base, 'got')], withGpg);
  assert.equal(readFileSync(join(base, 'got'), 'utf8'), 'not really a photo\n');
});

test('fsck states each problem once', async () => {
  const { base, store, env, as, file } = await setup('fsck-once');
  const other = join(base, 'photos', 'other.jpg');
  writeFileSync(other, 'another\n');
  ok(['put', 'r', file, other, ...as], env);
  // Damage one object, remove the other.
  const objects: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }))
      if (e.isDirectory()) {
        if (e.name !== 'tmp') walk(join(d, e.name));
      } else objects.push(join(d, e.name));
  };
  walk(store);
  const data = objects.filter((p) => !p.endsWith('annex-uuid'));
  assert.equal(data.length, 2);
  const bytes = readFileSync(data[0]!);
  bytes[bytes.length - 5] ^= 1;
  writeFileSync(data[0]!, bytes);
  rmSync(data[1]!);
  const r = coffre(['fsck', 'r', '--full', ...as], env);
  assert.equal(r.code, 1);
  const fails = r.stdout.trim().split('\n');
  assert.equal(fails.length, 2, r.stdout);
  for (const line of fails) {
    const key = /^FAIL (\S+): /.exec(line)?.[1];
    assert.ok(key, line);
    assert.equal(line.split(key).length - 1, 1, `the key is named once: ${line}`);
  }
  assert.equal(r.stderr, 'coffre: fsck: 2 of 2 key(s) failed\n');
});

test('on a --store-config remote the paths travel in the encrypted log, and another machine gets by path', async () => {
  const { base, store, env, as, a, file } = await setup('shared-paths', ['--store-config']);
  ok(['put', 'r', file, ...as], env);
  const stored = readdirSync(store, { recursive: true, encoding: 'utf8' }).map((f) => join(store, f));
  const state = stored.find((f) => f.endsWith('coffre-remote.json'));
  assert.ok(state, stored.join('\n'));
  for (const f of stored.filter((p) => statSync(p).isFile()))
    assert.ok(!readFileSync(f).includes('beach'), `${f} shows the path in clear`);
  const envB = { COFFRE_CRYPT_HOME: join(base, 'homeB'), GNUPGHOME: join(base, 'nognupg') };
  ok(
    ['init', 'r', '--type', 'directory', '--path', store, '--from-remote', '--no-gpg', '--secret-key', a.sec],
    envB,
  );
  const out = join(base, 'fromB.jpg');
  ok(['get', 'r', file, '-o', out, '--no-gpg', '--secret-key', a.sec], envB);
  assert.equal(readFileSync(out, 'utf8'), 'not really a photo\n');
});

test('a self-signed S3 endpoint gets one line naming NODE_EXTRA_CA_CERTS, and works with it', async (t) => {
  const { server, files, ca } = await startTlsServer();
  t.after(() => server.cleanup());
  t.after(() => server.stop());
  const s3 = httpsClient(server, ca);
  await s3.send(new CreateBucketCommand({ Bucket: 'selfsigned' }));
  s3.destroy();
  const base = tempDir('selfsigned');
  const env = {
    COFFRE_CRYPT_HOME: join(base, 'home'),
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    NODE_EXTRA_CA_CERTS: '',
  };
  const init = [
    'init',
    's',
    '--type',
    's3',
    '--endpoint',
    server.endpoint,
    '--bucket',
    'selfsigned',
    '--encryption',
    'none',
  ];
  const r = coffre(init, env);
  assert.equal(r.code, 1, r.stderr);
  oneLine(r.stderr);
  assert.match(r.stderr, /not trusted .*NODE_EXTRA_CA_CERTS=/);
  ok(init, { ...env, NODE_EXTRA_CA_CERTS: files.certPath });
});
