// crypt/location-log: which keys a remote holds, kept by coffre so ls/fsck/unused never enumerate the remote
// (whose names are HMACs anyway). Append-only JSON lines beside the remote's config; the last line per key wins,
// like git-annex's location log. Chunked keys carry their chunk size and count like git-annex's chunk log, and a
// key stored by `put` carries the paths it was stored from, so that get, ls, rm and fsck take a file's path as
// well as its key. Published into the remote (--store-config) the log is encrypted with the remote's cipher, as
// are those paths: the storage never sees them.
import { normalize } from 'node:path';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cryptHome, ensureHome, writePrivateFile } from './config.js';

export interface LocationEntry {
  key: string;
  present: boolean;
  /** Seconds since the epoch, fractional. */
  time: number;
  chunkSize?: number;
  chunkCount?: number;
  /** The paths `put` stored this content from, as they were given (normalized). */
  paths?: string[];
}

/** A path as the log keeps it: normalized, without a leading `./`. */
export function logPathOf(path: string): string {
  return normalize(path).replace(/^(\.\/)+/, '');
}

export function logPath(remote: string): string {
  return join(cryptHome(), `${remote}.log`);
}

export class LocationLog {
  private readonly entries = new Map<string, LocationEntry>();

  private constructor(private readonly remote: string) {}

  static load(remote: string): LocationLog {
    const log = new LocationLog(remote);
    const path = logPath(remote);
    if (!existsSync(path)) return log;
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        const e = JSON.parse(line) as LocationEntry;
        const prev = log.entries.get(e.key);
        if (!prev || prev.time <= e.time) log.entries.set(e.key, e);
      } catch {
        // a torn last line from an interrupted write: ignore it
      }
    }
    return log;
  }

  get(key: string): LocationEntry | undefined {
    return this.entries.get(key);
  }

  isPresent(key: string): boolean {
    return this.entries.get(key)?.present === true;
  }

  presentKeys(): LocationEntry[] {
    return [...this.entries.values()].filter((e) => e.present).sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Every entry, present or not (for publishing the log). */
  all(): LocationEntry[] {
    return [...this.entries.values()].sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Takes entries newer than ours (another machine's log); returns how many changed. */
  merge(entries: LocationEntry[]): number {
    let changed = 0;
    for (const e of entries) {
      const mine = this.entries.get(e.key);
      if (mine && mine.time >= e.time) continue;
      this.entries.set(e.key, e);
      changed++;
    }
    if (changed > 0) this.compact();
    return changed;
  }

  /** The present keys stored from `path` (several when the file changed between puts). */
  keysForPath(path: string): LocationEntry[] {
    const wanted = logPathOf(path);
    return this.presentKeys().filter((e) => e.paths?.includes(wanted));
  }

  /** Records an entry; content still present keeps the paths it was stored from, plus any new one. */
  record(entry: Omit<LocationEntry, 'time'> & { time?: number }): void {
    const prev = this.entries.get(entry.key);
    const paths = entry.present
      ? [...new Set([...(prev?.present ? (prev.paths ?? []) : []), ...(entry.paths ?? [])])]
      : [];
    const { paths: _given, ...rest } = entry;
    const full: LocationEntry = {
      ...rest,
      time: entry.time ?? Date.now() / 1000,
      ...(paths.length > 0 ? { paths } : {}),
    };
    this.entries.set(full.key, full);
    ensureHome();
    appendFileSync(logPath(this.remote), JSON.stringify(full) + '\n', { mode: 0o600 });
  }

  /** Rewrites the log with only the current state (after imports or rotation). */
  compact(): void {
    const lines = [...this.entries.values()].map((e) => JSON.stringify(e)).join('\n');
    ensureHome();
    writePrivateFile(logPath(this.remote), lines ? lines + '\n' : '');
  }
}
