// db: the metadata key-value store — named tables with ordered range scans and transactions — over an
// embedded engine (LMDB through lmdb-js). Keys are arrays of strings/numbers, ordered element by element
// (strings by their UTF-8 bytes, as S3 listings need). Nothing here knows what the values mean.
import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';

export type Key = (string | number)[];

export interface RangeOptions {
  // Inclusive lower bound; every key in the scan starts with `prefix`.
  prefix: Key;
  start?: Key;
  limit?: number;
}

export class Table<V> {
  constructor(private readonly db: Database<V, Key>) {}

  get(key: Key): V | undefined {
    return this.db.get(key);
  }

  // Writes take effect when the surrounding transaction commits (see MetadataDb.transaction).
  put(key: Key, value: V): void {
    void this.db.put(key, value);
  }

  remove(key: Key): void {
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

export class MetadataDb {
  private constructor(private readonly root: RootDatabase) {}

  static open(dir: string): MetadataDb {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // lmdb-js commits are durable (fsync'd) when the transaction promise resolves: that is the moment a
    // write is acknowledged to a client.
    const root = open({ path: dir, compression: false, noSync: false, maxDbs: 32 });
    return new MetadataDb(root);
  }

  table<V>(name: string): Table<V> {
    return new Table<V>(this.root.openDB<V, Key>({ name, keyEncoding: 'ordered-binary' }));
  }

  // Runs `body` atomically; reads inside it see its own writes. Resolves once durable on disk. If `body`
  // throws, none of its writes happen: lmdb-js batches queued transactions into one LMDB transaction, and
  // only a child transaction is rolled back on its own when its callback throws (a plain one keeps the
  // writes made before the throw).
  async transaction<T>(body: () => T): Promise<T> {
    return this.root.childTransaction(body);
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
