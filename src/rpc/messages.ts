// rpc/messages: what a peer sends, decoded into checked values before anything acts on it. Every argument of
// every endpoint is described here by a schema — types, string lengths, number ranges, list lengths, the
// fields a record may have — and a value that does not fit is refused whole with RpcMessageError. Handlers
// only ever see values that passed; nothing a peer sends reaches the file system, the model or a dynamic
// dispatch unchecked.
import { METADATA_METHODS, METADATA_READS, type MetadataStore } from '../model/store.js';
import { MAX_BUCKET_POLICY_BYTES } from '../model/types.js';

export class RpcMessageError extends Error {
  constructor(message: string) {
    super(`invalid RPC message: ${message}`);
    this.name = 'RpcMessageError';
  }
}

/** A schema checks a decoded JSON value (with Buffers for bytes) and returns it typed, or throws. */
export type Schema<T> = (value: unknown, where: string) => T;

const fail = (where: string, what: string): never => {
  throw new RpcMessageError(`${where} ${what}`);
};

// Bounds shared by every schema: a record field, a key, a tag is far below them; they only stop a peer from
// making the node hold or walk something huge.
export const MAX_STRING = 64 * 1024;
export const MAX_ENTRIES = 10_000;

export const str =
  (max = MAX_STRING, pattern?: RegExp): Schema<string> =>
  (v, where) => {
    if (typeof v !== 'string') return fail(where, 'must be a string');
    if (v.length > max) return fail(where, `is longer than ${max} characters`);
    if (pattern && !pattern.test(v)) return fail(where, 'is not well formed');
    return v;
  };

export const int =
  (min = 0, max = Number.MAX_SAFE_INTEGER): Schema<number> =>
  (v, where) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) return fail(where, 'must be an integer');
    if (v < min || v > max) return fail(where, `must be between ${min} and ${max}`);
    return v;
  };

export const bool: Schema<boolean> = (v, where) =>
  typeof v === 'boolean' ? v : fail(where, 'must be true or false');

export const bytes =
  (max: number): Schema<Buffer> =>
  (v, where) => {
    if (!Buffer.isBuffer(v)) return fail(where, 'must be bytes');
    if (v.length > max) return fail(where, `is longer than ${max} bytes`);
    return v;
  };

/** Absent (undefined or JSON null) or a valid value. */
export const opt =
  <T>(schema: Schema<T>): Schema<T | undefined> =>
  (v, where) =>
    v === undefined || v === null ? undefined : schema(v, where);

export const literal =
  <T extends string>(...values: T[]): Schema<T> =>
  (v, where) =>
    values.includes(v as T) ? (v as T) : fail(where, `must be one of ${values.join(', ')}`);

export const list =
  <T>(item: Schema<T>, max = MAX_ENTRIES): Schema<T[]> =>
  (v, where) => {
    if (!Array.isArray(v)) return fail(where, 'must be a list');
    if (v.length > max) return fail(where, `has more than ${max} entries`);
    return v.map((x, i) => item(x, `${where}[${i}]`));
  };

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);

/** A map from checked keys to checked values, built on a null prototype (no `__proto__` games). */
export const dict =
  <T>(value: Schema<T>, key: Schema<string> = str(1024), max = MAX_ENTRIES): Schema<Record<string, T>> =>
  (v, where) => {
    if (!isPlainObject(v)) return fail(where, 'must be an object');
    const entries = Object.entries(v);
    if (entries.length > max) return fail(where, `has more than ${max} entries`);
    const out: Record<string, T> = Object.create(null) as Record<string, T>;
    for (const [k, x] of entries) out[key(k, `${where} key`)] = value(x, `${where}.${k}`);
    return { ...out };
  };

type Fields<T> = { [K in keyof T]-?: Schema<T[K]> };

/** An object with exactly these fields (unknown fields refused), each checked; absent optional ones dropped. */
export const record =
  <T>(fields: Fields<T>): Schema<T> =>
  (v, where) => {
    if (!isPlainObject(v)) return fail(where, 'must be an object');
    for (const k of Object.keys(v)) if (!(k in fields)) fail(where, `has an unknown field ${k}`);
    const out: Record<string, unknown> = {};
    for (const [k, schema] of Object.entries(fields) as [string, Schema<unknown>][]) {
      const x = schema(v[k], `${where}.${k}`);
      if (x !== undefined) out[k] = x;
    }
    return out as T;
  };

/** Any JSON value, bounded in depth and size: for fields the model keeps opaque (sse/'s encryption info). */
export const opaque =
  (maxDepth = 4): Schema<Record<string, unknown>> =>
  (v, where) => {
    const walk = (x: unknown, depth: number, at: string): void => {
      if (depth > maxDepth) fail(at, 'is nested too deeply');
      if (x === null || typeof x === 'boolean') return;
      if (typeof x === 'number') {
        if (!Number.isFinite(x)) fail(at, 'must be a finite number');
        return;
      }
      if (typeof x === 'string') {
        str()(x, at);
        return;
      }
      if (Buffer.isBuffer(x)) {
        bytes(MAX_STRING)(x, at);
        return;
      }
      if (Array.isArray(x)) {
        list((y, w) => walk(y, depth + 1, w), 1000)(x, at);
        return;
      }
      if (isPlainObject(x)) {
        const keys = Object.keys(x);
        if (keys.length > 100) fail(at, 'has too many fields');
        for (const k of keys) {
          if (k === '__proto__') fail(at, 'has a forbidden field');
          walk(x[k], depth + 1, `${at}.${k}`);
        }
        return;
      }
      fail(at, 'is not plain data');
    };
    if (!isPlainObject(v)) return fail(where, 'must be an object');
    walk(v, 0, where);
    return v;
  };

// ------------------------------------------------------------------ the values coffre's endpoints carry

/** A block's name: its SHA-256, exactly 64 lowercase hex digits. Never anything a path could be made of. */
export const BLOCK_HASH_PATTERN = /^[0-9a-f]{64}$/;
export const blockHash = str(64, BLOCK_HASH_PATTERN);

// Ids the model makes (bucket ids, version ids, upload ids, access key ids): short and plain.
const id = str(128, /^[A-Za-z0-9._-]+$/);
const objectKey = str(1024 * 4);
const time = int(0);
const size = int(0);
const strings = dict(str(8 * 1024));
const permission = record({ read: bool, write: bool, owner: bool });

// Inline data is at most the configured inline limit; stream headers and sealed metadata are small.
const MAX_INLINE = 1024 * 1024;
const MAX_SEALED = 64 * 1024;

const segment = record({
  plainSize: size,
  storedSize: size,
  blocks: list(record({ hash: blockHash, size: int(0, 64 * 1024 * 1024) }), 10_000),
  inline: opt(bytes(MAX_INLINE)),
  cryptoHeader: opt(bytes(1024)),
  partNumber: opt(int(1, 10_000)),
  etag: opt(str(256)),
});

const lockMode = literal('GOVERNANCE', 'COMPLIANCE');
const retention = record({ mode: lockMode, until: time });
// S3's version ids: "null", or the 32 hex digits the model makes.
const versionId = str(32, /^(null|[0-9a-f]{32})$/);

const objectRecord = record({
  v: int(1, 1000),
  bucketId: id,
  key: objectKey,
  versionId: id,
  size,
  etag: str(256),
  lastModified: time,
  headers: strings,
  userMeta: strings,
  sealedMeta: opt(bytes(MAX_SEALED)),
  checksums: strings,
  encryption: opt(opaque()),
  segments: list(segment, 10_000),
  tags: opt(strings),
  uploadId: opt(id),
  nullVersion: opt(bool),
  deleteMarker: opt(bool),
  retention: opt(retention),
  legalHold: opt(bool),
});

const uploadFields = {
  bucketId: id,
  key: objectKey,
  versionId: id,
  headers: strings,
  userMeta: strings,
  sealedMeta: opt(bytes(MAX_SEALED)),
  encryption: opt(opaque()),
  checksumAlgorithm: opt(str(32)),
  tags: opt(strings),
  retention: opt(retention),
  legalHold: opt(bool),
};
const newUpload = record(uploadFields);
const uploadRecord = record({ v: int(1, 1000), uploadId: id, initiated: time, ...uploadFields });

const partRecord = record({
  v: int(1, 1000),
  partNumber: int(1, 10_000),
  etag: str(256),
  lastModified: time,
  segment,
  checksums: strings,
  sealed: opt(bytes(MAX_SEALED)),
});

const corsRule = record({
  id: opt(str(255)),
  allowedOrigins: list(str(1024), 100),
  allowedMethods: list(str(16), 10),
  allowedHeaders: list(str(1024), 100),
  exposeHeaders: list(str(1024), 100),
  maxAgeSeconds: opt(int(0)),
});

const lifecycleRule = record({
  id: str(255),
  enabled: bool,
  filter: record({
    prefix: opt(objectKey),
    tags: opt(dict(str(256), str(128), 10)),
    sizeGreaterThan: opt(size),
    sizeLessThan: opt(size),
  }),
  expiration: opt(
    record({ days: opt(int(1, 1_000_000)), date: opt(time), expiredObjectDeleteMarker: opt(bool) }),
  ),
  noncurrentExpiration: opt(
    record({ noncurrentDays: opt(int(1, 1_000_000)), newerNoncurrentVersions: opt(int(1, 100)) }),
  ),
  abortIncompleteUploadDays: opt(int(1, 1_000_000)),
});

const writeCondition = record({ ifMatch: opt(str(4096)), ifNoneMatch: opt(str(4096)) });

type Method = (typeof METADATA_METHODS)[number];
type ArgsOf<M extends Method> = Parameters<MetadataStore[M]>;
type SchemasOf<A extends unknown[]> = { [I in keyof A]: Schema<A[I]> };
type ArgSchemas = { [M in Method]: SchemasOf<ArgsOf<M>> };

// The arguments of each metadata method a peer may call (store/call): the compiler holds this table to
// MetadataStore, so a method cannot be added to METADATA_METHODS without saying what its arguments are.
const STORE_ARGS: ArgSchemas = {
  createKey: [str(256), bool],
  getKey: [id],
  findKey: [str(256)],
  listKeys: [],
  setKeyCreateBucket: [id, bool],
  deleteKey: [id],
  bucketByName: [str(255)],
  listBuckets: [],
  createBucket: [str(255), opt(id), opt(bool)],
  setBucketVersioning: [id, literal('Enabled', 'Suspended')],
  setBucketObjectLock: [
    id,
    opt(record({ mode: lockMode, days: opt(int(1, 36500)), years: opt(int(1, 100)) })),
  ],
  setBucketCors: [id, opt(list(corsRule, 100))],
  setBucketLifecycle: [id, opt(list(lifecycleRule, 1000))],
  setBucketEncryption: [id, opt(literal('AES256'))],
  setBucketTags: [id, opt(strings)],
  setBucketPolicy: [id, opt(str(MAX_BUCKET_POLICY_BYTES))],
  setObjectTags: [id, objectKey, opt(strings), opt(versionId)],
  setObjectLock: [
    id,
    objectKey,
    opt(versionId),
    record({ retention: (v, w) => (v === null ? null : opt(retention)(v, w)), legalHold: opt(bool) }),
    opt(bool),
  ],
  setPermission: [id, id, permission],
  deleteBucket: [str(255)],
  getObject: [id, objectKey],
  getVersion: [id, objectKey, opt(versionId)],
  putObject: [objectRecord, opt(writeCondition)],
  deleteObject: [id, objectKey, opt(versionId), opt(bool)],
  deleteObjects: [id, list(record({ key: objectKey, versionId: opt(versionId) }), 1000), opt(bool)],
  listObjects: [id, objectKey, opt(objectKey), int(0, 10_000)],
  listVersions: [id, objectKey, opt(record({ key: objectKey, versionId: opt(versionId) })), int(0, 10_000)],
  createUpload: [newUpload],
  getUpload: [id, objectKey, id],
  listUploads: [id],
  putPart: [uploadRecord, partRecord],
  listParts: [id],
  completeUpload: [uploadRecord, objectRecord],
  abortUpload: [uploadRecord],
  unreferencedBlocks: [list(blockHash, 10_000)],
};

const STORE_METHODS: ReadonlySet<string> = new Set(METADATA_METHODS);

/** store/call: the method, from the fixed table, and its arguments, each checked against its schema. */
export function decodeStoreCall(
  header: unknown,
  args: unknown,
): { method: Method; args: unknown[]; degraded: boolean } {
  const { method, degraded } = record({ method: str(64), degraded: opt(bool) })(header, 'store/call header');
  if (degraded && !METADATA_READS.has(method))
    throw new RpcMessageError(`${method} changes the tables: it is never served from a copy`);
  if (!STORE_METHODS.has(method)) throw new RpcMessageError(`unknown store method ${method}`);
  const schemas = STORE_ARGS[method as Method] as readonly Schema<unknown>[];
  if (!Array.isArray(args)) throw new RpcMessageError('store/call arguments must be a list');
  if (args.length > schemas.length)
    throw new RpcMessageError(`${method} takes at most ${schemas.length} arguments`);
  return {
    method: method as Method,
    args: schemas.map((schema, i) => schema(args[i], `${method} argument ${i + 1}`)),
    degraded: degraded === true,
  };
}

export const decodeBlockPut = record({ hash: blockHash });
/** `node/disk` reply: the file system holding a node's data_dir, in bytes. */
export const decodeDiskUse = record({ total: int(), free: int() });
export const decodeBlockHas = record({ hash: blockHash });
export const decodeBlockGet = record({ hash: blockHash, readerVerifies: opt(bool) });
// A delete may be limited to copies not written for a while (a failed upload's sweep); a day at most.
export const decodeBlockDelete = record({ hash: blockHash, unwrittenForMs: opt(int(0, 24 * 3600 * 1000)) });

const NODE_ID = str(64, /^[0-9a-f]{64}$/);
// node/forget: the node every peer is to drop (`coffre node forget`).
export const decodeNodeForget = record({ nodeId: NODE_ID });
// block/resync-status reply: how many block copies the answering node owes each node.
export const decodeResyncStatusReply = record({
  nodes: list(record({ node: NODE_ID, pending: int(0) }), 10_000),
});
