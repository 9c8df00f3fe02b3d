// crypt/remote-directory: git-annex's directory special remote layout, `<dir>/<hashdirlower>/<K>/<K>`.
// Writes go to `<dir>/tmp/<K>` then are renamed into place read-only, as git-annex does.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { hashDirLower } from './names.js';
import { MissingObjectError, type ObjectStore } from './store.js';

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
