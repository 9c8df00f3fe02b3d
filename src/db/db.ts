// db: the metadata key-value store — named tables with ordered range scans and transactions — over an
// embedded engine (LMDB through lmdb-js). Keys are arrays of strings/numbers, ordered element by element
// (strings by their UTF-8 bytes, as S3 listings need). Nothing here knows what the values mean.
//
// Every transaction that writes also appends its writes, as one entry, to a change log kept in the same
// database and committed atomically with them (unless logChanges says no copy follows this node's writes). Other nodes replay that log to hold copies of the tables
// (rpc/metadata-replication.ts); a node's place in it is its position: the sequence number, random id and
// election term of the last entry it holds. Each entry also keeps, on this node only, what it overwrote, so
// that an entry the cluster never committed can be taken back. The log keeps its newest `logKeep` entries (20 000 by default); a copy further behind is rebuilt from a
// snapshot of the tables instead.
import { open, type Database, type RootDatabase } from 'lmdb';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';

export type Key = (string | number)[];

export interface RangeOptions {
  // Inclusive lower bound; every key in the scan starts with `prefix`.
  prefix: Key;
  start?: Key;
  limit?: number;
}

/** One write: `value` undefined removes the key. */
export interface Change {
  table: string;
  key: Key;
  value?: unknown;
}

/** A committed transaction's writes, as the change log holds and replicas replay them. */
export interface LogEntry {
  seq: number;
  id: string;
  // The election term of the node that wrote it (rpc/metadata-replication); 0 in logs from before terms.
  term?: number;
  changes: Change[];
  // Kept on this node only (never sent): what the changes overwrote, newest first, so that an entry that
  // was never committed can be taken back when the node that leads now holds another in its place.
  undo?: Change[];
}

/** Where a database stands in the change log: its last entry (seq 0 and id '' for an empty database). */
export interface LogPosition {
  seq: number;
  id: string;
  // The term of that entry (absent: 0).
  term?: number;
}

/** What this node promised in elections: the newest term it knows, and whom it voted for in it. */
export interface ElectionState {
  term: number;
  votedFor?: string;
}

export const EMPTY_POSITION: LogPosition = { seq: 0, id: '' };

export function samePosition(a: LogPosition, b: LogPosition): boolean {
  return a.seq === b.seq && a.id === b.id;
}

// Table names of the change log's own bookkeeping; a replicated table name never starts with '_'.
const LOG_TABLE = '_change_log';
const STATE_TABLE = '_change_log_state';
const TABLE_NAME = /^[a-z][a-z0-9_]{0,63}$/;
// Tables of this node's own bookkeeping (its block resync queue, its scrub's progress): named `_local_…`, so
// they are neither logged, nor in snapshots, nor cleared when a copy is rebuilt, and a node that may not
// write the replicated tables (a metadata copy, a gateway) still writes them.
const LOCAL_PREFIX = '_local_';

/** A table of this node alone: each write is its own durable transaction, outside the change log. */
export class LocalTable<V> {
  constructor(private readonly db: Database<V, Key>) {}

  get(key: Key): V | undefined {
    return this.db.get(key);
  }

  /** Stores `value` unless the key holds one; resolves, once durable, with whether it was stored. */
  putIfAbsent(key: Key, value: V): Promise<boolean> {
    return this.db.transaction(() => {
      if (this.db.get(key) !== undefined) return false;
      void this.db.put(key, value);
      return true;
    });
  }

  /** Resolves once the write is durable on disk. */
  async put(key: Key, value: V): Promise<void> {
    await this.db.put(key, value);
  }

  /** Removes the key; resolves, once durable, with whether it held a value. */
  removeIfPresent(key: Key): Promise<boolean> {
    return this.db.transaction(() => {
      if (this.db.get(key) === undefined) return false;
      void this.db.remove(key);
      return true;
    });
  }

  *range(prefix: Key = [], limit?: number): Generator<{ key: Key; value: V }> {
    let count = 0;
    for (const entry of this.db.getRange(prefix.length > 0 ? { start: prefix } : {})) {
      const key = (Array.isArray(entry.key) ? entry.key : [entry.key]) as Key;
      if (!hasPrefix(key, prefix)) break;
      if (limit !== undefined && count >= limit) break;
      count++;
      yield { key, value: entry.value };
    }
  }
}

// Thrown inside a transaction (undoing it) when entries to take back are no longer held with their undo.
class CannotTakeBack extends Error {}

export class Table<V> {
  constructor(
    private readonly owner: MetadataDb,
    readonly name: string,
    private readonly db: Database<V, Key>,
  ) {}

  get(key: Key): V | undefined {
    return this.db.get(key);
  }

  // Writes take effect when the surrounding transaction commits (see MetadataDb.transaction).
  put(key: Key, value: V): void {
    this.owner.record({ table: this.name, key, value }, () => this.db.get(key));
    void this.db.put(key, value);
  }

  remove(key: Key): void {
    this.owner.record({ table: this.name, key }, () => this.db.get(key));
    void this.db.remove(key);
  }

  *range(opts: RangeOptions): Generator<{ key: Key; value: V }> {
    const prefix = opts.prefix;
    const start = opts.start ?? prefix;
    const iter = this.db.getRange({ start });
    let count = 0;
    for (const entry of iter) {
      // ordered-binary encodes a one-element array exactly like its element, so it decodes as the bare
      // string or number: give callers the array they stored.
      const key = (Array.isArray(entry.key) ? entry.key : [entry.key]) as Key;
      if (!hasPrefix(key, prefix)) break;
      if (opts.limit !== undefined && count >= opts.limit) break;
      count++;
      yield { key, value: entry.value as V };
    }
  }
}

function hasPrefix(key: Key, prefix: Key): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

export interface MetadataDbOptions {
  // How many change log entries are kept (older ones are dropped as new ones come).
  logKeep?: number;
}

export class MetadataDb {
  private readonly tables = new Map<string, Table<unknown>>();
  private readonly log: Database<LogEntry, number>;
  private readonly state: Database<unknown, string>;
  private readonly logKeep: number;
  /** How many entries this node has taken back (see applyEntries): counted for its log lines. */
  takenBack = 0;
  // The writes of the transaction whose body is running (bodies run one at a time, synchronously), and what
  // they overwrote (only when the transaction is logged).
  private recording: Change[] | undefined;
  private undoing: Change[] | undefined;
  /** Checked before every transaction: throws when this database may not take writes of its own. */
  writeGuard?: () => void;
  /** Awaited after every transaction that wrote, before it resolves: replication to other nodes. */
  afterCommit?: (position: LogPosition) => Promise<void>;
  /**
   * Whether transactions are logged (by default they are). A node whose writes no copy follows need not pay
   * for the log; its first unlogged write moves it to a position of its own, with an empty log, so that no
   * copy can take the log for complete: a copy that follows it later starts from a snapshot.
   */
  logChanges?: () => boolean;
  /**
   * The term a logged entry is written in; called inside the transaction, it throws when this node may not
   * write any more (it stopped leading while the transaction waited its turn), which undoes the transaction.
   */
  entryTerm?: () => number;

  private constructor(
    private readonly root: RootDatabase,
    opts: MetadataDbOptions,
  ) {
    this.logKeep = Math.max(1, opts.logKeep ?? 20_000);
    this.log = root.openDB<LogEntry, number>({ name: LOG_TABLE, keyEncoding: 'uint32' });
    this.state = root.openDB<unknown, string>({ name: STATE_TABLE });
  }

  static open(dir: string, opts: MetadataDbOptions = {}): MetadataDb {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // A commit's promise resolves only once the commit is durable: that is the moment a write is acknowledged
    // to a client. lmdb-js opens with overlappingSync by default (not on Windows), which sounds otherwise but
    // is not (checked in lmdb-js 3.5.6's writer.cpp and its LMDB fork's mdb_txn_commit, and seen under strace):
    // the writer lock is released once the transaction is written and visible, so the next transaction can
    // be built while this one is flushed, but mdb_txn_commit returns only after fdatasync of the data file and
    // the O_DSYNC write of the meta page that marks the transaction flushed, and the promise resolves after
    // that (TXN_COMMITTED is set after mdb_txn_commit returns). After a power loss the environment reopens at
    // the last flushed transaction; after a kill -9 (same boot) at the last committed one, which the page
    // cache holds. Re-check this on an lmdb-js major upgrade (package.json pins ^3).
    const root = open({ path: dir, compression: false, noSync: false, maxDbs: 32 });
    const db = new MetadataDb(root, opts);
    if (db.state.get('head') === undefined) {
      // A database written before it kept a change log has no position that another node could share: it
      // gets an id of its own, so that a copy is made from a snapshot of it, never from the (empty) log.
      const hasData = db.tableNames().some((name) => db.rawTable(name).getKeysCount() > 0);
      const origin: LogPosition = hasData ? { seq: 0, id: randomBytes(8).toString('hex') } : EMPTY_POSITION;
      root.transactionSync(() => {
        db.state.putSync('head', origin);
        db.state.putSync('floor', origin);
      });
    }
    return db;
  }

  table<V>(name: string): Table<V> {
    if (!TABLE_NAME.test(name)) throw new Error(`bad table name ${name}`);
    let table = this.tables.get(name);
    if (!table) {
      table = new Table(this, name, this.root.openDB<unknown, Key>({ name, keyEncoding: 'ordered-binary' }));
      this.tables.set(name, table);
    }
    return table as Table<V>;
  }

  /** A table of this node's own (see LocalTable): `name` is a plain table name, stored as `_local_<name>`. */
  localTable<V>(name: string): LocalTable<V> {
    if (!TABLE_NAME.test(name)) throw new Error(`bad table name ${name}`);
    return new LocalTable(
      this.root.openDB<V, Key>({ name: LOCAL_PREFIX + name, keyEncoding: 'ordered-binary' }),
    );
  }

  /** Called by Table for each write, before it: it joins the running transaction's log entry. */
  record(change: Change, previous: () => unknown): void {
    if (!this.recording) throw new Error('db: a write outside a transaction');
    this.recording.push(change);
    if (this.undoing) this.undoing.unshift({ table: change.table, key: change.key, value: previous() });
  }

  // Runs `body` atomically; reads inside it see its own writes. Resolves once durable on disk (and, on a node
  // whose writes are replicated, once afterCommit says enough copies hold it). If `body` throws, none of its
  // writes happen: lmdb-js batches queued transactions into one LMDB transaction, and only a child
  // transaction is rolled back on its own when its callback throws (a plain one keeps the writes made before
  // the throw).
  async transaction<T>(body: () => T): Promise<T> {
    this.writeGuard?.();
    let logged: LogPosition | undefined;
    const result = await this.root.childTransaction(() => {
      const changes: Change[] = [];
      const logging = this.logChanges?.() ?? true;
      const undo: Change[] = [];
      this.recording = changes;
      this.undoing = logging ? undo : undefined;
      try {
        const value = body();
        if (changes.length > 0 && logging) logged = this.append(changes, undo);
        else if (changes.length > 0) this.leaveLog();
        return value;
      } finally {
        this.recording = undefined;
        this.undoing = undefined;
      }
    });
    if (logged && this.afterCommit) await this.afterCommit(logged);
    return result;
  }

  // Inside a transaction: adds an entry after the head, and drops the oldest beyond logKeep.
  private append(changes: Change[], undo: Change[]): LogPosition {
    const term = this.entryTerm?.() ?? 0;
    const head = this.position();
    const entry: LogEntry = { seq: head.seq + 1, id: randomBytes(8).toString('hex'), term, changes, undo };
    void this.log.put(entry.seq, entry);
    const position = { seq: entry.seq, id: entry.id, term };
    this.advanceHead(position);
    return position;
  }

  /** Logs an entry that changes nothing: how a new leader commits its first entry of its term. */
  async appendMarker(): Promise<LogPosition> {
    const position = await this.root.childTransaction(() => this.append([], []));
    if (this.afterCommit) await this.afterCommit(position);
    return position;
  }

  // Inside a transaction that is not logged: the first one after logged ones starts a history of its own.
  private leaveLog(): void {
    if (this.state.get('unlogged') === true) return;
    const origin: LogPosition = { seq: this.position().seq, id: randomBytes(8).toString('hex') };
    void this.state.put('head', origin);
    void this.state.put('floor', origin);
    void this.state.put('unlogged', true);
    // Entries up to the new floor can serve no copy any more.
    for (const { key } of this.log.getRange({})) void this.log.remove(key);
  }

  private advanceHead(head: LogPosition): void {
    if (this.state.get('unlogged') === true) void this.state.remove('unlogged');
    void this.state.put('head', head);
    let floor = this.floor();
    // Usually one entry per commit; more when logKeep was lowered.
    while (head.seq - floor.seq > this.logKeep) {
      const dropped = this.log.get(floor.seq + 1);
      void this.log.remove(floor.seq + 1);
      floor = { seq: floor.seq + 1, id: dropped?.id ?? '', term: dropped?.term ?? 0 };
    }
    void this.state.put('floor', floor);
  }

  /** This database's position: its newest log entry. */
  position(): LogPosition {
    return (this.state.get('head') as LogPosition | undefined) ?? EMPTY_POSITION;
  }

  /** The position just before the oldest entry kept: a copy at or after it can catch up from the log. */
  private floor(): LogPosition {
    return (this.state.get('floor') as LogPosition | undefined) ?? EMPTY_POSITION;
  }

  /** Whether a copy at `from` can be brought up to date from the log alone. */
  canReplayFrom(from: LogPosition): boolean {
    const head = this.position();
    const floor = this.floor();
    if (from.seq > head.seq || from.seq < floor.seq) return false;
    if (from.seq === floor.seq) return from.id === floor.id;
    return this.log.get(from.seq)?.id === from.id;
  }

  /** Up to `limit` log entries after position `from` (see canReplayFrom), as they are sent to a copy. */
  entriesAfter(from: LogPosition, limit: number): LogEntry[] {
    const entries: LogEntry[] = [];
    for (const { value } of this.log.getRange({ start: from.seq + 1, limit }))
      entries.push({ seq: value.seq, id: value.id, term: value.term ?? 0, changes: value.changes });
    return entries;
  }

  /** The position of entry `seq` of the log (the head, the floor, or an entry kept), if this node holds it. */
  positionAt(seq: number): LogPosition | undefined {
    const head = this.position();
    if (seq === head.seq) return head;
    const floor = this.floor();
    if (seq === floor.seq) return floor;
    const entry = seq > floor.seq && seq < head.seq ? this.log.get(seq) : undefined;
    return entry ? { seq, id: entry.id, term: entry.term ?? 0 } : undefined;
  }

  /** The positions of the newest `count` entries, newest first: where a leader may find the logs agree. */
  recentPositions(count: number): LogPosition[] {
    const head = this.position();
    const out: LogPosition[] = [];
    for (let seq = head.seq; seq >= 0 && out.length < count; seq--) {
      const at = this.positionAt(seq);
      if (!at) break;
      out.push(at);
    }
    return out;
  }

  /**
   * On a copy: applies entries that follow entry `from` of the leader's log, each in the transaction that
   * also logs it, so the copy keeps the same log (and can serve it in turn). Entries it already holds are
   * skipped; where it holds another entry at the same place (written by a leader of an older term and never
   * committed), that entry and all after it are taken back first — never one at or before `committed`.
   * Returns the position of the last entry sent (or `from`), or undefined when this copy does not hold
   * `from` (or cannot take back what it must), so the leader looks further back or sends a snapshot.
   */
  async applyEntries(
    from: LogPosition,
    entries: LogEntry[],
    committed = 0,
  ): Promise<LogPosition | undefined> {
    if (this.resyncing() || !this.holds(from)) return undefined;
    let seq = from.seq;
    for (const entry of entries) if (entry.seq !== ++seq) return undefined;
    try {
      return await this.root.childTransaction(() => {
        let at: LogPosition = this.positionAt(from.seq) ?? from;
        for (const entry of entries) {
          const head = this.position();
          const mine = entry.seq <= head.seq ? this.positionAt(entry.seq) : undefined;
          if (mine && mine.id === entry.id) {
            at = mine;
            continue;
          }
          if (head.seq > at.seq) this.takeBack(at, committed);
          const undo: Change[] = [];
          for (const change of entry.changes) {
            undo.unshift({
              table: change.table,
              key: change.key,
              value: this.rawTable(change.table).get(change.key),
            });
            this.writeRaw(change);
          }
          const term = entry.term ?? 0;
          void this.log.put(entry.seq, { seq: entry.seq, id: entry.id, term, changes: entry.changes, undo });
          at = { seq: entry.seq, id: entry.id, term };
          this.advanceHead(at);
        }
        return at;
      });
    } catch (err) {
      if (err instanceof CannotTakeBack) return undefined;
      throw err;
    }
  }

  // Whether `p` is a position of this node's log (the head, the floor, or a kept entry).
  private holds(p: LogPosition): boolean {
    return this.positionAt(p.seq)?.id === p.id;
  }

  // Inside a transaction: undoes every entry after `to`, newest first, and moves the head back to it.
  private takeBack(to: LogPosition, committed: number): void {
    if (to.seq < committed) throw new CannotTakeBack();
    const head = this.position();
    for (let seq = head.seq; seq > to.seq; seq--) {
      const entry = this.log.get(seq);
      if (!entry?.undo) throw new CannotTakeBack();
      for (const change of entry.undo) this.writeRaw(change);
      void this.log.remove(seq);
      this.takenBack++;
    }
    void this.state.put('head', to);
  }

  private writeRaw(change: Change): void {
    const db = this.rawTable(change.table);
    if (change.value === undefined || change.value === null) void db.remove(change.key);
    else void db.put(change.key, change.value);
  }

  private rawTable(name: string): Database<unknown, Key> {
    return (this.table<unknown>(name) as unknown as { db: Database<unknown, Key> }).db;
  }

  // ---- snapshots: a copy too far behind for the log is rebuilt from the tables themselves ----

  /** Whether a snapshot is being loaded here: the copy is incomplete until finishResync. */
  resyncing(): boolean {
    return this.state.get('resyncing') === true;
  }

  /**
   * The tables, in batches of `batchCount` entries: every entry of every replicated table, as puts. Taken while
   * writes go on, so an entry may show its state at any moment after the caller read position(): replaying the
   * log from that position onto the loaded snapshot gives the state at the head exactly.
   */
  *snapshot(batchCount = 256): Generator<Change[]> {
    const names = this.tableNames();
    let batch: Change[] = [];
    for (const name of names) {
      for (const { key, value } of this.rawTable(name).getRange({})) {
        batch.push({ table: name, key: (Array.isArray(key) ? key : [key]) as Key, value });
        if (batch.length >= batchCount) {
          yield batch;
          batch = [];
        }
      }
    }
    if (batch.length > 0) yield batch;
  }

  /** The replicated tables: those on disk and those opened here. */
  private tableNames(): string[] {
    const onDisk = [...this.root.getKeys({})].filter(
      (name): name is string => typeof name === 'string' && TABLE_NAME.test(name),
    );
    return [...new Set([...onDisk, ...this.tables.keys()])].sort();
  }

  /** On a copy: forgets every table (marked as resyncing first, so a crash midway restarts the load). */
  async beginResync(): Promise<void> {
    await this.root.childTransaction(() => void this.state.put('resyncing', true));
    for (const name of this.tableNames()) await this.rawTable(name).clearAsync();
    await this.log.clearAsync();
  }

  async loadSnapshot(changes: Change[]): Promise<void> {
    await this.root.childTransaction(() => {
      if (!this.resyncing()) throw new Error('db: snapshot batch outside a resync');
      for (const change of changes) {
        if (!TABLE_NAME.test(change.table)) throw new Error(`bad table name ${change.table}`);
        this.writeRaw(change);
      }
    });
  }

  /**
   * On a copy: the snapshot is loaded; the copy stands at `position` (the snapshot's start). Its tables may
   * show writes up to `through` (the leader's head when the snapshot ended): until it has replayed the log
   * that far they match no single position, and it may not lead (see mayLead).
   */
  async finishResync(position: LogPosition, through: LogPosition = position): Promise<void> {
    await this.root.childTransaction(() => {
      void this.state.put('head', position);
      void this.state.put('floor', position);
      void this.state.put('settled', through.seq);
      void this.state.remove('resyncing');
    });
  }

  /** Whether the tables match the log's head (no snapshot half loaded or still being caught up on). */
  mayLead(): boolean {
    if (this.resyncing()) return false;
    const settled = this.state.get('settled');
    return typeof settled !== 'number' || this.position().seq >= settled;
  }

  // ---- elections: the term and vote, durable before any answer depends on them ----

  electionState(): ElectionState {
    const saved = this.state.get('election') as ElectionState | undefined;
    return saved ?? { term: 0 };
  }

  async saveElectionState(state: ElectionState): Promise<void> {
    await this.root.childTransaction(() => void this.state.put('election', state));
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
