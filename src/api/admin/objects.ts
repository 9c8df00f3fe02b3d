// api/admin/objects: object listing, upload, download and deletion for the web console, and a key's versions
// (listed, read or deleted by version id, as object lock allows). A browser holds no access key secret to
// sign S3 requests with, so the admin API does the operation for a signed-in operator (or a bearer of the
// admin token), through the S3 API's own handlers: the same streaming with back-pressure, checksums, SSE-C
// and SSE-S3 decisions, object lock and commit rules as PutObject, GetObject and DeleteObject.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { CoffreConfig } from '../../config/config.js';
import type { ObjectStore } from '../../model/store.js';
import { isProtected, s3VersionId, type AccessKeyRecord } from '../../model/types.js';
import type { VersionCursor } from '../../model/model.js';
import { checkedVersionId } from '../s3/versioning.js';
import type { SseS3Keys } from '../../sse/sse-s3-keys.js';
import type { ClientTransport } from '../../util/client-transport.js';
import type { BucketContext } from '../s3/context.js';
import { deleteObject } from '../s3/delete.js';
import { storedEncryptionOf } from '../s3/encryption.js';
import { getObject } from '../s3/get.js';
import { paginate, scanObjects } from '../s3/list.js';
import { putObject } from '../s3/put.js';
import { checkObjectKey } from '../s3/router.js';
import { makeBody } from '../s3/server.js';
import { AdminError } from './errors.js';
import type { S3Metrics } from './metrics.js';

// The operator holds every right on every bucket. Object reads and writes ask the request's key for its
// rights only (given here); no handler used below reads anything else of it.
const CONSOLE_KEY: AccessKeyRecord = {
  v: 1,
  id: 'coffre-console',
  name: 'coffre console',
  secret: '',
  createdAt: 0,
  allowCreateBucket: false,
};
const ALL_RIGHTS = { read: true, write: true, owner: true };
const MAX_LIST = 1000;
const SSE_C_KEY = 'x-amz-server-side-encryption-customer-key';

export interface ObjectDeps {
  config: CoffreConfig;
  store: ObjectStore;
  log: Logger;
  sseS3?: SseS3Keys;
  metrics?: S3Metrics;
}

const OPERATIONS: Record<string, string> = {
  GET: 'GetObject',
  HEAD: 'HeadObject',
  PUT: 'PutObject',
  DELETE: 'DeleteObject',
};

/** `/v1/objects/<bucket>[/<key>]`: the bucket and key a request names (the key keeps its slashes). */
export function objectTarget(rawPath: string): { bucket: string; key?: string } {
  const rest = rawPath.slice('/v1/objects/'.length);
  const slash = rest.indexOf('/');
  try {
    const bucket = decodeURIComponent(slash < 0 ? rest : rest.slice(0, slash));
    const key =
      slash < 0 || slash === rest.length - 1 ? undefined : decodeURIComponent(rest.slice(slash + 1));
    if (!bucket) throw new AdminError(404, 'name a bucket: /v1/objects/<bucket>[/<key>]');
    return { bucket, key };
  } catch (err) {
    if (err instanceof AdminError) throw err;
    throw new AdminError(400, 'the request path is not valid percent-encoding');
  }
}

export async function serveObjects(
  deps: ObjectDeps,
  req: IncomingMessage,
  res: ServerResponse,
  rawPath: string,
  query: URLSearchParams,
  transport: ClientTransport,
): Promise<void> {
  // Counted with the S3 API's requests, as the same operations (the console's traffic is the node's too).
  const started = process.hrtime.bigint();
  const socket = req.socket;
  const writtenBefore = socket.bytesWritten;
  res.once('close', () => {
    const declared = Number(req.headers['content-length'] ?? 0);
    deps.metrics?.observe(
      !rawPath.slice('/v1/objects/'.length).includes('/')
        ? 'ListObjects'
        : query.has('versions')
          ? 'ListObjectVersions'
          : (OPERATIONS[req.method ?? ''] ?? 'Unknown'),
      res.statusCode,
      Number(process.hrtime.bigint() - started) / 1e9,
      { in: Number.isSafeInteger(declared) ? declared : 0, out: socket.bytesWritten - writtenBefore },
    );
  });
  const { bucket: bucketName, key } = objectTarget(rawPath);
  const bucket = await deps.store.bucketByName(bucketName);
  if (!bucket) throw new AdminError(404, `no bucket ${bucketName}`);
  const method = req.method ?? 'GET';
  if (key === undefined) {
    if (method !== 'GET') throw new AdminError(405, "a bucket's objects are listed with GET");
    return sendJson(res, await listing(deps.store, bucket.id, query));
  }
  checkObjectKey(key);
  if (query.has('versions')) {
    if (method !== 'GET') throw new AdminError(405, "a key's versions are listed with GET");
    return sendJson(res, await versionsOf(deps.store, bucket.id, key, query.get('after') || undefined));
  }
  addSseCKeyDigest(req);
  // The handlers read only these query parameters: a download is always an attachment of no particular
  // type, so that no object can ever run as a page or script of the console's origin.
  const handlerQuery = new URLSearchParams();
  if (method === 'GET' || method === 'HEAD') {
    const name = key.slice(key.lastIndexOf('/') + 1);
    handlerQuery.set('response-content-type', 'application/octet-stream');
    handlerQuery.set(
      'response-content-disposition',
      `attachment; filename*=UTF-8''${encodeURIComponent(name)}`,
    );
  }
  // A version is named as S3 names it (the handlers check it); a write makes a new one and names none.
  const versionId = query.get('versionId');
  if (versionId !== null) {
    if (method === 'PUT') throw new AdminError(400, 'a PUT makes a new version: it takes no versionId');
    handlerQuery.set('versionId', versionId);
  }
  const requestId = randomBytes(8).toString('hex').toUpperCase();
  const ctx: BucketContext = {
    req,
    res,
    store: deps.store,
    config: deps.config,
    requestId,
    method,
    bucketName,
    key,
    query: handlerQuery,
    secure: transport.secure,
    fromLoopback: transport.fromLoopback,
    accessKey: CONSOLE_KEY,
    sseS3: deps.sseS3,
    body: makeBody(req),
    bucket,
    permission: ALL_RIGHTS,
    // The admin token holds every right; a bucket policy governs S3 requests, not the operator's console.
    may: async () => true,
  };
  if (method === 'GET' || method === 'HEAD') return getObject(ctx, method === 'HEAD');
  if (method === 'PUT') return putObject(ctx);
  if (method === 'DELETE') return deleteObject(ctx);
  throw new AdminError(405, 'objects are read with GET, written with PUT and removed with DELETE');
}

// The page gives an SSE-C key as S3 clients do, but a browser has no MD5 to compute the key's digest with:
// when the digest is missing it is computed here, from the key the request carries (the digest guards the
// key's transmission, which TLS or loopback already protects).
function addSseCKeyDigest(req: IncomingMessage): void {
  const key = req.headers[SSE_C_KEY];
  if (typeof key !== 'string' || req.headers[`${SSE_C_KEY}-md5`] !== undefined) return;
  const bytes = Buffer.from(key, 'base64');
  req.headers[`${SSE_C_KEY}-md5`] = createHash('md5').update(bytes).digest('base64');
  bytes.fill(0);
}

async function listing(store: ObjectStore, bucketId: string, query: URLSearchParams) {
  const prefix = query.get('prefix') ?? '';
  const delimiter = query.get('delimiter') ?? '/';
  const after = query.get('after') || undefined;
  const page = await paginate(
    (startAfter) => scanObjects(store, bucketId, prefix, startAfter),
    (o) => o.key,
    { prefix, delimiter: delimiter || undefined, startAfter: after, maxKeys: MAX_LIST },
  );
  return {
    prefix,
    prefixes: page.prefixes,
    objects: page.items.map((o) => ({
      key: o.key,
      size: o.size,
      lastModified: new Date(o.lastModified).toISOString(),
      etag: o.etag,
      encryption: storedEncryptionOf(o).kind,
    })),
    next: page.truncated ? page.last : undefined,
  };
}

// One key's versions, newest first, after version `after` of it: the page's "versions" of an object. Locks are
// told as they stand now; whether a DELETE of a version may go through is decided by the store when asked.
async function versionsOf(store: ObjectStore, bucketId: string, key: string, after: string | undefined) {
  const versions = [];
  let cursor: VersionCursor | undefined =
    after === undefined ? undefined : { key, versionId: checkedVersionId(after, 'after') };
  const now = Date.now();
  scan: for (;;) {
    const page = await store.listVersions(bucketId, key, cursor, MAX_LIST + 1);
    for (const { record, isLatest } of page) {
      // Keys that only start with this one come after all of its versions.
      if (record.key !== key) break scan;
      versions.push({
        versionId: s3VersionId(record),
        isLatest,
        deleteMarker: record.deleteMarker === true,
        lastModified: new Date(record.lastModified).toISOString(),
        size: record.deleteMarker ? 0 : record.size,
        etag: record.deleteMarker ? null : record.etag,
        encryption: record.deleteMarker ? null : storedEncryptionOf(record).kind,
        retention: record.retention
          ? { mode: record.retention.mode, until: new Date(record.retention.until).toISOString() }
          : null,
        legalHold: record.legalHold === true,
        // Whether a DELETE of this version is refused now: always under a legal hold or COMPLIANCE
        // retention; under GOVERNANCE unless it bypasses (x-amz-bypass-governance-retention: true).
        locked: isProtected(record, now, false),
        lockedForBypass: isProtected(record, now, true),
      });
      if (versions.length > MAX_LIST) break scan;
    }
    if (page.length <= MAX_LIST) break;
    const last = page[page.length - 1]!.record;
    cursor = { key: last.key, versionId: s3VersionId(last) };
  }
  const more = versions.length > MAX_LIST;
  if (more) versions.length = MAX_LIST;
  return { key, versions, next: more ? versions[versions.length - 1]!.versionId : undefined };
}

function sendJson(res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
