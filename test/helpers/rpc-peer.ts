// Test helper: a peer of our own on the real Secret Handshake RPC, with a fresh identity and the cluster's
// rpc_secret, connected to a running test node — what a holder of rpc_secret (or, once the layout names it, a
// member) can do from the network.
import { randomBytes } from 'node:crypto';
import { toKeys } from '../../src/net/handshake.js';
import { nodeIdOf } from '../../src/rpc/identity.js';
import { RpcNode } from '../../src/rpc/peering.js';
import { runCoffre, type TestServer } from './server.js';

export async function connectedPeer(
  server: TestServer,
  rpcSecretHex: string,
): Promise<{ peer: RpcNode; serverId: string }> {
  const keys = toKeys(randomBytes(32));
  const peer = new RpcNode({
    identity: { ...keys, id: nodeIdOf(keys.publicKey) },
    networkKey: Buffer.from(rpcSecretHex, 'hex'),
    bindAddr: '127.0.0.1:0',
    connectTimeoutMs: 5000,
  });
  // This side serves nothing; it only calls.
  peer.setAccessPolicy(() => true);
  await peer.start();
  const id = await runCoffre(['-c', server.configPath, 'node', 'id', '--json']);
  const serverId = (JSON.parse(id.stdout) as { nodeId: string }).nodeId;
  await peer.connect(`${serverId}@127.0.0.1:${server.rpcPort}`);
  return { peer, serverId };
}
