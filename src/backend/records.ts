// backend/records: access keys and buckets (with their permissions and settings) kept in the backend itself,
// sealed, so that every gateway in front of the same backend serves the same ones: a key created through one
// gateway works on the others within RECORD_TTL_MS, and a deleted one stops as soon.
//
// Each record is one small backend object under `prefix` + ".coffre/keys/<id>" or ".coffre/buckets/<name>",
// sealed with AES-256-GCM (crypto sealSmall) under a key derived from the cluster's rpc_secret, with the
// object's name as associated data: the backend's operator reads neither secrets nor names of holders, and
// cannot move one record to another's name. Gateways sharing a backend therefore share an rpc_secret.
// Writes that change a record are conditional on its backend ETag (If-Match, If-None-Match: *), so two
// gateways changing one bucket at once do not lose either change, where the backend honours conditions.
import { createHmac, randomBytes } from 'node:crypto';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { openSmall, sealSmall } from '../crypto/aead-stream.js';
import { bucketTakenError } from '../model/model.js';
import { RECORD_VERSION, type AccessKeyRecord, type BucketRecord } from '../model/types.js';
import { S3Error, S3Errors } from '../util/s3-error.js';
import { backendErrorCode, backendStatus, fromBackend, writeIfMatch } from './client.js';
import { stateKey } from './object-format.js';

/** How long a gateway believes what it read of a record. */
export const RECORD_TTL_MS = 2_000;
/** Label of the records' sealing key, derived from the rpc_secret. DO NOT CHANGE: stored records depend on it. */
const RECORDS_KEY_LABEL = 'coffre/backend-records/v1';
/** A conditional change is tried again this many times when another gateway changed the record first. */
const UPDATE_ATTEMPTS = 8;

type Kind = 'keys' | 'buckets' | 'tags' | StateKind;
/** Other gateways' shared state kept sealed the same way (backend/keyring.ts, rewrap.ts, lease.ts). */
export type StateKind = 'sse-s3' | 'gateways' | 'leases';
/** Bytes of a state record readStateOrEtag reads at most: a larger one is no record a gateway wrote. */
const MAX_STATE_BYTES = 64 * 1024;

interface Cached<T> {
  value: T | undefined;
  etag?: string;
  at: number;
}

export class SharedRecords {
  private readonly sealKey: Buffer;
  private readonly cache = new Map<string, Cached<unknown>>();

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly prefix: string,
    networkKey: Buffer,
  ) {
    this.sealKey = createHmac('sha256', networkKey)
      .update(RECORDS_KEY_LABEL, 'ascii')
      .update(Buffer.of(0))
      .digest();
  }

  dispose(): void {
    this.sealKey.fill(0);
  }

  private name(kind: Kind, id: string): string {
    return stateKey(this.prefix, kind, id);
  }

  private async read<T>(
    kind: Kind,
    id: string,
    fresh = false,
  ): Promise<{ value: T | undefined; etag?: string }> {
    const name = this.name(kind, id);
    const cached = this.cache.get(name) as Cached<T> | undefined;
    if (!fresh && cached && Date.now() - cached.at < RECORD_TTL_MS) return cached;
    let entry: Cached<T>;
    try {
      const got = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: name }));
      const sealed = Buffer.from(await got.Body!.transformToByteArray());
      entry = { value: this.open<T>(name, sealed), etag: got.ETag, at: Date.now() };
    } catch (err) {
      if (backendStatus(err) !== 404) throw fromBackend(err);
      entry = { value: undefined, at: Date.now() };
    }
    this.cache.set(name, entry);
    return entry;
  }

  private open<T>(name: string, sealed: Buffer): T {
    let plain: Buffer;
    try {
      plain = openSmall(this.sealKey, sealed, Buffer.from(name, 'utf8'));
    } catch {
      throw S3Errors.internal(
        `The record ${name} in the backend does not open with this gateway's rpc_secret: gateways in front of one backend need the same rpc_secret.`,
      );
    }
    try {
      return JSON.parse(plain.toString('utf8')) as T;
    } finally {
      plain.fill(0);
    }
  }

  /** Writes a record; `expect` is the backend ETag it must still have, or null for a record that must not exist. */
  private async write(
    kind: Kind,
    id: string,
    value: unknown,
    expect: string | null | undefined,
  ): Promise<string | undefined> {
    const name = this.name(kind, id);
    const plain = Buffer.from(JSON.stringify(value), 'utf8');
    const body = sealSmall(this.sealKey, plain, Buffer.from(name, 'utf8'));
    plain.fill(0);
    try {
      const put = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: name,
          Body: body,
          ContentType: 'application/octet-stream',
          ...(expect === null ? { IfNoneMatch: '*' } : expect ? { IfMatch: writeIfMatch(expect) } : {}),
        }),
      );
      this.cache.set(name, { value, etag: put.ETag, at: Date.now() });
      return put.ETag;
    } catch (err) {
      this.cache.delete(name);
      if (backendStatus(err) === 412 || backendErrorCode(err) === 'PreconditionFailed') throw new Conflict();
      throw fromBackend(err);
    }
  }

  private async remove(kind: Kind, id: string): Promise<void> {
    const name = this.name(kind, id);
    this.cache.delete(name);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: name }));
    } catch (err) {
      throw fromBackend(err);
    }
  }

  private async all<T>(kind: Kind): Promise<T[]> {
    const base = this.name(kind, '');
    const ids: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client
        .send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, ContinuationToken: token }))
        .catch((err: unknown) => {
          throw fromBackend(err);
        });
      for (const item of page.Contents ?? []) if (item.Key) ids.push(item.Key.slice(base.length));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const values = await Promise.all(ids.map(async (id) => (await this.read<T>(kind, id)).value));
    return values.filter((v): v is Awaited<T> => v !== undefined) as T[];
  }

  // ---- object tags, by the version id of the object they belong to (an overwritten object's are not its
  // successor's): sealed like the other records, for tags are the user's words about their objects.

  async objectTags(versionId: string): Promise<Record<string, string> | undefined> {
    const { value } = await this.read<unknown>('tags', versionId);
    if (value === undefined) return undefined;
    const ok =
      value !== null &&
      typeof value === 'object' &&
      !Array.isArray(value) &&
      Object.values(value).every((v) => typeof v === 'string');
    if (!ok) throw S3Errors.internal(`The tags record of version ${versionId} in the backend is malformed.`);
    return value as Record<string, string>;
  }

  async setObjectTags(versionId: string, tags: Record<string, string> | undefined): Promise<void> {
    if (tags && Object.keys(tags).length > 0) await this.write('tags', versionId, tags, undefined);
    else await this.remove('tags', versionId);
  }

  // ---- other shared state, sealed as records are (read fresh: its users keep their own copies)

  /** A state record and its backend ETag (for a conditional writeState), or value undefined. */
  readState<T>(kind: StateKind, id: string): Promise<{ value: T | undefined; etag?: string }> {
    return this.read<T>(kind, id, true);
  }

  /**
   * A state record as readState reads it, except that one which does not open, is not JSON, is larger than
   * any gateway writes or is not what `valid` accepts comes back as `unreadable` with its ETag instead of
   * failing: for records a gateway must be able to take over whatever was written there (lease.ts).
   */
  async readStateOrEtag<T>(
    kind: StateKind,
    id: string,
    valid: (value: unknown) => value is T,
  ): Promise<{ value?: T; etag?: string; unreadable?: true }> {
    const name = this.name(kind, id);
    this.cache.delete(name);
    let got;
    try {
      got = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: name }));
    } catch (err) {
      if (backendStatus(err) === 404) return {};
      throw fromBackend(err);
    }
    const body = got.Body as { transformToByteArray(): Promise<Uint8Array>; destroy?: () => void };
    if (got.ContentLength === undefined || got.ContentLength > MAX_STATE_BYTES) {
      body.destroy?.();
      return { etag: got.ETag, unreadable: true };
    }
    const sealed = Buffer.from(
      await body.transformToByteArray().catch((err: unknown) => {
        throw fromBackend(err);
      }),
    );
    let value: unknown;
    try {
      value = this.open<unknown>(name, sealed);
    } catch {
      return { etag: got.ETag, unreadable: true };
    }
    return valid(value) ? { value, etag: got.ETag } : { etag: got.ETag, unreadable: true };
  }

  /**
   * Writes a state record if its ETag is still `expect` (null: it must not exist; undefined: whatever it is);
   * a record changed meanwhile throws a conflict (isConflict). Returns the new ETag.
   */
  writeState(
    kind: StateKind,
    id: string,
    value: unknown,
    expect?: string | null,
  ): Promise<string | undefined> {
    return this.write(kind, id, value, expect);
  }

  /** Every record of a state kind (unreadable ones are refused as records are). */
  async listState<T>(kind: StateKind): Promise<T[]> {
    for (const name of [...this.cache.keys()])
      if (name.startsWith(this.name(kind, ''))) this.cache.delete(name);
    return this.all<T>(kind);
  }

  removeState(kind: StateKind, id: string): Promise<void> {
    return this.remove(kind, id);
  }

  // ---- access keys

  async createKey(name: string, allowCreateBucket: boolean): Promise<AccessKeyRecord> {
    const record: AccessKeyRecord = {
      v: RECORD_VERSION,
      id: 'GK' + randomBytes(12).toString('hex'),
      name,
      secret: randomBytes(32).toString('hex'),
      createdAt: Date.now(),
      allowCreateBucket,
    };
    await this.write('keys', record.id, record, null);
    return record;
  }

  async getKey(id: string): Promise<AccessKeyRecord | undefined> {
    // Ids come from requests: only a well-formed one names a record.
    if (!/^GK[0-9a-f]{24}$/.test(id)) return undefined;
    return (await this.read<AccessKeyRecord>('keys', id)).value;
  }

  async listKeys(): Promise<AccessKeyRecord[]> {
    return (await this.all<AccessKeyRecord>('keys')).sort((a, b) => a.createdAt - b.createdAt);
  }

  async findKey(idOrName: string): Promise<AccessKeyRecord | undefined> {
    return (await this.getKey(idOrName)) ?? (await this.listKeys()).find((k) => k.name === idOrName);
  }

  async setKeyCreateBucket(id: string, allowCreateBucket: boolean): Promise<void> {
    await this.update<AccessKeyRecord>(
      'keys',
      id,
      (k) => ({ ...k, allowCreateBucket }),
      () => {
        throw new S3Error('NoSuchKey', 404, `no access key ${id}`);
      },
    );
  }

  async deleteKey(id: string): Promise<void> {
    await this.remove('keys', id);
    for (const b of await this.listBuckets()) {
      if (!b.permissions[id]) continue;
      await this.updateBucket(b.name, (bucket) => {
        const permissions = { ...bucket.permissions };
        delete permissions[id];
        return { ...bucket, permissions };
      });
    }
  }

  // ---- buckets, by name (bucket names are unique at any time; ids are what object keys are derived from)

  async bucketByName(name: string): Promise<BucketRecord | undefined> {
    if (!/^[a-z0-9][a-z0-9.-]{1,254}$/.test(name)) return undefined;
    return (await this.read<BucketRecord>('buckets', name)).value;
  }

  async listBuckets(): Promise<BucketRecord[]> {
    return (await this.all<BucketRecord>('buckets')).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
  }

  async createBucket(name: string, owner?: string): Promise<BucketRecord> {
    const record: BucketRecord = {
      v: RECORD_VERSION,
      id: randomBytes(16).toString('hex'),
      name,
      createdAt: Date.now(),
      permissions: owner ? { [owner]: { read: true, write: true, owner: true } } : {},
    };
    try {
      await this.write('buckets', name, record, null);
    } catch (err) {
      if (!(err instanceof Conflict)) throw err;
      const existing = (await this.read<BucketRecord>('buckets', name, true)).value;
      if (existing) throw bucketTakenError(existing, owner);
      throw new S3Error(
        'OperationAborted',
        409,
        'A conflicting operation on this bucket is in progress; please retry.',
      );
    }
    return record;
  }

  /** Changes a bucket's record, again if another gateway changed it in between. */
  async updateBucket(name: string, change: (b: BucketRecord) => BucketRecord): Promise<BucketRecord> {
    return this.update<BucketRecord>('buckets', name, change, () => {
      throw S3Errors.noSuchBucket(name);
    });
  }

  async deleteBucket(name: string): Promise<void> {
    await this.remove('buckets', name);
  }

  private async update<T>(kind: Kind, id: string, change: (v: T) => T, missing: () => never): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const { value, etag } = await this.read<T>(kind, id, true);
      if (value === undefined) missing();
      const updated = change(value);
      try {
        await this.write(kind, id, updated, etag);
        return updated;
      } catch (err) {
        if (!(err instanceof Conflict) || attempt >= UPDATE_ATTEMPTS) throw err;
      }
    }
  }
}

/** Whether a write was refused because the record changed (or appeared) since it was read. */
export function isConflict(err: unknown): boolean {
  return err instanceof Conflict;
}

/** A conditional write refused: the record changed (or appeared) since it was read. */
class Conflict extends S3Error {
  constructor() {
    super('OperationAborted', 409, 'A conflicting operation on this record is in progress; please retry.');
  }
}
