// bench/versioning: what versioning costs a single coffre server on loopback. Small-object (1 KiB, inline)
// PUT and DELETE operations per second in an unversioned bucket and in a versioned one (where a DELETE writes a
// delete marker), sequential and with 16 requests in flight; then ListObjectVersions over 100 000 versions
// (1 000 keys of 100 versions each, and one key of 20 000 versions): the time to walk every page of 1 000, the
// slowest page, and a page resumed deep inside the long key, which must cost about what the first page does
// (a version-id marker is found through an index, not by walking the versions before it).
//
//   npx tsc -p tsconfig.json && node dist/bench/versioning.js [seconds per ops phase (default 3)]
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { ListObjectVersionsCommand, PutBucketVersioningCommand } from '@aws-sdk/client-s3';
import { startServer } from '../test/helpers/server.js';
import { Model, newVersionId } from '../src/model/model.js';
import { RECORD_VERSION } from '../src/model/types.js';
import { printMarkdownTable } from './lib/figures.js';
import { S3Transfer } from './lib/s3-transfer.js';

const PHASE_SECONDS = Math.max(1, Number(process.argv[2] ?? 3));
const KEYS = 1000;
const VERSIONS_PER_KEY = 100;
const LONG_KEY_VERSIONS = 20_000;

async function opsPerSecond(inFlight: number, op: (i: number) => Promise<void>): Promise<number> {
  const until = Date.now() + PHASE_SECONDS * 1000;
  let done = 0;
  let next = 0;
  const began = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < until) {
        await op(next++);
        done++;
      }
    }),
  );
  return done / (Number(process.hrtime.bigint() - began) / 1e9);
}

async function main(): Promise<void> {
  let server = await startServer({ env: { COFFRE_LOG_LEVEL: 'warn' } });
  const rows: string[][] = [];
  try {
    const transfer = () =>
      new S3Transfer({
        port: server.s3Port,
        creds: {
          accessKeyId: server.accessKeyId,
          secretAccessKey: server.secretAccessKey,
          region: 'us-east-1',
        },
      });
    const client = transfer();
    const s3 = server.client();
    for (const [bucket, versioned] of [
      ['plain', false],
      ['versioned', true],
    ] as const) {
      await client.createBucket(bucket);
      if (versioned)
        await s3.send(
          new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }),
        );
      for (const inFlight of [1, 16]) {
        const keys = 200;
        const put = await opsPerSecond(inFlight, (i) => client.put(`/${bucket}/k${i % keys}`, 1024));
        const del = await opsPerSecond(inFlight, (i) => client.delete(`/${bucket}/k${i % keys}`));
        rows.push([versioned ? 'enabled' : 'unversioned', String(inFlight), put.toFixed(0), del.toFixed(0)]);
      }
    }
    client.close();
    s3.destroy();
    printMarkdownTable(
      [`1 KiB objects, ${PHASE_SECONDS} s per figure; load average ${loadavg()[0]!.toFixed(2)}`],
      ['versioning', 'in flight', 'PUT ops/s', 'DELETE ops/s'],
      rows,
    );

    // 100 000 versions, written straight into the stopped node's metadata (the same records a PUT makes).
    const s3b = server.client();
    await s3b.send(
      new PutBucketVersioningCommand({ Bucket: 'plain', VersioningConfiguration: { Status: 'Enabled' } }),
    );
    s3b.destroy();
    await server.stop();
    const model = new Model({
      metadataDir: join(server.dir, 'meta'),
      dataDir: join(server.dir, 'data'),
      blockSize: 1024 * 1024,
      inlineThreshold: 3072,
      gcDelayMs: 600_000,
    });
    const bucket = model.bucketByName('plain')!;
    const write = async (key: string) => {
      const inline = Buffer.from('v');
      await model.putObject({
        v: RECORD_VERSION,
        bucketId: bucket.id,
        key,
        versionId: newVersionId(),
        size: 1,
        etag: '"x"',
        lastModified: Date.now(),
        headers: {},
        userMeta: {},
        checksums: {},
        segments: [{ plainSize: 1, storedSize: 1, blocks: [], inline }],
      });
    };
    const writes: (() => Promise<void>)[] = [];
    for (let v = 0; v < VERSIONS_PER_KEY; v++)
      for (let k = 0; k < KEYS; k++) writes.push(() => write(`key-${String(k).padStart(4, '0')}`));
    for (let v = 0; v < LONG_KEY_VERSIONS; v++) writes.push(() => write('long-key'));
    for (let i = 0; i < writes.length; i += 1000)
      await Promise.all(writes.slice(i, i + 1000).map((w) => w()));
    await model.close();
    server = await startServer({ dir: server.dir, env: { COFFRE_LOG_LEVEL: 'warn' } });
    const lister = server.client();
    const page = async (KeyMarker?: string, VersionIdMarker?: string) => {
      const t0 = process.hrtime.bigint();
      const r = await lister.send(
        new ListObjectVersionsCommand({ Bucket: 'plain', MaxKeys: 1000, KeyMarker, VersionIdMarker }),
      );
      return { r, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
    };
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    let pages = 0;
    let versions = 0;
    let slowest = 0;
    let first = 0;
    const walkStart = process.hrtime.bigint();
    let deep: string | undefined;
    for (;;) {
      const { r, ms } = await page(keyMarker, versionMarker);
      if (pages === 0) first = ms;
      pages++;
      slowest = Math.max(slowest, ms);
      versions += (r.Versions ?? []).length + (r.DeleteMarkers ?? []).length;
      if (r.NextKeyMarker === 'long-key' && versions > KEYS * VERSIONS_PER_KEY + LONG_KEY_VERSIONS - 2000)
        deep ??= r.NextVersionIdMarker;
      if (!r.IsTruncated) break;
      keyMarker = r.NextKeyMarker;
      versionMarker = r.NextVersionIdMarker;
    }
    const walk = Number(process.hrtime.bigint() - walkStart) / 1e9;
    const resumed = deep ? (await page('long-key', deep)).ms : NaN;
    lister.destroy();
    printMarkdownTable(
      [
        `ListObjectVersions, pages of 1 000, over ${versions} versions (${KEYS} keys × ${VERSIONS_PER_KEY}, and one of ${LONG_KEY_VERSIONS})`,
      ],
      [
        'pages',
        'walk (s)',
        'versions/s',
        'first page (ms)',
        'slowest page (ms)',
        'page resumed deep in the long key (ms)',
      ],
      [
        [
          String(pages),
          walk.toFixed(2),
          (versions / walk).toFixed(0),
          first.toFixed(1),
          slowest.toFixed(1),
          resumed.toFixed(1),
        ],
      ],
    );
  } finally {
    await server.stop();
    server.cleanup();
  }
}

await main();
