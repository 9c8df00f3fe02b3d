// rpc/metadata-replication: copies of the metadata tables on other storage nodes, so that losing the metadata
// node loses no acknowledged write and another node can take its place.
//
// The metadata node (the primary) is the only node that writes the tables. Each of its transactions appends
// an entry to the database's change log (db/db.ts); after committing it locally, a write waits until a
// majority of the layout's metadata replicas (metadataReplicas: the primary and its copies) hold the entry,
// then it is acknowledged. A copy replays the log in order, in transactions that log the same entries, so
// every copy is a prefix of the primary's history and can serve it in turn once promoted. A copy that is too
// far behind (or holds entries the primary never had, such as a node's own data from before it joined) is
// rebuilt from a snapshot of the tables, then replays the log from where the snapshot began.
//
// Copies accept entries only from the node their own layout names as the metadata node: a primary that was
// replaced while cut off cannot get its writes acknowledged. Moving the role (a layout that removes the
// metadata node) goes to the copy holding the most, chosen by chooseSuccessor.
import { samePosition, type Change, type LogEntry, type LogPosition } from '../db/db.js';
import type { MetadataDb } from '../db/db.js';
import { S3Error } from '../util/s3-error.js';
import { UserError } from '../util/errors.js';
import { readAll, type Cluster, type ClusterLog, type RpcReply } from './cluster.js';
import { decodeData, encodeData } from './codec.js';
import { metadataNode, metadataReplicas, storageNodes, type ClusterLayout } from './layout.js';

// Entries per meta/apply call, and table entries per snapshot batch.
const ENTRIES_PER_CALL = 256;
const SNAPSHOT_BATCH = 512;
// Bytes per call beyond which no more entries are added (a call always carries at least one): far below the
// RPC body limit, however large single records get (a multipart object of 10 000 parts).
const CALL_BYTES = 4 * 1024 * 1024;

/** A JSON list (codec encoding) built item by item, to be sent once it is about CALL_BYTES long. */
class ListBody {
  private parts: Buffer[] = [];
  private bytes = 0;

  get count(): number {
    return this.parts.length;
  }

  get full(): boolean {
    return this.bytes >= CALL_BYTES;
  }

  add(item: unknown): void {
    const encoded = encodeData(item);
    this.parts.push(encoded);
    this.bytes += encoded.length + 1;
  }

  take(): Buffer {
    const body = Buffer.concat([
      Buffer.from('['),
      ...this.parts.flatMap((p, i) => (i ? [COMMA, p] : [p])),
      CLOSE,
    ]);
    this.parts = [];
    this.bytes = 0;
    return body;
  }
}
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']');

interface Link {
  node: string;
  // The copy's position once known (undefined: ask it), and the newest entry of ours it is known to hold.
  position?: LogPosition;
  acked: number;
  busy: boolean;
  failing: boolean;
  lastError?: string;
}

interface Waiter {
  seq: number;
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** What a node says of its copy of the tables. */
export interface ReplicaState {
  position: LogPosition;
  resyncing: boolean;
}

export interface ReplicationStatus {
  role: 'alone' | 'primary' | 'copy' | 'none';
  position: LogPosition;
  resyncing: boolean;
  copies: { id: string; acked: number; up: boolean; error?: string }[];
}

interface Refusal {
  refused?: string;
  layoutVersion?: number;
}

function unavailable(message: string): S3Error {
  return new S3Error('ServiceUnavailable', 503, message);
}

export class MetadataReplication {
  private readonly links = new Map<string, Link>();
  private waiters: Waiter[] = [];
  private retryTimer?: NodeJS.Timeout;
  // While the role is being handed to another node: writes wait for it (refused), until this time.
  private handingOverUntil = 0;

  constructor(
    private readonly cluster: Cluster,
    private readonly db: MetadataDb,
    private readonly log: ClusterLog,
    private readonly opts: { ackTimeoutMs: number; retryMs: number },
  ) {}

  start(): void {
    this.db.writeGuard = () => {
      if (!this.isPrimary())
        throw unavailable(
          "This node does not hold the cluster's metadata (the layout's metadata node does).",
        );
      if (Date.now() < this.handingOverUntil)
        throw unavailable("The cluster's metadata is moving to another node; please retry.");
    };
    this.db.afterCommit = (position) => this.replicated(position.seq);
    // Only writes some copy follows are logged: a node without copies skips the log's cost.
    this.db.logChanges = () => this.isPrimary() && this.copies().length > 0;
    this.cluster.onNewLayout(() => {
      if (!this.isPrimary()) this.failWaiters('this node no longer holds the metadata');
      this.kick();
    });
    this.retryTimer = setInterval(() => this.kick(), this.opts.retryMs);
    this.retryTimer.unref();
    this.registerEndpoints();
    this.kick();
  }

  stop(): void {
    if (this.retryTimer) clearInterval(this.retryTimer);
    this.failWaiters('the node is stopping');
  }

  /** Whether this node writes the tables: it is the layout's metadata node, or stands alone. */
  isPrimary(): boolean {
    return this.cluster.ownsMetadata();
  }

  private copies(): string[] {
    const self = this.cluster.rpc.nodeId;
    return metadataReplicas(this.cluster.currentLayout(), this.cluster.replicationFactor).filter(
      (id) => id !== self,
    );
  }

  // Copies besides this node that must hold a write before it is acknowledged: with this node, a majority.
  private needed(): number {
    return Math.floor((this.copies().length + 1) / 2);
  }

  /** Starts bringing every copy up to date (each link runs one catch-up at a time). */
  kick(): void {
    if (!this.isPrimary()) return;
    const copies = this.copies();
    for (const id of [...this.links.keys()]) if (!copies.includes(id)) this.links.delete(id);
    for (const node of copies) {
      let link = this.links.get(node);
      if (!link) {
        link = { node, acked: 0, busy: false, failing: false };
        this.links.set(node, link);
      }
      void this.pump(link);
    }
    this.settle();
  }

  peerUp(peerId: string): void {
    const link = this.links.get(peerId);
    if (link) link.position = undefined;
    this.kick();
  }

  // Resolves once enough copies hold entry `seq`; rejects at once when too few copies can be reached.
  private replicated(seq: number): Promise<void> {
    if (this.needed() === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        seq,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(unavailable('Copies of the metadata did not confirm the write in time; please retry.'));
        }, this.opts.ackTimeoutMs),
      };
      this.waiters.push(waiter);
      this.kick();
    });
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const needed = this.needed();
    const links = [...this.links.values()];
    const reachable = links.filter((l) => l.busy || !l.failing).length;
    this.waiters = this.waiters.filter((w) => {
      const holding = links.filter((l) => l.acked >= w.seq).length;
      if (holding >= needed) {
        clearTimeout(w.timer);
        w.resolve();
        return false;
      }
      if (reachable < needed) {
        clearTimeout(w.timer);
        w.reject(
          unavailable(
            'Too few nodes holding copies of the metadata are reachable to keep this write safe; ' +
              'it is kept on the metadata node and copied when they return. Please retry.',
          ),
        );
        return false;
      }
      return true;
    });
  }

  private failWaiters(why: string): void {
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(unavailable(`The write was not confirmed: ${why}; please retry.`));
    }
    this.waiters = [];
  }

  // Brings one copy up to date: entries from the log, or a snapshot when the log cannot.
  private async pump(link: Link): Promise<void> {
    if (link.busy) return;
    link.busy = true;
    try {
      while (this.isPrimary() && this.links.get(link.node) === link) {
        if (!link.position) {
          const state = await this.ask(link.node);
          link.position = state.resyncing ? undefined : state.position;
          if (!link.position) {
            await this.sendSnapshot(link);
            continue;
          }
        }
        const head = this.db.position();
        if (samePosition(link.position, head)) {
          link.acked = head.seq;
          break;
        }
        if (!this.db.canReplayFrom(link.position)) {
          await this.sendSnapshot(link);
          continue;
        }
        const entries = new ListBody();
        for (const entry of this.db.entriesAfter(link.position, ENTRIES_PER_CALL)) {
          if (entries.full) break;
          entries.add(entry);
        }
        const reply = (await this.call(link.node, 'meta/apply', { from: link.position }, entries.take())) as {
          position?: LogPosition;
          state?: ReplicaState;
        };
        if (reply.position) {
          link.position = reply.position;
          link.acked = reply.position.seq;
        } else {
          // Not where we thought: start again from where it says it is.
          link.position = reply.state && !reply.state.resyncing ? reply.state.position : undefined;
          if (!link.position) await this.sendSnapshot(link);
        }
        link.failing = false;
        this.settle();
      }
      link.failing = false;
      link.lastError = undefined;
    } catch (err) {
      link.failing = true;
      link.position = undefined;
      const message = err instanceof Error ? err.message : String(err);
      if (link.lastError !== message)
        this.log.warn({ node: link.node.slice(0, 16), err: message }, 'metadata copy not updated');
      link.lastError = message;
    } finally {
      link.busy = false;
      this.settle();
    }
    // A commit during the last call finds the link busy: look again.
    if (!link.failing && link.position && !samePosition(link.position, this.db.position()))
      void this.pump(link);
  }

  private async sendSnapshot(link: Link): Promise<void> {
    this.log.info({ node: link.node.slice(0, 16) }, 'copying the metadata tables to a node');
    const start = this.db.position();
    await this.call(link.node, 'meta/resync-begin', {});
    let entries = 0;
    const body = new ListBody();
    const send = async () => {
      entries += body.count;
      await this.call(link.node, 'meta/resync-load', {}, body.take());
    };
    for (const batch of this.db.snapshot(SNAPSHOT_BATCH)) {
      for (const change of batch) {
        body.add(change);
        if (body.full) await send();
      }
      if (body.count > 0) await send();
    }
    await this.call(link.node, 'meta/resync-end', { position: start });
    link.position = start;
    this.log.info({ node: link.node.slice(0, 16), entries }, 'metadata tables copied; replaying the log');
  }

  private async ask(node: string): Promise<ReplicaState> {
    return (await this.call(node, 'meta/position', {})) as ReplicaState;
  }

  // A call to a copy; a refusal from a copy that knows a newer layout makes this node learn it.
  private async call(node: string, path: string, header: object, body?: Buffer): Promise<unknown> {
    const layoutVersion = this.cluster.currentLayout().version;
    const reply: RpcReply = await this.cluster.rpc.call(
      node,
      path,
      { ...header, layoutVersion },
      body ?? null,
    );
    reply.body?.resume();
    const h = reply.header as Refusal & Record<string, unknown>;
    if (h.refused) {
      if ((h.layoutVersion ?? 0) > layoutVersion) await this.cluster.pullLayout(node).catch(() => undefined);
      throw new Error(`refused: ${h.refused}`);
    }
    return h;
  }

  // ---- the copy's side ----

  private registerEndpoints(): void {
    const rpc = this.cluster.rpc;
    rpc.registerEndpoint('meta/position', async () => ({ header: this.state() }));
    const fromPrimary = (
      path: string,
      handler: (header: Record<string, unknown>, body: unknown) => Promise<Record<string, unknown>>,
    ) =>
      rpc.registerEndpoint(path, async (req) => {
        const header = req.header as Record<string, unknown>;
        const refusal = await this.refusal(req.peerId, header.layoutVersion);
        if (refusal) {
          req.body?.resume();
          return { header: refusal };
        }
        const body = req.body ? decodeData(await readAll(req.body)) : undefined;
        return { header: await handler(header, body) };
      });
    fromPrimary('meta/apply', async (header, body) => {
      const position = await this.db.applyEntries(header.from as LogPosition, body as LogEntry[]);
      return position ? { position } : { state: this.state() };
    });
    fromPrimary('meta/resync-begin', async () => {
      this.log.info({}, 'replacing this node’s metadata tables with a copy of the metadata node’s');
      await this.db.beginResync();
      return {};
    });
    fromPrimary('meta/resync-load', async (_h, body) => {
      await this.db.loadSnapshot(body as Change[]);
      return {};
    });
    fromPrimary('meta/resync-end', async (header) => {
      await this.db.finishResync(header.position as LogPosition);
      return {};
    });
    // Moving the role away from this node (layout apply elsewhere, or here): stop taking writes, bring the
    // copies up to date, and say where the log ends. Writes are refused until the new layout arrives, or for
    // at most `holdMs` if it never does.
    rpc.registerEndpoint('meta/handover', async (req) => {
      const { holdMs } = req.header as { holdMs?: unknown };
      return { header: await this.handOver(typeof holdMs === 'number' ? Math.min(holdMs, 30_000) : 30_000) };
    });
  }

  private state(): ReplicaState {
    return { position: this.db.position(), resyncing: this.db.resyncing() };
  }

  // Why a copy refuses a call from `peer`: only the metadata node of its layout (after learning a newer one
  // the caller knows of) writes here, and never to itself.
  private async refusal(peer: string, callerVersion: unknown): Promise<Refusal | undefined> {
    if (typeof callerVersion === 'number' && callerVersion > this.cluster.currentLayout().version)
      await this.cluster.pullLayout(peer).catch(() => undefined);
    const layout = this.cluster.currentLayout();
    if (metadataNode(layout) !== peer || peer === this.cluster.rpc.nodeId)
      return {
        refused: 'the caller is not the metadata node of this node’s layout',
        layoutVersion: layout.version,
      };
    return undefined;
  }

  /** Stops writes here for up to `holdMs`, waits (up to that long) until every copy is up to date. */
  async handOver(holdMs: number): Promise<ReplicaState> {
    const until = Date.now() + Math.max(0, Math.min(holdMs, 120_000));
    this.handingOverUntil = until;
    while (Date.now() < until) {
      this.kick();
      const head = this.db.position();
      const links = [...this.links.values()];
      // Copies that cannot be reached are not waited for: the node applying the layout asks every copy.
      if (links.every((l) => (l.failing && !l.busy) || (l.position && samePosition(l.position, head)))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.state();
  }

  // ---- moving the role ----

  /**
   * The node to take the metadata role when `next` (the staged layout) leaves the current metadata node out
   * of the storage nodes: the copy, among those staying, that holds the most. Every such copy must answer
   * (one that does not might hold writes the others lack); the current metadata node, if it answers, first
   * stops taking writes and brings them up to date.
   */
  async chooseSuccessor(current: ClusterLayout, next: ClusterLayout): Promise<string | undefined> {
    const holder = metadataNode(current);
    if (holder === undefined || storageNodes(next).includes(holder)) return undefined;
    const staying = metadataReplicas(current, this.cluster.replicationFactor).filter(
      (id) => id !== holder && storageNodes(next).includes(id),
    );
    if (staying.length === 0) return undefined;
    const self = this.cluster.rpc.nodeId;
    const holderState = await (holder === self
      ? this.handOver(10_000)
      : this.cluster.rpc
          .call(holder, 'meta/handover', { holdMs: 10_000 })
          .then((r) => (r.body?.resume(), r.header as ReplicaState))
          .catch(() => undefined));
    const states = await Promise.all(
      staying.map(async (id) => {
        try {
          return { id, state: id === self ? this.state() : await this.ask(id) };
        } catch {
          return { id, state: undefined };
        }
      }),
    );
    const silent = states.filter((s) => !s.state).map((s) => s.id.slice(0, 16) + '…');
    if (silent.length > 0 && !holderState) {
      throw new UserError(
        `the metadata node is unreachable and so are nodes holding copies of the metadata (${silent.join(', ')}): ` +
          'the newest copy cannot be told; bring them back, then apply again',
      );
    }
    const usable = states.filter(
      (s): s is { id: string; state: ReplicaState } => s.state !== undefined && !s.state.resyncing,
    );
    usable.sort((a, b) => b.state.position.seq - a.state.position.seq || (a.id < b.id ? -1 : 1));
    const best = usable[0];
    if (!best) throw new UserError('no node holding a complete copy of the metadata can be reached');
    if (holderState && best.state.position.seq < holderState.position.seq) {
      throw new UserError(
        'the copies of the metadata are not up to date with the metadata node yet (is one of them down?); ' +
          'apply again in a moment',
      );
    }
    return best.id;
  }

  status(): ReplicationStatus {
    const layout = this.cluster.currentLayout();
    const self = this.cluster.rpc.nodeId;
    const role =
      metadataNode(layout) === undefined
        ? 'alone'
        : this.isPrimary()
          ? 'primary'
          : metadataReplicas(layout, this.cluster.replicationFactor).includes(self)
            ? 'copy'
            : 'none';
    return {
      role,
      position: this.db.position(),
      resyncing: this.db.resyncing(),
      copies:
        role === 'primary'
          ? [...this.links.values()].map((l) => ({
              id: l.node,
              acked: l.acked,
              up: !l.failing,
              ...(l.lastError ? { error: l.lastError } : {}),
            }))
          : [],
    };
  }
}
