// Test helper: a real single-node Ceph RGW (Debian's packages: ceph-mon ceph-osd radosgw ceph-common) in a
// temporary directory, for the gateway tests and bench/vs-ceph.
//
// Ceph's monitor and OSD listen on fixed ports (3300, 6800…), so they run inside a network namespace of their own
// where those ports are private; the RGW runs beside the test on 127.0.0.1 with port 0 (beast binds what the
// system picks; the port is read back from /proc) and reaches its cluster over the namespace's veth pair. cephx is
// off, one OSD (memstore by default; bluestore on a sparse file when asked), pool size 1, no mgr (the RGW does not
// need one). About 15 s from nothing with memstore.
//
// A guardian shell, in its own session, holds the daemons' pids on its stdin: when the helper stops, or the test
// process dies in any way, its stdin ends and it kills the daemons, deletes the namespace and the directory.
// Anything that keeps Ceph from starting (not Linux, not root, packages missing, a daemon that dies) is thrown as a
// CephUnavailable whose message says why, so a test can skip with that reason printed.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { S3Client } from '@aws-sdk/client-s3';
import { createNamespace, type OwnedNamespace } from './netns.js';

/** The Debian packages the helper needs; .ci/run installs them. */
export const CEPH_PACKAGES = ['ceph-mon', 'ceph-osd', 'ceph-mgr', 'radosgw', 'ceph-common'] as const;
const CEPH_BINARIES = [
  'ceph-mon',
  'ceph-osd',
  'radosgw',
  'radosgw-admin',
  'ceph',
  'ceph-authtool',
  'monmaptool',
];

/** Deadlines for each daemon to come up: generous, since a busy two-core machine can be slow. */
const MON_DEADLINE_MS = 90_000;
const OSD_DEADLINE_MS = 180_000;
const RGW_DEADLINE_MS = 240_000;
const POLL_MS = 250;

export class CephUnavailable extends Error {
  override name = 'CephUnavailable';
}

export interface CephOptions {
  /** memstore (fast, in the OSD's memory; the default) or bluestore on a sparse file in the directory. */
  objectstore?: 'memstore' | 'bluestore';
  /** The OSD's capacity in GiB (memstore's limit or the bluestore file's size). */
  sizeGiB?: number;
}

export interface Ceph {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  objectstore: 'memstore' | 'bluestore';
  /** The daemons' pids (mon, osd, rgw), for CPU and memory figures. */
  pids: { mon: number; osd: number; rgw: number };
  dir: string;
  client(): S3Client;
  /** Kills the daemons and removes the namespace and the directory; resolves once they are gone. */
  stop(): Promise<void>;
}

function missingBinaries(): string[] {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  return CEPH_BINARIES.filter(
    (bin) =>
      !dirs.some((d) => {
        try {
          accessSync(join(d, bin), constants.X_OK);
          return true;
        } catch {
          return false;
        }
      }),
  );
}

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`.trim()));
      else resolve(stdout);
    });
  });
}

function tail(path: string, lines = 20): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// The kill-and-clean script: it reads pids until its stdin ends (the helper's stop, or the test process's death),
// then kills them, waits until each is gone or a zombie, and removes the namespace, the host's veth end and the dir.
const GUARDIAN = `
pids=""
while read -r p; do pids="$pids $p"; done
[ -n "$pids" ] && kill -9 $pids 2>/dev/null
for p in $pids; do
  n=0
  while [ -e /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status 2>/dev/null && [ $n -lt 200 ]; do
    sleep 0.05; n=$((n+1))
  done
done
ip netns del "$1" 2>/dev/null
ip link del "$2" 2>/dev/null
rm -rf "$3"
`;

/** The TCP port a process listens on (the first LISTEN socket among its fds), read from /proc. */
function listeningPort(pid: number): number | undefined {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      /* closed meanwhile */
    }
  }
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXADDR:HEXPORT, st 0A is LISTEN, the inode is the tenth field.
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) return parseInt(f[1]!.split(':')[1]!, 16);
    }
  }
  return undefined;
}

function httpAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', timeout: 5_000 }, (res) => {
      res.resume();
      resolve(res.statusCode !== undefined);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

function cephConf(dir: string, ns: OwnedNamespace, objectstore: string, sizeBytes: number): string {
  const kmsKey = () => randomBytes(32).toString('base64');
  return `[global]
fsid = ${randomUUID()}
mon host = v2:${ns.peerAddr}:3300
public addr = ${ns.peerAddr}
public network = ${ns.subnet}
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = ${dir}/run
pid file = ${dir}/run/$name.pid
log file = ${dir}/log/$name.log
admin socket = ${dir}/run/$name.asok
keyring = ${dir}/keyring
ms bind ipv6 = false
# radosgw otherwise insists on 'secure' mode to the mon, which auth=none cannot give
ms mon client mode = crc
ms client mode = crc
ms cluster mode = crc
ms service mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
mon data avail warn = 1
mon data avail crit = 0
mon warn on insecure global id reclaim allowed = false

[mon]
mon data = ${dir}/mon/$id

[osd]
osd data = ${dir}/osd/$id
osd objectstore = ${objectstore}
osd memory target = 1073741824
memstore device bytes = ${sizeBytes}
bluestore block path = ${dir}/osd/$id/block.file
bluestore block create = true
bluestore block size = ${sizeBytes}
bluestore block db create = false
bluestore block wal create = false
osd max object size = 1073741824

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:0 tcp_nodelay=1
rgw data = ${dir}/rgw
rgw crypt require ssl = false
rgw crypt s3 kms backend = testing
rgw crypt s3 kms encryption keys = testkey-1=${kmsKey()} testkey-2=${kmsKey()}
rgw thread pool size = 128
`;
}

/** Starts a fresh single-node Ceph RGW; throws CephUnavailable saying why when it cannot. */
export async function startCeph(opts: CephOptions = {}): Promise<Ceph> {
  if (process.platform !== 'linux') throw new CephUnavailable('Ceph RGW tests need Linux');
  if (process.getuid?.() !== 0)
    throw new CephUnavailable('Ceph RGW tests need root (for a network namespace)');
  const missing = missingBinaries();
  if (missing.length > 0) {
    throw new CephUnavailable(
      `${missing.join(', ')} not found: apt-get install ${CEPH_PACKAGES.join(' ')} (Debian 12 ships Ceph 16.2)`,
    );
  }
  const objectstore = opts.objectstore ?? 'memstore';
  const sizeBytes = (opts.sizeGiB ?? (objectstore === 'memstore' ? 2 : 20)) * 1024 ** 3;
  let ns: OwnedNamespace;
  try {
    ns = createNamespace();
  } catch (err) {
    throw new CephUnavailable((err as Error).message);
  }
  const dir = mkdtempSync(join(tmpdir(), 'coffre-ceph-'));
  for (const sub of ['mon', 'osd', 'rgw', 'log', 'run']) mkdirSync(join(dir, sub));
  const guardian = spawn('sh', ['-c', GUARDIAN, 'coffre-ceph-guardian', ns.name, ns.hostLink, dir], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  guardian.unref();
  (guardian.stdin as unknown as { unref?: () => void }).unref?.();
  const guardianGone = new Promise<void>((r) => guardian.once('exit', () => r()));
  const daemons: ChildProcess[] = [];
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      guardian.ref(); // wait for the clean-up even when nothing else keeps this process alive
      guardian.stdin!.end();
      await guardianGone;
    })();
    return stopping;
  };

  const conf = join(dir, 'ceph.conf');
  writeFileSync(conf, cephConf(dir, ns, objectstore, sizeBytes));
  const ceph = (...args: string[]) => run('ceph', ['-c', conf, '--connect-timeout', '10', ...args], 30_000);

  // A daemon in the foreground (-f) so its pid is the one spawned; its stderr goes to a file beside its log.
  const startDaemon = (name: string, inNamespace: boolean, args: string[]) => {
    const errFd = openSync(join(dir, 'log', `${name}.stderr`), 'a');
    const argv = [...args, '-f', '-c', conf];
    const child = inNamespace
      ? spawn('ip', ['netns', 'exec', ns.name, ...argv], { stdio: ['ignore', errFd, errFd] })
      : spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', errFd, errFd] });
    closeSync(errFd);
    child.unref();
    if (child.pid === undefined) throw new CephUnavailable(`${args[0]} could not be started`);
    guardian.stdin!.write(`${child.pid}\n`);
    daemons.push(child);
    return child;
  };
  const waitFor = async (
    what: string,
    daemon: ChildProcess,
    log: string,
    deadlineMs: number,
    ready: () => Promise<boolean>,
  ) => {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      if (daemon.exitCode !== null || daemon.signalCode !== null) {
        throw new CephUnavailable(
          `${what} exited (${daemon.exitCode ?? daemon.signalCode}) while starting:\n${tail(log)}`,
        );
      }
      if (await ready()) return;
      if (Date.now() > deadline)
        throw new CephUnavailable(`${what} not up after ${deadlineMs / 1000} s:\n${tail(log)}`);
      await sleep(POLL_MS);
    }
  };
  const succeeds = (p: Promise<unknown>) =>
    p.then(
      () => true,
      () => false,
    );

  try {
    await run('ceph-authtool', [
      '--create-keyring',
      join(dir, 'keyring'),
      '--gen-key',
      '-n',
      'mon.',
      '--cap',
      'mon',
      'allow *',
    ]);
    await run('monmaptool', [
      '--create',
      '--fsid',
      /fsid = (\S+)/.exec(readFileSync(conf, 'utf8'))![1]!,
      '--addv',
      'a',
      `[v2:${ns.peerAddr}:3300]`,
      join(dir, 'monmap'),
    ]);
    await run('ceph-mon', [
      '-c',
      conf,
      '--mkfs',
      '-i',
      'a',
      '--monmap',
      join(dir, 'monmap'),
      '--keyring',
      join(dir, 'keyring'),
    ]);
    const mon = startDaemon('mon.a', true, ['ceph-mon', '-i', 'a']);
    await waitFor('ceph-mon', mon, join(dir, 'log', 'mon.a.log'), MON_DEADLINE_MS, () =>
      succeeds(ceph('mon', 'stat')),
    );

    const uuid = randomUUID();
    const id = (await ceph('osd', 'new', uuid)).trim();
    if (!/^\d+$/.test(id)) throw new CephUnavailable(`ceph osd new answered ${JSON.stringify(id)}`);
    mkdirSync(join(dir, 'osd', id));
    await run('ceph-osd', ['-c', conf, '-i', id, '--mkfs', '--osd-uuid', uuid], 180_000).catch(
      (err: Error) => {
        throw new CephUnavailable(
          `ceph-osd --mkfs failed: ${err.message}\n${tail(join(dir, 'log', `osd.${id}.log`))}`,
        );
      },
    );
    const osd = startDaemon(`osd.${id}`, true, ['ceph-osd', '-i', id]);
    await waitFor('ceph-osd', osd, join(dir, 'log', `osd.${id}.log`), OSD_DEADLINE_MS, async () => {
      const dump = await ceph('osd', 'dump', '--format', 'json').catch(() => '{}');
      const osds = (JSON.parse(dump) as { osds?: { osd: number; up: number }[] }).osds ?? [];
      return osds.some((o) => String(o.osd) === id && o.up === 1);
    });

    const rgw = startDaemon('client.rgw.a', false, ['radosgw', '-n', 'client.rgw.a']);
    let port: number | undefined;
    await waitFor('radosgw', rgw, join(dir, 'log', 'client.rgw.a.log'), RGW_DEADLINE_MS, async () => {
      port ??= listeningPort(rgw.pid!);
      return port !== undefined && (await httpAnswers(port));
    });

    const accessKeyId = `CEPH${randomBytes(8).toString('hex').toUpperCase()}`;
    const secretAccessKey = randomBytes(30).toString('base64url');
    await run('radosgw-admin', [
      '-c',
      conf,
      'user',
      'create',
      '--uid',
      'coffre-test',
      '--display-name',
      'coffre test',
      '--access-key',
      accessKeyId,
      '--secret-key',
      secretAccessKey,
    ]);
    const endpoint = `http://127.0.0.1:${port!}`;
    const region = 'us-east-1';
    return {
      endpoint,
      region,
      accessKeyId,
      secretAccessKey,
      objectstore,
      pids: { mon: mon.pid!, osd: osd.pid!, rgw: rgw.pid! },
      dir,
      client: () =>
        new S3Client({
          endpoint,
          region,
          forcePathStyle: true,
          credentials: { accessKeyId, secretAccessKey },
        }),
      stop,
    };
  } catch (err) {
    await stop();
    if (err instanceof CephUnavailable) throw err;
    throw new CephUnavailable((err as Error).message);
  }
}

let shared: Promise<Ceph> | undefined;

/**
 * One Ceph for every test of this process, started on first use (about 15 s) and stopped when the process is done
 * (or, should it die, by the guardian). Its stop() is for the process's end only; tests use their own buckets.
 */
export function sharedCeph(): Promise<Ceph> {
  if (!shared) {
    shared = startCeph();
    const started = shared;
    process.once('beforeExit', () => {
      void started.then(
        (c) => c.stop(),
        () => undefined,
      );
    });
  }
  return shared;
}

/**
 * A Ceph for a test (the shared one unless `start` says otherwise), or undefined after marking the test skipped
 * with the reason Ceph is not there. Where Ceph must be there (CI installs it, or COFFRE_REQUIRE_CEPH=1), that
 * reason fails the test instead.
 */
export async function cephOrSkip(
  t: TestContext,
  start: () => Promise<Ceph> = sharedCeph,
): Promise<Ceph | undefined> {
  try {
    return await start();
  } catch (err) {
    if (!(err instanceof CephUnavailable)) throw err;
    if (process.env.CI === 'true' || process.env.COFFRE_REQUIRE_CEPH === '1') throw err;
    t.skip(`Ceph RGW unavailable: ${err.message}`);
    return undefined;
  }
}
