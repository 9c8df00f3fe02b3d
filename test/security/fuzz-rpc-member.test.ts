// Fuzz, seeded and bounded: a node of the layout (it knows rpc_secret and is a member, as a compromised storage
// node or gateway would be) sends every RPC endpoint thousands of hostile headers and bodies — wrong types,
// traversal strings, huge numbers, prototype keys, junk bytes. Each call gets a prompt answer, the node stays
// up with bounded memory, answers the S3 API as before, and no file outside its directories is read out or
// written. The seed is printed: replay a failure with COFFRE_FUZZ_SEED=<seed>.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { readBody } from '../../src/net/mux.js';
import { encodeData } from '../../src/rpc/codec.js';
import { METADATA_METHODS } from '../../src/model/store.js';
import { RpcNode } from '../../src/rpc/peering.js';
import { CANARY, Rng, fuzzSeed, residentBytes } from '../helpers/fuzz.js';
import { connectedPeer } from '../helpers/rpc-peer.js';
import { runCoffre, startServer, type TestServer } from '../helpers/server.js';

const CALLS = 3000;
const IN_FLIGHT = 8;
const ANSWER_WITHIN_MS = 20_000;
const MAX_RSS = 600 * 1024 * 1024;
const ENDPOINTS = [
  'store/call',
  'block/put',
  'block/get',
  'block/has',
  'block/delete',
  'block/resync-status',
  'node/forget',
  'layout/get',
  'layout/push',
  'meta/position',
  'meta/resync-begin',
  'meta/resync-load',
  'meta/resync-end',
  'meta/vote',
  'meta/append',
  'meta/leader',
  'meta/handover',
  'rpc/ping',
  'rpc/peers',
  'no/such/endpoint',
  '',
  '../../node_key',
];

const secret = randomBytes(32).toString('hex');
const seed = fuzzSeed();
const kept = randomBytes(100_000);
let server: TestServer;
let member: RpcNode;
let serverId: string;
let secrets: Buffer[];

before(async () => {
  server = await startServer({ secretConfig: `rpc_secret = "${secret}"` });
  const s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: 'kept' }));
  await s3.send(new PutObjectCommand({ Bucket: 'kept', Key: 'object', Body: kept }));
  s3.destroy();
  ({ peer: member, serverId } = await connectedPeer(server, secret));
  for (const args of [
    ['layout', 'assign', serverId, '--zone', 'z1', '--capacity', '1G'],
    ['layout', 'assign', member.nodeId, '--zone', 'z2', '--gateway'],
    ['layout', 'apply', '--version', '1'],
  ]) {
    const r = await runCoffre(['-c', server.configPath, ...args]);
    assert.equal(r.code, 0, r.stderr);
  }
  secrets = [
    readFileSync(join(server.dir, 'meta', 'node_key')).subarray(0, 32),
    readFileSync(server.configPath),
  ];
});

after(async () => {
  await member?.stop();
  await server?.stop();
  server?.cleanup();
});

function hostileHeader(rng: Rng, path: string): unknown {
  if (path === 'store/call' && rng.chance(0.7))
    return { method: rng.chance(0.8) ? rng.pick(METADATA_METHODS) : rng.value(0) };
  if (path.startsWith('block/') && rng.chance(0.5)) return { hash: rng.value(0) };
  if (path.startsWith('meta/') && rng.chance(0.6)) {
    // Terms and indexes around every edge: negative, fractional, past 2^53, of the wrong type.
    const counter = () =>
      rng.pick([0, 1, 2, -1, 0.5, 2 ** 48, 2 ** 53 + 2, 1e308, NaN, '1', null, rng.value(0)]);
    const position = () =>
      rng.chance(0.5)
        ? { seq: counter(), id: rng.pick(['', 'ab', '../x', rng.value(0)]), term: counter() }
        : rng.value(1);
    return {
      layoutVersion: rng.pick([0, 1, 2, 1e9, -1]),
      term: counter(),
      ...(rng.chance(0.5)
        ? { lastSeq: counter(), lastTerm: counter(), preVote: rng.pick([true, false, 'yes']) }
        : {}),
      ...(rng.chance(0.5) ? { from: position(), commit: counter() } : {}),
      ...(rng.chance(0.3) ? { position: position(), through: position() } : {}),
      ...(rng.chance(0.2) ? { holdMs: rng.value(0) } : {}),
    };
  }
  return rng.value();
}

// Log entries as a leader sends them, each field possibly wrong.
function hostileEntries(rng: Rng): Buffer {
  const entry = () => ({
    seq: rng.pick([1, 2, -1, 2 ** 60, rng.value(0)]),
    id: rng.pick(['00ff', '', rng.value(0)]),
    term: rng.pick([1, 2 ** 48 + 1, rng.value(0)]),
    changes: rng.chance(0.5)
      ? [
          {
            table: rng.pick(['objects', '_change_log', '../x', rng.value(0)]),
            key: rng.value(1),
            value: rng.value(1),
          },
        ]
      : rng.value(1),
  });
  return encodeData(Array.from({ length: rng.int(0, 4) }, entry));
}

function hostileBody(rng: Rng): Buffer | null {
  if (rng.chance(0.15)) return hostileEntries(rng);
  switch (rng.int(0, 4)) {
    case 0:
      return null;
    case 1:
      return rng.bytes(rng.int(0, 70_000));
    case 2:
      return encodeData(Array.from({ length: rng.int(0, 6) }, () => rng.value()));
    default:
      return encodeData(rng.value());
  }
}

async function call(
  path: string,
  header: unknown,
  body: Buffer | null,
  from: { peer: RpcNode; to: string } = { peer: member, to: serverId },
): Promise<{ refused: boolean; body: Buffer }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${path}: no answer within ${ANSWER_WITHIN_MS} ms`)),
      ANSWER_WITHIN_MS,
    );
  });
  const attempt = (async () => {
    try {
      const reply = await from.peer.call(from.to, path, header, body);
      const error = (reply.header as { error?: unknown; refused?: unknown } | null) ?? {};
      const data = reply.body ? await readBody(reply.body) : Buffer.alloc(0);
      return { refused: error.error !== undefined || error.refused !== undefined, body: data };
    } catch (err) {
      if (/no answer within/.test((err as Error).message)) throw err;
      return { refused: true, body: Buffer.alloc(0) }; // refused: what the suite wants, or at least allows
    }
  })();
  try {
    return await Promise.race([attempt, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

test(
  `${CALLS} hostile RPC calls from a member: prompt answers, no secret read, nothing written outside`,
  { timeout: 300_000 },
  async (t) => {
    t.diagnostic(`seed ${seed}`);
    const rng = new Rng(seed);
    let next = 0;
    const outcomes: Record<string, { refused: number; answered: number }> = {};
    const worker = async () => {
      while (next < CALLS) {
        const i = next++;
        const path = rng.pick(ENDPOINTS);
        const header = hostileHeader(rng, path);
        const body = hostileBody(rng);
        const answer = await call(path, header, body).catch((err: Error) => {
          throw new Error(
            `${err.message} (seed ${seed}, call ${i}: ${path} ${JSON.stringify(header)?.slice(0, 300)})`,
          );
        });
        const tally = (outcomes[path] ??= { refused: 0, answered: 0 });
        tally[answer.refused ? 'refused' : 'answered']++;
        for (const s of secrets)
          assert.ok(
            !answer.body.includes(s.subarray(0, 32)),
            `a file outside the block store was sent (seed ${seed}, call ${i})`,
          );
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    t.diagnostic(`outcomes ${JSON.stringify(outcomes)}`);

    assert.equal(server.process.exitCode, null, `the node exited (seed ${seed}):\n${server.stderr()}`);
    assert.ok(residentBytes(server.process.pid!) < MAX_RSS, 'memory grew past its bound');
    assert.ok(!existsSync(CANARY), `a file was written outside the node's directories (seed ${seed})`);
    assert.ok(existsSync(join(server.dir, 'meta', 'node_key')) && existsSync(server.configPath));
    const health = await fetch(`${server.adminEndpoint}/health`);
    assert.equal(health.status, 200);
    // What a member may change, a member may change; what the S3 API serves is not corrupted by what it may not.
    const s3 = server.client();
    try {
      const got = await s3.send(new GetObjectCommand({ Bucket: 'kept', Key: 'object' }));
      const bytes = Buffer.from(await got.Body!.transformToByteArray());
      assert.ok(bytes.equals(kept), 'the stored object changed');
    } finally {
      s3.destroy();
    }
  },
);

// A metadata node is trusted with the log — a leader may replace a follower's tables — but not with the
// process: one that sends every election and replication message with hostile terms, indexes, positions and
// entries gets prompt answers from a node that stays up with bounded memory and writes nothing outside.
test(
  `${CALLS / 3} hostile election and replication calls from a metadata node: prompt answers, the node stays up`,
  { timeout: 300_000 },
  async (t) => {
    const rng = new Rng(seed + 1);
    const node = await startServer({
      secretConfig: `rpc_secret = "${secret}"`,
      extraConfig: 'replication_factor = 2',
    });
    let voter: RpcNode | undefined;
    try {
      const connected = await connectedPeer(node, secret);
      voter = connected.peer;
      for (const args of [
        ['layout', 'assign', connected.serverId, '--zone', 'z1', '--capacity', '1G'],
        ['layout', 'assign', voter.nodeId, '--zone', 'z2', '--capacity', '1G'],
        ['layout', 'apply', '--version', '1'],
      ]) {
        const r = await runCoffre(['-c', node.configPath, ...args]);
        assert.equal(r.code, 0, r.stderr);
      }
      const paths = ENDPOINTS.filter((p) => p.startsWith('meta/') && p !== 'meta/handover');
      let next = 0;
      const outcomes: Record<string, { refused: number; answered: number }> = {};
      const worker = async () => {
        while (next < CALLS / 3) {
          const i = next++;
          const path = rng.pick(paths);
          const header = hostileHeader(rng, path);
          const answer = await call(path, header, hostileBody(rng), {
            peer: voter!,
            to: connected.serverId,
          }).catch((err: Error) => {
            throw new Error(
              `${err.message} (seed ${seed + 1}, call ${i}: ${path} ${JSON.stringify(header)?.slice(0, 300)})`,
            );
          });
          const tally = (outcomes[path] ??= { refused: 0, answered: 0 });
          tally[answer.refused ? 'refused' : 'answered']++;
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      t.diagnostic(`outcomes ${JSON.stringify(outcomes)}`);
      assert.equal(node.process.exitCode, null, `the node exited (seed ${seed + 1}):\n${node.stderr()}`);
      assert.ok(residentBytes(node.process.pid!) < MAX_RSS, 'memory grew past its bound');
      assert.ok(!existsSync(CANARY), `a file was written outside the node's directories (seed ${seed + 1})`);
      assert.equal((await fetch(`${node.adminEndpoint}/health`)).status, 200);
      // It still answers where the metadata stands.
      const status = await runCoffre(['-c', node.configPath, 'status', '--json']);
      assert.equal(status.code, 0, status.stderr);
    } finally {
      await voter?.stop();
      await node.stop();
      node.cleanup();
    }
  },
);
