// Secret Handshake + box-stream against the reference implementation (npm secret-handshake and
// pull-box-stream) in both directions, multi-megabyte transfers with a clean goodbye, and the ways a
// connection must be dropped: wrong network key, unexpected server, tampered frame, truncation, over-long
// frame. Everything runs on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { BoxEncoder } from '../../src/net/box-stream.js';
import {
  HandshakeError,
  clientHandshake,
  toKeys,
  type KeyPair,
  type SessionKeys,
} from '../../src/net/handshake.js';
import { SecureChannel, connectSecure, createSecureServer } from '../../src/net/secure-channel.js';
import { sodium } from '../../src/net/sodium.js';
import { referenceClient, referenceServer } from './reference-peer.js';

const networkKey = randomBytes(32);
const alice = toKeys(randomBytes(32));
const bob = toKeys(randomBytes(32));
const MiB = 1024 * 1024;

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

function pieces(buf: Buffer, size = 65_536): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

/** Reads to the end without destroying the stream (an async iterator would destroy the writable side too). */
function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => parts.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(parts)));
    stream.on('error', reject);
  });
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** No key material may appear in an error message. */
function assertNoSecrets(message: string): void {
  for (const secret of [networkKey, alice.secretKey, bob.secretKey, alice.secretKey.subarray(0, 32)]) {
    assert.ok(!message.includes(secret.toString('hex')), 'error message contains a secret');
    assert.ok(!message.includes(secret.toString('base64')), 'error message contains a secret');
  }
}

async function writeAllAndEnd(channel: SecureChannel, data: Buffer): Promise<void> {
  for (const p of pieces(data)) {
    if (!channel.write(p)) await once(channel, 'drain');
  }
  channel.end();
}

test('coffre client ↔ reference server: 4 MiB each way, clean goodbye', async () => {
  const up = randomBytes(4 * MiB + 123);
  const down = randomBytes(4 * MiB + 77);
  let serverSaw: Promise<Buffer> = Promise.reject(new Error('no connection'));
  serverSaw.catch(() => {});
  let clientKeySeen: Buffer | null = null;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    serverSaw = referenceServer(socket, bob, networkKey).then((s) => {
      clientKeySeen = s.remotePublicKey;
      s.send(pieces(down, 10_000));
      return s.received;
    });
  });
  const port = await listen(server);
  try {
    const channel = await connectSecure('127.0.0.1', port, {
      networkKey,
      identity: alice,
      serverPublicKey: bob.publicKey,
    });
    assert.deepEqual(channel.remotePublicKey, bob.publicKey);
    const [received] = await Promise.all([readAll(channel), writeAllAndEnd(channel, up)]);
    assert.equal(sha(received), sha(down));
    assert.equal(sha(await serverSaw), sha(up));
    assert.deepEqual(clientKeySeen, alice.publicKey);
  } finally {
    server.close();
  }
});

test('reference client ↔ coffre server: 4 MiB each way, clean goodbye', async () => {
  const up = randomBytes(4 * MiB + 5);
  const down = randomBytes(4 * MiB + 9);
  const serverSaw: Buffer[] = [];
  let serverDone!: () => void;
  const finished = new Promise<void>((r) => (serverDone = r));
  const server = createSecureServer({ networkKey, identity: bob }, (channel) => {
    assert.deepEqual(channel.remotePublicKey, alice.publicKey);
    void Promise.all([readAll(channel), writeAllAndEnd(channel, down)]).then(([got]) => {
      serverSaw.push(got);
      serverDone();
    });
  });
  const port = await listen(server);
  try {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    await once(socket, 'connect');
    const session = await referenceClient(socket, alice, networkKey, bob.publicKey);
    assert.deepEqual(session.remotePublicKey, bob.publicKey);
    session.send(pieces(up, 30_000));
    assert.equal(sha(await session.received), sha(down));
    await finished;
    assert.equal(sha(serverSaw[0]), sha(up));
  } finally {
    server.close();
  }
});

/** A coffre server that records handshake failures and channel errors. */
async function recordingServer(): Promise<{
  port: number;
  server: net.Server;
  handshakeErrors: Error[];
  channelErrors: Promise<Error>;
}> {
  const handshakeErrors: Error[] = [];
  let channelError!: (e: Error) => void;
  const channelErrors = new Promise<Error>((r) => (channelError = r));
  const server = createSecureServer(
    { networkKey, identity: bob, onHandshakeError: (err) => handshakeErrors.push(err) },
    (channel) => {
      channel.on('error', channelError);
      channel.resume();
    },
  );
  return { port: await listen(server), server, handshakeErrors, channelErrors };
}

test('wrong network key: the coffre server drops the reference client without a word', async () => {
  const { port, server, handshakeErrors } = await recordingServer();
  try {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    await once(socket, 'connect');
    await assert.rejects(referenceClient(socket, alice, randomBytes(32), bob.publicKey));
    // And a raw client sending a hello under another key receives not one byte before the close.
    const raw = net.connect({ host: '127.0.0.1', port });
    let received = 0;
    raw.on('data', (d: Buffer) => (received += d.length));
    raw.on('error', () => {});
    raw.write(randomBytes(64));
    await once(raw, 'close');
    assert.equal(received, 0);
    assert.equal(handshakeErrors.length, 2);
    assert.ok(handshakeErrors.every((e) => e instanceof HandshakeError));
    assert.match(handshakeErrors[0].message, /client hello did not verify/);
    handshakeErrors.forEach((e) => assertNoSecrets(e.message));
  } finally {
    server.close();
  }
});

test('wrong network key: the coffre client refuses the reference server', async () => {
  const server = net.createServer((socket) => {
    referenceServer(socket, bob, randomBytes(32)).catch(() => {});
  });
  const port = await listen(server);
  try {
    const err = await connectSecure('127.0.0.1', port, {
      networkKey,
      identity: alice,
      serverPublicKey: bob.publicKey,
    }).then(
      () => null,
      (e: Error) => e,
    );
    assert.ok(err instanceof HandshakeError, String(err));
    assertNoSecrets(err.message);
  } finally {
    server.close();
  }
});

test('unexpected server id: the connection is refused on both sides', async () => {
  const mallory = toKeys(randomBytes(32));
  // Against the reference server holding bob's key while we expect mallory's.
  const refServer = net.createServer((socket) => {
    referenceServer(socket, bob, networkKey).catch(() => {});
  });
  const refPort = await listen(refServer);
  const { port, server, handshakeErrors } = await recordingServer();
  try {
    for (const p of [refPort, port]) {
      const err = await connectSecure('127.0.0.1', p, {
        networkKey,
        identity: alice,
        serverPublicKey: mallory.publicKey,
      }).then(
        () => null,
        (e: Error) => e,
      );
      assert.ok(err instanceof HandshakeError, String(err));
      assertNoSecrets(err.message);
    }
    assert.match(handshakeErrors[0]?.message ?? '', /client authentication did not verify/);
  } finally {
    refServer.close();
    server.close();
  }
});

test('an unauthorized client is dropped after proving its identity', async () => {
  const server = createSecureServer(
    { networkKey, identity: bob, authorize: (key) => !key.equals(alice.publicKey) },
    () => assert.fail('channel opened'),
  );
  const port = await listen(server);
  try {
    await assert.rejects(
      connectSecure('127.0.0.1', port, { networkKey, identity: alice, serverPublicKey: bob.publicKey }),
      HandshakeError,
    );
  } finally {
    server.close();
  }
});

/** A client that completes a genuine handshake, then writes whatever the test wants. */
async function rogueClient(
  port: number,
  identity: KeyPair,
): Promise<{
  socket: net.Socket;
  keys: SessionKeys;
  dropped: Promise<unknown>;
  receivedAfterHandshake: () => number;
}> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await once(socket, 'connect');
  const keys = await clientHandshake(socket, { networkKey, identity, serverPublicKey: bob.publicKey });
  let received = 0;
  socket.on('data', (d: Buffer) => (received += d.length));
  socket.on('error', () => {});
  // allowHalfOpen: the server's drop shows up as 'end' (its FIN), not as a close of our side.
  return { socket, keys, dropped: once(socket, 'end'), receivedAfterHandshake: () => received };
}

test('a tampered frame drops the connection and nothing more is written', async () => {
  const { port, server, channelErrors } = await recordingServer();
  try {
    const { socket, keys, dropped, receivedAfterHandshake } = await rogueClient(port, alice);
    const encoder = new BoxEncoder(keys.encryptKey, keys.encryptNonce);
    encoder.write(randomBytes(5000)); // sealed synchronously
    const bad = Buffer.from(encoder.read() as Buffer);
    bad[100] ^= 1; // inside the first body
    socket.write(bad);
    const err = await channelErrors;
    assert.match(err.message, /body authentication failed/);
    assertNoSecrets(err.message);
    await dropped;
    assert.equal(receivedAfterHandshake(), 0);
    socket.destroy();
  } finally {
    server.close();
  }
});

test('a stream that ends without goodbye is reported as truncated', async () => {
  const { port, server, channelErrors } = await recordingServer();
  try {
    const { socket, keys, dropped, receivedAfterHandshake } = await rogueClient(port, alice);
    const encoder = new BoxEncoder(keys.encryptKey, keys.encryptNonce);
    encoder.write(randomBytes(10_000));
    socket.end(encoder.read() as Buffer); // valid messages, then FIN without goodbye
    const err = await channelErrors;
    assert.match(err.message, /truncated/);
    assertNoSecrets(err.message);
    await dropped;
    assert.equal(receivedAfterHandshake(), 0);
    socket.destroy();
  } finally {
    server.close();
  }
});

test('an over-long frame drops the connection', async () => {
  const { port, server, channelErrors } = await recordingServer();
  try {
    const { socket, keys, dropped, receivedAfterHandshake } = await rogueClient(port, alice);
    const header = Buffer.alloc(18);
    header.writeUInt16BE(5000, 0);
    const sealed = Buffer.alloc(34);
    sodium.crypto_secretbox_easy(sealed, header, keys.encryptNonce, keys.encryptKey);
    socket.write(Buffer.concat([sealed, randomBytes(5000)]));
    const err = await channelErrors;
    assert.match(err.message, /exceeds 4096/);
    await dropped;
    assert.equal(receivedAfterHandshake(), 0);
    socket.destroy();
  } finally {
    server.close();
  }
});

test('a silent client is dropped when the handshake deadline passes', async () => {
  const handshakeErrors: Error[] = [];
  const server = createSecureServer(
    { networkKey, identity: bob, timeoutMs: 200, onHandshakeError: (e) => handshakeErrors.push(e) },
    () => assert.fail('channel opened'),
  );
  const port = await listen(server);
  try {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => {});
    await once(socket, 'close');
    assert.match(handshakeErrors[0]?.message ?? '', /timed out/);
  } finally {
    server.close();
  }
});

test('a client gives up on a server that never answers', async () => {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => void sockets.push(socket)); // accepts, says nothing
  const port = await listen(server);
  try {
    const started = Date.now();
    await assert.rejects(
      connectSecure('127.0.0.1', port, {
        networkKey,
        identity: alice,
        serverPublicKey: bob.publicKey,
        timeoutMs: 200,
      }),
      /timed out/,
    );
    assert.ok(Date.now() - started < 5000);
  } finally {
    sockets.forEach((s) => s.destroy());
    server.close();
  }
});
