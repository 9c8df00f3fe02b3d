// backend/rewrap: `coffre sse-s3 rewrap` on gateways in front of a backend — every SSE-S3 object's own key
// re-wrapped under the current master key, so that older master keys can then be dropped from the keyring
// (`coffre sse-s3 drop-key`) and objects stay readable. Only the object's record changes: the backend copies
// the object onto itself with the new metadata (CopyObject, or a multipart copy part by part with the same
// boundaries, so that its part table, size and ETag stay as they were); no object data passes through the
// gateway.
//
// One pass at a time across the gateways: its progress (counts, and the last object done: where a pass cut
// short resumes) is a sealed record in the backend (".coffre/sse-s3/rewrap"), written by the gateway running
// it at least every PROGRESS_MS. A pass whose record has not moved for LEASE_MS (its gateway stopped or was
// killed) is resumed by the next `rewrap`, on any gateway, from where it stopped.
//
// Before walking, a pass waits until every gateway announced in the backend (backend/keyring.ts) writes with
// the pass's target key, so that no gateway still writes objects under an older key behind the pass.
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BackendConfig } from '../config/config.js';
import type { SseS3Keys } from '../sse/sse-s3-keys.js';
import { UserError, errorMessage } from '../util/errors.js';
import { backendStatus, fromBackend, writeIfMatch } from './client.js';
import type { KeyringHandOff } from './keyring.js';
import {
  decodePartTable,
  decodeUpload,
  encryptionOfMetadata,
  isMultipart,
  partTableKey,
  stateKey,
  versionIdOf,
  withEncryption,
} from './object-format.js';
import { isConflict, type SharedRecords } from './records.js';

/** How often the running pass writes its progress (and so renews its hold on the pass). */
const PROGRESS_MS = 1_000;
/** A running pass whose progress is older than this is taken as stopped, and may be resumed elsewhere. */
export const LEASE_MS = 15_000;
const RECORD_VERSION = 1;
/** Attempts at one object that changed between its HEAD and its copy. */
const OBJECT_ATTEMPTS = 3;

export interface RewrapProgress {
  v: number;
  /** The master key every object is moved to. */
  target: string;
  state: 'waiting' | 'running' | 'done' | 'failed';
  /** The gateway running it, and when it last wrote this (ms since the epoch). */
  owner: string;
  heartbeat: number;
  startedAt: number;
  finishedAt?: number;
  /** The last backend key done: a resumed pass starts after it. */
  cursor: string;
  /**
   * Objects looked at; re-wrapped; already under the target; not SSE-S3; and of the re-wrapped, those written
   * before keys were wrapped (given their old master key as wrapped object key).
   */
  seen: number;
  rewrapped: number;
  current: number;
  other: number;
  legacy: number;
  failed: number;
  /** Multipart uploads in progress with a key other than the target (complete or abort them). */
  uploads?: number;
  /** Gateways the pass waits for (node ids, short), and why a pass failed. */
  waitingFor?: string[];
  error?: string;
}

function isProgress(value: unknown): value is RewrapProgress {
  if (value === null || typeof value !== 'object') return false;
  const p = value as Record<string, unknown>;
  return (
    p.v === RECORD_VERSION &&
    typeof p.target === 'string' &&
    typeof p.cursor === 'string' &&
    typeof p.heartbeat === 'number' &&
    ['waiting', 'running', 'done', 'failed'].includes(p.state as string)
  );
}

export class KeyRewrap {
  private running?: Promise<void>;
  private stopped = false;
  // Test hook: a pause after each object, so that a test can kill a gateway mid-pass.
  private readonly pauseMs = Number(process.env.COFFRE_REWRAP_PAUSE_MS ?? 0);
  // Test hook: before its first copy, the pass writes "ready" (the object's backend key) in this directory and
  // waits for "go", so that a test overwrites the object between the pass's read and its copy.
  private readonly holdDir = process.env.COFFRE_REWRAP_HOLD_DIR;

  constructor(
    private readonly client: S3Client,
    private readonly config: BackendConfig,
    private readonly records: SharedRecords,
    private readonly keys: SseS3Keys,
    private readonly handOff: KeyringHandOff,
    private readonly nodeId: string,
    private readonly log: Pick<Logger, 'info' | 'warn'>,
  ) {}

  /** The pass in the backend, if one ever ran. */
  async progress(): Promise<RewrapProgress | undefined> {
    const { value } = await this.records.readState<unknown>('sse-s3', 'rewrap');
    return isProgress(value) ? value : undefined;
  }

  /**
   * Starts a pass towards the current master key, or resumes the one a stopped gateway left; refused while
   * a pass runs on another gateway. Returns at once with the progress; the pass goes on in the background.
   */
  async start(): Promise<RewrapProgress> {
    if (this.running) return (await this.progress())!;
    const keyring = this.keys.unlockedKeyring();
    await this.keys.refresh();
    if (this.keys.status().stale)
      throw new UserError(
        'this gateway lacks the newest SSE-S3 keys (another gateway rotated): unlock it, or run rewrap on that gateway',
      );
    const target = keyring.currentKeyId;
    const { value, etag } = await this.records.readState<unknown>('sse-s3', 'rewrap');
    const old = isProgress(value) ? value : undefined;
    const now = Date.now();
    const active = old && (old.state === 'running' || old.state === 'waiting');
    if (active && old.owner !== this.nodeId && now - old.heartbeat < LEASE_MS)
      throw new UserError(
        `a rewrap pass runs on gateway ${old.owner.slice(0, 16)}… (see \`coffre sse-s3 rewrap --status\`)`,
      );
    const resume = active && old.target === target;
    const progress: RewrapProgress = resume
      ? { ...old, owner: this.nodeId, heartbeat: now }
      : {
          v: RECORD_VERSION,
          target,
          state: 'waiting',
          owner: this.nodeId,
          heartbeat: now,
          startedAt: now,
          cursor: '',
          seen: 0,
          rewrapped: 0,
          current: 0,
          other: 0,
          legacy: 0,
          failed: 0,
        };
    let version: string | undefined;
    try {
      version = await this.records.writeState('sse-s3', 'rewrap', progress, etag ?? null);
    } catch (err) {
      if (isConflict(err)) throw new UserError('another gateway started a rewrap pass just now');
      throw err;
    }
    if (resume) this.log.info({ cursor: progress.cursor }, 'SSE-S3 rewrap resumed');
    this.running = this.run(progress, version)
      .catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'SSE-S3 rewrap pass stopped'))
      .finally(() => {
        this.running = undefined;
      });
    return progress;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  /**
   * Why master key `id` may not be dropped yet, or undefined when it may: a finished pass moved every object
   * to a key newer than it, and found nothing it could not move.
   */
  async dropRefusal(id: string): Promise<string | undefined> {
    const p = await this.progress();
    const keyring = this.keys.unlockedKeyring();
    if (!p || p.state !== 'done')
      return `run \`coffre sse-s3 rewrap\` to the end first: objects may still need master key ${id}`;
    if (p.target === id || !keyring.isOlder(id, p.target))
      return `the last rewrap pass moved objects to key ${p.target}, not past ${id}: rotate, rewrap, then drop`;
    if (p.failed > 0) return `${p.failed} objects failed to re-wrap: run \`coffre sse-s3 rewrap\` again`;
    if ((p.uploads ?? 0) > 0)
      return `${p.uploads} multipart uploads in progress use an older key: complete or abort them, then rewrap again`;
    return undefined;
  }

  private async run(progress: RewrapProgress, version: string | undefined): Promise<void> {
    let last = Date.now();
    const save = async (force = false) => {
      if (!force && Date.now() - last < PROGRESS_MS) return;
      progress.heartbeat = Date.now();
      // Conditional: a gateway that took the pass over (this one stalled past the lease) stops this one.
      version = await this.records.writeState('sse-s3', 'rewrap', progress, version);
      last = Date.now();
    };
    try {
      await this.waitForGateways(progress, save);
      progress.state = 'running';
      progress.waitingFor = undefined;
      await save(true);
      const start = this.config.prefix + '.coffre0'; // just after every ".coffre/" state object
      for await (const key of this.objectKeys(progress.cursor || start)) {
        if (this.stopped) return;
        await this.rewrapOne(key, progress);
        progress.cursor = key;
        await save();
        if (this.pauseMs > 0) await new Promise((r) => setTimeout(r, this.pauseMs));
      }
      progress.uploads = await this.pendingUploads(progress.target);
      progress.state = 'done';
      progress.finishedAt = Date.now();
      await save(true);
      this.log.info(
        {
          target: progress.target,
          rewrapped: progress.rewrapped,
          legacy: progress.legacy,
          failed: progress.failed,
        },
        'SSE-S3 rewrap pass done',
      );
    } catch (err) {
      if (isConflict(err)) return; // another gateway holds the pass now
      progress.state = 'failed';
      progress.error = errorMessage(err);
      await save(true).catch(() => undefined);
      throw err;
    }
  }

  // Every gateway announced in the backend must write with the target key: one still holding an older
  // keyring would write objects under an older key behind the pass.
  private async waitForGateways(progress: RewrapProgress, save: (force?: boolean) => Promise<void>) {
    for (;;) {
      if (this.stopped) throw new Error('the gateway is stopping');
      const behind = (await this.handOff.liveGateways())
        .filter((g) => g.current !== undefined && g.current !== progress.target)
        .map((g) => g.nodeId.slice(0, 16));
      if (behind.length === 0) return;
      progress.waitingFor = behind;
      await save(true);
      await new Promise((r) => setTimeout(r, PROGRESS_MS));
    }
  }

  private async *objectKeys(startAfter: string): AsyncGenerator<string> {
    let token: string | undefined;
    do {
      const page = await this.client
        .send(
          new ListObjectsV2Command({
            Bucket: this.config.bucket,
            Prefix: this.config.prefix || undefined,
            ...(token ? { ContinuationToken: token } : { StartAfter: startAfter }),
          }),
        )
        .catch((err: unknown) => {
          throw fromBackend(err);
        });
      for (const item of page.Contents ?? [])
        if (item.Key && !item.Key.startsWith(stateKey(this.config.prefix))) yield item.Key;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  private async rewrapOne(key: string, progress: RewrapProgress): Promise<void> {
    progress.seen++;
    for (let attempt = 1; ; attempt++) {
      let head;
      try {
        head = await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: key }));
      } catch (err) {
        if (backendStatus(err) === 404) return; // deleted since the listing
        throw fromBackend(err);
      }
      let stored;
      try {
        stored = encryptionOfMetadata(head.Metadata);
      } catch {
        stored = undefined;
      }
      if (!stored || stored.kind !== 'sse-s3' || !head.Metadata || !head.ETag) {
        progress.other++;
        return;
      }
      let next;
      try {
        next = this.keys.unlockedKeyring().rewrapped(stored);
      } catch (err) {
        progress.failed++;
        this.log.warn({ key, err: errorMessage(err) }, 'SSE-S3 rewrap: an object failed');
        return;
      }
      if (!next) {
        progress.current++;
        return;
      }
      // Written before keys were wrapped: it gets its master key as a wrapped object key (sse/keyring.ts).
      const legacy = stored.wrappedKey === undefined;
      try {
        const metadata = withEncryption(head.Metadata, next);
        if (this.holdDir && attempt === 1) await holdFor(this.holdDir, key);
        if (isMultipart(head.Metadata)) await this.copyParts(key, head.ETag, head.Metadata, metadata);
        else
          await this.client.send(
            new CopyObjectCommand({
              Bucket: this.config.bucket,
              Key: key,
              CopySource: copySource(this.config.bucket, key),
              CopySourceIfMatch: head.ETag,
              // And on the destination (the same object) as the copy commits, where the backend checks it:
              // a client's PUT after the HEAD is never undone by the copy.
              IfMatch: writeIfMatch(head.ETag),
              MetadataDirective: 'REPLACE',
              Metadata: metadata,
              ContentType: 'application/octet-stream',
            }),
          );
        progress.rewrapped++;
        if (legacy) progress.legacy++;
        return;
      } catch (err) {
        // Replaced between the HEAD and the copy: look again (the new object may be under the target).
        if (backendStatus(err) === 412 && attempt < OBJECT_ATTEMPTS) continue;
        progress.failed++;
        this.log.warn({ key, err: errorMessage(err) }, 'SSE-S3 rewrap: an object failed');
        return;
      }
    }
  }

  // A multipart object is copied part by part, each with the byte range of its part: the new object has the
  // same parts, so its part table (found by its version id), sizes and ETag stay valid.
  private async copyParts(
    key: string,
    etag: string,
    oldMetadata: Record<string, string>,
    metadata: Record<string, string>,
  ): Promise<void> {
    const versionId = versionIdOf(oldMetadata);
    if (!versionId) throw new Error('a multipart object without a version id');
    const got = await this.client.send(
      new GetObjectCommand({ Bucket: this.config.bucket, Key: partTableKey(this.config.prefix, versionId) }),
    );
    const table = decodePartTable(await got.Body!.transformToString('utf8'), key);
    const created = await this.client.send(
      new CreateMultipartUploadCommand({
        Bucket: this.config.bucket,
        Key: key,
        Metadata: metadata,
        ContentType: 'application/octet-stream',
      }),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new Error('the backend gave no upload id');
    const parts: { PartNumber: number; ETag: string }[] = [];
    let offset = 0;
    for (const [i, part] of table.entries()) {
      const copied = await this.client.send(
        new UploadPartCopyCommand({
          Bucket: this.config.bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: i + 1,
          CopySource: copySource(this.config.bucket, key),
          CopySourceIfMatch: etag,
          CopySourceRange: `bytes=${offset}-${offset + part.storedSize - 1}`,
        }),
      );
      offset += part.storedSize;
      const partEtag = copied.CopyPartResult?.ETag;
      if (!partEtag) throw new Error('the backend gave no ETag for a copied part');
      parts.push({ PartNumber: i + 1, ETag: partEtag });
    }
    await this.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.config.bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts },
        // Only onto the object the parts were copied from: a PUT since is kept, the pass looks again.
        IfMatch: writeIfMatch(etag),
      }),
    );
  }

  // Multipart uploads in progress whose key is not the target: the objects they will make need that key.
  private async pendingUploads(target: string): Promise<number> {
    let count = 0;
    let token: string | undefined;
    const base = stateKey(this.config.prefix, 'uploads', '');
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.config.bucket, Prefix: base, ContinuationToken: token }),
      );
      for (const item of page.Contents ?? []) {
        if (!item.Key) continue;
        try {
          const got = await this.client.send(
            new GetObjectCommand({ Bucket: this.config.bucket, Key: item.Key }),
          );
          const upload = decodeUpload(await got.Body!.transformToString('utf8'));
          const enc = upload.encryption as { kind?: unknown; keyId?: unknown };
          if (enc.kind === 'sse-s3' && enc.keyId !== target) count++;
        } catch (err) {
          if (backendStatus(err) !== 404) count++; // unreadable: counted, so that nothing is dropped blind
        }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return count;
  }
}

// x-amz-copy-source: bucket/key, the key URL-encoded but for its slashes.
function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

async function holdFor(dir: string, key: string): Promise<void> {
  await writeFile(join(dir, 'ready.tmp'), key);
  await rename(join(dir, 'ready.tmp'), join(dir, 'ready')); // whole, or not there

  const go = join(dir, 'go');
  const end = Date.now() + 120_000;
  while (Date.now() < end) {
    try {
      await unlink(go);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
