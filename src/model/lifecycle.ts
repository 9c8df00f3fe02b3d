// model/lifecycle: the worker that applies buckets' lifecycle rules — expiring current versions (a delete
// marker in a versioned bucket), removing non-current versions and lone delete markers, aborting old multipart
// uploads — and reports what it removed. It works through the MetadataStore, so it runs the same on any
// store. Rules are judged at `now`, which a caller may set (operators and tests run it "as of" a date); object
// lock is not: the store judges every removal by the real time, and a protected version is only counted.
// In front of an S3 backend, where several gateways could each run it, one at a time does (backend/lease.ts).
import type { MetadataStore, ObjectStreams } from './store.js';
import type { VersionEntry } from './model.js';
import {
  isProtected,
  s3VersionId,
  type BucketRecord,
  type LifecycleRule,
  type ObjectRecord,
} from './types.js';
import { S3Error } from '../util/s3-error.js';

/**
 * The store the worker works through: its metadata, and, where objects' tags are kept apart from their listed
 * records (a backend: ObjectStreams.objectTags), how to read them.
 */
export type LifecycleStore = MetadataStore & { readonly streams?: Pick<ObjectStreams, 'objectTags'> };

const DAY = 24 * 3600 * 1000;
const PAGE = 1000;
/** Removals listed one by one in a report; beyond, only counted. */
const MAX_LISTED = 1000;

export interface LifecycleAction {
  bucket: string;
  key: string;
  versionId?: string;
  uploadId?: string;
  action: 'expired' | 'noncurrent-removed' | 'delete-marker-removed' | 'upload-aborted';
  rule: string;
}

export interface LifecycleReport {
  startedAt: string;
  now: string;
  buckets: number;
  expired: number;
  noncurrentRemoved: number;
  deleteMarkersRemoved: number;
  uploadsAborted: number;
  // Versions a rule would have removed that object lock protects: left as they are.
  keptByObjectLock: number;
  actions: LifecycleAction[];
  truncated: boolean;
}

/**
 * When an age of `days` counted from `since` is reached: S3 adds the days to the time and rounds up to the
 * next midnight UTC.
 */
export function dueAt(since: number, days: number): number {
  return Math.ceil((since + days * DAY) / DAY) * DAY;
}

function matches(rule: LifecycleRule, record: ObjectRecord): boolean {
  const f = rule.filter;
  if (f.prefix !== undefined && !record.key.startsWith(f.prefix)) return false;
  if (record.deleteMarker)
    return f.tags === undefined && f.sizeGreaterThan === undefined && f.sizeLessThan === undefined;
  for (const [k, v] of Object.entries(f.tags ?? {})) if (record.tags?.[k] !== v) return false;
  if (f.sizeGreaterThan !== undefined && !(record.size > f.sizeGreaterThan)) return false;
  if (f.sizeLessThan !== undefined && !(record.size < f.sizeLessThan)) return false;
  return true;
}

class Run {
  readonly report: LifecycleReport;

  constructor(
    private readonly store: LifecycleStore,
    private readonly now: number,
    // Aborted when this node may no longer remove anything (a lease lost): checked before each removal.
    private readonly signal?: AbortSignal,
  ) {
    this.report = {
      startedAt: new Date().toISOString(),
      now: new Date(now).toISOString(),
      buckets: 0,
      expired: 0,
      noncurrentRemoved: 0,
      deleteMarkersRemoved: 0,
      uploadsAborted: 0,
      keptByObjectLock: 0,
      actions: [],
      truncated: false,
    };
  }

  private record(action: LifecycleAction): void {
    const counts = {
      expired: 'expired',
      'noncurrent-removed': 'noncurrentRemoved',
      'delete-marker-removed': 'deleteMarkersRemoved',
      'upload-aborted': 'uploadsAborted',
    } as const;
    this.report[counts[action.action]]++;
    if (this.report.actions.length < MAX_LISTED) this.report.actions.push(action);
    else this.report.truncated = true;
  }

  /** Removes a version for good, unless object lock protects it (checked again by the store, at real time). */
  private async removeVersion(bucket: BucketRecord, record: ObjectRecord): Promise<boolean> {
    this.signal?.throwIfAborted();
    if (isProtected(record, Date.now(), false)) {
      this.report.keptByObjectLock++;
      return false;
    }
    try {
      await this.store.deleteObject(bucket.id, record.key, s3VersionId(record));
      return true;
    } catch (err) {
      if (err instanceof S3Error && err.code === 'AccessDenied') {
        this.report.keptByObjectLock++;
        return false;
      }
      throw err;
    }
  }

  async bucket(bucket: BucketRecord): Promise<void> {
    const rules = (bucket.lifecycle ?? []).filter((r) => r.enabled);
    if (rules.length === 0) return;
    this.report.buckets++;
    let group: VersionEntry[] = [];
    let cursor: { key: string; versionId?: string } | undefined;
    for (;;) {
      const page = await this.versions(bucket, cursor);
      for (const entry of page) {
        if (group.length > 0 && group[0]!.record.key !== entry.record.key) {
          await this.key(bucket, rules, group);
          group = [];
        }
        group.push(entry);
      }
      if (page.length < PAGE) break;
      const last = page[page.length - 1]!.record;
      cursor = { key: last.key, versionId: s3VersionId(last) };
    }
    if (group.length > 0) await this.key(bucket, rules, group);
    await this.uploads(bucket, rules);
  }

  // A page of a bucket's versions. A bucket never versioned has one version per key, its current object, which
  // listObjects gives: a backend bucket versioned for another coffre bucket keeps older versions of this one's
  // objects too, which are no versions to its clients (backend/backend-store.ts).
  private async versions(
    bucket: BucketRecord,
    cursor: { key: string; versionId?: string } | undefined,
  ): Promise<VersionEntry[]> {
    if (bucket.versioning) return this.store.listVersions(bucket.id, '', cursor, PAGE);
    const objects = await this.store.listObjects(bucket.id, '', cursor?.key, PAGE);
    return objects.map((record) => ({ record, isLatest: true }));
  }

  // Where tags are kept apart from listed records, the tags of each version a rule filtering on tags could
  // apply to, read from the version as it is now: one that changed since it was listed has none.
  private async withTags(
    bucket: BucketRecord,
    rules: LifecycleRule[],
    records: ObjectRecord[],
  ): Promise<ObjectRecord[]> {
    const streams = this.store.streams;
    const tagRules = rules.filter((r) => r.filter.tags !== undefined);
    if (!streams || tagRules.length === 0) return records;
    const out: ObjectRecord[] = [];
    for (const record of records) {
      const prefixed = tagRules.some(
        (r) => r.filter.prefix === undefined || record.key.startsWith(r.filter.prefix),
      );
      if (record.deleteMarker || !prefixed) {
        out.push(record);
        continue;
      }
      const fresh = bucket.versioning
        ? await this.store.getVersion(bucket.id, record.key, s3VersionId(record))
        : await this.store.getObject(bucket.id, record.key);
      const same = fresh !== undefined && fresh.etag === record.etag;
      out.push({ ...record, tags: (same ? await this.tagsOf(streams, fresh) : undefined) ?? {} });
    }
    return out;
  }

  // A version's tags as its store keeps them apart. Tags that cannot be read (a record damaged where it is
  // kept) are none: no rule removes a version for tags it cannot see, and the run goes on. A store that is
  // down fails the run, to be retried.
  private async tagsOf(
    streams: Pick<ObjectStreams, 'objectTags'>,
    record: ObjectRecord,
  ): Promise<Record<string, string> | undefined> {
    try {
      return await streams.objectTags(record);
    } catch (err) {
      if (err instanceof S3Error && err.status === 500) return undefined;
      throw err;
    }
  }

  // One key's versions, newest first (the first is the current one).
  private async key(bucket: BucketRecord, rules: LifecycleRule[], versions: VersionEntry[]): Promise<void> {
    const records = await this.withTags(
      bucket,
      rules,
      versions.map((v) => v.record),
    );
    const current = records[0]!;
    const noncurrent = records.slice(1);
    let removedAll = true;
    // Non-current versions: each became non-current when the next newer one was written.
    for (const [i, record] of noncurrent.entries()) {
      const since = (i === 0 ? current : noncurrent[i - 1]!).lastModified;
      const rule = rules.find((r) => {
        const e = r.noncurrentExpiration;
        if (!e?.noncurrentDays || !matches(r, record)) return false;
        if (e.newerNoncurrentVersions !== undefined && i < e.newerNoncurrentVersions) return false;
        return dueAt(since, e.noncurrentDays) <= this.now;
      });
      if (rule && (await this.removeVersion(bucket, record)))
        this.record({
          bucket: bucket.name,
          key: record.key,
          versionId: s3VersionId(record),
          action: 'noncurrent-removed',
          rule: rule.id,
        });
      else removedAll = false;
    }
    if (current.deleteMarker) {
      // A delete marker left alone, with no version under it, marks nothing.
      const rule = rules.find((r) => r.expiration?.expiredObjectDeleteMarker && matches(r, current));
      if (rule && removedAll && (await this.removeVersion(bucket, current)))
        this.record({
          bucket: bucket.name,
          key: current.key,
          versionId: s3VersionId(current),
          action: 'delete-marker-removed',
          rule: rule.id,
        });
      return;
    }
    const rule = rules.find((r) => {
      const e = r.expiration;
      if (!e || !matches(r, current)) return false;
      if (e.days !== undefined) return dueAt(current.lastModified, e.days) <= this.now;
      return e.date !== undefined && e.date <= this.now;
    });
    if (!rule) return;
    // In a versioned bucket expiring leaves a delete marker (the version stays, non-current); in an
    // unversioned one the object goes, as a DELETE would.
    if (!bucket.versioning && isProtected(current, Date.now(), false)) {
      this.report.keptByObjectLock++;
      return;
    }
    this.signal?.throwIfAborted();
    const outcome = await this.store.deleteObject(bucket.id, current.key);
    this.record({
      bucket: bucket.name,
      key: current.key,
      ...(outcome.versionId !== undefined ? { versionId: outcome.versionId } : {}),
      action: 'expired',
      rule: rule.id,
    });
  }

  private async uploads(bucket: BucketRecord, rules: LifecycleRule[]): Promise<void> {
    for (const upload of await this.store.listUploads(bucket.id)) {
      const rule = rules.find(
        (r) =>
          r.abortIncompleteUploadDays !== undefined &&
          (r.filter.prefix === undefined || upload.key.startsWith(r.filter.prefix)) &&
          dueAt(upload.initiated, r.abortIncompleteUploadDays) <= this.now,
      );
      if (!rule) continue;
      this.signal?.throwIfAborted();
      try {
        await this.store.abortUpload(upload);
      } catch (err) {
        if (err instanceof S3Error && err.code === 'NoSuchUpload') continue; // completed or aborted meanwhile
        throw err;
      }
      this.record({
        bucket: bucket.name,
        key: upload.key,
        uploadId: upload.uploadId,
        action: 'upload-aborted',
        rule: rule.id,
      });
    }
  }
}

/** What a log line says of a run: the counts, not the names. */
export function lifecycleLogFields(report: LifecycleReport): Record<string, number | string> {
  return {
    now: report.now,
    buckets: report.buckets,
    expired: report.expired,
    noncurrentRemoved: report.noncurrentRemoved,
    deleteMarkersRemoved: report.deleteMarkersRemoved,
    uploadsAborted: report.uploadsAborted,
    keptByObjectLock: report.keptByObjectLock,
  };
}

/**
 * Applies every bucket's lifecycle rules as of `now` (ms); what was removed is in the report. An aborted
 * `signal` stops the run before its next removal (with the signal's reason).
 */
export async function applyLifecycle(
  store: LifecycleStore,
  now = Date.now(),
  signal?: AbortSignal,
): Promise<LifecycleReport> {
  const run = new Run(store, now, signal);
  for (const bucket of await store.listBuckets()) await run.bucket(bucket);
  return run.report;
}

/** Runs a pass only while this node holds the right to (a lease); undefined when it does not now. */
export type LifecycleGuard = (
  pass: (signal: AbortSignal) => Promise<LifecycleReport>,
) => Promise<LifecycleReport | undefined>;

/**
 * Runs applyLifecycle every `intervalMs` (daily by default) while `shouldRun` says this node is the one to
 * (the metadata node of a cluster), and, given a `guard`, only when the guard lets it (gateways of one
 * backend: backend/lease.ts); passes never overlap. Returns a function that stops it.
 */
export function startLifecycleWorker(
  store: LifecycleStore,
  opts: {
    intervalMs: number;
    shouldRun: () => boolean;
    guard?: LifecycleGuard;
    onReport: (report: LifecycleReport) => void;
    onError: (err: Error) => void;
  },
): () => void {
  let running = false;
  const guard: LifecycleGuard = opts.guard ?? ((pass) => pass(new AbortController().signal));
  const timer = setInterval(() => {
    if (running || !opts.shouldRun()) return;
    running = true;
    guard((signal) => applyLifecycle(store, Date.now(), signal))
      .then((report) => {
        if (report) opts.onReport(report);
      }, opts.onError)
      .finally(() => (running = false));
  }, opts.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
