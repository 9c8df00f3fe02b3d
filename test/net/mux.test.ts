// The multiplexed request/response layer over real secure channels on 127.0.0.1: calls both ways, streamed
// bodies, a small call finishing while a large transfer is in flight (and while another is stalled by its
// reader), errors, cancellation, version tag and frame-size enforcement.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { toKeys } from '../../src/net/handshake.js';
import { SecureChannel, connectSecure, createSecureServer } from '../../src/net/secure-channel.js';
import {
  FRAME_HEADER_LENGTH,
  MAX_FRAME_PAYLOAD,
  MUX_VERSION_TAG,
  MuxError,
  Priority,
  RemoteError,
  openMux,
  readBody,
  type Mux,
  type MuxHandler,
} from '../../src/net/mux.js';

const networkKey = randomBytes(32);
const alice = toKeys(randomBytes(32));
const bob = toKeys(randomBytes(32));
const MiB = 1024 * 1024;

interface Pair {
  client: Mux;
  server: Mux;
  close(): void;
}

async function channelPair(): Promise<{ client: SecureChannel; server: SecureChannel; close(): void }> {
  let accepted!: (c: SecureChannel) => void;
  const serverChannel = new Promise<SecureChannel>((r) => (accepted = r));
  const server = createSecureServer({ networkKey, identity: bob }, accepted);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const client = await connectSecure('127.0.0.1', port, {
    networkKey,
    identity: alice,
    serverPublicKey: bob.publicKey,
  });
  return { client, server: await serverChannel, close: () => server.close() };
}

async function muxPair(serverHandler?: MuxHandler, clientHandler?: MuxHandler): Promise<Pair> {
  const channels = await channelPair();
  const [client, server] = await Promise.all([
    openMux(channels.client, { initiator: true, handler: clientHandler }),
    openMux(channels.server, { initiator: false, handler: serverHandler }),
  ]);
  return {
    client,
    server,
    close() {
      client.destroy();
      server.destroy();
      channels.close();
    },
  };
}

/** A lazily generated body of `size` pseudo-random bytes (same bytes for the same seed). */
function generated(size: number, counter?: { produced: number }): Readable {
  let sent = 0;
  const seed = 1;
  const block = createHash('sha512').update(String(seed)).digest();
  const chunk = Buffer.concat(Array.from({ length: 1024 }, () => block)); // 64 KiB
  return new Readable({
    read() {
      if (sent >= size) return void this.push(null);
      const n = Math.min(chunk.length, size - sent);
      sent += n;
      if (counter) counter.produced = sent;
      this.push(chunk.subarray(0, n));
    },
  });
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

test('calls both ways with headers and streamed bodies', async () => {
  const pair = await muxPair(
    async (req) => {
      if (req.path === 'echo') {
        const body = await readBody(req.body);
        return {
          header: { got: req.header, bytes: body.length },
          body: body.length ? Readable.from([body]) : null,
        };
      }
      throw new RemoteError(`no endpoint ${req.path}`, 'NO_SUCH_ENDPOINT');
    },
    (req) => ({ header: { from: 'client', path: req.path } }),
  );
  try {
    const payload = randomBytes(3 * MiB + 17);
    const reply = await pair.client.request('echo', { n: 1 }, payload);
    assert.deepEqual(reply.header, { got: { n: 1 }, bytes: payload.length });
    assert.equal(sha(await readBody(reply.body)), sha(payload));

    const streamed = await pair.client.request('echo', 'hi', generated(2 * MiB + 5));
    assert.equal((await readBody(streamed.body)).length, 2 * MiB + 5);

    const empty = await pair.client.request('echo', null);
    assert.deepEqual(empty.header, { got: null, bytes: 0 });
    assert.equal(empty.body, null);

    const reverse = await pair.server.request('ping', {});
    assert.deepEqual(reverse.header, { from: 'client', path: 'ping' });
  } finally {
    pair.close();
  }
});

test('a small call finishes while a large transfer is in flight', async () => {
  const bigSize = 48 * MiB;
  const pair = await muxPair((req) => {
    if (req.path === 'big') return { header: {}, body: generated(bigSize) };
    return { header: { small: true }, body: Buffer.from('tiny') };
  });
  try {
    const big = await pair.client.request('big', {}, null, { priority: Priority.Bulk });
    let bigReceived = 0;
    let bigDone = false;
    big.body!.on('data', (c: Buffer) => (bigReceived += c.length));
    const bigEnded = once(big.body!, 'end').then(() => (bigDone = true));
    while (bigReceived < MiB) await new Promise((r) => setTimeout(r, 1));
    const small = await pair.client.request('small', {});
    assert.equal((await readBody(small.body)).toString(), 'tiny');
    assert.equal(bigDone, false, 'the small call waited for the large transfer');
    assert.ok(bigReceived < bigSize);
    await bigEnded;
    assert.equal(bigReceived, bigSize);
  } finally {
    pair.close();
  }
});

test('a stalled reader holds back only its own stream', async () => {
  const counter = { produced: 0 };
  const pair = await muxPair((req) => {
    if (req.path === 'big') return { header: {}, body: generated(64 * MiB, counter) };
    return { header: 'pong' };
  });
  try {
    const big = await pair.client.request('big', {});
    big.body!.pause(); // never read: credit runs out
    await new Promise((r) => setTimeout(r, 200));
    const pong = await pair.client.request('small', {});
    assert.equal(pong.header, 'pong');
    // Only about one window (plus stream buffers) left the sender, not 64 MiB.
    assert.ok(counter.produced < 2 * MiB, `sender produced ${counter.produced} bytes for a stalled reader`);
    big.body!.destroy();
  } finally {
    pair.close();
  }
});

test('errors from the handler reach the caller with their code', async () => {
  const pair = await muxPair(async (req) => {
    if (req.path === 'fail') throw new RemoteError('bucket not found', 'NoSuchBucket');
    throw new Error('plain failure');
  });
  try {
    await assert.rejects(pair.client.request('fail', {}), (err: unknown) => {
      assert.ok(err instanceof RemoteError);
      assert.equal(err.message, 'bucket not found');
      assert.equal(err.code, 'NoSuchBucket');
      return true;
    });
    await assert.rejects(pair.client.request('other', {}), /plain failure/);
    // The channel is still usable afterwards.
    await assert.rejects(pair.client.request('fail', {}), RemoteError);
  } finally {
    pair.close();
  }
});

test('a side without handler answers NO_SUCH_ENDPOINT', async () => {
  const pair = await muxPair(undefined);
  try {
    await assert.rejects(
      pair.client.request('x', {}),
      (e: unknown) => (e as RemoteError).code === 'NO_SUCH_ENDPOINT',
    );
  } finally {
    pair.close();
  }
});

test('cancelling a call aborts the handler and rejects the caller', async () => {
  let handlerSignal: AbortSignal | null = null;
  const pair = await muxPair(async (req) => {
    handlerSignal = req.signal;
    await once(req.signal, 'abort');
    return { header: 'too late' };
  });
  try {
    const ac = new AbortController();
    const call = pair.client.request('slow', {}, null, { signal: ac.signal });
    while (!handlerSignal) await new Promise((r) => setTimeout(r, 1));
    ac.abort();
    await assert.rejects(call, { name: 'AbortError' });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((handlerSignal as AbortSignal).aborted, true);
    assert.equal(pair.server.activeStreams, 0);
    assert.equal(pair.client.activeStreams, 0);
  } finally {
    pair.close();
  }
});

test('destroying a response body mid-way cancels the stream on the server', async () => {
  let handlerSignal: AbortSignal | null = null;
  const pair = await muxPair((req) => {
    handlerSignal = req.signal;
    return { header: {}, body: generated(64 * MiB) };
  });
  try {
    const reply = await pair.client.request('big', {});
    await once(reply.body!, 'data');
    reply.body!.destroy();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((handlerSignal as AbortSignal | null)?.aborted, true);
    assert.equal(pair.server.activeStreams, 0);
    // Still usable.
    const again = await pair.client.request('big', {});
    again.body!.destroy();
  } finally {
    pair.close();
  }
});

test('a peer with another version tag is dropped', async () => {
  const channels = await channelPair();
  try {
    channels.server.write(Buffer.from('coffre-rpc-mux/0'));
    channels.server.resume();
    channels.server.on('error', () => {}); // the client drops the connection: expected here
    await assert.rejects(openMux(channels.client, { initiator: true }), /incompatible rpc version/);
    assert.equal(channels.client.destroyed, true);
  } finally {
    channels.server.destroy();
    channels.close();
  }
});

test('a frame over the size limit drops the channel', async () => {
  const channels = await channelPair();
  try {
    const mux = new Promise<Mux>((resolve, reject) => {
      openMux(channels.client, { initiator: true }).then(resolve, reject);
    });
    channels.server.resume();
    channels.server.on('error', () => {}); // the client drops the connection: expected here
    const header = Buffer.alloc(FRAME_HEADER_LENGTH);
    header[0] = 3;
    header.writeUInt32BE(2, 2);
    header.writeUInt32BE(MAX_FRAME_PAYLOAD + 1, 6);
    channels.server.write(Buffer.concat([MUX_VERSION_TAG, header]));
    const client = await mux;
    if (!client.closed) await once(client, 'close'); // the bad frame may arrive with the version tag
    const err = client.closeReason;
    assert.ok(err instanceof MuxError);
    assert.match(err.message, /exceeds/);
    assert.equal(client.closed, true);
    await assert.rejects(client.request('x', {}), MuxError);
  } finally {
    channels.server.destroy();
    channels.close();
  }
});

test('losing the channel fails calls in flight', async () => {
  const pair = await muxPair(() => new Promise(() => {}));
  try {
    const call = pair.client.request('hang', {});
    await new Promise((r) => setTimeout(r, 20));
    pair.server.destroy();
    await assert.rejects(call, MuxError);
  } finally {
    pair.close();
  }
});

test('a response body that fails midway reaches the caller as an error on the body', async () => {
  const pair = await muxPair(() => {
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= 256 * 1024) return void this.destroy(new Error('disk read failed'));
        sent += 64 * 1024;
        this.push(Buffer.alloc(64 * 1024));
      },
    });
    return { header: 'streaming', body };
  });
  try {
    const reply = await pair.client.request('flaky', {});
    assert.equal(reply.header, 'streaming');
    let received = 0;
    reply.body!.on('data', (c: Buffer) => (received += c.length));
    const [err] = (await once(reply.body!, 'error')) as [Error];
    assert.ok(err instanceof RemoteError);
    assert.match(err.message, /disk read failed/);
    assert.ok(received <= 256 * 1024);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(pair.client.activeStreams, 0);
    assert.equal(pair.server.activeStreams, 0);
  } finally {
    pair.close();
  }
});

/** A frame as the mux writes it: type, flags, stream id, payload length, payload. */
function rawFrame(type: number, flags: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_LENGTH);
  header[0] = type;
  header[1] = flags;
  header.writeUInt32BE(id, 2);
  header.writeUInt32BE(payload.length, 6);
  return Buffer.concat([header, payload]);
}

/** A client mux facing a hand-driven peer: the test writes the peer's bytes itself. */
async function clientFacingRawPeer(): Promise<{ client: Mux; peer: SecureChannel; close(): void }> {
  const channels = await channelPair();
  const mux = openMux(channels.client, { initiator: true });
  channels.server.write(MUX_VERSION_TAG);
  channels.server.resume(); // the client's version tag, request and credit frames are not checked here
  channels.server.on('error', () => {}); // dropped by the client in some tests: expected there
  return {
    client: await mux,
    peer: channels.server,
    close() {
      channels.server.destroy();
      channels.close();
    },
  };
}

test('a body arrives intact however its frames are split across reads', { timeout: 20_000 }, async () => {
  const { client, peer, close } = await clientFacingRawPeer();
  try {
    const call = client.request('x', {});
    const body = randomBytes(100 * 1024);
    const wire = Buffer.concat([
      rawFrame(2, 1, 1, Buffer.from('"ok"')), // RESPONSE with a body
      rawFrame(3, 0, 1, body.subarray(0, 40_000)),
      rawFrame(3, 0, 1, Buffer.alloc(0)),
      rawFrame(3, 0, 1, body.subarray(40_000)),
      rawFrame(4, 0, 1), // END
    ]);
    // Pieces that cut the frame headers and payloads everywhere, each in its own read on the other side.
    const cuts = [1, 3, 6, 9, 10, 11, 17, 4000, 35_000, 5, 2, 1, 13, 9, 60_000];
    let at = 0;
    for (const n of cuts) {
      peer.write(wire.subarray(at, at + n));
      at += n;
      await new Promise((r) => setTimeout(r, 2));
    }
    peer.write(wire.subarray(at));
    const reply = await call;
    assert.equal(reply.header, 'ok');
    assert.equal(sha(await readBody(reply.body)), sha(body));
    assert.equal(client.activeStreams, 0);
  } finally {
    close();
  }
});

test(
  'a DATA frame beyond the credit granted drops the channel at its header',
  { timeout: 20_000 },
  async () => {
    const { client, peer, close } = await clientFacingRawPeer();
    try {
      const call = client.request('x', {});
      peer.write(rawFrame(2, 1, 1, Buffer.from('{}')));
      const reply = await call;
      reply.body!.on('error', () => {}); // failed with the channel: expected
      // Unread, the body grants no credit: four full frames use the initial window exactly.
      for (let i = 0; i < 4; i++) peer.write(rawFrame(3, 0, 1, Buffer.alloc(MAX_FRAME_PAYLOAD)));
      const over = rawFrame(3, 0, 1, Buffer.alloc(1));
      peer.write(over.subarray(0, FRAME_HEADER_LENGTH)); // the header alone: its payload never comes
      if (!client.closed) await once(client, 'close');
      assert.match(client.closeReason!.message, /exceeded its credit/);
    } finally {
      close();
    }
  },
);
