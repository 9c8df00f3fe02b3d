// The SSE-S3 keyring of gateways in front of one backend (docs/gateway.md, "SSE-S3 keyring"): kept sealed in
// the backend, so a gateway started with no keyring file of its own has it; an operator's unlock of one
// gateway reaches the others over Secret Handshake; a gateway with another rpc_secret, or an unlock key that
// does not open the keyring, gets nothing; a peer's push is taken only from an announced gateway and only
// with the keys of the keyring in the backend. Rotation that revokes: rewrap, then drop-key, and every object
// stays readable, through both gateways.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { SharedRecords } from '../../src/backend/records.js';
import { SSE_S3_KEYS_PATH } from '../../src/backend/keyring.js';
import { RemoteError } from '../../src/rpc/peering.js';
import { connectedPeer } from '../helpers/rpc-peer.js';
import { rejects } from '../helpers/s3.js';
import { runCoffre, startServer, type TestServer } from '../helpers/server.js';
import { mustCli, operatorKey } from '../security/sse-s3-helpers.js';
import { backendTable, startBackend, startGateway, until, type Gateway } from './gateway-helpers.js';

const secretHex = randomBytes(32).toString('hex');
const rpcSecret = `rpc_secret = "${secretHex}"`;
const env = { COFFRE_GATEWAY_ANNOUNCE_MS: '300' };
let backend: Awaited<ReturnType<typeof startBackend>>;
let first: Gateway;
let second: TestServer;
let secondClient: S3Client;

interface Status {
  unlocked: boolean;
  current?: string;
  keys?: { id: string }[];
  sealedDigest?: string;
  keyringFile: string;
}

async function status(server: TestServer): Promise<Status> {
  return JSON.parse(await mustCli(server, ['sse-s3', 'status', '--json'])) as Status;
}

const unlockedOn = (server: TestServer, current?: string) =>
  until(`${server.endpoint} unlocked`, async () => {
    const s = await status(server);
    return s.unlocked && (current === undefined || s.current === current) ? s : undefined;
  });

async function put(client: S3Client, key: string, body: Buffer): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: 'keyring-b', Key: key, Body: body }));
}

async function get(client: S3Client, key: string): Promise<Buffer> {
  const got = await client.send(new GetObjectCommand({ Bucket: 'keyring-b', Key: key }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

before(async () => {
  backend = await startBackend();
  first = await startGateway(backend.target, { server: { secretConfig: rpcSecret, env } });
  // The second gateway: the same backend and rpc_secret, no keyring file and no unlock key of its own.
  second = await startServer({
    secretConfig: rpcSecret,
    env,
    extraConfig: backendTable(backend.target),
    accessKey: { id: first.server.accessKeyId, secret: first.server.secretAccessKey },
  });
  secondClient = second.client();
  await first.client.send(new CreateBucketCommand({ Bucket: 'keyring-b' }));
});

after(async () => {
  secondClient?.destroy();
  await second?.stop();
  second?.cleanup();
  await first?.stop();
  backend?.client.destroy();
  await backend?.server.stop();
  backend?.server.cleanup();
});

test('a gateway with no keyring of its own has the one in the backend, and is handed its keys by a peer', async () => {
  const s = await status(second);
  assert.match(s.keyringFile, /\.coffre\/sse-s3\/keyring/);
  const mine = await status(first.server);
  assert.equal(s.sealedDigest, mine.sealedDigest);
  await unlockedOn(second, mine.current);
  const body = randomBytes(70_000);
  await put(secondClient, 'from-second', body);
  assert.deepEqual(await get(first.client, 'from-second'), body);
});

test('an operator unlocks one gateway; the other serves SSE-S3 without its own unlock', async () => {
  await mustCli(first.server, ['sse-s3', 'lock']);
  await mustCli(second, ['sse-s3', 'lock']);
  await rejects(() => put(secondClient, 'locked', Buffer.from('x')), 'ServiceUnavailable', 503);
  // A lock holds: the first gateway does not hand keys to a peer an operator locked.
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal((await status(second)).unlocked, false);
  await mustCli(first.server, ['sse-s3', 'unlock', '--private-key', first.operator.privateFile]);
  await unlockedOn(second);
  const body = randomBytes(1000);
  await put(secondClient, 'after-unlock', body);
  assert.deepEqual(await get(first.client, 'after-unlock'), body);
  assert.deepEqual(await get(secondClient, 'from-second').then((b) => b.length), 70_000);
});

test('the backend holds the keyring sealed: no master key, nothing in clear', async () => {
  const listed = await backend.client.send(
    new ListObjectsV2Command({ Bucket: backend.target.bucket, Prefix: 'coffre/.coffre/' }),
  );
  const names = (listed.Contents ?? []).map((c) => c.Key!);
  assert.ok(names.includes('coffre/.coffre/sse-s3/keyring'), names.join(' '));
  assert.ok(
    names.some((n) => n.startsWith('coffre/.coffre/gateways/')),
    names.join(' '),
  );
  const got = await backend.client.send(
    new GetObjectCommand({ Bucket: backend.target.bucket, Key: 'coffre/.coffre/sse-s3/keyring' }),
  );
  const text = Buffer.from(await got.Body!.transformToByteArray()).toString('latin1');
  // Sealed again under the rpc_secret: not even the OpenPGP keyring is readable, nor its key ids.
  assert.ok(!text.includes('coffre-sse-s3-keyring'));
  assert.ok(!text.includes((await status(first.server)).current!));
});

test('a gateway with another rpc_secret, or an unlock key that does not open the keyring, does not start', async () => {
  const other = await startServer({ extraConfig: backendTable(backend.target) }).then(
    (s) => ({ started: s }),
    (err: Error) => ({ error: err.message }),
  );
  if ('started' in other) {
    await other.started.stop();
    other.started.cleanup();
    assert.fail('a gateway with another rpc_secret started');
  }
  assert.match(other.error, /rpc_secret/);
  const stranger = await operatorKey('stranger');
  const refused = await startServer({
    secretConfig: rpcSecret,
    extraConfig: `${backendTable(backend.target)}\n[sse_s3]\nunlock_key_file = "${stranger.privateFile}"\n`,
    accessKey: { id: first.server.accessKeyId, secret: first.server.secretAccessKey },
  }).then(
    (s) => ({ started: s }),
    (err: Error) => ({ error: err.message }),
  );
  if ('started' in refused) {
    await refused.started.stop();
    refused.started.cleanup();
    assert.fail('a gateway whose unlock key opens nothing started');
  }
  assert.match(refused.error, /cannot open SSE-S3 master key/);
});

test('the key push endpoint: refused to unknown peers, and to announced ones with anything but the keyring’s keys', async () => {
  const { peer, serverId } = await connectedPeer(second, secretHex);
  try {
    const sample = { digest: 'a'.repeat(64), keys: { ['b'.repeat(16)]: randomBytes(32).toString('base64') } };
    // Not announced in the backend: refused before the handler.
    await assert.rejects(peer.call(serverId, SSE_S3_KEYS_PATH, sample), RemoteError);
    // No endpoint hands keys out.
    for (const path of ['sse-s3/get', 'sse-s3/keys/../get', 'sse-s3/pull'])
      await assert.rejects(peer.call(serverId, path, {}), RemoteError);
    // Announced (as only a holder of rpc_secret and of the backend's credentials can): hostile pushes.
    const records = new SharedRecords(
      backend.client,
      backend.target.bucket,
      'coffre/',
      Buffer.from(secretHex, 'hex'),
    );
    await mustCli(second, ['sse-s3', 'lock']);
    const s = await status(second);
    const ids = (s.keys ?? []).map((k) => k.id);
    const hostile: unknown[] = [
      null,
      'x',
      [],
      {},
      { digest: s.sealedDigest },
      { digest: s.sealedDigest, keys: [] },
      { digest: s.sealedDigest, keys: {} },
      { digest: '../../x', keys: { [ids[0]!]: randomBytes(32).toString('base64') } },
      { digest: s.sealedDigest, keys: { '../etc': randomBytes(32).toString('base64') } },
      { digest: s.sealedDigest, keys: { [ids[0]!]: 'A'.repeat(60_000) } },
      { digest: s.sealedDigest, keys: { [ids[0]!]: randomBytes(31).toString('base64') } },
      {
        digest: s.sealedDigest,
        keys: Object.fromEntries(
          Array.from({ length: 1_000 }, (_, i) => [i.toString(16).padStart(16, '0'), 'x']),
        ),
      },
      // Well-formed, but not the keyring's keys; and the right shape for another digest.
      {
        digest: s.sealedDigest,
        keys: Object.fromEntries(ids.map((id) => [id, randomBytes(32).toString('base64')])),
      },
      {
        digest: 'c'.repeat(64),
        keys: Object.fromEntries(ids.map((id) => [id, randomBytes(32).toString('base64')])),
      },
    ];
    // Announced afresh on every try (an announcement ages out after 10 s; a busy machine may take longer).
    const announce = () => {
      const now = Date.now();
      return records.writeState('gateways', peer.nodeId, {
        v: 1,
        nodeId: peer.nodeId,
        rpcAddr: null,
        at: now,
        started: now,
      });
    };
    await until('the attacker announced', async () => {
      await announce();
      try {
        await peer.call(serverId, SSE_S3_KEYS_PATH, null);
      } catch (err) {
        return /only for nodes|not allowed|refused/i.test((err as Error).message) ? undefined : true;
      }
      return undefined;
    });
    for (const header of hostile) {
      await announce();
      await assert.rejects(
        peer.call(serverId, SSE_S3_KEYS_PATH, header),
        RemoteError,
        JSON.stringify(header)?.slice(0, 80),
      );
      assert.equal((await status(second)).unlocked, false);
    }
    await records.removeState('gateways', peer.nodeId);
  } finally {
    await peer.stop();
  }
  // The node goes on; an operator's unlock elsewhere still reaches it.
  await mustCli(first.server, ['sse-s3', 'unlock', '--private-key', first.operator.privateFile]);
  await unlockedOn(second);
});

test('rotate, rewrap, drop-key: the old master key is gone and every object stays readable', async () => {
  const small = randomBytes(100_000);
  await put(first.client, 'small', small);
  const part = randomBytes(5 * 1024 * 1024);
  const last = randomBytes(1000);
  const mp = await first.client.send(new CreateMultipartUploadCommand({ Bucket: 'keyring-b', Key: 'multi' }));
  const etags: string[] = [];
  for (const [i, body] of [part, last].entries()) {
    const up = await first.client.send(
      new UploadPartCommand({
        Bucket: 'keyring-b',
        Key: 'multi',
        UploadId: mp.UploadId,
        PartNumber: i + 1,
        Body: body,
      }),
    );
    etags.push(up.ETag!);
  }
  await first.client.send(
    new CompleteMultipartUploadCommand({
      Bucket: 'keyring-b',
      Key: 'multi',
      UploadId: mp.UploadId,
      MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
    }),
  );
  const before = await status(first.server);
  const old = before.current!;
  const listedBefore = await first.client.send(new ListObjectsV2Command({ Bucket: 'keyring-b' }));
  // Not before a rewrap.
  const early = await runCoffre([
    '-c',
    first.server.configPath,
    'sse-s3',
    'drop-key',
    old,
    '--recipient',
    first.operator.publicFile,
  ]);
  assert.notEqual(early.code, 0);
  assert.match(early.stderr, /still needed/);
  await mustCli(first.server, ['sse-s3', 'rotate', '--recipient', first.operator.publicFile]);
  const rotated = await status(first.server);
  assert.notEqual(rotated.current, old);
  // The other gateway is handed the new key, and the pass waits for it.
  await unlockedOn(second, rotated.current);
  const out = await mustCli(first.server, ['sse-s3', 'rewrap', '--json']);
  const progress = JSON.parse(out) as { state: string; rewrapped: number; legacy: number; failed: number };
  assert.equal(progress.state, 'done', out);
  assert.equal(progress.failed, 0);
  assert.equal(progress.legacy, 0);
  // Every object of the bucket (each is SSE-S3 through a gateway).
  assert.equal(progress.rewrapped, listedBefore.Contents!.length, out);
  await mustCli(first.server, ['sse-s3', 'drop-key', old, '--recipient', first.operator.publicFile]);
  const dropped = await status(first.server);
  assert.deepEqual(
    dropped.keys!.map((k) => k.id),
    [rotated.current],
  );
  // Sizes, ETags and bytes as before, through both gateways (the second picks the new keyring up).
  const listedAfter = await first.client.send(new ListObjectsV2Command({ Bucket: 'keyring-b' }));
  assert.deepEqual(
    listedAfter.Contents!.map((c) => [c.Key, c.Size, c.ETag]),
    listedBefore.Contents!.map((c) => [c.Key, c.Size, c.ETag]),
  );
  await until('the second gateway on the new keyring', async () =>
    (await status(second)).keys?.length === 1 ? true : undefined,
  );
  for (const client of [first.client, secondClient]) {
    assert.deepEqual(await get(client, 'small'), small);
    assert.deepEqual(await get(client, 'multi'), Buffer.concat([part, last]));
  }
  // A restarted gateway opens the keyring without the dropped key, and still reads everything.
  await first.server.stop();
  const restarted = await startServer({ dir: first.server.dir, env, secretConfig: rpcSecret });
  const client = restarted.client();
  try {
    await mustCli(restarted, ['sse-s3', 'unlock', '--private-key', first.operator.privateFile]);
    assert.deepEqual(await get(client, 'multi'), Buffer.concat([part, last]));
  } finally {
    client.destroy();
    await restarted.stop();
  }
});
