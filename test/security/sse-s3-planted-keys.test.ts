// Someone who can write a node's metadata_dir, but holds no operator private key, tries to make the node encrypt
// new SSE-S3 objects under a master key they know: they plant an entry sealed to the operator's *public* key,
// copy in an entry of another deployment sealed to the same operator, replace the whole keyring, or remove and
// reorder entries — and then wait for the operator's usual `coffre sse-s3 unlock`. Each is refused before any
// master key is sent, with one line saying what to do, and the node keeps the master key it had. The operator's
// own init, rotate, unlock and restart keep working, and a key rotated from another machine is accepted by name.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import { runCoffre, runCommand, startServer, type TestServer } from '../helpers/server.js';
import { requireTools } from '../helpers/tools.js';
import { mustCli, operatorKey, plantedEntry, type KeyringOnDisk, type Operator } from './sse-s3-helpers.js';

interface Status {
  unlocked: boolean;
  keyring?: string;
  current?: string;
  keys?: { id: string }[];
}

const keyringPath = (server: TestServer) => join(server.dir, 'meta', 'sse_s3_keyring.json');
const readKeyring = (server: TestServer) =>
  JSON.parse(readFileSync(keyringPath(server), 'utf8')) as KeyringOnDisk;
const writeKeyring = (server: TestServer, file: KeyringOnDisk) =>
  writeFileSync(keyringPath(server), JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });

/** A fresh memory of known keyrings: another operator machine, or one that never unlocked anything. */
const freshMemory = () => ({
  COFFRE_KNOWN_KEYRINGS: join(mkdtempSync(join(tmpdir(), 'coffre-known-')), 'known-keyrings.json'),
});

const status = async (server: TestServer) =>
  JSON.parse(await mustCli(server, ['sse-s3', 'status', '--json'])) as Status;

const unlock = (
  server: TestServer,
  operator: Operator,
  env: Record<string, string> = {},
  extra: string[] = [],
) =>
  runCoffre(
    ['-c', server.configPath, 'sse-s3', 'unlock', '--private-key', operator.privateFile, ...extra],
    env,
  );

/** Asserts the CLI refused with one line (no stack trace) matching `message`. */
function refused(r: { code: number; stderr: string }, message: RegExp): void {
  assert.notEqual(r.code, 0, `unlock should have been refused: ${r.stderr}`);
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
}

async function sseS3Put(server: TestServer, key: string): Promise<void> {
  const client = server.client();
  try {
    await client.send(
      new PutObjectCommand({ Bucket: 'vault', Key: key, Body: key, ServerSideEncryption: 'AES256' }),
    );
  } finally {
    client.destroy();
  }
}

async function createVault(server: TestServer): Promise<void> {
  const client = server.client();
  try {
    await client.send(new CreateBucketCommand({ Bucket: 'vault' }));
  } finally {
    client.destroy();
  }
}

async function restart(server: TestServer): Promise<TestServer> {
  await server.stop();
  return startServer({ dir: server.dir });
}

test('a master key planted in the keyring file, sealed to the operator public key, is never handed to the node', async () => {
  const alice = await operatorKey('alice');
  const alicePublic = readFileSync(alice.publicFile, 'utf8');
  let server = await startServer();
  try {
    await mustCli(server, ['sse-s3', 'init', '--recipient', alice.publicFile]);
    await createVault(server);
    const before = await status(server);
    const original = readKeyring(server);

    // The node is running and unlocked; the file gains a current key the attacker knows.
    const planted = await plantedEntry(alicePublic, original, original.keys.length);
    writeKeyring(server, { ...original, current: planted.id, keys: [...original.keys, planted] });
    refused(await unlock(server, alice), /(planted|altered)/);
    assert.equal((await status(server)).current, before.current, 'the node keeps its current master key');

    // After a restart the node is locked; the operator's unlock still refuses, and the node stays locked.
    server = await restart(server);
    refused(await unlock(server, alice), /(planted|altered)/);
    const locked = await status(server);
    assert.equal(locked.unlocked, false);
    await rejects(() => sseS3Put(server, 'after-plant'), 'ServiceUnavailable', 503);

    // An operator machine that never unlocked this keyring (nothing remembered) refuses too: the file's MAC.
    refused(await unlock(server, alice, freshMemory()), /altered/);

    // Back to the operator's own file: unlocked, and the current key is the one it was.
    writeKeyring(server, original);
    await mustCli(server, ['sse-s3', 'unlock', '--private-key', alice.privateFile]);
    assert.equal((await status(server)).current, before.current);
    await sseS3Put(server, 'after-restore');
  } finally {
    await server.stop();
    server.cleanup();
    rmSync(alice.dir, { recursive: true, force: true });
  }
});

test('an entry copied from another deployment sealed to the same operator is refused', async () => {
  const alice = await operatorKey('alice');
  const a = await startServer();
  const b = await startServer();
  try {
    await mustCli(a, ['sse-s3', 'init', '--recipient', alice.publicFile]);
    await mustCli(b, ['sse-s3', 'init', '--recipient', alice.publicFile]);
    const before = await status(a);
    const mine = readKeyring(a);
    const theirs = readKeyring(b);
    const copied = theirs.keys[0]!;
    writeKeyring(a, { ...mine, current: copied.id, keys: [...mine.keys, copied] });
    refused(await unlock(a, alice), /(never unlocked|altered|another keyring)/);
    refused(await unlock(a, alice, freshMemory()), /another keyring/);
    assert.equal((await status(a)).current, before.current);

    // A whole keyring substituted (here the other deployment's, equally sealed to alice): a keyring this
    // node did not have, refused unless the operator names it.
    writeKeyring(a, theirs);
    const replaced = await unlock(a, alice);
    refused(replaced, /--accept-new-keyring/);
    assert.equal((await status(a)).current, before.current);
    const accepted = await unlock(a, alice, {}, ['--accept-new-keyring', (await status(b)).keyring!]);
    assert.equal(accepted.code, 0, accepted.stderr);
    assert.equal((await status(a)).current, copied.id);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    a.cleanup();
    b.cleanup();
    rmSync(alice.dir, { recursive: true, force: true });
  }
});

test('entries removed or reordered, or another one made current, are refused', async () => {
  const alice = await operatorKey('alice');
  let server = await startServer();
  try {
    await mustCli(server, ['sse-s3', 'init', '--recipient', alice.publicFile]);
    await mustCli(server, ['sse-s3', 'rotate', '--recipient', alice.publicFile]);
    await mustCli(server, ['sse-s3', 'rotate', '--recipient', alice.publicFile]);
    const original = readKeyring(server);
    const [k0, k1, k2] = original.keys;
    server = await restart(server);
    const tampered: [string, KeyringOnDisk][] = [
      ['oldest removed', { ...original, keys: [k1!, k2!] }],
      ['newest removed', { ...original, current: k1!.id, keys: [k0!, k1!] }],
      ['middle removed', { ...original, keys: [k0!, k2!] }],
      ['reordered', { ...original, keys: [k1!, k0!, k2!] }],
      ['older made current', { ...original, current: k0!.id }],
      ['older made current and moved last', { ...original, current: k0!.id, keys: [k1!, k2!, k0!] }],
    ];
    for (const [what, file] of tampered) {
      writeKeyring(server, file);
      for (const env of [{}, freshMemory()]) {
        const r = await unlock(server, alice, env);
        assert.notEqual(r.code, 0, `${what}: unlocked (${r.stdout})`);
        refused(r, /(altered|lacks master key)/);
        assert.equal((await status(server)).unlocked, false, what);
      }
    }
    writeKeyring(server, original);
    await mustCli(server, ['sse-s3', 'unlock', '--private-key', alice.privateFile]);
    assert.equal((await status(server)).current, k2!.id);
  } finally {
    await server.stop();
    server.cleanup();
    rmSync(alice.dir, { recursive: true, force: true });
  }
});

test('a node that unlocks itself at start refuses a keyring file with a planted entry', async () => {
  const bob = await operatorKey('bob');
  const server = await startServer({ extraConfig: '[sse_s3]\nunlock_key_file = "operator.sec.asc"' });
  try {
    writeFileSync(join(server.dir, 'operator.sec.asc'), readFileSync(bob.privateFile), { mode: 0o600 });
    await mustCli(server, ['sse-s3', 'init', '--recipient', bob.publicFile]);
    await server.stop();
    const original = readKeyring(server);
    const planted = await plantedEntry(readFileSync(bob.publicFile, 'utf8'), original, original.keys.length);
    writeKeyring(server, { ...original, current: planted.id, keys: [...original.keys, planted] });
    const started = await startServer({ dir: server.dir }).then(
      (s) => s,
      (e: Error) => e,
    );
    if (!(started instanceof Error)) {
      await started.stop();
      assert.fail('the node started, unlocked with the planted master key');
    }
    assert.match(started.message, /SSE-S3 keyring file has been altered/);
  } finally {
    await server.stop();
    server.cleanup();
    rmSync(bob.dir, { recursive: true, force: true });
  }
});

test('init, rotate, unlock and restart keep working; a key rotated from another machine is accepted by name', async (t) => {
  if (!requireTools(t, 'gpg')) return;
  // The operator's key lives in their GnuPG (a temporary GNUPGHOME), which opens the keyring for `--gpg`.
  const gnupgHome = mkdtempSync(join(tmpdir(), 'coffre-gnupg-'));
  const gpgEnv = { GNUPGHOME: gnupgHome };
  const gpg = async (...args: string[]) => {
    const r = await runCommand(
      'gpg',
      ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', ...args],
      gpgEnv,
    );
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  let server = await startServer();
  try {
    await gpg('--quick-gen-key', 'carol <carol@example.test>', 'default', 'default', 'never');
    const carol = {
      dir: gnupgHome,
      publicFile: join(gnupgHome, 'carol.pub.asc'),
      privateFile: join(gnupgHome, 'carol.sec.asc'),
    };
    writeFileSync(carol.publicFile, await gpg('--armor', '--export', 'carol@example.test'));
    writeFileSync(carol.privateFile, await gpg('--armor', '--export-secret-keys', 'carol@example.test'), {
      mode: 0o600,
    });
    const here = { ...freshMemory(), ...gpgEnv };
    const elsewhere = { ...freshMemory(), ...gpgEnv };
    const init = await runCoffre(
      ['-c', server.configPath, 'sse-s3', 'init', '--recipient', 'carol@example.test'],
      here,
    );
    assert.equal(init.code, 0, init.stderr);
    assert.equal(statSync(here.COFFRE_KNOWN_KEYRINGS).mode & 0o777, 0o600);
    const first = await status(server);
    await createVault(server);
    await sseS3Put(server, 'one');

    // Rotated here: remembered, so the next unlock (with GnuPG) needs nothing more.
    await mustCli(server, ['sse-s3', 'rotate', '--recipient', carol.publicFile], here);
    server = await restart(server);
    await mustCli(server, ['sse-s3', 'unlock', '--gpg'], here);
    await sseS3Put(server, 'two');

    // Rotated from another machine: new to this one, which names it and asks for it by name.
    await mustCli(server, ['sse-s3', 'rotate', '--recipient', carol.publicFile], elsewhere);
    const rotated = (await status(server)).current!;
    server = await restart(server);
    const asked = await runCoffre(['-c', server.configPath, 'sse-s3', 'unlock', '--gpg'], here);
    refused(asked, new RegExp(`master key ${rotated}.*--accept-new-key ${rotated}`));
    assert.equal((await status(server)).unlocked, false);
    await mustCli(server, ['sse-s3', 'unlock', '--gpg', '--accept-new-key', rotated], here);
    assert.equal((await status(server)).current, rotated);
    server = await restart(server);
    await mustCli(server, ['sse-s3', 'unlock', '--gpg'], here);
    await mustCli(server, ['sse-s3', 'unlock', '--private-key', carol.privateFile], elsewhere);
    await sseS3Put(server, 'three');

    // First use: trusted, and the keyring id and key ids are shown so that the operator can check them.
    const firstUse = await unlock(server, carol, freshMemory());
    assert.equal(firstUse.code, 0, firstUse.stderr);
    assert.match(firstUse.stderr, new RegExp(`first unlock of SSE-S3 keyring ${first.keyring}`));
    for (const k of (await status(server)).keys!) assert.match(firstUse.stderr, new RegExp(k.id));
    assert.equal((await status(server)).keyring, first.keyring);
  } finally {
    await server.stop();
    server.cleanup();
    await runCommand('gpgconf', ['--kill', 'gpg-agent'], gpgEnv);
    rmSync(gnupgHome, { recursive: true, force: true });
  }
});

test('the memory of known keyrings is refused when others can write it', async () => {
  const alice = await operatorKey('alice');
  const server = await startServer();
  try {
    const memory = freshMemory();
    await mustCli(server, ['sse-s3', 'init', '--recipient', alice.publicFile], memory);
    writeFileSync(memory.COFFRE_KNOWN_KEYRINGS, readFileSync(memory.COFFRE_KNOWN_KEYRINGS), { mode: 0o666 });
    chmodSync(memory.COFFRE_KNOWN_KEYRINGS, 0o666);
    refused(await unlock(server, alice, memory), /writable by other users.*chmod 600/);
    const garbage = randomBytes(8).toString('hex');
    writeFileSync(memory.COFFRE_KNOWN_KEYRINGS, garbage);
    chmodSync(memory.COFFRE_KNOWN_KEYRINGS, 0o600);
    refused(await unlock(server, alice, memory), /damaged/);
  } finally {
    await server.stop();
    server.cleanup();
    rmSync(alice.dir, { recursive: true, force: true });
  }
});

test('a keyring written in format 1 is guarded by the memory of known keys, and reseal upgrades it', async () => {
  const alice = await operatorKey('alice');
  const alicePublic = readFileSync(alice.publicFile, 'utf8');
  let server = await startServer();
  try {
    // What an older coffre wrote: entries bound to nothing but their key id, no keyring id, no MAC.
    const empty: KeyringOnDisk = { format: 'coffre-sse-s3-keyring', v: 1, current: '', keys: [] };
    const first = await plantedEntry(alicePublic, empty, 0);
    const v1: KeyringOnDisk = { ...empty, current: first.id, keys: [first] };
    writeKeyring(server, v1);
    const unlocked = await unlock(server, alice);
    assert.equal(unlocked.code, 0, unlocked.stderr);
    assert.match(unlocked.stderr, /format 1.*reseal/);

    // An entry planted in it is refused by what this machine remembers.
    server = await restart(server);
    const planted = await plantedEntry(alicePublic, v1, 1);
    writeKeyring(server, { ...v1, current: planted.id, keys: [...v1.keys, planted] });
    refused(await unlock(server, alice), new RegExp(`master key ${planted.id}.*planted`));
    assert.equal((await status(server)).unlocked, false);

    writeKeyring(server, v1);
    await mustCli(server, ['sse-s3', 'unlock', '--private-key', alice.privateFile]);
    await mustCli(server, ['sse-s3', 'reseal', '--recipient', alice.publicFile]);
    const upgraded = readKeyring(server);
    assert.equal(upgraded.v, 2);
    assert.equal((await status(server)).keyring, upgraded.keyring);
    server = await restart(server);
    const again = await unlock(server, alice);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stderr, '');
    assert.equal((await status(server)).current, first.id);
  } finally {
    await server.stop();
    server.cleanup();
    rmSync(alice.dir, { recursive: true, force: true });
  }
});
