// node: assembles a running coffre node from its configuration — identity and RPC (Secret Handshake keyed by
// the mandatory rpc_secret), the cluster layout, the model (metadata + blocks), the S3 and admin APIs — and
// takes it down cleanly.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type https from 'node:https';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { S3Metrics } from '../api/admin/metrics.js';
import { AdminServer } from '../api/admin/server.js';
import { S3Server } from '../api/s3/server.js';
import { TlsReloader, loadTlsOptions } from '../api/tls.js';
import { BackendStore } from '../backend/backend-store.js';
import { connectBackend } from '../backend/client.js';
import { SharedRecords } from '../backend/records.js';
import { BlockStore } from '../block/block-store.js';
import type { CoffreConfig } from '../config/config.js';
import { parseBindAddress } from '../config/config.js';
import { Model } from '../model/model.js';
import { LocalStore, type ObjectStore } from '../model/store.js';
import { Cluster } from '../rpc/cluster.js';
import { loadOrCreateNodeKey, parseRpcSecret } from '../rpc/identity.js';
import { LayoutFile } from '../rpc/layout.js';
import { MetadataReplication } from '../rpc/metadata-replication.js';
import { SseS3Keys } from '../sse/sse-s3-keys.js';
import { BackendKeyringSource, KeyringHandOff, SSE_S3_KEYS_PATH, keyringWhere } from '../backend/keyring.js';
import { KeyRewrap } from '../backend/rewrap.js';
import { BackendLease } from '../backend/lease.js';
import { RpcNode } from '../rpc/peering.js';
import { OrphanSweeper } from '../rpc/orphans.js';
import { Rebalancer } from '../rpc/rebalance.js';
import { BlockResync } from '../rpc/resync.js';
import { Scrubber } from '../rpc/scrub.js';
import { UserError, errorMessage } from '../util/errors.js';
import {
  LOG_FORMATS,
  LOG_FORMAT_ENV,
  LOG_LEVELS,
  LOG_LEVEL_ENV,
  createLogger,
  defaultLogFormat,
  isLogFormat,
  isLogLevel,
  type LogOptions,
} from '../util/log.js';
import { lifecycleLogFields, startLifecycleWorker } from '../model/lifecycle.js';

export interface RunningNode {
  config: CoffreConfig;
  model: Model;
  store: ObjectStore;
  rpc: RpcNode;
  cluster: Cluster;
  replication: MetadataReplication;
  s3: S3Server;
  admin: AdminServer;
  log: Logger;
  // The addresses bound (host:port): the configuration's, with the system's pick where it says port 0.
  addresses: { s3: string; admin: string; rpc: string };
  stop(): Promise<void>;
}

// Peers this node has reached, kept so that a restarted node finds its cluster again without bootstrap_peers,
// and the node ids an operator made it forget (`coffre node forget`), so that peers still naming one do not
// bring it back. Written as { peers: ["<id>@host:port", …], forgotten: ["<id>", …] } (an older file is a bare
// list of peers).
const KNOWN_PEERS_FILE = 'peers.json';

function loadKnownPeers(metadataDir: string): { peers: string[]; forgotten: string[] } {
  const strings = (v: unknown) =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  try {
    const value: unknown = JSON.parse(readFileSync(join(metadataDir, KNOWN_PEERS_FILE), 'utf8'));
    if (Array.isArray(value)) return { peers: strings(value), forgotten: [] };
    const v = value as { peers?: unknown; forgotten?: unknown };
    return {
      peers: strings(v?.peers),
      forgotten: strings(v?.forgotten).filter((id) => /^[0-9a-f]{64}$/.test(id)),
    };
  } catch {
    return { peers: [], forgotten: [] };
  }
}

function saveKnownPeers(metadataDir: string, rpc: RpcNode): void {
  const peers = rpc
    .status()
    .peers.filter((p) => p.addr)
    .map((p) => `${p.id}@${p.addr}`);
  const tmp = join(metadataDir, `${KNOWN_PEERS_FILE}.tmp`);
  writeFileSync(tmp, JSON.stringify({ peers, forgotten: rpc.forgottenPeers() }), { mode: 0o600 });
  renameSync(tmp, join(metadataDir, KNOWN_PEERS_FILE));
}

/** The node's log options: the environment's, then coffre.toml's, then info and pretty-on-a-terminal. */
export function logOptionsOf(config: CoffreConfig, env: NodeJS.ProcessEnv = process.env): LogOptions {
  const level = env[LOG_LEVEL_ENV] || config.logLevel || 'info';
  const format = env[LOG_FORMAT_ENV] || config.logFormat || defaultLogFormat();
  if (!isLogLevel(level))
    throw new UserError(`${LOG_LEVEL_ENV} must be one of ${LOG_LEVELS.join(', ')}, not "${level}"`);
  if (!isLogFormat(format))
    throw new UserError(`${LOG_FORMAT_ENV} must be one of ${LOG_FORMATS.join(', ')}, not "${format}"`);
  return { level, format };
}

// A promise rejected with no handler is a bug in the node, not in a request: it is logged, and the node goes
// on serving (Node.js would otherwise end the process, taking S3, admin and RPC down with it).
let rejectionGuardInstalled = false;
function guardUnhandledRejections(log: Logger): void {
  if (rejectionGuardInstalled) return;
  rejectionGuardInstalled = true;
  process.on('unhandledRejection', (reason) => {
    log.error(
      { err: String((reason as Error)?.message ?? reason) },
      'unhandled rejection (the node goes on)',
    );
  });
}

// The configuration keys that name each listening address, as an operator finds them in coffre.toml.
export const RPC_BIND_KEY = 'rpc_bind_addr';
export const S3_BIND_KEY = '[s3_api] api_bind_addr';
export const ADMIN_BIND_KEY = '[admin] api_bind_addr';

const LISTEN_FAILURES: Readonly<Record<string, string>> = {
  EADDRINUSE: 'the address is already in use (by another coffre node, or another program)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'the address is not one of this machine',
};

/** A port the node cannot listen on, named by the configuration key that asks for it. */
export class ListenError extends UserError {
  constructor(
    readonly key: string,
    readonly address: string,
    cause: unknown,
  ) {
    const code = (cause as NodeJS.ErrnoException).code;
    const reason = (code && LISTEN_FAILURES[code]) ?? errorMessage(cause);
    super(`cannot listen on ${address} (${key} in the configuration): ${reason}; change ${key}`);
    this.name = 'ListenError';
  }
}

async function bindOrExplain<T>(key: string, address: string, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new ListenError(key, address, err);
  }
}

export async function startNode(
  config: CoffreConfig,
  log: Logger = createLogger(logOptionsOf(config)),
): Promise<RunningNode> {
  guardUnhandledRejections(log);
  // Refused before anything listens: there is no clear-text RPC, so no node runs without a network key.
  const networkKey = parseRpcSecret({
    value: config.rpcSecret,
    file: config.rpcSecretFile,
    allowInsecurePermissions: config.allowWorldReadableSecrets,
  });
  // SSE-S3 master keys: unlocked now if the config names an unlock key, else by an operator later. Before
  // anything listens, so that a keyring or unlock key that is refused ends the start.
  const sseS3 = new SseS3Keys(config.sseS3);
  if (!config.backend) await sseS3.start();
  // A node with a [backend] keeps its objects there: one that cannot reach it, or is refused, does not start.
  const backend = config.backend
    ? {
        config: config.backend,
        ...(await connectBackend(config.backend, config.allowWorldReadableSecrets)),
      }
    : undefined;
  const identity = loadOrCreateNodeKey(config.metadataDir);
  const known = loadKnownPeers(config.metadataDir);
  const rpc = new RpcNode({
    identity,
    networkKey,
    bindAddr: config.rpcBindAddr,
    publicAddr: config.rpcPublicAddr,
    bootstrapPeers: [
      ...new Set([
        ...config.bootstrapPeers,
        ...known.peers.filter((p) => !known.forgotten.includes(p.split('@')[0]!)),
      ]),
    ],
    forgottenPeers: known.forgotten,
    pingIntervalMs: Number(process.env.COFFRE_RPC_PING_MS ?? 15_000),
    logger: {
      info: (msg) => log.info({ rpc: true }, msg),
      warn: (msg) => log.warn({ rpc: true }, msg),
      debug: (msg) => log.debug({ rpc: true }, msg),
    },
  });
  // The RpcNode keys every handshake with this very buffer for as long as it runs: it is zeroed on stop, not
  // here (zeroing it early made every node's network key all zeros, so any rpc_secret was accepted).
  const localBlocks = new BlockStore(config.dataDir);
  const cluster = new Cluster(rpc, new LayoutFile(config.metadataDir), config.replicationFactor, localBlocks);
  const segmentOptions = { blockSize: config.blockSize, inlineThreshold: config.inlineThreshold };
  const model = new Model({
    metadataDir: config.metadataDir,
    dataDir: config.dataDir,
    ...segmentOptions,
    gcDelayMs: config.gcDelaySeconds * 1000,
    blockIo: cluster.blocks,
    // Only a node no other node writes to may sweep unreferenced block files: a gateway's (or peer's) blocks
    // arrive before the record that refers to them commits, and a sweep would delete them mid-upload.
    blocksAreLocal: () =>
      cluster.standsAlone() && Object.keys(cluster.currentLayout().roles).every((id) => id === rpc.nodeId),
    ownsMetadata: () => cluster.ownsMetadata(),
    logKeep: process.env.COFFRE_METADATA_LOG_KEEP ? Number(process.env.COFFRE_METADATA_LOG_KEEP) : undefined,
  });
  const replication = new MetadataReplication(cluster, model.db, log, {
    ackTimeoutMs: Number(process.env.COFFRE_METADATA_ACK_MS ?? 10_000),
    retryMs: Number(process.env.COFFRE_METADATA_RETRY_MS ?? 5_000),
    // Election timeouts are drawn in [2 s, 4 s): a few heartbeats missed, not one slow answer.
    electionMs: Number(process.env.COFFRE_METADATA_ELECTION_MS ?? 2_000),
    heartbeatMs: Number(process.env.COFFRE_METADATA_HEARTBEAT_MS ?? 400),
  });
  // Copies of blocks this node's writes could not place, written to their nodes when they are back.
  const resync = new BlockResync(
    cluster,
    model.db.localTable('block_resync'),
    log,
    Number(process.env.COFFRE_RESYNC_RETRY_MS ?? 30_000),
  );
  const scrub = new Scrubber(cluster, model.db.localTable('scrub'), log, {
    intervalMs: config.scrubIntervalHours * 3600_000,
    bytesPerSecond: config.scrubRateMib * 1024 * 1024,
  });
  // A node in front of a backend holds no blocks and no copy of anyone's metadata: none of that machinery runs.
  if (!backend) {
    replication.start();
    model.startGarbageCollector(Math.max(1000, Math.min(60_000, config.gcDelaySeconds * 1000)));
    cluster.blocks.recordMissedCopiesIn(resync);
    resync.start();
    await scrub.start();
  }
  const local = new LocalStore(model);
  cluster.registerEndpoints(local, resync);
  rpc.setAccessPolicy(cluster.mayCall);
  const records = backend
    ? new SharedRecords(backend.client, backend.config.bucket, backend.config.prefix, networkKey)
    : undefined;
  const backendStore =
    backend && records
      ? new BackendStore(backend.client, backend.config, records, backend.objects)
      : undefined;
  await backendStore?.checkRecords();
  // In front of a backend, the sealed keyring lives there, shared by every gateway (backend/keyring.ts).
  const handOff = backend && records ? new KeyringHandOff(records, rpc, sseS3, log) : undefined;
  const rewrap =
    backend && records && handOff
      ? new KeyRewrap(backend.client, backend.config, records, sseS3, handOff, rpc.nodeId, log)
      : undefined;
  if (backend && records) {
    sseS3.useSource(new BackendKeyringSource(records, keyringWhere(backend.config)));
    await sseS3.start();
    // Gateways of one backend take master keys from each other (only pushes, only from announced gateways).
    rpc.setAccessPolicy((peerId, path) =>
      path === SSE_S3_KEYS_PATH ? handOff!.mayPush(peerId) : cluster.mayCall(peerId, path),
    );
  }
  const store = backendStore ?? cluster.store(local, segmentOptions);
  const rebalancer = new Rebalancer(
    cluster,
    config.metadataDir,
    log,
    Number(process.env.COFFRE_REBALANCE_RETRY_MS ?? 60_000),
  );
  cluster.onNewLayout(() => void rebalancer.schedule());
  const orphans = new OrphanSweeper(cluster, local, log, {
    graceMs: Number(process.env.COFFRE_ORPHAN_GRACE_MS ?? 24 * 3600_000),
    intervalMs: Number(process.env.COFFRE_ORPHAN_SWEEP_MS ?? 3600_000),
  });
  if (!backend) orphans.start();
  // Lifecycle rules are applied once a day, by the node that holds the metadata; in front of a backend, by
  // one gateway at a time (the one holding the backend's lifecycle lease), once a day across them.
  const lifecycleIntervalMs = Number(process.env.COFFRE_LIFECYCLE_INTERVAL_MS ?? 24 * 3600_000);
  const lifecycleLease = records
    ? new BackendLease(records, {
        name: 'lifecycle',
        holder: rpc.nodeId,
        ttlMs: Number(process.env.COFFRE_LIFECYCLE_LEASE_MS ?? 60_000),
      })
    : undefined;
  const stopLifecycle = startLifecycleWorker(store, {
    intervalMs: lifecycleIntervalMs,
    shouldRun: () => Boolean(backend) || cluster.ownsMetadata(),
    // Not again within half a period of another gateway's pass: once a day across the gateways.
    ...(lifecycleLease
      ? {
          guard: (pass) =>
            lifecycleLease.runIfFree(pass, { unlessFinishedWithinMs: lifecycleIntervalMs / 2 }),
        }
      : {}),
    onReport: (report) => log.info(lifecycleLogFields(report), 'lifecycle run'),
    onError: (err) => log.warn({ err: err.message }, 'lifecycle run failed; retried at the next one'),
  });
  // What uploads abandoned for a day (a client gone, a gateway killed) left in the backend is aborted.
  const stopUploadSweeper = backendStore?.startUploadSweeper({
    intervalMs: Number(process.env.COFFRE_UPLOAD_SWEEP_MS ?? 3600_000),
    maxAgeMs: Number(process.env.COFFRE_UPLOAD_MAX_AGE_MS ?? 24 * 3600_000),
    onSwept: (aborted) => log.info({ aborted }, 'abandoned multipart uploads aborted in the backend'),
    onError: (err) => log.warn({ err: err.message }, 'upload sweep failed; retried at the next one'),
  });
  // A peer that comes up may know a newer layout (this node was down when it was applied).
  rpc.on('peer-up', (peerId: string) => {
    saveKnownPeers(config.metadataDir, rpc);
    // ... or hold a copy of the metadata that has fallen behind.
    replication.peerUp(peerId);
    // ... or be a node this node's writes owe copies of blocks.
    resync.peerUp(peerId);
    // ... or be the node that blocks waited for.
    if (rebalancer.unsettled) void rebalancer.schedule();
    cluster
      .pullLayout(peerId)
      .catch((err: Error) => log.warn({ peer: peerId.slice(0, 16), err: err.message }, 'layout pull failed'));
  });
  rpc.on('peer-forgotten', () => saveKnownPeers(config.metadataDir, rpc));
  let s3: S3Server | undefined;
  let admin: AdminServer | undefined;
  let reloaders: TlsReloader[] = [];
  // Also what a start that fails half-way undoes: a node runs with all of its ports or not at all.
  const stop = async () => {
    log.info({}, 'coffre node stopping');
    for (const r of reloaders) r.stop();
    await Promise.all([s3?.close(), admin?.close()]);
    await rewrap?.stop();
    await handOff?.stop();
    stopLifecycle();
    stopUploadSweeper?.();
    await Promise.all([rebalancer.stop(), orphans.stop(), resync.stop(), scrub.stop()]);
    replication.stop();
    await rpc.stop();
    networkKey.fill(0);
    sseS3.lock();
    await model.close();
    backend?.client.destroy();
    log.info({}, 'coffre node stopped');
  };
  let addresses: RunningNode['addresses'];
  try {
    await bindOrExplain(RPC_BIND_KEY, config.rpcBindAddr, () => rpc.start());
    await handOff?.start();
    // A pass cut short by a stop, or a layout learnt while this node was down.
    if (rebalancer.unsettled) void rebalancer.schedule();

    const metrics = new S3Metrics(config.dataDir);
    metrics.watchBlocks({ resync, scrub });
    const tlsFiles =
      config.s3Api.tlsCert && config.s3Api.tlsKey
        ? { certPath: config.s3Api.tlsCert, keyPath: config.s3Api.tlsKey }
        : undefined;
    const tls = tlsFiles ? await loadTlsOptions(tlsFiles) : undefined;
    const s3Server = new S3Server({ config, store, log, metrics, sseS3 }, tls);
    const adminServer = new AdminServer(
      {
        config,
        store,
        log,
        metrics,
        cluster,
        rpc,
        rebalancer,
        replication,
        sseS3,
        resync,
        scrub,
        rewrap,
        lifecycleLease,
      },
      tls,
    );
    s3 = s3Server;
    admin = adminServer;
    // Renewed certificates are picked up on SIGHUP or when the files change, without a restart.
    reloaders = tlsFiles
      ? [s3Server.server, adminServer.server].map((server) =>
          new TlsReloader(server as https.Server, tlsFiles, {
            onReload: (fingerprint) => log.info({ fingerprint }, 'TLS certificate reloaded'),
            onError: (err) =>
              log.error({ err: err.message }, 'TLS certificate reload failed; keeping the previous one'),
          }).start(),
        )
      : [];
    const s3Addr = parseBindAddress(config.s3Api.apiBindAddr);
    const adminAddr = parseBindAddress(config.admin.apiBindAddr);
    // The addresses bound, which differ from the configuration's where it asks for port 0.
    addresses = {
      s3: await bindOrExplain(S3_BIND_KEY, config.s3Api.apiBindAddr, () =>
        s3Server.listen(s3Addr.host, s3Addr.port),
      ),
      admin: await bindOrExplain(ADMIN_BIND_KEY, config.admin.apiBindAddr, () =>
        adminServer.listen(adminAddr.host, adminAddr.port),
      ),
      rpc: rpc.listeningOn ?? config.rpcBindAddr,
    };
    log.info(
      {
        ...addresses,
        nodeId: rpc.nodeId,
        tls: Boolean(tls),
        role: backend ? 'backend gateway' : cluster.isGateway() ? 'gateway' : 'storage',
      },
      'coffre node started',
    );
    // A node whose keyring is locked answers SSE-S3 requests with 503 until an operator acts: say so now.
    const keys = sseS3.status();
    if (keys.configured && !keys.unlocked)
      log.warn(
        { keyringFile: keys.keyringFile },
        'SSE-S3 keyring is locked: SSE-S3 requests get 503 until an operator runs `coffre sse-s3 unlock --gpg` ' +
          '(or --private-key FILE), or [sse_s3] unlock_key_file is set',
      );
  } catch (err) {
    await stop().catch((stopErr: Error) =>
      log.error({ err: stopErr.message }, 'stopping after a failed start failed'),
    );
    throw err;
  }
  return {
    config,
    model,
    store,
    rpc,
    cluster,
    replication,
    s3: s3!,
    admin: admin!,
    log,
    addresses,
    stop,
  };
}
