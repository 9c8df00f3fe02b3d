// Interop: the AWS SDK for JavaScript v3 against a coffre server — ListObjects v1 and v2: prefix, delimiter and
// CommonPrefixes, marker / continuation-token / start-after, max-keys with truncation walked to the end,
// encoding-type=url with odd keys, fetch-owner.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  paginateListObjectsV2,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let s3: S3Client;
const B = 'listing';

// A tree with folders, a deep path, keys sorting around the delimiter, and keys needing URL encoding.
const FLAT = Array.from({ length: 23 }, (_, i) => `flat/f${String(i).padStart(3, '0')}`);
const TREE = [
  'a.txt',
  'b/1.txt',
  'b/2.txt',
  'b/c/3.txt',
  'b/c/d/4.txt',
  'b.txt',
  'b0',
  'c/',
  'c/x',
  'd/e/f/g',
  'z',
];
const ODD = [
  'odd/space key',
  'odd/plus+key',
  'odd/ünï©ødé',
  'odd/amp&lt<gt>',
  'odd/percent%2F',
  'odd/ctrl\u0001char',
];
const ALL = [...FLAT, ...TREE, ...ODD].sort();

before(async () => {
  server = await startServer();
  s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await Promise.all(ALL.map((Key) => s3.send(new PutObjectCommand({ Bucket: B, Key, Body: Key }))));
});

after(async () => {
  s3?.destroy();
  await server?.stop();
  server?.cleanup();
});

test('ListObjectsV2 without arguments lists every key in order with size, ETag, date, storage class', async () => {
  const out = await s3.send(new ListObjectsV2Command({ Bucket: B }));
  assert.equal(out.IsTruncated, false);
  assert.equal(out.KeyCount, ALL.length);
  assert.deepEqual(
    out.Contents!.map((c) => c.Key),
    ALL,
  );
  for (const c of out.Contents!) {
    assert.equal(c.Size, Buffer.byteLength(c.Key!));
    assert.match(c.ETag!, /^"[0-9a-f]{32}"$/);
    assert.ok(c.LastModified instanceof Date);
    assert.equal(c.StorageClass, 'STANDARD');
    assert.equal(c.Owner, undefined, 'no owner unless fetch-owner');
  }
  assert.equal(out.Name, B);
  assert.equal(out.MaxKeys, 1000);
});

test('prefix and delimiter give Contents and CommonPrefixes (v1 and v2)', async () => {
  const v2 = await s3.send(new ListObjectsV2Command({ Bucket: B, Delimiter: '/' }));
  assert.deepEqual(
    v2.Contents!.map((c) => c.Key),
    ['a.txt', 'b.txt', 'b0', 'z'],
  );
  assert.deepEqual(
    v2.CommonPrefixes!.map((p) => p.Prefix),
    ['b/', 'c/', 'd/', 'flat/', 'odd/'],
  );
  assert.equal(v2.KeyCount, 9, 'KeyCount counts keys and prefixes');

  const sub = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'b/', Delimiter: '/' }));
  assert.deepEqual(
    sub.Contents!.map((c) => c.Key),
    ['b/1.txt', 'b/2.txt'],
  );
  assert.deepEqual(
    sub.CommonPrefixes!.map((p) => p.Prefix),
    ['b/c/'],
  );
  assert.equal(sub.Prefix, 'b/');
  assert.equal(sub.Delimiter, '/');

  // The "folder marker" key c/ is listed as content under prefix c/.
  const c = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'c/', Delimiter: '/' }));
  assert.deepEqual(
    c.Contents!.map((x) => x.Key),
    ['c/', 'c/x'],
  );

  const v1 = await s3.send(new ListObjectsCommand({ Bucket: B, Prefix: 'b', Delimiter: '/' }));
  assert.deepEqual(
    v1.Contents!.map((x) => x.Key),
    ['b.txt', 'b0'],
  );
  assert.deepEqual(
    v1.CommonPrefixes!.map((p) => p.Prefix),
    ['b/'],
  );
  // A delimiter other than /.
  const dot = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'b', Delimiter: '.' }));
  assert.deepEqual(
    dot.CommonPrefixes!.map((p) => p.Prefix),
    ['b.', 'b/1.', 'b/2.', 'b/c/3.', 'b/c/d/4.'],
  );
  assert.deepEqual(
    dot.Contents!.map((x) => x.Key),
    ['b0'],
  );
  // A prefix that matches nothing.
  const none = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'nothing/' }));
  assert.equal(none.KeyCount, 0);
  assert.equal(none.Contents, undefined);
});

test('ListObjectsV2 pages with max-keys and continuation tokens, prefixes counted once across pages', async () => {
  for (const maxKeys of [1, 2, 5, 7]) {
    const keys: string[] = [];
    const prefixes: string[] = [];
    let token: string | undefined;
    let pages = 0;
    let last: ListObjectsV2CommandOutput;
    do {
      last = await s3.send(
        new ListObjectsV2Command({ Bucket: B, MaxKeys: maxKeys, ContinuationToken: token, Delimiter: '/' }),
      );
      pages++;
      assert.ok((last.KeyCount ?? 0) <= maxKeys, 'page within max-keys');
      keys.push(...(last.Contents ?? []).map((c) => c.Key!));
      prefixes.push(...(last.CommonPrefixes ?? []).map((p) => p.Prefix!));
      if (last.IsTruncated) assert.ok(last.NextContinuationToken, 'a truncated page gives a token');
      token = last.NextContinuationToken;
      assert.ok(pages < 100, 'pagination terminates');
    } while (last.IsTruncated);
    assert.deepEqual(keys, ['a.txt', 'b.txt', 'b0', 'z'], `keys with max-keys ${maxKeys}`);
    assert.deepEqual(prefixes, ['b/', 'c/', 'd/', 'flat/', 'odd/'], `prefixes with max-keys ${maxKeys}`);
    assert.equal(pages, Math.ceil(9 / maxKeys));
  }
  // Without delimiter, all keys across pages.
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: B, MaxKeys: 4, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((c) => c.Key!));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  assert.deepEqual(keys, ALL);

  // max-keys 0: nothing, not truncated? S3 answers IsTruncated=false with no keys only when empty; either way no
  // contents.
  const zero = await s3.send(new ListObjectsV2Command({ Bucket: B, MaxKeys: 0 }));
  assert.equal(zero.Contents, undefined);
});

test('ListObjectsV2 start-after, and the token wins over start-after', async () => {
  const out = await s3.send(new ListObjectsV2Command({ Bucket: B, StartAfter: 'flat/f020' }));
  assert.deepEqual(
    out.Contents!.map((c) => c.Key),
    ALL.filter((k) => k > 'flat/f020'),
  );
  assert.equal(out.StartAfter, 'flat/f020');
  const first = await s3.send(new ListObjectsV2Command({ Bucket: B, MaxKeys: 3, StartAfter: 'b/' }));
  assert.deepEqual(
    first.Contents!.map((c) => c.Key),
    ['b/1.txt', 'b/2.txt', 'b/c/3.txt'],
  );
  const second = await s3.send(
    new ListObjectsV2Command({
      Bucket: B,
      MaxKeys: 2,
      StartAfter: 'b/',
      ContinuationToken: first.NextContinuationToken,
    }),
  );
  assert.deepEqual(
    second.Contents!.map((c) => c.Key),
    ['b/c/d/4.txt', 'b0'],
  );
  // A start-after beyond the last key lists nothing.
  const end = await s3.send(new ListObjectsV2Command({ Bucket: B, StartAfter: 'zzz' }));
  assert.equal(end.KeyCount, 0);
  // A forged token is refused, not trusted.
  try {
    await s3.send(new ListObjectsV2Command({ Bucket: B, ContinuationToken: 'not a real token!' }));
    assert.fail('a bad continuation token was accepted');
  } catch (err) {
    assert.ok(err instanceof S3ServiceException);
    assert.equal(err.name, 'InvalidArgument');
    assert.equal(err.$metadata.httpStatusCode, 400);
  }
});

test('ListObjects v1 pages with marker and NextMarker (given when a delimiter is used)', async () => {
  const keys: string[] = [];
  let marker: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await s3.send(new ListObjectsCommand({ Bucket: B, MaxKeys: 6, Marker: marker }));
    pages++;
    const got = (page.Contents ?? []).map((c) => c.Key!);
    keys.push(...got);
    if (!page.IsTruncated) break;
    marker = page.NextMarker ?? got[got.length - 1];
    assert.ok(pages < 50);
  }
  assert.deepEqual(keys, ALL);
  assert.equal(pages, Math.ceil(ALL.length / 6));

  // With a delimiter, NextMarker may be a common prefix; resuming from it skips that whole folder.
  const p1 = await s3.send(new ListObjectsCommand({ Bucket: B, Delimiter: '/', MaxKeys: 3 }));
  assert.equal(p1.IsTruncated, true);
  assert.deepEqual(
    p1.Contents!.map((c) => c.Key),
    ['a.txt', 'b.txt'],
  );
  assert.deepEqual(
    p1.CommonPrefixes!.map((c) => c.Prefix),
    ['b/'],
  );
  assert.equal(p1.NextMarker, 'b/');
  const p2 = await s3.send(
    new ListObjectsCommand({ Bucket: B, Delimiter: '/', MaxKeys: 3, Marker: p1.NextMarker }),
  );
  assert.deepEqual(
    p2.Contents!.map((c) => c.Key),
    ['b0'],
  );
  assert.deepEqual(
    p2.CommonPrefixes!.map((c) => c.Prefix),
    ['c/', 'd/'],
  );
  assert.equal(p2.Marker, 'b/');
});

// The SDK hands back keys as the server sent them when encoding-type=url; callers decode (as the aws CLI does).
const urlDecode = (s: string | undefined) => decodeURIComponent(s!.replace(/\+/g, ' '));

test('encoding-type=url: odd keys come back intact once decoded (v1 and v2), and raw XML is encoded', async () => {
  const v2 = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'odd/', EncodingType: 'url' }));
  assert.deepEqual(
    v2.Contents!.map((c) => urlDecode(c.Key)),
    ODD.slice().sort(),
  );
  const v1 = await s3.send(new ListObjectsCommand({ Bucket: B, Prefix: 'odd/', EncodingType: 'url' }));
  assert.deepEqual(
    v1.Contents!.map((c) => urlDecode(c.Key)),
    ODD.slice().sort(),
  );
  const withDelim = await s3.send(
    new ListObjectsV2Command({ Bucket: B, Prefix: 'odd/s', Delimiter: ' ', EncodingType: 'url' }),
  );
  assert.deepEqual(
    withDelim.CommonPrefixes!.map((p) => urlDecode(p.Prefix)),
    ['odd/space '],
  );
  // Without encoding the XML escapes what it must, and the SDK decodes it.
  const plain = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'odd/amp' }));
  assert.deepEqual(
    plain.Contents!.map((c) => c.Key),
    ['odd/amp&lt<gt>'],
  );
  // Look at the bytes: a key with a control character must be URL-encoded in the XML.
  const list = new ListObjectsV2Command({ Bucket: B, Prefix: 'odd/', EncodingType: 'url' });
  let raw = '';
  list.middlewareStack.add(
    (next) => async (args) => {
      const out = await next(args);
      const res = out.response as { body: NodeJS.ReadableStream };
      const chunks: Buffer[] = [];
      for await (const c of res.body) chunks.push(Buffer.from(c as Buffer));
      raw = Buffer.concat(chunks).toString('utf8');
      const { Readable } = await import('node:stream');
      (out.response as { body: unknown }).body = Readable.from([Buffer.from(raw)]);
      return out;
    },
    { step: 'deserialize', name: 'captureBody', priority: 'low' },
  );
  await s3.send(list);
  assert.match(raw, /<EncodingType>url<\/EncodingType>/);
  assert.match(raw, /<Key>odd(\/|%2F)ctrl%01char<\/Key>/);
  assert.match(raw, /<Key>odd(\/|%2F)space(%20|\+)key<\/Key>/);
  assert.match(raw, /<Prefix>odd(\/|%2F)<\/Prefix>/, 'the echoed prefix is encoded too');
  assert.ok(!raw.includes('\u0001'));
});

test("v1's Prefix comes back as sent under encoding-type=url (what boto3 and the aws CLI expect); v2's is encoded", async () => {
  const v1 = await s3.send(new ListObjectsCommand({ Bucket: B, Prefix: 'odd/space ', EncodingType: 'url' }));
  assert.equal(v1.Prefix, 'odd/space ');
  const v2 = await s3.send(
    new ListObjectsV2Command({ Bucket: B, Prefix: 'odd/space ', EncodingType: 'url' }),
  );
  assert.match(v2.Prefix!, /^odd(\/|%2F)space(%20|\+)$/);
});

test('ListObjectsV2: an empty continuation-token is no token, and StartAfter is echoed on every page', async () => {
  const all = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'b/' }));
  const empty = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'b/', ContinuationToken: '' }));
  assert.deepEqual(
    empty.Contents?.map((c) => c.Key),
    all.Contents?.map((c) => c.Key),
  );
  const first = await s3.send(new ListObjectsV2Command({ Bucket: B, MaxKeys: 1, StartAfter: 'b/' }));
  assert.equal(first.StartAfter, 'b/');
  const second = await s3.send(
    new ListObjectsV2Command({
      Bucket: B,
      MaxKeys: 1,
      StartAfter: 'b/',
      ContinuationToken: first.NextContinuationToken,
    }),
  );
  assert.equal(second.StartAfter, 'b/');
  assert.equal(second.ContinuationToken, first.NextContinuationToken);
});

test('fetch-owner adds Owner to v2 entries; v1 always has it', async () => {
  const v2 = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'b/', FetchOwner: true }));
  for (const c of v2.Contents!) assert.ok(c.Owner?.ID, 'owner id with fetch-owner');
  const v1 = await s3.send(new ListObjectsCommand({ Bucket: B, Prefix: 'b/' }));
  for (const c of v1.Contents!) assert.ok(c.Owner?.ID, 'owner id in v1');
});

test('more than 1000 keys: default pages of 1000, the SDK paginator walks them all (v2 and v1)', async () => {
  const N = 1234;
  const keys = Array.from({ length: N }, (_, i) => `bulk/${String(i).padStart(5, '0')}`);
  for (let i = 0; i < N; i += 32) {
    await Promise.all(
      keys.slice(i, i + 32).map((Key) => s3.send(new PutObjectCommand({ Bucket: B, Key, Body: '' }))),
    );
  }
  const first = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'bulk/' }));
  assert.equal(first.KeyCount, 1000);
  assert.equal(first.IsTruncated, true);
  const seen: string[] = [];
  for await (const page of paginateListObjectsV2({ client: s3 }, { Bucket: B, Prefix: 'bulk/' }))
    seen.push(...(page.Contents ?? []).map((c) => c.Key!));
  assert.deepEqual(seen, keys);
  const v1: string[] = [];
  let marker: string | undefined;
  for (;;) {
    const page = await s3.send(new ListObjectsCommand({ Bucket: B, Prefix: 'bulk/', Marker: marker }));
    v1.push(...(page.Contents ?? []).map((c) => c.Key!));
    if (!page.IsTruncated) break;
    marker = page.NextMarker ?? v1[v1.length - 1];
  }
  assert.deepEqual(v1, keys);
});
