// rpc/metadata-replication: the metadata tables held by several storage nodes (the layout's metadata nodes:
// metadataReplicas), one of which leads, chosen and replaced by Raft's election and log rules (Ongaro and
// Ousterhout, 2014), so that losing any minority of them loses no acknowledged write and stops nothing.
//
// The leader is the only node that writes the tables. Each of its transactions appends an entry, stamped
// with its term, to the database's change log (db/db.ts); a write is acknowledged once a majority of the
// metadata nodes hold the entry and an entry of the leader's own term is among those a majority holds
// (Raft's commit rule). The others (followers) replay the log in order, in transactions that log the same
// entries, so each holds a prefix of some leader's history. A follower whose log ends with entries that no
// majority took (written by a leader that lost its place) takes them back when the leader's log differs
// there; one too far behind, or that cannot take back what it must, is rebuilt from a snapshot.
//
// Elections: a follower that hears nothing from a leader for a randomized few seconds first asks the others
// whether they would vote for it (pre-vote, so a node cut off and coming back does not force a needless
// election), then stands in a new term, persisted with its own vote before it asks. A node grants one vote
// per term, persisted before it answers, only to a candidate whose log is at least as up to date as its own
// (last term, then last index), and none while it hears from a leader. Any message with a newer term makes a
// node adopt it; a leader that sees one steps down.
//
// Reads are linearizable: only the leader serves them, while it holds a lease — a majority acknowledged one
// of its messages less than `leaseMs` ago, and they vote for no one for longer than that after hearing from
// it — and a read is answered only once every entry its tables showed is committed.
import { samePosition, type Change, type LogEntry, type LogPosition } from '../db/db.js';
import type { MetadataDb } from '../db/db.js';
import { S3Error } from '../util/s3-error.js';
import { UserError } from '../util/errors.js';
import { readAll, type Cluster, type ClusterLog, type MetadataLeadership, type RpcReply } from './cluster.js';
import { decodeData, encodeData } from './codec.js';
import { metadataNode, metadataReplicas, storageNodes, type ClusterLayout } from './layout.js';
import { RpcMessageError, bool, int, list, opt, record, str, type Schema } from './messages.js';

// Entries per meta/append call, and table entries per snapshot batch.
const ENTRIES_PER_CALL = 256;
const SNAPSHOT_BATCH = 512;
// Bytes per call beyond which no more entries are added (a call always carries at least one): far below the
// RPC body limit, however large single records get (a multipart object of 10 000 parts).
const CALL_BYTES = 4 * 1024 * 1024;
const MAX_CALL_BODY = 64 * 1024 * 1024;
// Positions a follower sends back when the leader's entries do not follow on from what it holds.
const RECENT_POSITIONS = 64;

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

// ---- what peers send, checked at the edge ----

// Terms and sequence numbers stay far below 2^53 however long a cluster runs; a peer's larger value is refused.
const MAX_COUNTER = 2 ** 48;
const counter = int(0, MAX_COUNTER);
const NODE_ID = str(64, /^[0-9a-f]{64}$/);
const logPosition: Schema<LogPosition> = record({
  seq: counter,
  id: str(64, /^[0-9a-f]*$/),
  term: opt(counter),
});
const keyPart: Schema<string | number> = (v, where) => {
  if (typeof v !== 'number') return str()(v, where);
  if (!Number.isFinite(v)) throw new RpcMessageError(`${where} must be a finite number`);
  return v;
};
const change: Schema<Change> = (v, where) => {
  const c = record<{ table: string; key: (string | number)[]; value?: unknown }>({
    table: str(64, /^[a-z][a-z0-9_]{0,63}$/),
    key: list(keyPart, 64),
    // A record as the leader's model wrote it: stored as it comes, never interpreted here.
    value: (x) => (x === null ? undefined : x),
  })(v, where);
  return c;
};
const logEntry: Schema<LogEntry> = record({
  seq: counter,
  id: str(64, /^[0-9a-f]+$/),
  term: opt(counter),
  changes: list(change, 100_000),
});
const decodeEntries = list(logEntry, 100_000);
const decodeChanges = list(change, 100_000);
const decodeVote = record<{ term: number; lastSeq: number; lastTerm: number; preVote?: boolean }>({
  term: counter,
  lastSeq: counter,
  lastTerm: counter,
  preVote: opt(bool),
});
const decodeAppend = record<{ term: number; from: LogPosition; commit: number; layoutVersion?: number }>({
  term: counter,
  from: logPosition,
  commit: counter,
  layoutVersion: opt(counter),
});
const decodeResync = record<{
  term: number;
  layoutVersion?: number;
  position?: LogPosition;
  through?: LogPosition;
}>({
  term: counter,
  layoutVersion: opt(counter),
  position: opt(logPosition),
  through: opt(logPosition),
});
const decodeHandover = record<{ holdMs?: number; layoutVersion?: number }>({
  holdMs: opt(int(0, 120_000)),
  layoutVersion: opt(counter),
});
const decodeReplicaState: Schema<ReplicaState> = (v, where) => {
  const s = record<{
    position: LogPosition;
    resyncing: boolean;
    term?: number;
    recent?: LogPosition[];
    mayLead?: boolean;
  }>({
    position: logPosition,
    resyncing: bool,
    term: opt(counter),
    recent: opt(list(logPosition, RECENT_POSITIONS)),
    mayLead: opt(bool),
  })(v, where);
  return s;
};
const decodeLeaderAnswer = record<{ term: number; leader?: string }>({ term: counter, leader: opt(NODE_ID) });
const decodeVoteAnswer = record<{ term: number; granted: boolean }>({ term: counter, granted: bool });
const decodeAppendAnswer = record<{
  term: number;
  position?: LogPosition;
  state?: ReplicaState;
  refused?: string;
  layoutVersion?: number;
}>({
  term: counter,
  position: opt(logPosition),
  state: opt(decodeReplicaState),
  refused: opt(str(1000)),
  layoutVersion: opt(counter),
});

interface Link {
  node: string;
  // Where the follower's log is known to agree with ours (undefined: ask it), and the newest entry of ours
  // it is known to hold (Raft's matchIndex).
  position?: LogPosition;
  acked: number;
  // When the newest call it answered as our follower in this term was sent (monotonic ms): the lease.
  heardAt: number;
  busy: boolean;
  failing: boolean;
  lastError?: string;
}

interface Waiter {
  seq: number;
  term: number;
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** What a node says of its copy of the tables. */
export interface ReplicaState {
  position: LogPosition;
  resyncing: boolean;
  term?: number;
  // The newest positions of its log, newest first (when the leader's entries did not follow on).
  recent?: LogPosition[];
  mayLead?: boolean;
}

export interface ReplicationStatus {
  role: 'alone' | 'primary' | 'copy' | 'none';
  term: number;
  leader?: string;
  position: LogPosition;
  committed: number;
  resyncing: boolean;
  copies: { id: string; acked: number; up: boolean; error?: string }[];
}

export interface ElectionOptions {
  ackTimeoutMs: number;
  retryMs: number;
  // The shortest election timeout; each is drawn in [electionMs, 2 × electionMs).
  electionMs: number;
  heartbeatMs: number;
}

type Role = 'follower' | 'candidate' | 'leader';

function unavailable(message: string): S3Error {
  return new S3Error('ServiceUnavailable', 503, message);
}

const now = (): number => performance.now();

export class MetadataReplication implements MetadataLeadership {
  private readonly links = new Map<string, Link>();
  private waiters: Waiter[] = [];
  private tickTimer?: NodeJS.Timeout;
  // While the role is being handed to another node: writes wait for it (refused), until this time.
  private handingOverUntil = 0;

  // Raft's persistent state (saved in the database before any answer that depends on it)...
  private term = 0;
  private votedFor: string | undefined;
  private saving: Promise<void> = Promise.resolve();
  // ... and the rest.
  private role: Role = 'follower';
  private leader: string | undefined;
  private committedSeq = 0;
  // The first entry of this node's term as leader: entries before it commit only with one of the term.
  private termStart = Number.MAX_SAFE_INTEGER;
  private lastHeardAt = -Infinity;
  private electionAt = 0;
  private electing = false;
  private leaderSince = 0;
  private lastBeatAt = -Infinity;
  private stopped = false;
  private readonly leaseMs: number;

  constructor(
    private readonly cluster: Cluster,
    private readonly db: MetadataDb,
    private readonly log: ClusterLog,
    private readonly opts: ElectionOptions,
  ) {
    // Followers refuse votes for electionMs after hearing from the leader, counted from when they received
    // its call; the lease is counted from when it was sent, and shortened for clocks that run apart.
    this.leaseMs = Math.floor(opts.electionMs * 0.75);
  }

  start(): void {
    const saved = this.db.electionState();
    this.term = saved.term;
    this.votedFor = saved.votedFor;
    // A node that took part in elections may have acknowledged a leader's lease just before it stopped: it
    // votes for no one until that lease is over.
    if (this.term > 0) this.lastHeardAt = now();
    this.db.writeGuard = () => {
      if (!this.isPrimary()) throw this.notLeading();
      if (Date.now() < this.handingOverUntil)
        throw unavailable("The cluster's metadata is moving to another node; please retry.");
    };
    this.db.entryTerm = () => {
      if (!this.isPrimary()) throw this.notLeading();
      return this.role === 'leader' ? this.term : 0;
    };
    this.db.afterCommit = (position) => this.replicated(position.seq);
    // Only writes some copy follows are logged: a node without copies skips the log's cost.
    this.db.logChanges = () => this.isPrimary() && this.copies().length > 0;
    this.cluster.setMetadataLeadership(this);
    this.cluster.onNewLayout(() => this.layoutChanged());
    this.registerEndpoints();
    this.resetElectionTimer(true);
    this.tickTimer = setInterval(() => this.tick(), Math.max(20, Math.floor(this.opts.heartbeatMs / 4)));
    this.tickTimer.unref();
    this.layoutChanged();
  }

  stop(): void {
    this.stopped = true;
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.failWaiters('the node is stopping');
  }

  private notLeading(): S3Error {
    return unavailable("This node does not lead the cluster's metadata now; please retry.");
  }

  // ---- who is who ----

  private voters(): string[] {
    return metadataReplicas(this.cluster.currentLayout(), this.cluster.replicationFactor);
  }

  private isVoter(id = this.cluster.rpc.nodeId): boolean {
    return this.voters().includes(id);
  }

  private copies(): string[] {
    const self = this.cluster.rpc.nodeId;
    return this.voters().filter((id) => id !== self);
  }

  private majority(): number {
    return Math.floor(this.voters().length / 2) + 1;
  }

  /** Whether this node writes the tables: it leads, or no layout names metadata nodes (it stands alone). */
  isPrimary(): boolean {
    return this.voters().length === 0 || this.role === 'leader';
  }

  servesHere(): boolean {
    return this.isPrimary();
  }

  /**
   * Two metadata nodes, this one of them, and the other unreachable: a write needs both, so every write ever
   * acknowledged is in this node's tables, and reads are answered from them (never writes) rather than
   * refused. What they may also show is a write that was refused (its 503 said it may be complete).
   */
  servesDegradedReads(): boolean {
    const voters = this.voters();
    if (voters.length !== 2 || !this.isVoter()) return false;
    return !this.cluster.rpc.connectedPeers().includes(this.copies()[0]!);
  }

  metadataNodes(): string[] {
    return this.voters();
  }

  // With one or two metadata nodes no other can be elected while this one leads (it would need this one's
  // vote); with more, only while a majority heard from it recently.
  private leaseValid(): boolean {
    if (this.voters().length === 0) return true;
    if (this.role !== 'leader') return false;
    if (this.voters().length <= 2) return true;
    const heard = [now(), ...this.copies().map((id) => this.links.get(id)?.heardAt ?? -Infinity)].sort(
      (a, b) => b - a,
    );
    return heard[this.majority() - 1]! + this.leaseMs > now();
  }

  // ---- terms and votes ----

  // Adopts `term` (newer than ours): no vote in it yet; a leader or candidate becomes a follower.
  private adoptTerm(term: number, leader?: string): void {
    if (term > this.term) {
      this.term = term;
      this.votedFor = undefined;
      void this.persist();
      if (this.role !== 'follower') this.becomeFollower(leader);
      this.leader = leader;
    }
    if (leader !== undefined) {
      if (this.role !== 'follower') this.becomeFollower(leader);
      this.leader = leader;
    }
  }

  private persist(): Promise<void> {
    const state = { term: this.term, ...(this.votedFor ? { votedFor: this.votedFor } : {}) };
    this.saving = this.saving.then(() => this.db.saveElectionState(state));
    return this.saving;
  }

  private becomeFollower(leader?: string): void {
    const was = this.role;
    this.role = 'follower';
    this.leader = leader;
    if (was === 'leader') {
      this.log.warn({ term: this.term }, 'no longer leading the metadata (a newer term exists)');
      this.failWaiters('this node stopped leading the metadata');
      this.links.clear();
    }
    this.resetElectionTimer();
  }

  private resetElectionTimer(soon = false): void {
    const base = this.opts.electionMs;
    this.electionAt = now() + (soon ? Math.random() * 200 : base + Math.random() * base);
  }

  private lastPosition(): { seq: number; term: number } {
    if (!this.db.mayLead()) return { seq: 0, term: 0 };
    const p = this.db.position();
    return { seq: p.seq, term: p.term ?? 0 };
  }

  private tick(): void {
    if (this.stopped) return;
    if (this.role === 'leader') {
      if (now() - this.lastBeatAt >= this.opts.heartbeatMs) this.heartbeat();
      // A leader a majority has not answered for two election timeouts steps down, so that its clients turn
      // to the side that can elect one (with two nodes no one else could lead: it stays).
      const copies = this.copies();
      if (copies.length >= 2) {
        const heard = [now(), ...copies.map((id) => this.links.get(id)?.heardAt ?? -Infinity)].sort(
          (a, b) => b - a,
        );
        const leaderSince = this.leaderSince;
        if (now() - Math.max(heard[this.majority() - 1]!, leaderSince) > 2 * this.opts.electionMs) {
          this.log.warn(
            { term: this.term },
            'stepping down: a majority of the metadata nodes is unreachable',
          );
          this.becomeFollower();
        }
      }
      return;
    }
    if (now() >= this.electionAt) void this.campaign();
  }

  // Stands for election when this node may: it is a metadata node with a complete copy, and has either
  // taken part in an election before or is the layout's metadata node (so a new cluster starts from the
  // node whose tables it was formed around, never from an empty copy).
  private async campaign(): Promise<void> {
    // At term 0 only the layout's metadata node stands, so nothing competes with it: it tries again soon
    // (the first tries can reach nodes that have not adopted the layout yet).
    this.resetElectionTimer(this.term === 0);
    if (this.electing || !this.isVoter() || !this.db.mayLead()) return;
    const layout = this.cluster.currentLayout();
    if (this.term === 0 && metadataNode(layout) !== this.cluster.rpc.nodeId) return;
    this.electing = true;
    try {
      const last = this.lastPosition();
      const peers = this.copies();
      if (peers.length > 0) {
        const pre = await this.askVotes(peers, {
          term: this.term + 1,
          ...this.lastArgs(last),
          preVote: true,
        });
        if (pre + 1 < this.majority() || this.role === 'leader') return;
      }
      this.term += 1;
      this.votedFor = this.cluster.rpc.nodeId;
      this.role = 'candidate';
      this.leader = undefined;
      const term = this.term;
      await this.persist();
      this.log.info({ term }, 'standing for election to lead the metadata');
      const granted = peers.length > 0 ? await this.askVotes(peers, { term, ...this.lastArgs(last) }) : 0;
      if (this.role !== 'candidate' || this.term !== term) return;
      if (granted + 1 >= this.majority()) await this.becomeLeader(term);
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'election failed');
    } finally {
      this.electing = false;
    }
  }

  private lastArgs(last: { seq: number; term: number }): { lastSeq: number; lastTerm: number } {
    return { lastSeq: last.seq, lastTerm: last.term };
  }

  private async askVotes(peers: string[], header: object): Promise<number> {
    const answers = await Promise.all(
      peers.map(async (peer) => {
        try {
          const reply = await this.cluster.rpc.call(peer, 'meta/vote', header, null, this.callOptions());
          reply.body?.resume();
          const answer = decodeVoteAnswer(reply.header, 'meta/vote answer');
          if (answer.term > this.term) this.adoptTerm(answer.term);
          return answer.granted;
        } catch {
          return false;
        }
      }),
    );
    return answers.filter(Boolean).length;
  }

  private callOptions(ms = Math.max(1000, this.opts.electionMs)): { signal: AbortSignal } {
    return { signal: AbortSignal.timeout(ms) };
  }

  private async becomeLeader(term: number): Promise<void> {
    this.role = 'leader';
    this.leader = this.cluster.rpc.nodeId;
    this.leaderSince = now();
    this.links.clear();
    this.termStart = this.db.position().seq + 1;
    this.log.info({ term }, 'leading the metadata');
    this.kick();
    // Raft's rule: entries of earlier terms commit only with one of this term, so one is written at once.
    if (this.copies().length > 0) {
      await this.db.appendMarker().catch((err: Error) => {
        this.log.warn({ err: err.message }, 'first entry of the term not committed yet');
      });
    } else this.committedSeq = this.db.position().seq;
  }

  private layoutChanged(): void {
    const voters = this.voters();
    const self = this.cluster.rpc.nodeId;
    if (this.role === 'leader' && voters.length > 0 && !voters.includes(self)) {
      this.log.info({}, 'this node is no longer a metadata node of the layout');
      this.becomeFollower();
    }
    if (voters.length === 0) this.failWaiters('this node no longer holds the metadata');
    // The layout's metadata node stands at once when no one leads yet (a new cluster, or a move).
    if (this.role !== 'leader' && voters.includes(self)) {
      const preferred = metadataNode(this.cluster.currentLayout()) === self;
      if (voters.length === 1 || (preferred && this.leader === undefined)) this.resetElectionTimer(true);
    }
    this.kick();
  }

  // ---- the leader's side: shipping the log ----

  /** Starts bringing every copy up to date (each link runs one catch-up at a time). */
  kick(beat = false): void {
    if (this.role !== 'leader') return;
    const copies = this.copies();
    for (const id of [...this.links.keys()]) if (!copies.includes(id)) this.links.delete(id);
    for (const node of copies) {
      let link = this.links.get(node);
      if (!link) {
        link = { node, acked: 0, heardAt: -Infinity, busy: false, failing: false };
        this.links.set(node, link);
      }
      void this.pump(link, beat);
    }
    this.settle();
  }

  private heartbeat(): void {
    this.lastBeatAt = now();
    this.kick(true);
  }

  peerUp(peerId: string): void {
    const link = this.links.get(peerId);
    if (link) link.position = undefined;
    this.kick();
  }

  // Resolves once entry `seq` is committed; rejects at once when too few copies can be reached.
  private replicated(seq: number): Promise<void> {
    if (this.voters().length === 0) return Promise.resolve();
    if (this.role === 'leader' && this.copies().length === 0) {
      this.committedSeq = Math.max(this.committedSeq, seq);
      return Promise.resolve();
    }
    if (this.role !== 'leader') return Promise.reject(this.notLeading());
    if (this.committedSeq >= seq) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        seq,
        term: this.term,
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

  // Raft's commit rule: the newest entry a majority holds, once it is of this term.
  private advanceCommit(): void {
    if (this.role !== 'leader') return;
    const held = [this.db.position().seq, ...this.copies().map((id) => this.links.get(id)?.acked ?? 0)].sort(
      (a, b) => b - a,
    );
    const n = held[this.majority() - 1] ?? 0;
    if (n >= this.termStart && n > this.committedSeq) this.committedSeq = n;
  }

  private settle(): void {
    this.advanceCommit();
    if (this.waiters.length === 0) return;
    const links = [...this.links.values()];
    const reachable = links.filter((l) => l.busy || !l.failing).length + 1;
    this.waiters = this.waiters.filter((w) => {
      if (this.role === 'leader' && w.term === this.term && this.committedSeq >= w.seq) {
        clearTimeout(w.timer);
        w.resolve();
        return false;
      }
      if (reachable < this.majority()) {
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

  // Brings one copy up to date: entries from the log, or a snapshot when the log cannot. With `beat`, at
  // least one call goes (a heartbeat, which also renews the lease).
  private async pump(link: Link, beat: boolean): Promise<void> {
    if (link.busy) return;
    link.busy = true;
    const term = this.term;
    const leading = () => this.role === 'leader' && this.term === term && this.links.get(link.node) === link;
    let mustSend = beat;
    try {
      while (leading()) {
        if (!link.position) {
          const state = await this.ask(link.node);
          if (!leading()) break;
          link.position = this.agreement(state);
          if (!link.position) {
            await this.sendSnapshot(link, term);
            continue;
          }
        }
        const head = this.db.position();
        if (samePosition(link.position, head) && !mustSend) {
          link.acked = Math.max(link.acked, head.seq);
          break;
        }
        mustSend = false;
        if (!this.db.canReplayFrom(link.position)) {
          await this.sendSnapshot(link, term);
          continue;
        }
        const entries = new ListBody();
        for (const entry of this.db.entriesAfter(link.position, ENTRIES_PER_CALL)) {
          if (entries.full) break;
          entries.add(entry);
        }
        const sentAt = now();
        const header = { term, from: link.position, commit: this.committedSeq };
        const reply = decodeAppendAnswer(
          await this.call(link.node, 'meta/append', header, entries.take()),
          'meta/append answer',
        );
        if (reply.term > this.term) {
          this.adoptTerm(reply.term);
          break;
        }
        if (!leading()) break;
        link.heardAt = Math.max(link.heardAt, sentAt);
        if (reply.position) {
          link.position = reply.position;
          link.acked = Math.max(link.acked, reply.position.seq);
        } else {
          // Not where we thought: start again from where our logs agree, as it says.
          link.position = reply.state ? this.agreement(reply.state) : undefined;
          if (!link.position) await this.sendSnapshot(link, term);
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
    if (leading() && !link.failing && link.position && !samePosition(link.position, this.db.position()))
      void this.pump(link, false);
  }

  // The newest position where a follower's log and ours agree, from what it says of itself.
  private agreement(state: ReplicaState): LogPosition | undefined {
    if (state.resyncing) return undefined;
    for (const p of [state.position, ...(state.recent ?? [])])
      if (p.seq <= this.db.position().seq && this.db.canReplayFrom(p)) return p;
    return undefined;
  }

  private async sendSnapshot(link: Link, term: number): Promise<void> {
    this.log.info({ node: link.node.slice(0, 16) }, 'copying the metadata tables to a node');
    const start = this.db.position();
    await this.call(link.node, 'meta/resync-begin', { term });
    let entries = 0;
    const body = new ListBody();
    const send = async () => {
      entries += body.count;
      await this.call(link.node, 'meta/resync-load', { term }, body.take());
    };
    for (const batch of this.db.snapshot(SNAPSHOT_BATCH)) {
      for (const c of batch) {
        body.add(c);
        if (body.full) await send();
      }
      if (body.count > 0) await send();
    }
    await this.call(link.node, 'meta/resync-end', { term, position: start, through: this.db.position() });
    link.position = start;
    link.acked = Math.max(link.acked, start.seq);
    this.log.info({ node: link.node.slice(0, 16), entries }, 'metadata tables copied; replaying the log');
  }

  private async ask(node: string): Promise<ReplicaState> {
    return decodeReplicaState(await this.call(node, 'meta/position', {}), 'meta/position answer');
  }

  // A call to a copy; a refusal from a copy that knows a newer layout makes this node learn it.
  private async call(node: string, path: string, header: object, body?: Buffer): Promise<unknown> {
    const layoutVersion = this.cluster.currentLayout().version;
    const reply: RpcReply = await this.cluster.rpc.call(
      node,
      path,
      { ...header, layoutVersion },
      body ?? null,
      this.callOptions(Math.max(10_000, this.opts.electionMs * 2)),
    );
    reply.body?.resume();
    const h = reply.header as { refused?: unknown; layoutVersion?: unknown; error?: unknown } | null;
    if (h?.refused || h?.error) {
      if (typeof h.layoutVersion === 'number' && h.layoutVersion > layoutVersion)
        await this.cluster.pullLayout(node).catch(() => undefined);
      throw new Error(`refused: ${String(h.refused ?? 'an error')}`);
    }
    return h;
  }

  // ---- reads and writes: only the leader, under its lease ----

  /**
   * Runs a metadata call on this node's tables: only while it leads (or stands alone), answered only once
   * everything the call saw is committed and the lease still holds — so what it returns is what the
   * cluster holds, at an instant between the call and its answer. A read with two metadata nodes, the other
   * gone, is answered from this node's tables at once (servesDegradedReads).
   */
  async serve<T>(run: () => Promise<T>, read = false): Promise<T> {
    if (this.voters().length === 0) return run();
    if (read && this.servesDegradedReads()) return run();
    const term = this.term;
    if (this.role !== 'leader') throw this.notLeading();
    if (!this.leaseValid()) await this.untilLease(term);
    const result = await run();
    const seen = this.db.position().seq;
    await this.replicated(seen);
    if (this.term !== term || !this.leaseValid())
      throw unavailable('This node lost the lead of the metadata during the call; please retry.');
    return result;
  }

  private async untilLease(term: number): Promise<void> {
    const deadline = now() + this.opts.electionMs;
    this.heartbeat();
    while (now() < deadline) {
      if (this.term !== term || this.role !== 'leader') break;
      if (this.leaseValid()) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw unavailable('Too few metadata nodes answer the leader to serve this call safely; please retry.');
  }

  /** The leader, as this node knows it or, failing that, as the metadata nodes say (waiting a little). */
  async findLeader(): Promise<string | undefined> {
    const self = this.cluster.rpc.nodeId;
    const deadline = now() + Math.min(1500, this.opts.electionMs);
    for (;;) {
      if (this.role === 'leader') return self;
      if (this.leader !== undefined && this.leader !== self) return this.leader;
      await this.discover();
      if (this.leader !== undefined && this.leader !== self) return this.leader;
      if (now() >= deadline) return undefined;
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  private discovering?: Promise<void>;

  // Asks every other metadata node whom it follows; the newest term wins.
  private discover(): Promise<void> {
    this.discovering ??= (async () => {
      const self = this.cluster.rpc.nodeId;
      const answers = await Promise.all(
        this.voters()
          .filter((id) => id !== self)
          .map(async (id) => {
            try {
              const reply = await this.cluster.rpc.call(id, 'meta/leader', {}, null, this.callOptions(1000));
              reply.body?.resume();
              return decodeLeaderAnswer(reply.header, 'meta/leader answer');
            } catch {
              return undefined;
            }
          }),
      );
      let best: { term: number; leader?: string } | undefined;
      for (const a of answers) if (a?.leader && (!best || a.term > best.term)) best = a;
      if (best?.leader && best.leader !== self) {
        if (this.isVoter()) {
          if (best.term >= this.term)
            this.adoptTerm(best.term, best.term === this.term ? best.leader : undefined);
          if (best.term === this.term && this.role === 'follower') this.leader = best.leader;
        } else {
          this.term = Math.max(this.term, best.term);
          this.leader = best.leader;
        }
      }
    })().finally(() => (this.discovering = undefined));
    return this.discovering;
  }

  /** `node` answered that it does not lead (naming `hint`, the leader it knows of), or could not be reached. */
  notLeader(node: string, hint?: string): void {
    if (this.leader === node) this.leader = undefined;
    if (hint !== undefined && hint !== node && hint !== this.cluster.rpc.nodeId && this.role !== 'leader')
      this.leader = hint;
  }

  /** The leader this node knows of (for a follower's refusal: where the caller should turn). */
  knownLeader(): string | undefined {
    return this.leader;
  }

  // ---- the follower's side ----

  private registerEndpoints(): void {
    const rpc = this.cluster.rpc;
    rpc.registerEndpoint('meta/position', async () => ({ header: this.state(true) }));
    rpc.registerEndpoint('meta/leader', async () => ({
      header: { term: this.term, ...(this.leader ? { leader: this.leader } : {}) },
    }));
    rpc.registerEndpoint('meta/vote', async (req) => {
      req.body?.resume();
      const vote = decodeVote(req.header, 'meta/vote');
      return { header: await this.answerVote(req.peerId, vote) };
    });
    const fromLeader = (
      path: string,
      handler: (
        term: number,
        header: Record<string, unknown>,
        body: Buffer,
      ) => Promise<Record<string, unknown>>,
    ) =>
      rpc.registerEndpoint(path, async (req) => {
        const raw = req.header as Record<string, unknown> | null;
        const term = counter(raw?.term, `${path} term`);
        const refusal = await this.refusal(req.peerId, raw?.layoutVersion);
        if (refusal) {
          req.body?.resume();
          return { header: { term: this.term, ...refusal } };
        }
        if (term < this.term) {
          req.body?.resume();
          return { header: { term: this.term, refused: 'a newer term has begun' } };
        }
        const body = await readAll(req.body, MAX_CALL_BODY);
        this.heardFrom(req.peerId, term);
        const answer = await handler(term, raw ?? {}, body);
        await this.saving;
        return { header: { term: this.term, ...answer } };
      });
    fromLeader('meta/append', async (_term, header, body) => {
      const call = decodeAppend(header, 'meta/append');
      const entries = decodeEntries(body.length ? decodeData(body) : [], 'meta/append entries');
      const before = this.db.takenBack;
      const position = await this.db.applyEntries(call.from, entries, this.committedSeq);
      if (this.db.takenBack > before)
        this.log.info(
          { entries: this.db.takenBack - before },
          'took back metadata entries that no majority held (written while this node led, never acknowledged)',
        );
      if (!position) return { state: this.state(true) };
      this.committedSeq = Math.max(this.committedSeq, Math.min(call.commit, position.seq));
      return { position };
    });
    fromLeader('meta/resync-begin', async (_t, header) => {
      decodeResync(header, 'meta/resync-begin');
      this.log.info({}, 'replacing this node’s metadata tables with a copy of the leader’s');
      await this.db.beginResync();
      return {};
    });
    fromLeader('meta/resync-load', async (_t, header, body) => {
      decodeResync(header, 'meta/resync-load');
      await this.db.loadSnapshot(decodeChanges(body.length ? decodeData(body) : [], 'meta/resync-load'));
      return {};
    });
    fromLeader('meta/resync-end', async (_t, header) => {
      const call = decodeResync(header, 'meta/resync-end');
      if (!call.position) throw new Error('meta/resync-end needs a position');
      await this.db.finishResync(call.position, call.through ?? call.position);
      return {};
    });
    // Moving the role away from this node (layout apply elsewhere, or here): stop taking writes, bring the
    // copies up to date, and say where the log ends. Writes are refused until the new layout arrives, or for
    // at most `holdMs` if it never does.
    rpc.registerEndpoint('meta/handover', async (req) => {
      req.body?.resume();
      const { holdMs } = decodeHandover(req.header ?? {}, 'meta/handover');
      return { header: await this.handOver(Math.min(holdMs ?? 30_000, 30_000)) };
    });
  }

  // A call from the leader of `term` (not older than ours): follow it, and wait before standing.
  private heardFrom(leader: string, term: number): void {
    this.adoptTerm(term, leader);
    this.lastHeardAt = now();
    this.resetElectionTimer();
  }

  private async answerVote(
    candidate: string,
    vote: { term: number; lastSeq: number; lastTerm: number; preVote?: boolean },
  ): Promise<{ term: number; granted: boolean }> {
    const refuse = () => ({ term: this.term, granted: false });
    if (!this.isVoter(candidate) || candidate === this.cluster.rpc.nodeId) return refuse();
    // While a leader is heard from (or this node leads), no vote: its lease holds, and a node that was cut
    // off cannot unseat it.
    if (this.role === 'leader' || now() - this.lastHeardAt < this.opts.electionMs) return refuse();
    const mine = this.lastPosition();
    const upToDate = vote.lastTerm > mine.term || (vote.lastTerm === mine.term && vote.lastSeq >= mine.seq);
    if (vote.preVote) return { term: this.term, granted: vote.term > this.term && upToDate };
    if (vote.term < this.term) return refuse();
    if (vote.term > this.term) this.adoptTerm(vote.term);
    let granted = false;
    if (upToDate && (this.votedFor === undefined || this.votedFor === candidate)) {
      this.votedFor = candidate;
      granted = true;
      this.resetElectionTimer();
    }
    await this.persist();
    return { term: this.term, granted };
  }

  private state(withRecent = false): ReplicaState {
    return {
      position: this.db.position(),
      resyncing: this.db.resyncing(),
      term: this.term,
      mayLead: this.db.mayLead(),
      ...(withRecent ? { recent: this.db.recentPositions(RECENT_POSITIONS) } : {}),
    };
  }

  // Why a copy refuses a call from `peer`: only a metadata node of its layout (after learning a newer one
  // the caller knows of) leads, and never this node itself.
  private async refusal(
    peer: string,
    callerVersion: unknown,
  ): Promise<{ refused: string; layoutVersion: number } | undefined> {
    if (typeof callerVersion === 'number' && callerVersion > this.cluster.currentLayout().version)
      await this.cluster.pullLayout(peer).catch(() => undefined);
    const layout = this.cluster.currentLayout();
    if (!this.isVoter(peer) || !this.isVoter() || peer === this.cluster.rpc.nodeId)
      return {
        refused: 'the caller and this node are not both metadata nodes of this node’s layout',
        layoutVersion: layout.version,
      };
    return undefined;
  }

  /** Stops writes here for up to `holdMs`, waits (up to that long) until every copy is up to date. */
  async handOver(holdMs: number): Promise<ReplicaState> {
    const until = Date.now() + Math.max(0, Math.min(holdMs, 120_000));
    this.handingOverUntil = until;
    while (Date.now() < until && this.role === 'leader') {
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
   * of the storage nodes: the copy, among those staying, whose log is the most up to date. Every such copy
   * must answer (one that does not might hold writes the others lack); the current metadata node, if it
   * answers, first stops taking writes and brings them up to date.
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
          .then((r) => (r.body?.resume(), decodeReplicaState(r.header, 'meta/handover answer')))
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
      (s): s is { id: string; state: ReplicaState } =>
        s.state !== undefined && !s.state.resyncing && s.state.mayLead !== false,
    );
    const termOf = (s: ReplicaState) => s.position.term ?? 0;
    usable.sort(
      (a, b) =>
        termOf(b.state) - termOf(a.state) ||
        b.state.position.seq - a.state.position.seq ||
        (a.id < b.id ? -1 : 1),
    );
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
    const voters = this.voters();
    const self = this.cluster.rpc.nodeId;
    const role =
      voters.length === 0
        ? 'alone'
        : this.role === 'leader'
          ? 'primary'
          : voters.includes(self)
            ? 'copy'
            : 'none';
    return {
      role,
      term: this.term,
      ...(this.leader ? { leader: this.leader } : {}),
      position: this.db.position(),
      committed:
        this.role === 'leader' && this.copies().length === 0 ? this.db.position().seq : this.committedSeq,
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
