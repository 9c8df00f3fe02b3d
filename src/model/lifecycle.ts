// model/lifecycle: the worker that applies buckets' lifecycle rules — expiring current versions (a delete
// marker in a versioned bucket), removing non-current versions and lone delete markers, aborting old multipart
// uploads — and reports what it removed. It works through the MetadataStore, so it runs the same on any
// store. Rules are judged at `now`, which a caller may set (operators and tests run it "as of" a date); object
// lock is not: the store judges every removal by the real time, and a protected version is only counted.
import type { MetadataStore } from './store.js';
import type { VersionEntry } from './model.js';
import {
  isProtected,
  s3VersionId,
  type BucketRecord,
  type LifecycleRule,
  type ObjectRecord,
} from './types.js';
import { S3Error } from '../util/s3-error.js';

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
    private readonly store: MetadataStore,
    private readonly now: number,
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
      const page = await this.store.listVersions(bucket.id, '', cursor, PAGE);
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

  // One key's versions, newest first (the first is the current one).
  private async key(bucket: BucketRecord, rules: LifecycleRule[], versions: VersionEntry[]): Promise<void> {
    const current = versions[0]!.record;
    const noncurrent = versions.slice(1).map((v) => v.record);
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

/** Applies every bucket's lifecycle rules as of `now` (ms); what was removed is in the report. */
export async function applyLifecycle(store: MetadataStore, now = Date.now()): Promise<LifecycleReport> {
  const run = new Run(store, now);
  for (const bucket of await store.listBuckets()) await run.bucket(bucket);
  return run.report;
}

/**
 * Runs applyLifecycle every `intervalMs` (daily by default) while `shouldRun` says this node is the one to
 * (the metadata node of a cluster); passes never overlap. Returns a function that stops it.
 */
export function startLifecycleWorker(
  store: MetadataStore,
  opts: {
    intervalMs: number;
    shouldRun: () => boolean;
    onReport: (report: LifecycleReport) => void;
    onError: (err: Error) => void;
  },
): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running || !opts.shouldRun()) return;
    running = true;
    applyLifecycle(store)
      .then(opts.onReport, opts.onError)
      .finally(() => (running = false));
  }, opts.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
