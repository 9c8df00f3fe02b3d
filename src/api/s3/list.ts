// api/s3/list: ListObjects (v1), ListObjectsV2 and ListMultipartUploads — prefix, delimiter and common
// prefixes, markers and continuation tokens, max-keys and truncation, encoding-type=url; ListObjectVersions.
import { S3Errors } from '../../util/s3-error.js';
import { s3VersionId, type ObjectRecord } from '../../model/types.js';
import type { VersionCursor, VersionEntry } from '../../model/model.js';
import { checkedVersionId } from './versioning.js';
import type { MetadataStore } from '../../model/store.js';
import { type BucketContext, type S3Context } from './context.js';
import { parseIntParam } from './headers.js';
import { isoDate, sendXml } from './response.js';
import { ownerOf } from './bucket.js';
import type { XmlNode } from './xml.js';

// Greater, in UTF-8 byte order, than any string that starts with the same prefix.
const AFTER_ALL = '\u{10ffff}';

export interface ListPage<T> {
  items: T[];
  prefixes: string[];
  truncated: boolean;
  // The last key or common prefix returned: where the next page starts (exclusive).
  last?: string;
}

const SCAN_PAGE = 1000;

// Objects in key order after `startAfter`, fetched from the store a page at a time.
export async function* scanObjects(
  store: MetadataStore,
  bucketId: string,
  prefix: string,
  startAfter: string | undefined,
): AsyncGenerator<ObjectRecord> {
  let cursor = startAfter;
  while (true) {
    const page = await store.listObjects(bucketId, prefix, cursor, SCAN_PAGE);
    yield* page;
    if (page.length < SCAN_PAGE) return;
    cursor = page[page.length - 1]!.key;
  }
}

async function* iterate<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

// Walks keys in order from `startAfter`, folding keys that share a delimiter-terminated prefix into one
// common prefix and seeking past the rest of that prefix instead of reading it.
export async function paginate<T>(
  scan: (startAfter: string | undefined) => AsyncIterable<T>,
  keyOf: (item: T) => string,
  opts: { prefix: string; delimiter?: string; startAfter?: string; maxKeys: number },
): Promise<ListPage<T>> {
  const items: T[] = [];
  const prefixes: string[] = [];
  let last: string | undefined;
  let cursor = opts.startAfter;
  let count = 0;
  if (opts.maxKeys === 0) return { items, prefixes, truncated: false };
  outer: while (true) {
    for await (const item of scan(cursor)) {
      const key = keyOf(item);
      let prefixHit: string | undefined;
      if (opts.delimiter) {
        const idx = key.indexOf(opts.delimiter, opts.prefix.length);
        if (idx >= 0) prefixHit = key.slice(0, idx + opts.delimiter.length);
      }
      if (
        prefixHit !== undefined &&
        opts.startAfter !== undefined &&
        prefixHit <= opts.startAfter &&
        opts.startAfter.startsWith(prefixHit)
      ) {
        // The marker lies inside this common prefix, which an earlier page already returned.
        cursor = prefixHit + AFTER_ALL;
        continue outer;
      }
      if (count === opts.maxKeys) return { items, prefixes, truncated: true, last };
      count++;
      if (prefixHit !== undefined) {
        prefixes.push(prefixHit);
        last = prefixHit;
        cursor = prefixHit + AFTER_ALL;
        continue outer;
      }
      items.push(item);
      last = key;
    }
    return { items, prefixes, truncated: false, last };
  }
}

function encoder(ctx: S3Context): (s: string | undefined) => string | undefined {
  const encodingType = ctx.query.get('encoding-type');
  if (encodingType !== null && encodingType !== 'url') {
    throw S3Errors.invalidArgument('Invalid Encoding Method specified in Request', {
      ArgumentName: 'encoding-type',
    });
  }
  return encodingType === 'url' ? (s) => (s === undefined ? undefined : encodeURIComponent(s)) : (s) => s;
}

/** The parameters every listing shares: encoding, prefix, delimiter, and its page size (capped at 1000). */
function listingParams(ctx: S3Context, maxName: 'max-keys' | 'max-uploads') {
  const q = ctx.query;
  return {
    enc: encoder(ctx),
    prefix: q.get('prefix') ?? '',
    delimiter: q.get('delimiter') || undefined,
    max: Math.min(parseIntParam(q.get(maxName), maxName, 0, 2 ** 31 - 1) ?? 1000, 1000),
  };
}

function contents(
  ctx: S3Context,
  objects: ObjectRecord[],
  enc: (s: string) => string | undefined,
  withOwner: boolean,
): XmlNode[] {
  return objects.map((o) => ({
    Key: enc(o.key),
    LastModified: isoDate(o.lastModified),
    ETag: o.etag,
    Size: o.size,
    Owner: withOwner ? ownerOf(ctx) : undefined,
    StorageClass: 'STANDARD',
  }));
}

export async function listObjects(ctx: BucketContext, v2: boolean): Promise<void> {
  const bucket = ctx.bucket;
  const q = ctx.query;
  const { enc, prefix, delimiter, max: maxKeys } = listingParams(ctx, 'max-keys');
  let startAfter: string | undefined;
  // An empty continuation-token is no token, as S3 reads it.
  const token = q.get('continuation-token') || null;
  if (v2) {
    if (token !== null) {
      startAfter = Buffer.from(token, 'base64url').toString('utf8');
      if (Buffer.from(startAfter, 'utf8').toString('base64url') !== token) {
        throw S3Errors.invalidArgument('The continuation token provided is incorrect', {
          ArgumentName: 'continuation-token',
        });
      }
    } else {
      startAfter = q.get('start-after') ?? undefined;
    }
  } else {
    startAfter = q.get('marker') ?? undefined;
  }
  const page = await paginate(
    (after) => scanObjects(ctx.store, bucket.id, prefix, after),
    (o) => o.key,
    { prefix, delimiter, startAfter: startAfter || undefined, maxKeys },
  );
  const common = page.prefixes.map((p) => ({ Prefix: enc(p) }));
  if (v2) {
    const fetchOwner = q.get('fetch-owner') === 'true';
    sendXml(ctx.res, 200, 'ListBucketResult', {
      Name: bucket.name,
      Prefix: enc(prefix),
      Delimiter: enc(delimiter),
      MaxKeys: maxKeys,
      EncodingType: q.get('encoding-type') ?? undefined,
      KeyCount: page.items.length + page.prefixes.length,
      IsTruncated: page.truncated,
      ContinuationToken: token ?? undefined,
      NextContinuationToken:
        page.truncated && page.last ? Buffer.from(page.last, 'utf8').toString('base64url') : undefined,
      StartAfter: enc(q.get('start-after') ?? undefined),
      Contents: contents(ctx, page.items, (s) => enc(s), fetchOwner),
      CommonPrefixes: common,
    });
    return;
  }
  // v1's Prefix is returned as it was sent, encoded or not (as Ceph RGW does): boto3 and the aws CLI ask for
  // encoding-type=url on every listing but decode, in v1, only Delimiter, Marker, NextMarker, Key and
  // CommonPrefixes/Prefix, so an encoded Prefix would reach their users as `foo%2F`.
  sendXml(ctx.res, 200, 'ListBucketResult', {
    Name: bucket.name,
    Prefix: prefix,
    Marker: enc(startAfter ?? ''),
    Delimiter: enc(delimiter),
    MaxKeys: maxKeys,
    EncodingType: q.get('encoding-type') ?? undefined,
    IsTruncated: page.truncated,
    NextMarker: page.truncated && delimiter ? enc(page.last) : undefined,
    Contents: contents(ctx, page.items, (s) => enc(s), true),
    CommonPrefixes: common,
  });
}

export async function listMultipartUploads(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  const q = ctx.query;
  const { enc, prefix, delimiter, max: maxUploads } = listingParams(ctx, 'max-uploads');
  const keyMarker = q.get('key-marker') ?? '';
  const uploadIdMarker = q.get('upload-id-marker') ?? '';
  // Upload order is (key, upload id); the page cursor is the pair, joined by a separator no key contains.
  const SEP = '\u0000';
  const all = (await ctx.store.listUploads(bucket.id)).filter((u) => u.key.startsWith(prefix));
  const startAfter = keyMarker
    ? uploadIdMarker
      ? keyMarker + SEP + uploadIdMarker
      : keyMarker + SEP + AFTER_ALL
    : undefined;
  const page = await paginate(
    (after) => iterate(all.filter((u) => after === undefined || u.key + SEP + u.uploadId > after)),
    (u) => u.key,
    { prefix, delimiter, startAfter, maxKeys: maxUploads },
  );
  const lastUpload = page.items[page.items.length - 1];
  sendXml(ctx.res, 200, 'ListMultipartUploadsResult', {
    Bucket: bucket.name,
    KeyMarker: enc(keyMarker),
    UploadIdMarker: uploadIdMarker,
    NextKeyMarker: page.truncated ? enc(lastUpload?.key ?? page.last) : undefined,
    NextUploadIdMarker: page.truncated ? lastUpload?.uploadId : undefined,
    Delimiter: enc(delimiter),
    Prefix: enc(prefix),
    MaxUploads: maxUploads,
    EncodingType: q.get('encoding-type') ?? undefined,
    IsTruncated: page.truncated,
    Upload: page.items.map((u) => ({
      Key: enc(u.key),
      UploadId: u.uploadId,
      Initiator: ownerOf(ctx),
      Owner: ownerOf(ctx),
      StorageClass: 'STANDARD',
      Initiated: isoDate(u.initiated),
    })),
    CommonPrefixes: page.prefixes.map((p) => ({ Prefix: enc(p) })),
  });
}

// Versions in key order, newest first within a key, after `after`, fetched from the store a page at a time.
async function* scanVersions(
  store: MetadataStore,
  bucketId: string,
  prefix: string,
  after: VersionCursor | undefined,
): AsyncGenerator<VersionEntry> {
  let cursor = after;
  while (true) {
    const page = await store.listVersions(bucketId, prefix, cursor, SCAN_PAGE);
    yield* page;
    if (page.length < SCAN_PAGE) return;
    const last = page[page.length - 1]!.record;
    cursor = { key: last.key, versionId: s3VersionId(last) };
  }
}

// Every version of every key, delete markers apart; a key written before versioning (or while it was unset
// or suspended) has its null version. A page may end within a key: the next one starts after the version
// named by its markers.
export async function listObjectVersions(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  const q = ctx.query;
  const { enc, prefix, delimiter, max: maxKeys } = listingParams(ctx, 'max-keys');
  const keyMarker = q.get('key-marker') ?? '';
  const versionIdMarker = q.get('version-id-marker') ?? '';
  if (versionIdMarker !== '' && keyMarker === '') {
    throw S3Errors.invalidArgument('A version-id marker cannot be specified without a key marker.', {
      ArgumentName: 'version-id-marker',
    });
  }
  if (versionIdMarker !== '')
    checkedVersionId(versionIdMarker, 'version-id-marker', ctx.store.streams !== undefined);
  // The first scan starts at the markers; later ones (past a common prefix) after a key.
  let first = true;
  const page = await paginate(
    (after) => {
      const cursor =
        first && versionIdMarker !== ''
          ? { key: keyMarker, versionId: versionIdMarker }
          : after === undefined
            ? undefined
            : { key: after };
      first = false;
      return scanVersions(ctx.store, bucket.id, prefix, cursor);
    },
    (v) => v.record.key,
    { prefix, delimiter, startAfter: keyMarker || undefined, maxKeys },
  );
  const lastItem = page.items[page.items.length - 1];
  const lastIsVersion = lastItem !== undefined && lastItem.record.key === page.last;
  const entry = (v: VersionEntry) => ({
    Key: enc(v.record.key),
    VersionId: s3VersionId(v.record),
    IsLatest: v.isLatest,
    LastModified: isoDate(v.record.lastModified),
    ...(v.record.deleteMarker ? {} : { ETag: v.record.etag, Size: v.record.size, StorageClass: 'STANDARD' }),
    Owner: ownerOf(ctx),
  });
  sendXml(ctx.res, 200, 'ListVersionsResult', {
    Name: bucket.name,
    Prefix: enc(prefix),
    KeyMarker: enc(keyMarker),
    VersionIdMarker: versionIdMarker,
    NextKeyMarker: page.truncated ? enc(page.last) : undefined,
    NextVersionIdMarker: page.truncated && lastIsVersion ? s3VersionId(lastItem.record) : undefined,
    MaxKeys: maxKeys,
    Delimiter: enc(delimiter),
    EncodingType: q.get('encoding-type') ?? undefined,
    IsTruncated: page.truncated,
    Version: page.items.filter((v) => !v.record.deleteMarker).map(entry),
    DeleteMarker: page.items.filter((v) => v.record.deleteMarker).map(entry),
    CommonPrefixes: page.prefixes.map((p) => ({ Prefix: enc(p) })),
  });
}
