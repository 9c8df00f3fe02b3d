// Test helper: S3 clients that keep writing and reading while a test kills and cuts nodes, recording what
// they saw, and a checker that the recorded history of each key is linearizable — there is one order of the
// operations, each taking effect at an instant between its call and its answer, in which every read returns
// the last value written (Wing & Gong's search with the memo of Lowe and Porcupine; per key, since
// linearizability is local). A write answered with an error may or may not have taken effect: it counts as
// pending for ever. A read answered with an error has no effect and is left out.
import { createHash, randomBytes } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand, S3Client, type S3ServiceException } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { mustRun, type ClusterNode } from './cluster-helpers.js';

export interface Op {
  client: number;
  kind: 'write' | 'read';
  // The value written, or read (null: the key did not exist).
  value: string | null;
  invoke: number;
  // Infinity for a write whose outcome is unknown.
  complete: number;
}

/** Whether some order of `ops` (one key, starting absent) is a linearization; undefined if too costly. */
export function linearizable(ops: Op[], budget = 2_000_000): boolean | undefined {
  const sorted = [...ops].sort((a, b) => a.invoke - b.invoke);
  const n = sorted.length;
  const done = new Uint8Array(n);
  const bits = new Uint32Array(Math.ceil(n / 32));
  let known = sorted.filter((o) => o.complete !== Infinity).length;
  const seen = new Set<string>();
  let steps = 0;
  const search = (state: string | null): boolean | undefined => {
    if (known === 0) return true;
    if (++steps > budget) return undefined;
    let minComplete = Infinity;
    for (let i = 0; i < n; i++)
      if (!done[i] && sorted[i]!.complete < minComplete) minComplete = sorted[i]!.complete;
    for (let i = 0; i < n; i++) {
      const op = sorted[i]!;
      if (op.invoke > minComplete) break;
      if (done[i]) continue;
      if (op.kind === 'read' && op.value !== state) continue;
      const next = op.kind === 'write' ? op.value : state;
      done[i] = 1;
      bits[i >> 5]! |= 1 << (i & 31);
      if (op.complete !== Infinity) known--;
      const memo = `${bits.join(',')}|${next}`;
      let found: boolean | undefined = false;
      if (!seen.has(memo)) {
        seen.add(memo);
        found = search(next);
      }
      done[i] = 0;
      bits[i >> 5]! &= ~(1 << (i & 31));
      if (op.complete !== Infinity) known++;
      if (found !== false) return found;
    }
    return false;
  };
  return search(null);
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

const statusOf = (err: unknown) => (err as S3ServiceException).$metadata?.httpStatusCode;

export function client(
  endpoint: string,
  credentials: { accessKeyId: string; secretAccessKey: string },
): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials,
    maxAttempts: 1,
    // A node cut off may never answer: the call is given up, and counts as failed.
    requestHandler: new NodeHttpHandler({ connectionTimeout: 3000, requestTimeout: 15_000 }),
  });
}

/**
 * Clients writing and reading a few keys (the history) and writing objects of their own (each acknowledged
 * one must read back byte-identical), through whichever endpoints `live()` names at each call.
 */
export class Workload {
  readonly history = new Map<string, Op[]>();
  readonly acknowledged = new Map<string, string>();
  readonly failures = new Map<number, number>();
  private running = true;
  private runs: Promise<void>[] = [];
  private t0 = performance.now();
  private counter = 0;

  constructor(
    private readonly bucket: string,
    private readonly live: () => S3Client[],
    private readonly keys = ['h/a', 'h/b', 'h/c'],
  ) {
    for (const k of keys) this.history.set(k, []);
  }

  start(historyClients = 3, writers = 2): void {
    for (let c = 0; c < historyClients; c++) this.runs.push(this.historyClient(c));
    for (let w = 0; w < writers; w++) this.runs.push(this.writer());
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.runs);
  }

  private pick(): S3Client | undefined {
    const live = this.live();
    return live[Math.floor(Math.random() * live.length)];
  }

  private now(): number {
    return performance.now() - this.t0;
  }

  private async historyClient(id: number): Promise<void> {
    while (this.running) {
      const s3 = this.pick();
      const key = this.keys[Math.floor(Math.random() * this.keys.length)]!;
      const ops = this.history.get(key)!;
      if (!s3) {
        await pause(50);
        continue;
      }
      if (Math.random() < 0.5) {
        const value = `c${id}-${this.counter++}`;
        const invoke = this.now();
        try {
          await s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: value }));
          ops.push({ client: id, kind: 'write', value, invoke, complete: this.now() });
        } catch (err) {
          this.failed(err);
          ops.push({ client: id, kind: 'write', value, invoke, complete: Infinity });
        }
      } else {
        const invoke = this.now();
        try {
          const r = await s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
          const value = await r.Body!.transformToString();
          ops.push({ client: id, kind: 'read', value, invoke, complete: this.now() });
        } catch (err) {
          if (statusOf(err) === 404)
            ops.push({ client: id, kind: 'read', value: null, invoke, complete: this.now() });
          else this.failed(err);
        }
      }
      await pause(10);
    }
  }

  private async writer(): Promise<void> {
    while (this.running) {
      const s3 = this.pick();
      if (!s3) {
        await pause(50);
        continue;
      }
      // Small enough to be stored inline in its record: what this checks is the metadata.
      const data = randomBytes(64 + Math.floor(Math.random() * 1500));
      const key = `obj/${this.counter++}`;
      try {
        await s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data }));
        this.acknowledged.set(key, sha256(data));
      } catch (err) {
        this.failed(err);
      }
      await pause(5);
    }
  }

  private failed(err: unknown): void {
    const status = statusOf(err) ?? 0;
    this.failures.set(status, (this.failures.get(status) ?? 0) + 1);
  }

  /** Per key: whether its history is linearizable (and how many operations it holds). */
  check(): { key: string; ops: number; ok: boolean | undefined }[] {
    return [...this.history].map(([key, ops]) => ({ key, ops: ops.length, ok: linearizable(ops) }));
  }
}

export const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Time (ms) until a write through `s3` is acknowledged, trying every 100 ms, or undefined past `deadlineMs`. */
export async function untilWriteAcknowledged(
  s3: S3Client,
  bucket: string,
  deadlineMs: number,
): Promise<number | undefined> {
  const start = performance.now();
  while (performance.now() - start < deadlineMs) {
    try {
      await s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: `probe/${randomBytes(6).toString('hex')}`, Body: 'p' }),
      );
      return performance.now() - start;
    } catch {
      await pause(100);
    }
  }
  return undefined;
}

/**
 * What a node says of its part in the metadata (`coffre status --json`, run where the node runs, in its network
 * namespace if it has one): its role, term, log position and commit.
 */
export interface MetaStatus {
  role: string;
  term: number;
  leader?: string;
  position: { seq: number };
  committed: number;
}

export const metadataStatus = async (n: ClusterNode): Promise<MetaStatus> =>
  (JSON.parse(await mustRun(n, ['status', '--json'])) as { metadata: MetaStatus }).metadata;
