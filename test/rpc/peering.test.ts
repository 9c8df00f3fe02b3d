// RpcNode: three nodes on 127.0.0.1 in one process. Discovery through peer lists from a single bootstrap
// peer, calls with streamed bodies both ways, a node stopped and restarted seen down then up, and a node with
// the wrong rpc_secret refused (and logged without any secret).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { toKeys } from '../../src/net/handshake.js';
import { readBody } from '../../src/net/mux.js';
import { nodeIdOf, type NodeIdentity } from '../../src/rpc/identity.js';
import { PeerUnavailableError, RemoteError, RpcNode, type RpcLogger } from '../../src/rpc/peering.js';

const networkKey = randomBytes(32);

function identity(): NodeIdentity {
  const keys = toKeys(randomBytes(32));
  return { ...keys, id: nodeIdOf(keys.publicKey) };
}

class MemoryLog implements RpcLogger {
  readonly lines: string[] = [];
  info(msg: string): void {
    this.lines.push(msg);
  }
  warn(msg: string): void {
    this.lines.push(msg);
  }
}

async function startNode(
  id: NodeIdentity,
  opts: { bootstrap?: RpcNode[]; bindAddr?: string; key?: Buffer; log?: MemoryLog } = {},
): Promise<RpcNode> {
  const node = new RpcNode({
    identity: id,
    networkKey: opts.key ?? networkKey,
    bindAddr: opts.bindAddr ?? '127.0.0.1:0',
    bootstrapPeers: (opts.bootstrap ?? []).map((n) => `${n.nodeId}@${n.addr}`),
    pingIntervalMs: 100,
    pingTimeoutMs: 2000,
    reconnectMinMs: 50,
    reconnectMaxMs: 300,
    connectTimeoutMs: 2000,
    logger: opts.log,
  });
  node.setAccessPolicy(() => true); // these tests are about the channel, not about who may call what
  await node.start();
  return node;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function isUp(node: RpcNode, peerId: string): boolean {
  return node.status().peers.some((p) => p.id === peerId && p.up);
}

function isDown(node: RpcNode, peerId: string): boolean {
  return node.status().peers.some((p) => p.id === peerId && !p.up);
}

test('three nodes find each other from one bootstrap peer', async () => {
  const a = await startNode(identity());
  const b = await startNode(identity(), { bootstrap: [a] });
  const c = await startNode(identity(), { bootstrap: [a] });
  try {
    // b and c only know a; they learn of each other from a's peer list.
    await waitFor('full mesh', () =>
      [a, b, c].every((n) => [a, b, c].every((m) => m === n || isUp(n, m.nodeId))),
    );
    const fromB = b.status().peers.find((p) => p.id === c.nodeId);
    assert.equal(fromB?.addr, c.addr);
    assert.ok(fromB?.lastSeen instanceof Date);
    assert.equal(b.status().peers.length, 2);
    assert.deepEqual(new Set(a.knownPeers()), new Set([b.nodeId, c.nodeId]));
  } finally {
    await Promise.all([a.stop(), b.stop(), c.stop()]);
  }
});

test('calls carry headers and streamed bodies, and name the authenticated caller', async () => {
  const a = await startNode(identity());
  const b = await startNode(identity(), { bootstrap: [a] });
  try {
    await waitFor('connected', () => isUp(a, b.nodeId) && isUp(b, a.nodeId));
    a.registerEndpoint('test/echo', async (req) => {
      const body = await readBody(req.body);
      return {
        header: { caller: req.peerId, header: req.header, size: body.length },
        body: Readable.from([body]),
      };
    });
    b.registerEndpoint('test/hello', () => ({ header: 'hello from b' }));
    const payload = randomBytes(2 * 1024 * 1024 + 3);
    const reply = await b.call(a.nodeId, 'test/echo', { n: 7 }, payload);
    assert.deepEqual(reply.header, { caller: b.nodeId, header: { n: 7 }, size: payload.length });
    assert.deepEqual(await readBody(reply.body), payload);
    // The channel b opened carries calls from a to b as well.
    assert.equal((await a.call(b.nodeId, 'test/hello', null)).header, 'hello from b');
    await assert.rejects(
      b.call(a.nodeId, 'test/missing', {}),
      (e: unknown) => (e as RemoteError).code === 'NO_SUCH_ENDPOINT',
    );
    await assert.rejects(b.call('cd'.repeat(32), 'test/echo', {}), PeerUnavailableError);
    assert.throws(() => a.registerEndpoint('rpc/ping', () => ({ header: null })), /reserved/);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('a node stopped and restarted is seen down, then up again', async () => {
  const a = await startNode(identity());
  const b = await startNode(identity(), { bootstrap: [a] });
  const cId = identity();
  let c = await startNode(cId, { bootstrap: [a] });
  try {
    await waitFor('full mesh', () => isUp(a, c.nodeId) && isUp(b, c.nodeId));
    const cAddr = c.addr!;
    const seenBefore = a.status().peers.find((p) => p.id === c.nodeId)!.lastSeen!;
    const downs: string[] = [];
    a.on('peer-down', (id: string) => downs.push(id));
    await c.stop();
    await waitFor('c seen down by a and b', () => isDown(a, cId.id) && isDown(b, cId.id));
    assert.deepEqual(downs, [cId.id]);
    await assert.rejects(a.call(cId.id, 'x', {}), PeerUnavailableError);
    // Same key, same address, no bootstrap: a and b redial it on their own.
    c = await startNode(cId, { bindAddr: cAddr });
    await waitFor('c seen up again', () => isUp(a, cId.id) && isUp(b, cId.id) && isUp(c, a.nodeId));
    const seenAfter = a.status().peers.find((p) => p.id === cId.id)!.lastSeen!;
    assert.ok(seenAfter > seenBefore);
  } finally {
    await Promise.all([a.stop(), b.stop(), c.stop()]);
  }
});

test('a node with the wrong rpc_secret is refused, and the refusal is logged without secrets', async () => {
  const aLog = new MemoryLog();
  const dLog = new MemoryLog();
  const a = await startNode(identity(), { log: aLog });
  const otherKey = randomBytes(32);
  const d = await startNode(identity(), { key: otherKey, log: dLog });
  try {
    await assert.rejects(d.connect(`${a.nodeId}@${a.addr}`), /secret handshake failed/);
    await waitFor('refusal logged', () => aLog.lines.some((l) => l.includes('refused connection')));
    assert.equal(a.knownPeers().length, 0);
    assert.equal(d.status().peers[0].up, false);
    assert.ok(d.status().peers[0].lastError);
    for (const line of [...aLog.lines, ...dLog.lines]) {
      for (const secret of [networkKey, otherKey]) {
        assert.ok(!line.includes(secret.toString('hex')), `secret in log line: ${line}`);
        assert.ok(!line.includes(secret.toString('base64')), `secret in log line: ${line}`);
      }
    }
  } finally {
    await Promise.all([a.stop(), d.stop()]);
  }
});

test('the node keeps its own copy of the network key, and refuses an all-zero one', async () => {
  const key = Buffer.from(networkKey);
  const a = await startNode(identity(), { key });
  key.fill(0); // a caller wiping its buffer must not change the key a's handshakes use
  const b = await startNode(identity(), { bootstrap: [a] });
  try {
    await waitFor('connected despite the wiped buffer', () => isUp(b, a.nodeId));
    assert.throws(() => new RpcNode({ identity: identity(), networkKey: Buffer.alloc(32) }), /all zeros/);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});
