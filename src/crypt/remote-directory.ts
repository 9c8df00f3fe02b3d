// crypt/remote-directory: git-annex's directory special remote layout, `<dir>/<hashdirlower>/<K>/<K>`.
// Writes go to `<dir>/tmp/<K>` then are renamed into place read-only, as git-annex does. coffre's own state
// objects are replaced under a lock file (`<dir>/tmp/<K>.lock`, created exclusively, as git does with its index),
// which makes their compare-and-swap atomic among coffre processes.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../util/errors.js';
import { hashDirLower } from './names.js';
import { MissingObjectError, ObjectTooLargeError, type ObjectStore, type VersionedObject } from './store.js';

/** How long a writer waits for another one's lock on a state object before it gives up. */
const LOCK_WAIT_MS = 10_000;
const LOCK_RETRY_MS = 25;

const versionOf = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export class DirectoryStore implements ObjectStore {
  constructor(readonly root: string) {}

  get description(): string {
    return `directory ${this.root}`;
  }

  objectPath(name: string): string {
    return join(this.root, hashDirLower(name), name, name);
  }

  async put(name: string, data: AsyncIterable<Buffer>): Promise<void> {
    const tmpDir = join(this.root, 'tmp');
    await mkdir(tmpDir, { recursive: true });
    const tmp = join(tmpDir, `${name}.${process.pid}.${Math.random().toString(36).slice(2)}`);
    try {
      await pipeline(Readable.from(data), createWriteStream(tmp, { mode: 0o644 }));
      const final = this.objectPath(name);
      await mkdir(join(final, '..'), { recursive: true });
      await chmod(tmp, 0o444);
      await rename(tmp, final);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async *get(name: string): AsyncIterable<Buffer> {
    const path = this.objectPath(name);
    let stream;
    try {
      await stat(path);
      stream = createReadStream(path, { highWaterMark: 1 << 20 });
    } catch {
      throw new MissingObjectError(name, this.description);
    }
    for await (const chunk of stream) yield chunk as Buffer;
  }

  async has(name: string): Promise<boolean> {
    try {
      await stat(this.objectPath(name));
      return true;
    } catch {
      return false;
    }
  }

  async getVersioned(name: string, limit: number): Promise<VersionedObject | null> {
    const path = this.objectPath(name);
    let data: Buffer;
    try {
      if ((await stat(path)).size > limit) throw new ObjectTooLargeError(name, this.description, limit);
      data = await readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    if (data.length > limit) throw new ObjectTooLargeError(name, this.description, limit);
    return { data, version: versionOf(data) };
  }

  async compareAndSwap(): Promise<boolean> {
    return true;
  }

  async putIfUnchanged(name: string, data: Buffer, expected: string | null): Promise<string | null> {
    const tmpDir = join(this.root, 'tmp');
    await mkdir(tmpDir, { recursive: true });
    const lock = join(tmpDir, `${name}.lock`);
    const handle = await this.acquire(lock);
    let published = false;
    try {
      const current = await this.getVersioned(name, Number.MAX_SAFE_INTEGER);
      if ((current?.version ?? null) !== expected) return null;
      await handle.writeFile(data);
      await handle.sync();
      await handle.close();
      const final = this.objectPath(name);
      await mkdir(join(final, '..'), { recursive: true });
      await chmod(lock, 0o444);
      await rename(lock, final); // publishes and releases the lock in one step
      published = true;
      return versionOf(data);
    } finally {
      if (!published) {
        await handle.close().catch(() => {});
        await rm(lock, { force: true });
      }
    }
  }

  private async acquire(lock: string) {
    for (let waited = 0; ; waited += LOCK_RETRY_MS) {
      try {
        return await open(lock, 'wx', 0o644);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (waited >= LOCK_WAIT_MS)
          throw new UserError(
            `${lock} exists: another coffre is updating this remote; if none is running, remove that file`,
          );
        await sleep(LOCK_RETRY_MS);
      }
    }
  }

  async remove(name: string): Promise<void> {
    const path = this.objectPath(name);
    const dir = join(path, '..');
    await chmod(dir, 0o755).catch(() => {});
    await rm(path, { force: true });
    await rmdir(dir).catch(() => {});
    await rmdir(join(dir, '..')).catch(() => {});
    await rmdir(join(dir, '..', '..')).catch(() => {});
  }
}
