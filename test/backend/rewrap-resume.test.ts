// A rewrap pass cut short by kill -9 of its gateway resumes from where it stopped (its progress is in the
// backend), and ends with every object under the new master key: the old key can then be dropped and every
// object still reads back.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { runCoffre, startServer, type TestServer } from '../helpers/server.js';
import { mustCli } from '../security/sse-s3-helpers.js';
import { startBackend, startGateway, type Gateway } from './gateway-helpers.js';

const OBJECTS = 30;
// A pause after each object, so that the kill lands mid-pass however fast the machine is.
const env = { COFFRE_GATEWAY_ANNOUNCE_MS: '300', COFFRE_REWRAP_PAUSE_MS: '200' };
const rpcSecret = `rpc_secret = "${randomBytes(32).toString('hex')}"`;
let backend: Awaited<ReturnType<typeof startBackend>>;
let gateway: Gateway;
let restarted: TestServer | undefined;

interface Progress {
  state?: string;
  seen: number;
  rewrapped: number;
  current: number;
  failed: number;
  legacy: number;
  cursor: string;
}

async function progressOf(server: TestServer): Promise<Progress> {
  return JSON.parse(await mustCli(server, ['sse-s3', 'rewrap', '--status', '--json'])) as Progress;
}

before(async () => {
  backend = await startBackend();
  gateway = await startGateway(backend.target, { server: { secretConfig: rpcSecret, env } });
});

after(async () => {
  await restarted?.stop();
  await gateway?.stop();
  backend?.client.destroy();
  await backend?.server.stop();
  backend?.server.cleanup();
});

test('rewrap killed mid-pass resumes from its cursor; then the old key drops and every object reads', async () => {
  const client = gateway.client;
  await client.send(new CreateBucketCommand({ Bucket: 'resume' }));
  const bodies = new Map<string, Buffer>();
  for (let i = 0; i < OBJECTS; i++) {
    const key = `o/${String(i).padStart(3, '0')}`;
    const body = randomBytes(1000 + i);
    bodies.set(key, body);
    await client.send(new PutObjectCommand({ Bucket: 'resume', Key: key, Body: body }));
  }
  const old = (
    JSON.parse(await mustCli(gateway.server, ['sse-s3', 'status', '--json'])) as { current: string }
  ).current;
  await mustCli(gateway.server, ['sse-s3', 'rotate', '--recipient', gateway.operator.publicFile]);
  await mustCli(gateway.server, ['sse-s3', 'rewrap', '--no-wait']);
  const deadline = Date.now() + 60_000;
  let before: Progress;
  for (;;) {
    before = await progressOf(gateway.server);
    if (before.state === 'running' && before.rewrapped >= 3) break;
    assert.notEqual(before.state, 'done', 'the pass ended before the kill');
    assert.ok(Date.now() < deadline, 'the pass did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  await gateway.server.kill();
  restarted = await startServer({ dir: gateway.server.dir, env, secretConfig: rpcSecret });
  await mustCli(restarted, ['sse-s3', 'unlock', '--private-key', gateway.operator.privateFile]);
  // Left as it was by the kill: running, at its cursor.
  const stopped = await progressOf(restarted);
  assert.equal(stopped.state, 'running');
  assert.ok(stopped.cursor >= before.cursor, `${stopped.cursor} < ${before.cursor}`);
  const out = await mustCli(restarted, ['sse-s3', 'rewrap', '--json']);
  const done = JSON.parse(out) as Progress;
  assert.equal(done.state, 'done', out);
  assert.equal(done.failed, 0, out);
  // Resumed, not restarted: objects done before the kill are not looked at twice, but for those done after
  // the last progress written (seen again, found under the new key already).
  assert.ok(done.seen < OBJECTS + 5, out);
  assert.ok(done.rewrapped + done.current >= OBJECTS - stopped.seen, out);
  const dropped = await runCoffre([
    '-c',
    restarted.configPath,
    'sse-s3',
    'drop-key',
    old,
    '--recipient',
    gateway.operator.publicFile,
  ]);
  assert.equal(dropped.code, 0, dropped.stderr);
  const reader = restarted.client();
  try {
    for (const [key, body] of bodies) {
      const got = await reader.send(new GetObjectCommand({ Bucket: 'resume', Key: key }));
      assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), body, key);
    }
  } finally {
    reader.destroy();
  }
});
