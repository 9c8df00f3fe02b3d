// Throughput of `coffre crypt` through a directory remote, beside git-annex (+gpg) and `rclone crypt` on the same
// data: one big file (default 1 GiB) and many small files (default 1000 × 4 KiB), put and get, in shared and
// hybrid mode. Every tool runs as a user would run it (a subprocess); MiB/s = plaintext bytes / wall time.
// git-annex's "put" is `git annex copy --to` (its hashing happened earlier, at `git annex add`, and is not
// counted); coffre's put includes hashing the file. Tools that are missing are reported and skipped.
// Run: npx tsc -p tsconfig.json && node dist/bench/crypt.js [bigMiB] [smallCount]

import { spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COFFRE_BIN, COFFRE_NODE_FLAGS } from '../test/helpers/server.js';

const MiB = 1024 * 1024;
const bigMiB = Number(process.argv[2] ?? 1024);
const smallCount = Number(process.argv[3] ?? 1000);
const SMALL_SIZE = 4096;
// The coffre command as users start it: node with the flags of bin/coffre.js's launcher line.
const COFFRE = [...COFFRE_NODE_FLAGS, COFFRE_BIN];
const base = join(tmpdir(), `coffre-bench-crypt-${process.pid}`);
const gnupg = join(base, 'gnupg');
const gitEnv = {
  GIT_AUTHOR_NAME: 'b',
  GIT_AUTHOR_EMAIL: 'b@example.invalid',
  GIT_COMMITTER_NAME: 'b',
  GIT_COMMITTER_EMAIL: 'b@example.invalid',
};
const env = { ...process.env, ...gitEnv, GNUPGHOME: gnupg, COFFRE_CRYPT_HOME: join(base, 'home') };

function run(cmd: string, args: string[], cwd?: string): number {
  // Earlier steps' written data is flushed first, so no step pays for another's writeback (each tool writes
  // gigabytes here, and the kernel would otherwise throttle whichever step happens to cross its dirty limit).
  spawnSync('sync');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.slice(0, 4).join(' ')}… failed: ${r.stderr?.slice(0, 400)}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function out(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  return r.stdout;
}

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

async function writeRandomFile(path: string, size: number): Promise<void> {
  const w = createWriteStream(path);
  const block = randomBytes(MiB);
  for (let left = size; left > 0; left -= MiB) {
    block.writeUInt32LE(left >>> 0, 0); // every block distinct
    if (!w.write(Buffer.from(block.subarray(0, Math.min(MiB, left))))) await once(w, 'drain');
  }
  w.end();
  await once(w, 'close');
}

interface Row {
  tool: string;
  mode: string;
  data: string;
  put: number;
  get: number;
}
const rows: Row[] = [];
const rate = (bytes: number, seconds: number) => bytes / MiB / seconds;

async function main(): Promise<void> {
  mkdirSync(gnupg, { recursive: true, mode: 0o700 });
  const data = join(base, 'data');
  const smallDir = join(data, 'small');
  mkdirSync(smallDir, { recursive: true });
  const big = join(data, 'big.bin');
  await writeRandomFile(big, bigMiB * MiB);
  const smallFiles: string[] = [];
  for (let i = 0; i < smallCount; i++) {
    const p = join(smallDir, `f${i}.dat`);
    writeFileSync(p, randomBytes(SMALL_SIZE));
    smallFiles.push(p);
  }
  const bigBytes = bigMiB * MiB;
  const smallBytes = smallCount * SMALL_SIZE;
  const bigLabel = `${bigMiB} MiB file`;
  const smallLabel = `${smallCount} × ${SMALL_SIZE / 1024} KiB`;
  run('gpg', [
    '--batch',
    '--passphrase',
    '',
    '--quick-gen-key',
    'Bench <bench@example.invalid>',
    'future-default',
    'default',
    'never',
  ]);
  const keyId = out('gpg', ['--list-keys', '--with-colons'])
    .split('\n')
    .find((l) => l.startsWith('pub:'))!
    .split(':')[4];

  // coffre
  // The keys a remote holds: the first column of `crypt ls` (the second is the path each was put from).
  const keysOf = (name: string) =>
    out(process.execPath, [...COFFRE, 'crypt', 'ls', name])
      .trim()
      .split('\n')
      .map((line) => line.split(/\s+/)[0]!);
  for (const mode of ['shared', 'hybrid']) {
    const remote = join(base, `coffre-${mode}`);
    mkdirSync(remote);
    const name = `b-${mode}`;
    const keys = mode === 'hybrid' ? ['--keyid', keyId] : [];
    run(process.execPath, [
      ...COFFRE,
      'crypt',
      'init',
      name,
      '--type',
      'directory',
      '--path',
      remote,
      '--encryption',
      mode,
      ...keys,
    ]);
    const putBig = run(process.execPath, [...COFFRE, 'crypt', 'put', name, big]);
    const bigKey = keysOf(name)[0]!;
    const getOut = join(base, `got-${mode}`);
    mkdirSync(getOut);
    const getBig = run(process.execPath, [
      ...COFFRE,
      'crypt',
      'get',
      name,
      bigKey,
      '-o',
      join(getOut, 'big'),
    ]);
    rows.push({
      tool: 'coffre crypt',
      mode,
      data: bigLabel,
      put: rate(bigBytes, putBig),
      get: rate(bigBytes, getBig),
    });
    const putSmall = run(process.execPath, [...COFFRE, 'crypt', 'put', name, ...smallFiles, '-j', '4']);
    const smallKeys = keysOf(name).filter((k) => k !== bigKey);
    const getSmall = run(process.execPath, [
      ...COFFRE,
      'crypt',
      'get',
      name,
      ...smallKeys,
      '-o',
      getOut,
      '-j',
      '4',
    ]);
    rows.push({
      tool: 'coffre crypt',
      mode,
      data: smallLabel,
      put: rate(smallBytes, putSmall),
      get: rate(smallBytes, getSmall),
    });
    rmSync(remote, { recursive: true, force: true });
    rmSync(getOut, { recursive: true, force: true });
  }

  // git-annex with gpg
  if (has('git-annex')) {
    for (const mode of ['shared', 'hybrid']) {
      const repo = join(base, `annex-${mode}`);
      const remote = join(base, `annex-remote-${mode}`);
      mkdirSync(remote);
      run('git', ['init', '-q', repo]);
      run('git', ['annex', 'init', '-q', 'bench'], repo);
      mkdirSync(join(repo, 'small'));
      run('cp', ['--reflink=auto', big, join(repo, 'big.bin')]);
      for (const f of readdirSync(smallDir)) run('cp', [join(smallDir, f), join(repo, 'small', f)]);
      run('git', ['annex', 'add', '-q', '-J2', '.'], repo);
      run('git', ['commit', '-q', '-m', 'data'], repo);
      const keyArg = mode === 'hybrid' ? [`keyid=${keyId}`] : [];
      run(
        'git',
        [
          'annex',
          'initremote',
          'r',
          'type=directory',
          `directory=${remote}`,
          `encryption=${mode}`,
          ...keyArg,
        ],
        repo,
      );
      const putBig = run('git', ['annex', 'copy', '-q', '--to', 'r', 'big.bin'], repo);
      run('git', ['annex', 'drop', '-q', '--force', 'big.bin'], repo);
      const getBig = run('git', ['annex', 'get', '-q', '--from', 'r', 'big.bin'], repo);
      rows.push({
        tool: 'git-annex + gpg',
        mode,
        data: bigLabel,
        put: rate(bigBytes, putBig),
        get: rate(bigBytes, getBig),
      });
      const putSmall = run('git', ['annex', 'copy', '-q', '-J4', '--to', 'r', 'small'], repo);
      run('git', ['annex', 'drop', '-q', '--force', 'small'], repo);
      const getSmall = run('git', ['annex', 'get', '-q', '-J4', '--from', 'r', 'small'], repo);
      rows.push({
        tool: 'git-annex + gpg',
        mode,
        data: smallLabel,
        put: rate(smallBytes, putSmall),
        get: rate(smallBytes, getSmall),
      });
      run('chmod', ['-R', 'u+w', repo, remote]);
      rmSync(repo, { recursive: true, force: true });
      rmSync(remote, { recursive: true, force: true });
    }
  } else console.log('git-annex not installed: skipped');

  // rclone crypt (its own format: NaCl secretbox, 64 KiB blocks)
  if (has('rclone')) {
    const remote = join(base, 'rclone-remote');
    mkdirSync(remote);
    const pw = out('rclone', ['obscure', 'bench-password']).trim();
    const renv = {
      RCLONE_CONFIG_BC_TYPE: 'crypt',
      RCLONE_CONFIG_BC_REMOTE: remote,
      RCLONE_CONFIG_BC_PASSWORD: pw,
    };
    Object.assign(env, renv);
    const getOut = join(base, 'rclone-got');
    const putBig = run('rclone', ['copy', big, 'bc:big', '--transfers', '4']);
    const getBig = run('rclone', ['copy', 'bc:big', getOut]);
    rows.push({
      tool: 'rclone crypt',
      mode: '-',
      data: bigLabel,
      put: rate(bigBytes, putBig),
      get: rate(bigBytes, getBig),
    });
    const putSmall = run('rclone', ['copy', smallDir, 'bc:small', '--transfers', '4']);
    const getSmall = run('rclone', ['copy', 'bc:small', join(getOut, 'small'), '--transfers', '4']);
    rows.push({
      tool: 'rclone crypt',
      mode: '-',
      data: smallLabel,
      put: rate(smallBytes, putSmall),
      get: rate(smallBytes, getSmall),
    });
  } else console.log('rclone not installed: skipped');

  console.log(
    `\ncoffre crypt vs git-annex vs rclone crypt — directory remote, MiB/s of plaintext (higher is better)\n`,
  );
  const fmt = (v: number) => (v >= 10 ? v.toFixed(1) : v.toPrecision(2));
  const perFile = (r: Row, v: number) =>
    r.data === smallLabel ? ` (${((v * MiB) / SMALL_SIZE).toFixed(0)} files/s)` : '';
  console.log('| tool | mode | data | put MiB/s | get MiB/s |');
  console.log('|---|---|---|---:|---:|');
  for (const r of rows)
    console.log(
      `| ${r.tool} | ${r.mode} | ${r.data} | ${fmt(r.put)}${perFile(r, r.put)} | ${fmt(r.get)}${perFile(r, r.get)} |`,
    );
}

try {
  await main();
} finally {
  spawnSync('gpgconf', ['--homedir', gnupg, '--kill', 'gpg-agent']);
  spawnSync('chmod', ['-R', 'u+w', base]);
  rmSync(base, { recursive: true, force: true });
}
