// `coffre crypt rotate` on a remote shared by several machines (--store-config) re-encrypts every object the
// remote's log lists, also those another machine stored since this one last synced, and the other machine
// follows the rotation: two machines (two config directories, each with its own secret key) share one remote —
// a directory, and an S3 bucket on a real coffre node on 127.0.0.1. B stores an object after A's last sync,
// A rotates, then both read every object, B's included; B's next object is readable by A; no object is left
// under the old cipher. A machine that wrote while a rotation was being switched keeps its entry (the switch is
// a compare-and-swap, and a writer left behind re-encrypts its own entries when it follows).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { startServer, type TestServer } from '../helpers/server.js';
import { BIN, coffre, keyOfLine, keyPair, ok, tempDir } from '../crypt/helpers.js';
import { hashDirLower } from '../../src/crypt/names.js';

let server: TestServer;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
  server?.cleanup();
});

function objectPath(root: string, name: string): string {
  return join(root, hashDirLower(name), name, name);
}

function directoryObjects(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) {
        if (e.name !== 'tmp') walk(join(d, e.name));
      } else out.push(e.name);
    }
  };
  walk(dir);
  return out.sort();
}

async function bucketObjects(bucket: string): Promise<string[]> {
  const s3 = new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
  s3.destroy();
  return (r.Contents ?? []).map((o) => o.Key!).sort();
}

interface Setup {
  where: string[];
  objects: () => Promise<string[]>;
}

async function twoMachines(kind: 'directory' | 's3', setup: Setup, base: string): Promise<void> {
  const a = await keyPair(base, 'a');
  const b = await keyPair(base, 'b');
  const creds = { AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey };
  const envA = { COFFRE_CRYPT_HOME: join(base, 'machineA'), GNUPGHOME: join(base, 'nognupg'), ...creds };
  const envB = { COFFRE_CRYPT_HOME: join(base, 'machineB'), GNUPGHOME: join(base, 'nognupg'), ...creds };
  const asA = ['--no-gpg', '--secret-key', a.sec];
  const asB = ['--no-gpg', '--secret-key', b.sec];
  const file = (name: string) => {
    const p = join(base, name);
    writeFileSync(p, randomBytes(70_000 + name.length));
    return p;
  };
  const put = (env: Record<string, string>, as: string[], path: string) =>
    ok(['put', 'r', path, ...as], env).split(/\s+/)[0];
  const getAndCompare = (env: Record<string, string>, as: string[], key: string, path: string) => {
    const out = join(base, `got-${randomBytes(4).toString('hex')}`);
    const r = coffre(['get', 'r', key, '-o', out, ...as], env);
    assert.equal(r.code, 0, `${kind}: get ${path} on ${env.COFFRE_CRYPT_HOME}: ${r.stderr}`);
    assert.ok(readFileSync(out).equals(readFileSync(path)), `${kind}: ${path} read back`);
  };

  ok(
    [
      'init',
      'r',
      ...setup.where,
      '--encryption',
      'hybrid',
      '--keyid',
      a.pub,
      '--keyid',
      b.pub,
      '--chunk',
      '64KiB',
      '--store-config',
      ...asA,
    ],
    envA,
  );
  const one = file('one');
  const keyOne = put(envA, asA, one);
  ok(['init', 'r', ...setup.where, '--from-remote', ...asB], envB);
  // B stores after A's last sync with the remote.
  const two = file('two');
  const keyTwo = put(envB, asB, two);
  const before = await setup.objects();

  const rotated = coffre(['rotate', 'r', ...asA], envA);
  assert.equal(rotated.code, 0, `${kind}: rotate: ${rotated.stderr}`);
  assert.match(rotated.stdout, /2 key\(s\) re-encrypted/);
  for (const [env, as] of [
    [envA, asA],
    [envB, asB],
  ] as const) {
    getAndCompare(env, as, keyOne, one);
    getAndCompare(env, as, keyTwo, two);
  }
  assert.deepEqual(ok(['ls', 'r'], envA).trim().split('\n').map(keyOfLine).sort(), [keyOne, keyTwo].sort());
  assert.deepEqual(ok(['ls', 'r'], envB).trim().split('\n').map(keyOfLine).sort(), [keyOne, keyTwo].sort());
  // Every object named under the old cipher is gone.
  const afterRotation = await setup.objects();
  const stale = before.filter((n) => n.startsWith('GPG') && afterRotation.includes(n));
  assert.deepEqual(stale, [], `${kind}: objects left under the old cipher`);

  // B, which followed the rotation, writes under the new cipher; A reads it.
  const three = file('three');
  const keyThree = put(envB, asB, three);
  getAndCompare(envA, asA, keyThree, three);

  // A writer that lands while the rotation is being switched: the hook runs B's put after A re-read the log
  // and before A writes it back.
  const four = file('four');
  const hooked = coffre(['rotate', 'r', ...asA], {
    ...envA,
    COFFRE_TEST_ROTATE_BEFORE_SWITCH: [
      `COFFRE_CRYPT_HOME=${envB.COFFRE_CRYPT_HOME}`,
      process.execPath,
      BIN,
      'crypt',
      'put',
      'r',
      four,
      ...asB,
    ].join(' '),
  });
  assert.equal(hooked.code, 0, `${kind}: rotate with a concurrent put: ${hooked.stderr}`);
  // The switch lost its compare-and-swap to B's write, took B's entry and re-encrypted it too.
  assert.match(hooked.stdout, /4 key\(s\) re-encrypted/);
  const keyFour = ok(['ls', 'r'], envB)
    .trim()
    .split('\n')
    .map(keyOfLine)
    .find((k) => ![keyOne, keyTwo, keyThree].includes(k));
  assert.ok(keyFour, `${kind}: B's concurrent put is in the log`);
  for (const [env, as] of [
    [envA, asA],
    [envB, asB],
  ] as const) {
    for (const [key, path] of [
      [keyOne, one],
      [keyTwo, two],
      [keyThree, three],
      [keyFour, four],
    ] as const)
      getAndCompare(env, as, key, path);
  }
}

test('crypt rotate --store-config: a directory remote shared by two machines', async () => {
  const base = tempDir('crypt-rotate-dir');
  const remote = join(base, 'remote');
  mkdirSync(remote);
  await twoMachines(
    'directory',
    { where: ['--type', 'directory', '--path', remote], objects: async () => directoryObjects(remote) },
    base,
  );
});

test('crypt rotate --store-config: a machine whose entry a rotation missed re-encrypts it when it follows', async () => {
  const base = tempDir('crypt-rotate-behind');
  const remote = join(base, 'remote');
  mkdirSync(remote);
  const a = await keyPair(base, 'a');
  const b = await keyPair(base, 'b');
  const envA = { COFFRE_CRYPT_HOME: join(base, 'machineA'), GNUPGHOME: join(base, 'nognupg') };
  const envB = { COFFRE_CRYPT_HOME: join(base, 'machineB'), GNUPGHOME: join(base, 'nognupg') };
  const asA = ['--no-gpg', '--secret-key', a.sec];
  const asB = ['--no-gpg', '--secret-key', b.sec];
  const where = ['--type', 'directory', '--path', remote];
  ok(
    [
      'init',
      'r',
      ...where,
      '--encryption',
      'hybrid',
      '--keyid',
      a.pub,
      '--keyid',
      b.pub,
      '--store-config',
      ...asA,
    ],
    envA,
  );
  const one = join(base, 'one');
  const five = join(base, 'five');
  writeFileSync(one, randomBytes(5000));
  writeFileSync(five, randomBytes(6000));
  const keyOne = ok(['put', 'r', one, ...asA], envA).split(/\s+/)[0];
  ok(['init', 'r', ...where, '--from-remote', ...asB], envB);
  const state = objectPath(remote, 'coffre-remote.json');
  const beforeB = readFileSync(state);
  const keyFive = ok(['put', 'r', five, ...asB], envB).split(/\s+/)[0];
  // B's write is lost from the stored log, as a write racing another on a store without conditional writes.
  chmodSync(state, 0o644);
  writeFileSync(state, beforeB);
  ok(['rotate', 'r', ...asA], envA);
  assert.deepEqual(ok(['ls', 'r'], envA).trim().split('\n').map(keyOfLine), [keyOne]);
  // B follows the rotation on its next command and carries its entry over under the new cipher.
  const out = join(base, 'got');
  ok(['get', 'r', keyFive, '-o', out, ...asB], envB);
  assert.ok(readFileSync(out).equals(readFileSync(five)));
  ok(['get', 'r', keyFive, '-o', out + '2', ...asA], envA);
  assert.ok(readFileSync(out + '2').equals(readFileSync(five)));
  ok(['get', 'r', keyOne, '-o', out + '3', ...asB], envB);
  assert.ok(readFileSync(out + '3').equals(readFileSync(one)));
  assert.deepEqual(ok(['ls', 'r'], envA).trim().split('\n').map(keyOfLine).sort(), [keyOne, keyFive].sort());
});

test('crypt rotate --store-config refuses, with one line and nothing changed, when the stored log cannot be read', async () => {
  const base = tempDir('crypt-rotate-refuse');
  const remote = join(base, 'remote');
  mkdirSync(remote);
  const a = await keyPair(base, 'a');
  const env = { COFFRE_CRYPT_HOME: join(base, 'home'), GNUPGHOME: join(base, 'nognupg') };
  const asA = ['--no-gpg', '--secret-key', a.sec];
  ok(
    [
      'init',
      'r',
      '--type',
      'directory',
      '--path',
      remote,
      '--encryption',
      'hybrid',
      '--keyid',
      a.pub,
      '--store-config',
      ...asA,
    ],
    env,
  );
  const one = join(base, 'one');
  writeFileSync(one, randomBytes(5000));
  ok(['put', 'r', one, ...asA], env);
  const state = objectPath(remote, 'coffre-remote.json');
  chmodSync(state, 0o644);
  writeFileSync(state, '{"version":2,"config":');
  const objects = directoryObjects(remote);
  const config = readFileSync(join(base, 'home', 'r.json'));
  const r = coffre(['rotate', 'r', ...asA], env);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /^coffre: cannot rotate r: the remote's stored log could not be read/);
  assert.deepEqual(directoryObjects(remote), objects);
  assert.ok(readFileSync(join(base, 'home', 'r.json')).equals(config));
  assert.ok(!existsSync(join(base, 'home', 'r.rotate.json')), 'no rotation journal');
});

test('a stored configuration naming a cipher that the cipher a machine holds does not vouch for is refused', async () => {
  // Anyone with the public keys can encrypt a cipher of their own to them; a machine must not switch to it.
  const base = tempDir('crypt-forged-state');
  const remote = join(base, 'remote');
  const other = join(base, 'other');
  mkdirSync(remote);
  mkdirSync(other);
  const a = await keyPair(base, 'a');
  const env = { COFFRE_CRYPT_HOME: join(base, 'home'), GNUPGHOME: join(base, 'nognupg') };
  const attacker = { COFFRE_CRYPT_HOME: join(base, 'attacker'), GNUPGHOME: join(base, 'nognupg') };
  const asA = ['--no-gpg', '--secret-key', a.sec];
  const init = (dir: string, e: Record<string, string>) =>
    ok(
      [
        'init',
        'r',
        '--type',
        'directory',
        '--path',
        dir,
        '--encryption',
        'hybrid',
        '--keyid',
        a.pub,
        '--store-config',
        ...asA,
      ],
      e,
    );
  init(remote, env);
  init(other, attacker);
  const one = join(base, 'one');
  writeFileSync(one, randomBytes(5000));
  const keyOne = ok(['put', 'r', one, ...asA], env).split(/\s+/)[0];
  const uuid = (JSON.parse(readFileSync(join(base, 'home', 'r.json'), 'utf8')) as { uuid: string }).uuid;
  const forged = JSON.parse(readFileSync(objectPath(other, 'coffre-remote.json'), 'utf8')) as {
    config: { uuid: string };
    rotatedFrom?: string;
  };
  forged.config.uuid = uuid;
  forged.rotatedFrom = 'ab'.repeat(32);
  const state = objectPath(remote, 'coffre-remote.json');
  chmodSync(state, 0o644);
  writeFileSync(state, JSON.stringify(forged));
  const config = readFileSync(join(base, 'home', 'r.json'));
  for (const args of [
    ['get', 'r', keyOne, '-o', join(base, 'got')],
    ['rotate', 'r'],
  ]) {
    const r = coffre([...args, ...asA], env);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /does not vouch for|not sealed with the cipher/);
  }
  assert.ok(readFileSync(join(base, 'home', 'r.json')).equals(config), 'the local config is unchanged');
});

test('crypt rotate --store-config: an S3 remote on a coffre node shared by two machines', async () => {
  const base = tempDir('crypt-rotate-s3');
  await twoMachines(
    's3',
    {
      where: ['--type', 's3', '--endpoint', server.endpoint, '--bucket', 'rotate-shared'],
      objects: () => bucketObjects('rotate-shared'),
    },
    base,
  );
});
