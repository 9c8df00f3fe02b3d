// A holder of rpc_secret attacks a running node over the real Secret Handshake + box-stream RPC. With a fresh
// identity, not in the layout, it can handshake and nothing more: block, metadata and replication endpoints are
// refused, and a layout it offers (naming itself a storage node) is not adopted. Made a member of the layout,
// it still cannot turn a "hash" into a path: block/get of ../../node_key, block/delete of ../coffre.toml and
// store/call with unknown methods or ill-shaped arguments are refused, and no file outside the block store
// is read or removed.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readBody } from '../../src/net/mux.js';
import { RpcNode } from '../../src/rpc/peering.js';
import { encodeData } from '../../src/rpc/codec.js';
import { connectedPeer } from '../helpers/rpc-peer.js';
import { runCoffre, startServer, type TestServer } from '../helpers/server.js';

const secret = randomBytes(32).toString('hex');
let server: TestServer;
let attacker: RpcNode;
let serverId: string;
let secrets: Buffer[];

before(async () => {
  server = await startServer({ secretConfig: `rpc_secret = "${secret}"` });
  ({ peer: attacker, serverId } = await connectedPeer(server, secret));
  secrets = [readFileSync(join(server.dir, 'meta', 'node_key')), readFileSync(server.configPath)];
});

after(async () => {
  await attacker?.stop();
  await server?.stop();
  server?.cleanup();
});

interface Outcome {
  refused: string | undefined;
  body: Buffer;
}

// A call's outcome: refused (thrown by the node, or an error in the reply header) and whatever body came back.
async function call(path: string, header: unknown, body?: Buffer): Promise<Outcome> {
  try {
    const reply = await attacker.call(serverId, path, header, body ?? null);
    const data = reply.body ? await readBody(reply.body) : Buffer.alloc(0);
    const error = (reply.header as { error?: { message?: string } } | null)?.error;
    return { refused: error ? String(error.message) : undefined, body: data };
  } catch (err) {
    return { refused: (err as Error).message, body: Buffer.alloc(0) };
  }
}

function assertNoSecret(o: Outcome): void {
  for (const s of secrets) {
    assert.ok(!o.body.includes(s.subarray(0, 32)), 'a file outside the block store was sent');
  }
}

const TRAVERSALS = [
  '../../node_key',
  '../../../meta/node_key',
  '../coffre.toml',
  '/etc/passwd',
  'aa/../../x',
];

test('a fresh identity that knows rpc_secret reaches no block, metadata or replication endpoint', async () => {
  for (const hash of [...TRAVERSALS, 'a'.repeat(64)]) {
    const o = await call('block/get', { hash });
    assert.ok(o.refused, `block/get ${hash} was served`);
    assertNoSecret(o);
  }
  const listed = await call('store/call', { method: 'listKeys' }, encodeData([]));
  assert.match(listed.refused ?? '', /only for nodes of the cluster layout/);
  assert.ok(!listed.body.includes(Buffer.from(server.secretAccessKey)), 'access keys were listed');
  const guarded = [
    'block/has',
    'block/put',
    'block/delete',
    'block/resync-status',
    'node/forget',
    'meta/position',
    'meta/leader',
    'meta/vote',
    'meta/append',
    'meta/resync-begin',
    'meta/resync-load',
    'meta/resync-end',
    'meta/handover',
  ];
  // The refusal comes before the endpoint lookup, so a stale name would pass unnoticed: every metadata
  // endpoint the node registers must be on the list.
  const source = readFileSync(new URL('../../src/rpc/metadata-replication.js', import.meta.url), 'utf8');
  for (const [, registered] of source.matchAll(/(?:registerEndpoint|fromLeader)\('(meta\/[a-z-]+)'/g))
    assert.ok(guarded.includes(registered!), `${registered} is not tried`);
  for (const path of guarded) {
    const o = await call(path, { hash: 'b'.repeat(64) }, Buffer.alloc(0));
    assert.match(o.refused ?? '', /only for nodes of the cluster layout/, `${path} was served`);
  }
  const del = await call('block/delete', { hash: '../../coffre.toml' });
  assert.ok(del.refused);
  assert.ok(existsSync(server.configPath), 'coffre.toml was deleted');
});

test('a layout offered by a node that no layout names is not adopted', async () => {
  const forged = {
    format: 1,
    version: 7,
    roles: { [attacker.nodeId]: { zone: 'evil', capacity: 1e12 } },
    staged: {},
  };
  const o = await call('layout/push', {}, encodeData(forged));
  assert.equal((o as unknown as { refused?: string }).refused, undefined);
  const shown = await runCoffre(['-c', server.configPath, 'layout', 'show', '--json']);
  assert.doesNotMatch(shown.stdout, new RegExp(attacker.nodeId));
  const after = await call('store/call', { method: 'listKeys' }, encodeData([]));
  assert.match(after.refused ?? '', /only for nodes of the cluster layout/);
  // Ill-formed layouts are refused whole.
  for (const bad of [
    { ...forged, version: -1 },
    { ...forged, roles: { '../x': { zone: 'a', capacity: 1 } } },
    'x',
  ]) {
    const r = await call('layout/push', {}, encodeData(bad));
    assert.ok(r.refused, `layout ${JSON.stringify(bad)} was taken`);
  }
});

test('a member of the layout cannot turn a hash into a path, nor call the store outside its table', async () => {
  const admin = (args: string[]) => runCoffre(['-c', server.configPath, ...args]);
  for (const args of [
    ['layout', 'assign', serverId, '--zone', 'z1', '--capacity', '1G'],
    // A gateway: the server stays the metadata node, so store/call reaches its decoder.
    ['layout', 'assign', attacker.nodeId, '--zone', 'z2', '--gateway'],
    ['layout', 'apply', '--version', '1'],
  ]) {
    const r = await admin(args);
    assert.equal(r.code, 0, r.stderr);
  }
  for (const hash of TRAVERSALS) {
    for (const path of ['block/get', 'block/has']) {
      const o = await call(path, { hash });
      assert.match(o.refused ?? '', /invalid RPC message/, `${path} ${hash}`);
      assertNoSecret(o);
    }
    const d = await call('block/delete', { hash });
    assert.match(d.refused ?? '', /invalid RPC message/);
  }
  assert.ok(existsSync(server.configPath) && existsSync(join(server.dir, 'meta', 'node_key')));
  const hostile: [unknown, unknown][] = [
    [{ method: 'constructor' }, []],
    [{ method: '__proto__' }, []],
    [{ method: 'close' }, []],
    [{ method: 'getKey' }, [{ toString: 1 }]],
    [{ method: 'listObjects' }, ['b', '', null, -5]],
    [
      { method: 'putObject' },
      [{ bucketId: 'x', key: 'k', segments: [{ blocks: [{ hash: '../../node_key' }] }] }],
    ],
    [{ method: 'unreferencedBlocks' }, [['../../node_key']]],
    [{ method: 'deleteObjects' }, ['b', new Array(5000).fill('k')]],
    [{ method: 12 }, []],
    // Only reads may be asked of a copy ("degraded"): a write so marked is refused whatever the node's state.
    [{ method: 'deleteBucket', degraded: true }, ['b']],
    [{ method: 'getObject', degraded: 'yes' }, ['b', 'k']],
  ];
  for (const [header, args] of hostile) {
    const o = await call('store/call', header, encodeData(args));
    assert.match(o.refused ?? '', /invalid RPC message/, `store/call ${JSON.stringify(header)}`);
  }
  // The node still serves a well-formed call from a member, and its S3 API.
  const ok = await call('store/call', { method: 'listBuckets' }, encodeData([]));
  assert.equal(ok.refused, undefined);
  const health = await fetch(`${server.adminEndpoint}/health`);
  assert.equal(health.status, 200);
});
