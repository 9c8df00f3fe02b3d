// backend/lease: one gateway at a time does a job that several gateways of one backend could each start (the
// lifecycle pass; written so that any such job, a rewrap pass too, can use it). The lease is a sealed state
// record in the backend (".coffre/leases/<name>", records.ts) naming its holder and until when it holds it,
// changed only by conditional writes: taken with If-None-Match: * when there is none, or with If-Match on the
// ETag read when it is free, expired, or unreadable; renewed the same way while the job runs; released at the
// end by a conditional write that marks it free (never by a DELETE, which no backend makes conditional: it
// could remove a lease another gateway took since). A gateway whose renewal is refused has lost the lease:
// its job is aborted before its next step.
//
// Exclusivity rests on the backend refusing a conditional PUT whose condition fails, as AWS S3, MinIO, Ceph
// RGW and coffre do (If-None-Match: * and If-Match on a PUT). A record nobody can read (bytes written there by
// hand, another rpc_secret) holds nothing: it is taken over once this gateway has seen it unchanged for a
// whole TTL, so that it stops no job for good and a holder renewing meanwhile is not cut short.
import { randomBytes } from 'node:crypto';
import { isConflict, type SharedRecords } from './records.js';

/** The format of a lease record. DO NOT CHANGE without reading the older one too. */
const LEASE_FORMAT = 1;
/** A holder renews this many times per TTL, so that one slow or failed renewal does not lose the lease. */
const RENEWALS_PER_TTL = 3;
/** The longest TTL a lease record may name: a longer one is no record a gateway wrote. */
const MAX_TTL_MS = 24 * 3600_000;

export interface LeaseRecord {
  v: typeof LEASE_FORMAT;
  /** The gateway holding it ('' when free), and the token of that process's BackendLease. */
  holder: string;
  token: string;
  /** Until when, on the holder's clock, it holds the lease (ms since the epoch); renewed every TTL / 3. */
  expiresAt: number;
  ttlMs: number;
  /** When the last holder released it (ms since the epoch): how recently the job was last done. */
  finishedAt?: number;
}

function isLeaseRecord(v: unknown): v is LeaseRecord {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const r = v as Partial<Record<keyof LeaseRecord, unknown>>;
  return (
    r.v === LEASE_FORMAT &&
    typeof r.holder === 'string' &&
    r.holder.length <= 256 &&
    typeof r.token === 'string' &&
    r.token.length <= 64 &&
    Number.isSafeInteger(r.expiresAt) &&
    Number.isSafeInteger(r.ttlMs) &&
    (r.ttlMs as number) > 0 &&
    (r.ttlMs as number) <= MAX_TTL_MS &&
    (r.finishedAt === undefined || Number.isSafeInteger(r.finishedAt))
  );
}

/** Why a job did not run: another holds the lease (`holder`), or it was done `finishedAt` recently enough. */
export type LeaseRefusal = { ran: false; holder?: string; finishedAt?: number };
export type LeaseOutcome<T> = { ran: true; value: T } | LeaseRefusal;

// The lease taken, with the ETag of the record written; or why not.
type Taken = { ran: true; etag: string } | LeaseRefusal;

/** A job's lease lost while it ran: what the job's signal is aborted with. */
export class LeaseLost extends Error {
  constructor(name: string) {
    super(`the ${name} lease was lost (taken over by another gateway, or not renewed in time)`);
  }
}

export class BackendLease {
  /** This process's token: a gateway restarted holds nothing its former process held. */
  private readonly token = randomBytes(8).toString('hex');
  private holding = false;
  private taking: Promise<void> = Promise.resolve();
  // A record held by another (or unreadable) as first seen here: taken over once unchanged for a whole TTL.
  private seen?: { etag: string; at: number };

  constructor(
    private readonly records: SharedRecords,
    private readonly opts: {
      /** The job's name: the record is ".coffre/leases/<name>". */
      name: string;
      /** This gateway's id (its node id), shown to operators as the holder. */
      holder: string;
      ttlMs: number;
    },
  ) {
    if (!/^[a-z0-9-]{1,64}$/.test(opts.name)) throw new Error(`lease name ${opts.name} is not a-z, 0-9, -`);
    if (!(opts.ttlMs > 0 && opts.ttlMs <= MAX_TTL_MS))
      throw new Error(`lease TTL ${opts.ttlMs} out of range`);
  }

  /**
   * Runs `job` while this gateway holds the lease, and releases it after; a refusal when another holds it,
   * or when the job was last finished less than `unlessFinishedWithinMs` ago. `job`'s signal is aborted
   * (with LeaseLost) when the lease is lost; the job should check it before each step it must not share.
   */
  async run<T>(
    job: (signal: AbortSignal) => Promise<T>,
    opts: { unlessFinishedWithinMs?: number } = {},
  ): Promise<LeaseOutcome<T>> {
    // Within one process the lease is held once (a timer's pass and an operator's run, say), and taken by one
    // attempt at a time: a second waits for the first's answer rather than being refused for it.
    const before = this.taking;
    const attempt = (async (): Promise<Taken> => {
      await before;
      if (this.holding) return { ran: false, holder: this.opts.holder };
      const taken = await this.take(opts.unlessFinishedWithinMs);
      if (taken.ran) this.holding = true;
      return taken;
    })();
    this.taking = attempt.then(
      () => undefined,
      () => undefined,
    );
    const taken = await attempt;
    if (!taken.ran) return taken;
    try {
      return { ran: true, value: await this.hold(taken.etag, job) };
    } finally {
      this.holding = false;
    }
  }

  /** As run, for a timer: the job's result, or undefined when it did not run (another holds the lease). */
  async runIfFree<T>(
    job: (signal: AbortSignal) => Promise<T>,
    opts: { unlessFinishedWithinMs?: number } = {},
  ): Promise<T | undefined> {
    const outcome = await this.run(job, opts);
    return outcome.ran ? outcome.value : undefined;
  }

  private record(expiresAt: number, finishedAt?: number): LeaseRecord {
    return {
      v: LEASE_FORMAT,
      holder: expiresAt > 0 ? this.opts.holder : '',
      token: expiresAt > 0 ? this.token : '',
      expiresAt,
      ttlMs: this.opts.ttlMs,
      ...(finishedAt !== undefined ? { finishedAt } : {}),
    };
  }

  private async take(unlessFinishedWithinMs: number | undefined): Promise<Taken> {
    const { value, etag, unreadable } = await this.records.readStateOrEtag(
      'leases',
      this.opts.name,
      isLeaseRecord,
    );
    const now = Date.now();
    if (value || unreadable) {
      const free = value !== undefined && (value.holder === '' || value.token === this.token);
      if (free && unlessFinishedWithinMs !== undefined && value.finishedAt !== undefined)
        if (now - value.finishedAt < unlessFinishedWithinMs)
          return { ran: false, finishedAt: value.finishedAt };
      // A holder's own clock may run ahead of this one: its expiry counts once a whole TTL more has passed
      // here, so clocks that disagree by less than a TTL never let two gateways hold it.
      const expired = value !== undefined && value.expiresAt + value.ttlMs <= now;
      // Unchanged for the TTL its holder promised (it renews three times in one), or this gateway's own TTL
      // for a record nobody can read: nobody holds it.
      const watched = this.unchangedFor(etag, value?.ttlMs ?? this.opts.ttlMs, now);
      if (!free && !expired && !watched) return { ran: false, ...(value ? { holder: value.holder } : {}) };
    }
    try {
      const written = await this.records.writeState(
        'leases',
        this.opts.name,
        this.record(now + this.opts.ttlMs),
        value || unreadable ? (etag ?? null) : null,
      );
      this.seen = undefined;
      // Without the ETag of what it wrote, a holder could renew only unconditionally: it holds nothing.
      if (!written) throw new Error(`the backend gave no ETag for the ${this.opts.name} lease`);
      return { ran: true, etag: written };
    } catch (err) {
      // Another gateway took it (or changed it) between the read and the write.
      if (isConflict(err)) return { ran: false };
      throw err;
    }
  }

  // Whether a record (by its ETag) has been seen here unchanged for `ms`; notes it when first seen.
  private unchangedFor(etag: string | undefined, ms: number, now: number): boolean {
    if (etag === undefined) return false;
    if (this.seen?.etag !== etag) {
      this.seen = { etag, at: now };
      return false;
    }
    return now - this.seen.at >= ms;
  }

  // Runs the job, renewing the lease every TTL / RENEWALS_PER_TTL, then releases it.
  private async hold<T>(etag: string, job: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const lost = new AbortController();
    let current = etag;
    let heldUntil = Date.now() + this.opts.ttlMs;
    // Renewals and the release are written one after the other, each conditional on the last one's ETag.
    let writing: Promise<void> = Promise.resolve();
    const renew = () => {
      writing = writing.then(async () => {
        if (lost.signal.aborted) return;
        const until = Date.now() + this.opts.ttlMs;
        try {
          const written = await this.records.writeState(
            'leases',
            this.opts.name,
            this.record(until),
            current,
          );
          if (!written) throw new Error('no ETag');
          current = written;
          heldUntil = until;
        } catch (err) {
          // Refused: another gateway holds it now. Failed: held only until the last renewal's expiry.
          if (isConflict(err) || Date.now() + this.opts.ttlMs / RENEWALS_PER_TTL >= heldUntil)
            lost.abort(new LeaseLost(this.opts.name));
        }
      });
    };
    const timer = setInterval(renew, this.opts.ttlMs / RENEWALS_PER_TTL);
    timer.unref();
    try {
      return await job(lost.signal);
    } finally {
      clearInterval(timer);
      await writing;
      if (!lost.signal.aborted)
        // A release that fails leaves the lease to expire.
        await this.records
          .writeState('leases', this.opts.name, this.record(0, Date.now()), current)
          .catch(() => undefined);
    }
  }
}
