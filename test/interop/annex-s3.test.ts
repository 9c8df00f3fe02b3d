// S3 remotes against a real coffre server on 127.0.0.1: coffre's own S3 remote (hybrid, chunked, embedded creds),
// both directions with git-annex's S3 special remote (encryption=shared, chunked) on the same server, and
// git-annex's S3 remote on its own (encryption=none): copy, drop, get and fsck --from. Also run through a gateway
// (test/backend/clients-annex.test.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { runCommand, type TestServer } from '../helpers/server.js';
import { startTarget } from '../helpers/target.js';
import { coffre, missingTools, ok, tempDir, stopGpgAgent } from '../crypt/helpers.js';

let server: TestServer;
let base = '';
let env: Record<string, string> = {};
const gitEnv = {
  GIT_AUTHOR_NAME: 't',
  GIT_AUTHOR_EMAIL: 't@example.invalid',
  GIT_COMMITTER_NAME: 't',
  GIT_COMMITTER_EMAIL: 't@example.invalid',
};
const annexSkip = missingTools(['git-annex', 'gpg', 'git']);

/** Runs a command without blocking the event loop (the relay below lives in this process). */
async function sh(cmd: string, args: string[], cwd?: string): Promise<string> {
  const r = await runCommand(cmd, args, { ...env, ...gitEnv }, undefined, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/**
 * git-annex's S3 library (Haskell `aws`) signs the Host header without the port but sends it with the port, so on
 * a non-default port a strict SigV4 server refuses it. As if the server listened on port 80, this loopback relay
 * hands git-annex's requests to coffre with the port dropped from Host. coffre's own client talks to the server
 * directly.
 */
function startRelay(target: URL): Promise<Server> {
  const relay = createServer((req, res) => {
    const headers = { ...req.headers, host: 'localhost' };
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  return new Promise((resolve) => relay.listen(0, '127.0.0.1', () => resolve(relay)));
}

let relay: Server;
let relayPort = 0;

before(async () => {
  // git-annex signs v4 requests with the endpoint's host name as the region for hosts that are not AWS; the AWS
  // SDK refuses '127.0.0.1' as a region, so both sides use 'localhost'.
  server = await startTarget({ s3Region: 'localhost' });
  relay = await startRelay(new URL(server.endpoint));
  relayPort = (relay.address() as AddressInfo).port;
  base = tempDir('crypt-s3');
  env = {
    COFFRE_CRYPT_HOME: join(base, 'home'),
    GNUPGHOME: join(base, 'gnupg'),
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
  };
  mkdirSync(env.GNUPGHOME, { mode: 0o700 });
});

after(async () => {
  stopGpgAgent(env.GNUPGHOME);
  relay?.close();
  await server?.stop();
  server?.cleanup();
});

function client(): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: 'localhost',
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
}

async function bucketKeys(bucket: string): Promise<string[]> {
  const s3 = client();
  try {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (r.Contents ?? []).map((o) => o.Key!).sort();
  } finally {
    s3.destroy();
  }
}

test('coffre S3 remote: shared, chunked, embedded creds — put/get/fsck; the bucket holds only HMAC names', async () => {
  const secret = Buffer.from('this plaintext must never reach the server\n');
  const big = randomBytes(3_000_000);
  writeFileSync(join(base, 'secret.txt'), secret);
  writeFileSync(join(base, 'big.bin'), big);
  ok(
    [
      'init',
      's3r',
      '--type',
      's3',
      '--endpoint',
      server.endpoint,
      '--region',
      'localhost',
      '--bucket',
      'crypt-one',
      '--prefix',
      'annex/',
      '--encryption',
      'shared',
      '--chunk',
      '1MiB',
      '--embedcreds',
    ],
    env,
  );
  const config = JSON.parse(readFileSync(join(env.COFFRE_CRYPT_HOME, 's3r.json'), 'utf8'));
  assert.ok(config.s3creds, 'credentials embedded');
  assert.ok(!JSON.stringify(config).includes(server.secretAccessKey), 'embedded credentials are encrypted');
  const keys = ok(['put', 's3r', join(base, 'secret.txt'), join(base, 'big.bin'), '-j', '2'], env)
    .trim()
    .split('\n')
    .map((l) => l.split(' ')[0]);
  const objects = await bucketKeys('crypt-one');
  assert.ok(objects.includes('annex/annex-uuid'));
  assert.equal(objects.length, 1 + 1 + 3);
  for (const o of objects.filter((k) => k !== 'annex/annex-uuid'))
    assert.match(o, /^annex\/GPGHMACSHA1--[0-9a-f]{40}$/);
  const s3 = client();
  for (const o of objects) {
    const body = Buffer.from(
      await (
        await s3.send(new GetObjectCommand({ Bucket: 'crypt-one', Key: o }))
      ).Body!.transformToByteArray(),
    );
    assert.equal(body.indexOf(secret.subarray(0, 20)), -1);
  }
  s3.destroy();
  // without the environment credentials: the embedded ones are used
  const bare = {
    COFFRE_CRYPT_HOME: env.COFFRE_CRYPT_HOME,
    GNUPGHOME: env.GNUPGHOME,
    AWS_ACCESS_KEY_ID: '',
    AWS_SECRET_ACCESS_KEY: '',
  };
  assert.match(ok(['fsck', 's3r', '--full'], bare), /^(ok .*\n){2}$/);
  const out = tempDir('s3-get');
  ok(['get', 's3r', ...keys, '-o', out], bare);
  assert.deepEqual(readFileSync(join(out, keys[0])), secret);
  assert.deepEqual(readFileSync(join(out, keys[1])), big);
  // a second remote may not claim the same bucket/prefix
  const clash = coffre(
    [
      'init',
      's3x',
      '--type',
      's3',
      '--endpoint',
      server.endpoint,
      '--region',
      'localhost',
      '--bucket',
      'crypt-one',
      '--prefix',
      'annex/',
      '--encryption',
      'shared',
    ],
    env,
  );
  assert.notEqual(clash.code, 0);
  assert.match(clash.stderr, /already belongs/);
});

test(
  'git-annex S3 special remote with encryption → coffre reads it, and coffre S3 remote → git-annex reads it',
  { skip: annexSkip },
  async () => {
    const repo = join(base, 'repo');
    await sh('git', ['init', '-q', repo]);
    await sh('git', ['annex', 'init', '-q', 'r'], repo);
    // git-annex refuses loopback addresses unless told otherwise
    await sh('git', ['config', 'annex.security.allowed-ip-addresses', '127.0.0.1'], repo);
    const files: Record<string, Buffer> = {
      'a.txt': Buffer.from('annex to coffre\n'),
      'b.bin': randomBytes(2_200_000),
    };
    for (const [f, d] of Object.entries(files)) writeFileSync(join(repo, f), d);
    await sh('git', ['annex', 'add', '-q', ...Object.keys(files)], repo);
    await sh('git', ['commit', '-q', '-m', 'f'], repo);
    const s3args = [
      'host=localhost',
      `port=${relayPort}`,
      'protocol=http',
      'requeststyle=path',
      'signature=v4',
    ];
    await sh(
      'git',
      [
        'annex',
        'initremote',
        'ga',
        'type=S3',
        'encryption=shared',
        'chunk=1MiB',
        'bucket=from-annex',
        ...s3args,
      ],
      repo,
    );
    await sh('git', ['annex', 'copy', '--to', 'ga', '.'], repo);
    ok(['import-annex', '--repo', repo, '--remote', 'ga', '--endpoint', server.endpoint], env);
    assert.match(ok(['fsck', 'ga', '--full'], env), /^(ok .*\n){2}$/);

    // the reverse: coffre writes to the server, git-annex reads
    ok(
      [
        'init',
        'cs',
        '--type',
        's3',
        '--endpoint',
        server.endpoint,
        '--region',
        'localhost',
        '--bucket',
        'from-coffre',
        '--encryption',
        'shared',
        '--chunk',
        '1MiB',
      ],
      env,
    );
    ok(['put', 'cs', ...Object.keys(files).map((f) => join(repo, f))], env);
    ok(['export-annex', 'cs', '--repo', repo], env);
    await sh('git', ['annex', 'enableremote', 'cs', ...s3args.slice(0, 2)], repo);
    await sh('git', ['annex', 'fsck', '--from', 'cs'], repo);
    await sh('git', ['annex', 'drop', '--force', '.'], repo);
    await sh('git', ['annex', 'get', '--from', 'cs', '.'], repo);
    for (const [f, d] of Object.entries(files)) assert.deepEqual(readFileSync(join(repo, f)), d, f);
  },
);

test(
  'git-annex S3 special remote (encryption=none): copy --to, drop, get --from and fsck --from',
  { skip: annexSkip },
  async () => {
    const repo = join(base, 'plain-repo');
    await sh('git', ['init', '-q', repo]);
    await sh('git', ['annex', 'init', '-q', 'p'], repo);
    await sh('git', ['config', 'annex.security.allowed-ip-addresses', '127.0.0.1'], repo);
    const files: Record<string, Buffer> = {
      'small.txt': Buffer.from('stored as it is\n'),
      empty: Buffer.alloc(0),
      'big.bin': randomBytes(3_000_000),
    };
    for (const [f, d] of Object.entries(files)) writeFileSync(join(repo, f), d);
    await sh('git', ['annex', 'add', '-q', ...Object.keys(files)], repo);
    await sh('git', ['commit', '-q', '-m', 'f'], repo);
    await sh(
      'git',
      [
        'annex',
        'initremote',
        'plain',
        'type=S3',
        'encryption=none',
        'bucket=annex-plain',
        'host=localhost',
        `port=${relayPort}`,
        'protocol=http',
        'requeststyle=path',
        'signature=v4',
      ],
      repo,
    );
    await sh('git', ['annex', 'copy', '-q', '--to', 'plain', '.'], repo);
    // Every file is there under its git-annex key, with its size.
    const stored = await bucketKeys('annex-plain');
    for (const f of Object.keys(files)) {
      const key = (await sh('git', ['annex', 'lookupkey', f], repo)).trim();
      assert.ok(stored.includes(key), `${f} stored as ${key}`);
    }
    await sh('git', ['annex', 'fsck', '-q', '--from', 'plain', '.'], repo);
    await sh('git', ['annex', 'drop', '-q', '.'], repo);
    await sh('git', ['annex', 'get', '-q', '--from', 'plain', '.'], repo);
    for (const [f, d] of Object.entries(files)) assert.deepEqual(readFileSync(join(repo, f)), d, f);
    await sh('git', ['annex', 'fsck', '-q', '--from', 'plain', '.'], repo);
  },
);
