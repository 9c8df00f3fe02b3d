// SSE-S3 end to end: an operator creates the keyring (master key sealed to their OpenPGP key), clients ask for
// `x-amz-server-side-encryption: AES256` (the AWS SDK, the aws CLI) or get it from the bucket's default
// encryption, and objects are stored encrypted: nothing of their plaintext, nor the master key, is on disk. A
// restarted node holds no master key until an operator unlocks it (with a private key file, or the node's own
// unlock key file at start); a wrong key is refused. Rotation leaves old objects readable.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketEncryptionCommand,
  GetBucketEncryptionCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutBucketEncryptionCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import { runCoffre, runCommand, startServer, type TestServer } from '../helpers/server.js';
import { hasTool } from '../helpers/tools.js';
import { mustCli, operatorKey } from './sse-s3-helpers.js';
import { walkFiles } from './ssec-helpers.js';

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const KiB = 1024;

const cli = async (server: TestServer, args: string[], env: Record<string, string> = {}) =>
  runCoffre(['-c', server.configPath, ...args], env);

async function body(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  assert.equal(r.ServerSideEncryption, 'AES256', `${key} says it is SSE-S3`);
  return Buffer.from(await r.Body!.transformToByteArray());
}

test('SSE-S3 with the AWS SDK: put, get, head, multipart, copy, bucket default; nothing in clear on disk', async () => {
  const alice = await operatorKey('alice');
  let server = await startServer();
  try {
    let client = server.client();
    // Not set up yet: refused, and nothing stored.
    await client.send(new CreateBucketCommand({ Bucket: 'vault' }));
    await rejects(
      () =>
        client.send(
          new PutObjectCommand({ Bucket: 'vault', Key: 'early', Body: 'x', ServerSideEncryption: 'AES256' }),
        ),
      'NotImplemented',
      501,
    );
    await rejects(
      () =>
        client.send(
          new PutBucketEncryptionCommand({
            Bucket: 'vault',
            ServerSideEncryptionConfiguration: {
              Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
            },
          }),
        ),
      'InvalidRequest',
      400,
    );

    assert.match(await mustCli(server, ['sse-s3', 'init', '--recipient', alice.publicFile]), /unlocked/);
    const keyring = join(server.dir, 'meta', 'sse_s3_keyring.json');
    assert.equal(statSync(keyring).mode & 0o777, 0o600);

    // A marker that would show up on disk if any of these bodies were stored in clear.
    const marker = `coffre-sse-s3-plaintext-${randomBytes(8).toString('hex')}`;
    const small = Buffer.from(`${marker} small`);
    const large = Buffer.concat([Buffer.from(marker), randomBytes(3 * 1024 * KiB)]);
    const put = await client.send(
      new PutObjectCommand({
        Bucket: 'vault',
        Key: 'small',
        Body: small,
        ServerSideEncryption: 'AES256',
        Metadata: { note: marker },
        ContentType: 'text/x-secret',
      }),
    );
    assert.equal(put.ServerSideEncryption, 'AES256');
    // As in S3, an SSE-S3 object's ETag is the MD5 of its plaintext (clients check uploads against it).
    assert.equal(put.ETag, `"${md5(small)}"`);
    await client.send(
      new PutObjectCommand({ Bucket: 'vault', Key: 'large', Body: large, ServerSideEncryption: 'AES256' }),
    );
    assert.deepEqual(await body(client, 'vault', 'small'), small);
    assert.deepEqual(await body(client, 'vault', 'large'), large);
    const head = await client.send(new HeadObjectCommand({ Bucket: 'vault', Key: 'small' }));
    assert.equal(head.ServerSideEncryption, 'AES256');
    assert.equal(head.Metadata?.note, marker);
    assert.equal(head.ContentType, 'text/x-secret');
    const ranged = await client.send(
      new GetObjectCommand({ Bucket: 'vault', Key: 'large', Range: 'bytes=1000-70999' }),
    );
    assert.deepEqual(Buffer.from(await ranged.Body!.transformToByteArray()), large.subarray(1000, 71000));
    // An SSE-C key for an SSE-S3 object is refused, as for a plaintext one.
    await rejects(
      () =>
        client.send(
          new GetObjectCommand({
            Bucket: 'vault',
            Key: 'small',
            SSECustomerAlgorithm: 'AES256',
            SSECustomerKey: randomBytes(32).toString('base64'),
          }),
        ),
      'InvalidRequest',
      400,
    );

    // Multipart: chosen at creation, every part encrypted.
    const { UploadId, ServerSideEncryption } = await client.send(
      new CreateMultipartUploadCommand({ Bucket: 'vault', Key: 'multi', ServerSideEncryption: 'AES256' }),
    );
    assert.equal(ServerSideEncryption, 'AES256');
    const parts = [Buffer.concat([Buffer.from(marker), randomBytes(5 * 1024 * KiB)]), randomBytes(100 * KiB)];
    const etags: string[] = [];
    for (const [i, p] of parts.entries()) {
      const r = await client.send(
        new UploadPartCommand({ Bucket: 'vault', Key: 'multi', UploadId, PartNumber: i + 1, Body: p }),
      );
      assert.equal(r.ServerSideEncryption, 'AES256');
      etags.push(r.ETag!);
    }
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: 'vault',
        Key: 'multi',
        UploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
    assert.deepEqual(await body(client, 'vault', 'multi'), Buffer.concat(parts));

    // Copies: plaintext → SSE-S3, SSE-S3 → plaintext.
    await client.send(new PutObjectCommand({ Bucket: 'vault', Key: 'plain', Body: 'in the clear' }));
    await client.send(
      new CopyObjectCommand({
        Bucket: 'vault',
        Key: 'plain-sealed',
        CopySource: 'vault/plain',
        ServerSideEncryption: 'AES256',
      }),
    );
    assert.equal((await body(client, 'vault', 'plain-sealed')).toString(), 'in the clear');
    await client.send(
      new CopyObjectCommand({ Bucket: 'vault', Key: 'opened', CopySource: 'vault/plain-sealed' }),
    );
    const opened = await client.send(new GetObjectCommand({ Bucket: 'vault', Key: 'opened' }));
    assert.equal(opened.ServerSideEncryption, undefined);
    assert.equal(Buffer.from(await opened.Body!.transformToByteArray()).toString(), 'in the clear');

    // Default encryption: a plain PUT into the bucket is stored with SSE-S3; SSE-C still wins.
    await client.send(new CreateBucketCommand({ Bucket: 'sealed-by-default' }));
    await rejects(
      () => client.send(new GetBucketEncryptionCommand({ Bucket: 'sealed-by-default' })),
      'ServerSideEncryptionConfigurationNotFoundError',
      404,
    );
    await client.send(
      new PutBucketEncryptionCommand({
        Bucket: 'sealed-by-default',
        ServerSideEncryptionConfiguration: {
          Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
      }),
    );
    const config = await client.send(new GetBucketEncryptionCommand({ Bucket: 'sealed-by-default' }));
    assert.equal(
      config.ServerSideEncryptionConfiguration?.Rules?.[0]?.ApplyServerSideEncryptionByDefault?.SSEAlgorithm,
      'AES256',
    );
    const byDefault = Buffer.from(`${marker} by default`);
    const r = await client.send(
      new PutObjectCommand({ Bucket: 'sealed-by-default', Key: 'd', Body: byDefault }),
    );
    assert.equal(r.ServerSideEncryption, 'AES256');
    assert.deepEqual(await body(client, 'sealed-by-default', 'd'), byDefault);
    await rejects(
      () =>
        client.send(
          new PutBucketEncryptionCommand({
            Bucket: 'sealed-by-default',
            ServerSideEncryptionConfiguration: {
              Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms' } }],
            },
          }),
        ),
      'NotImplemented',
      501,
    );
    await client.send(new DeleteBucketEncryptionCommand({ Bucket: 'sealed-by-default' }));
    await rejects(
      () => client.send(new GetBucketEncryptionCommand({ Bucket: 'sealed-by-default' })),
      'ServerSideEncryptionConfigurationNotFoundError',
      404,
    );

    // A restart forgets the master key: SSE-S3 reads and writes wait for an operator.
    await server.stop();
    server = await startServer({ dir: server.dir });
    client.destroy();
    client = server.client();
    await rejects(
      () => client.send(new GetObjectCommand({ Bucket: 'vault', Key: 'small' })),
      'ServiceUnavailable',
      503,
    );
    assert.match(await mustCli(server, ['sse-s3', 'status']), /LOCKED/);
    // Someone else's key cannot open it: one line, non-zero exit, no stack trace.
    const mallory = await operatorKey('mallory');
    const wrong = await cli(server, ['sse-s3', 'unlock', '--private-key', mallory.privateFile]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /cannot open SSE-S3 master key/);
    assert.doesNotMatch(wrong.stderr, /\n\s+at /);
    // Master keys that are not the keyring's are refused by the node itself.
    const forged = await fetch(`${server.adminEndpoint}/v1/sse-s3/unlock`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        keys: Object.fromEntries(
          (JSON.parse(readFileSync(keyring, 'utf8')) as { keys: { id: string }[] }).keys.map((k) => [
            k.id,
            randomBytes(32).toString('base64'),
          ]),
        ),
      }),
    });
    assert.equal(forged.status, 400);
    assert.match(await mustCli(server, ['sse-s3', 'unlock', '--private-key', alice.privateFile]), /unlocked/);
    assert.deepEqual(await body(client, 'vault', 'large'), large);

    // Rotation: new objects use the new key; old ones still read.
    await mustCli(server, ['sse-s3', 'rotate', '--recipient', alice.publicFile]);
    const status = JSON.parse(await mustCli(server, ['sse-s3', 'status', '--json'])) as {
      current: string;
      keys: { id: string }[];
    };
    assert.equal(status.keys.length, 2);
    assert.equal(status.current, status.keys[1]!.id);
    await client.send(
      new PutObjectCommand({
        Bucket: 'vault',
        Key: 'after-rotation',
        Body: 'new key',
        ServerSideEncryption: 'AES256',
      }),
    );
    assert.equal((await body(client, 'vault', 'after-rotation')).toString(), 'new key');
    assert.deepEqual(await body(client, 'vault', 'small'), small);
    client.destroy();

    // Nothing of the plaintext, the user metadata or the master keys in the data and metadata dirs.
    await server.stop();
    const masterKeys = [...(await unlockedKeysOf(keyring, alice.privateFile)).values()];
    for (const file of walkFiles(server.dir)) {
      const bytes = readFileSync(file);
      assert.ok(!bytes.includes(Buffer.from(marker)), `${file} holds plaintext`);
      for (const k of masterKeys) {
        assert.ok(!bytes.includes(k), `${file} holds a master key`);
        assert.ok(!bytes.includes(Buffer.from(k.toString('base64'))), `${file} holds a master key (base64)`);
      }
    }
  } finally {
    await server.stop();
    server.cleanup();
    rmSync(alice.dir, { recursive: true, force: true });
  }
});

async function unlockedKeysOf(keyringFile: string, privateFile: string): Promise<Map<string, Buffer>> {
  const { Keyring } = await import('../../src/sse/keyring.js');
  const keyring = await Keyring.unlock(readFileSync(keyringFile, 'utf8'), readFileSync(privateFile, 'utf8'));
  return keyring.masterKeys();
}

test('SSE-S3 unlocked at start by unlock_key_file; the aws CLI asks for it with --sse AES256', async (t) => {
  const bob = await operatorKey('bob', 'correct horse');
  const server0 = await startServer({
    extraConfig: '[sse_s3]\nunlock_key_file = "operator.sec.asc"',
  });
  let server = server0;
  try {
    await mustCli(server, ['sse-s3', 'init', '--recipient', bob.publicFile]);
    await server.stop();
    // The unlock key file must not be readable by others, and must open with its passphrase.
    writeFileSync(join(server.dir, 'operator.sec.asc'), readFileSync(bob.privateFile), { mode: 0o644 });
    chmodSync(join(server.dir, 'operator.sec.asc'), 0o644);
    const refused = await startServer({ dir: server.dir }).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.match(String(refused?.message), /readable by other users/);
    chmodSync(join(server.dir, 'operator.sec.asc'), 0o600);
    server = await startServer({ dir: server.dir, env: { COFFRE_SSE_S3_PASSPHRASE: 'correct horse' } });
    assert.match(await mustCli(server, ['sse-s3', 'status']), /unlocked/);
    if (!hasTool('aws')) {
      t.diagnostic('aws CLI not installed: its part is skipped');
      return;
    }
    const env = {
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_EC2_METADATA_DISABLED: 'true',
    };
    const aws = (args: string[]) => runCommand('aws', ['--endpoint-url', server.endpoint, ...args], env);
    const file = join(bob.dir, 'file.bin');
    const data = randomBytes(9 * 1024 * KiB); // multipart for the CLI
    writeFileSync(file, data);
    assert.equal((await aws(['s3', 'mb', 's3://cli-vault'])).code, 0);
    const up = await aws(['s3', 'cp', file, 's3://cli-vault/file.bin', '--sse', 'AES256']);
    assert.equal(up.code, 0, up.stderr);
    const head = await aws(['s3api', 'head-object', '--bucket', 'cli-vault', '--key', 'file.bin']);
    assert.equal(
      (JSON.parse(head.stdout) as { ServerSideEncryption?: string }).ServerSideEncryption,
      'AES256',
    );
    const back = join(bob.dir, 'back.bin');
    const down = await aws(['s3', 'cp', 's3://cli-vault/file.bin', back]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(readFileSync(back), data);
  } finally {
    await server.stop();
    server.cleanup();
    rmSync(bob.dir, { recursive: true, force: true });
  }
});
