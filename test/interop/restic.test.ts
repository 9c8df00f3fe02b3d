// Interop: restic (its S3 backend is minio-go) against a coffre server — init, backup of a tree of many small
// files and a few larger ones, check with data verification, a second incremental backup, restore compared
// byte for byte, snapshots, forget/prune.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { runCommand, type TestServer } from '../helpers/server.js';
import { startTarget } from '../helpers/target.js';
import { hasTool, requireTools } from '../helpers/tools.js';

let server: TestServer | undefined;
let work: string;
let env: Record<string, string>;
const KiB = 1024;

before(async () => {
  if (!hasTool('restic') && !process.env.CI) return;
  server = await startTarget();
  work = mkdtempSync(join(tmpdir(), 'coffre-restic-'));
  env = {
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CA_BUNDLE: '',
    RESTIC_REPOSITORY: `s3:${server.endpoint}/restic-repo`,
    RESTIC_PASSWORD: 'correct horse battery staple',
    RESTIC_CACHE_DIR: join(work, 'cache'),
    HOME: work,
  };
});

after(async () => {
  await server?.stop();
  server?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** When a command fails because the server is gone, say so and show the end of its log. */
function serverExit(): string {
  const exited = server?.process.exitCode ?? server?.process.signalCode ?? null;
  return exited === null ? '' : `\nthe server exited (${exited}):\n${server!.stderr().slice(-4000)}`;
}

async function restic(args: string[]) {
  const r = await runCommand('restic', args, env);
  if (r.code !== 0)
    assert.fail(`restic ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}${serverExit()}`);
  return r;
}

function walk(root: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const visit = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) visit(p);
      else out.set(relative(root, p), readFileSync(p));
    }
  };
  visit(root);
  return out;
}

function makeSource(root: string): void {
  // ~600 small files in nested folders, some duplicates (restic deduplicates them), a few larger files.
  for (let d = 0; d < 12; d++) {
    const dir = join(root, `dir-${d}`, d % 3 === 0 ? 'nested/deeper' : 'flat');
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 50; f++) {
      const size = (f * 37 + d * 11) % (4 * KiB);
      writeFileSync(
        join(dir, `file-${f}.dat`),
        f % 10 === 0 ? Buffer.from(`duplicate content ${f}\n`) : randomBytes(size),
      );
    }
  }
  writeFileSync(join(root, 'large-1.bin'), randomBytes(3 * 1024 * KiB));
  writeFileSync(join(root, 'large-2.bin'), randomBytes(1500 * KiB + 3));
  writeFileSync(join(root, 'empty.txt'), '');
  writeFileSync(join(root, 'ünïcødé name.txt'), 'odd name\n');
}

test('restic init, backup, check --read-data, incremental backup, restore byte for byte, forget --prune', async (t) => {
  if (!requireTools(t, 'restic')) return;
  const s3 = new S3Client({
    endpoint: server!.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: server!.accessKeyId, secretAccessKey: server!.secretAccessKey },
  });
  try {
    await s3.send(new CreateBucketCommand({ Bucket: 'restic-repo' }));
    const src = join(work, 'source');
    makeSource(src);
    const original = walk(src);
    assert.ok(original.size > 600);

    await restic(['init']);
    const first = await restic(['backup', '--json', '--host', 'test-host', src]);
    const summary = first.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { message_type: string; files_new?: number; snapshot_id?: string })
      .find((m) => m.message_type === 'summary');
    assert.ok(summary?.snapshot_id, 'backup produced a snapshot');
    assert.equal(summary.files_new, original.size);

    // The repository really is in the bucket: config, keys, data packs, index, snapshots.
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: 'restic-repo', ContinuationToken: token }),
      );
      keys.push(...(page.Contents ?? []).map((c) => c.Key!));
      token = page.NextContinuationToken;
    } while (token);
    assert.ok(keys.includes('config'));
    for (const prefix of ['keys/', 'data/', 'index/', 'snapshots/'])
      assert.ok(
        keys.some((k) => k.startsWith(prefix)),
        `repository has ${prefix}`,
      );

    await restic(['check', '--read-data']);

    // Change a few things and back up again.
    writeFileSync(join(src, 'dir-1/flat/file-1.dat'), 'changed\n');
    rmSync(join(src, 'dir-2/flat/file-2.dat'));
    writeFileSync(join(src, 'new-file.txt'), randomBytes(10 * KiB));
    await restic(['backup', '--host', 'test-host', src]);
    const snapshots = JSON.parse((await restic(['snapshots', '--json'])).stdout) as { id: string }[];
    assert.equal(snapshots.length, 2);

    // Restore the latest and the first, compare each with what was backed up.
    const latest = walk(src);
    const restoreLatest = join(work, 'restore-latest');
    await restic(['restore', 'latest', '--target', restoreLatest]);
    const gotLatest = walk(join(restoreLatest, src));
    assert.deepEqual([...gotLatest.keys()].sort(), [...latest.keys()].sort());
    for (const [rel, data] of latest) assert.ok(gotLatest.get(rel)!.equals(data), `latest: ${rel}`);

    const restoreFirst = join(work, 'restore-first');
    await restic(['restore', summary.snapshot_id, '--target', restoreFirst]);
    const gotFirst = walk(join(restoreFirst, src));
    assert.deepEqual([...gotFirst.keys()].sort(), [...original.keys()].sort());
    for (const [rel, data] of original) assert.ok(gotFirst.get(rel)!.equals(data), `first: ${rel}`);

    // Forget the first snapshot and prune: packs are deleted, the repository stays consistent.
    await restic(['forget', '--keep-last', '1', '--prune']);
    await restic(['check']);
    const after = JSON.parse((await restic(['snapshots', '--json'])).stdout) as { id: string }[];
    assert.equal(after.length, 1);
  } finally {
    s3.destroy();
  }
});
