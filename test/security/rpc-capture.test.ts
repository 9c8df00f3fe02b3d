// What an eavesdropper between nodes sees: a packet capture (tcpdump on loopback) of the RPC ports of a storage
// node and a gateway while plaintext and SSE-C objects, each full of a distinctive marker, are uploaded and read
// through the gateway. The capture holds neither marker nor the customer key (raw, base64, hex). So that the
// test can fail, a capture of the gateway's S3 port (plain HTTP) taken at the same time does hold the plaintext
// marker and the key. And the storage node's directory (blocks and metadata) holds neither the SSE-C object's
// plaintext nor its key, while it does hold the plaintext object's marker.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  formCluster,
  newRpcSecret,
  s3Client,
  startNode,
  type ClusterNode,
} from '../cluster/cluster-helpers.js';
import { requireTools } from '../helpers/tools.js';
import { customerKey, walkFiles, type CustomerKey, sseCParams } from './ssec-helpers.js';

const KiB = 1024;

interface Capture {
  file: string;
  stop(): Promise<Buffer>;
}

// Starts tcpdump on loopback for `ports`; resolves once it is listening.
async function capture(ports: number[]): Promise<Capture> {
  const file = join(tmpdir(), `coffre-capture-${randomBytes(4).toString('hex')}.pcap`);
  const filter = ports.map((p) => `tcp port ${p}`).join(' or ');
  const child: ChildProcess = spawn('tcpdump', ['-i', 'lo', '-s', '0', '-U', '-n', '-w', file, filter], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 10_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tcpdump exited with ${code}: ${err.trim()}`));
    });
  });
  return {
    file,
    async stop() {
      // Let the last segments reach the capture before it ends.
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGINT');
      await exited;
      const data = readFileSync(file);
      rmSync(file, { force: true });
      return data;
    },
  };
}

function keyForms(k: CustomerKey): [string, Buffer][] {
  return [
    ['key raw', k.raw],
    ['key base64', Buffer.from(k.b64)],
    ['key base64url', Buffer.from(k.raw.toString('base64url'))],
    ['key hex', Buffer.from(k.raw.toString('hex'))],
    ['key HEX', Buffer.from(k.raw.toString('hex').toUpperCase())],
  ];
}

function found(haystack: Buffer, needles: [string, Buffer][]): string[] {
  return needles.filter(([, n]) => haystack.includes(n)).map(([what]) => what);
}

// When tcpdump cannot capture here (no CAP_NET_RAW, no loopback device), say why: skipped locally, failed in CI.
async function startCaptures(t: TestContext, rpcPorts: number[], s3Port: number): Promise<Capture[] | null> {
  try {
    return [await capture(rpcPorts), await capture([s3Port])];
  } catch (err) {
    const why = `tcpdump cannot capture on lo here: ${(err as Error).message}`;
    if (process.env.CI) throw new Error(why);
    t.skip(why);
    return null;
  }
}

test('an RPC capture holds no plaintext and no customer key; the S3-port capture does', async (t) => {
  if (!requireTools(t, 'tcpdump')) return;
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const storage = await startNode({ secretConfig: secret, label: 'storage' });
  const gateway = await startNode({ secretConfig: secret, label: 'gateway' });
  const s3 = s3Client(gateway.endpoint, storage);
  const nodes: ClusterNode[] = [storage, gateway];
  try {
    await formCluster(storage, [
      { node: storage, zone: 'z1' },
      { node: gateway, zone: 'z1', gateway: true },
    ]);
    await s3.send(new CreateBucketCommand({ Bucket: 'capture' }));
    const captures = await startCaptures(t, [storage.rpcPort, gateway.rpcPort], gateway.s3Port);
    if (!captures) return;
    const [rpcCapture, s3Capture] = captures as [Capture, Capture];

    const plainMarker = Buffer.from(`PLAINTEXT-MARKER-${randomBytes(8).toString('hex')}|`);
    const secretMarker = Buffer.from(`SSEC-MARKER-${randomBytes(8).toString('hex')}|`);
    const metaMarker = `META-MARKER-${randomBytes(8).toString('hex')}`;
    const fill = (marker: Buffer, size: number) => Buffer.alloc(size, marker);
    const key = customerKey();
    const ssec = sseCParams(key);

    const plainObject = fill(plainMarker, 1536 * KiB);
    const secretObject = fill(secretMarker, 1536 * KiB);
    const smallSecret = fill(secretMarker, 2 * KiB); // small enough to be stored inline in metadata
    await s3.send(new PutObjectCommand({ Bucket: 'capture', Key: 'plain', Body: plainObject }));
    await s3.send(
      new PutObjectCommand({
        Bucket: 'capture',
        Key: 'secret',
        Body: secretObject,
        Metadata: { note: metaMarker },
        ...ssec,
      }),
    );
    await s3.send(new PutObjectCommand({ Bucket: 'capture', Key: 'small', Body: smallSecret, ...ssec }));
    // Reads travel back over RPC too.
    const got = await s3.send(new GetObjectCommand({ Bucket: 'capture', Key: 'secret', ...ssec }));
    assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(secretObject));
    const gotSmall = await s3.send(new GetObjectCommand({ Bucket: 'capture', Key: 'small', ...ssec }));
    assert.ok(Buffer.from(await gotSmall.Body!.transformToByteArray()).equals(smallSecret));

    const rpcBytes = await rpcCapture.stop();
    const s3Bytes = await s3Capture.stop();
    const needles: [string, Buffer][] = [
      ['plaintext marker', plainMarker],
      ['SSE-C marker', secretMarker],
      ['SSE-C metadata', Buffer.from(metaMarker)],
      ...keyForms(key),
    ];

    // The capture did see the traffic: more bytes than the objects it carried.
    assert.ok(rpcBytes.length > 2 * 1536 * KiB, `RPC capture holds ${rpcBytes.length} bytes`);
    assert.deepEqual(found(rpcBytes, needles), [], 'nothing readable crosses between nodes');
    // Plain HTTP to the gateway carries all of it: the search would find it if it were there.
    const inS3 = found(s3Bytes, needles);
    for (const what of ['plaintext marker', 'SSE-C marker', 'key base64'])
      assert.ok(inS3.includes(what), `the S3-port capture holds the ${what} (found: ${inS3.join(', ')})`);

    // At rest on the storage node: no SSE-C plaintext, metadata or key; the plaintext object is there.
    await storage.stop();
    const atRest = new Set<string>();
    for (const file of walkFiles(storage.dir))
      for (const w of found(readFileSync(file), needles)) atRest.add(w);
    assert.ok(atRest.has('plaintext marker'), 'the search finds the unencrypted object on disk');
    atRest.delete('plaintext marker');
    assert.deepEqual([...atRest], [], "the storage node's directory holds no SSE-C plaintext or key");
  } finally {
    s3.destroy();
    for (const n of nodes) {
      await n.kill();
      n.cleanup();
    }
  }
});
