// node: assembles a running coffre node from its configuration — identity and RPC (Secret Handshake keyed by
// the mandatory rpc_secret), the cluster layout, the model (metadata + blocks), the S3 and admin APIs — and
// takes it down cleanly.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type https from 'node:https';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { S3Metrics } from '../api/admin/metrics.js';
import { AdminServer } from '../api/admin/server.js';
import { S3Server } from '../api/s3/server.js';
import { TlsReloader, loadTlsOptions } from '../api/tls.js';
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
import { RpcNode } from '../rpc/peering.js';
import { OrphanSweeper } from '../rpc/orphans.js';
import { Rebalancer } from '../rpc/rebalance.js';
import { UserError, errorMessage } from '../util/errors.js';
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

// Peers this node has reached, kept so that a restarted node finds its cluster again without bootstrap_peers.
const KNOWN_PEERS_FILE = 'peers.json';

function loadKnownPeers(metadataDir: string): string[] {
  try {
    const value: unknown = JSON.parse(readFileSync(join(metadataDir, KNOWN_PEERS_FILE), 'utf8'));
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  } catch {
    return [];
  }
}

function saveKnownPeers(metadataDir: string, rpc: RpcNode): void {
  const peers = rpc
    .status()
    .peers.filter((p) => p.addr)
    .map((p) => `${p.id}@${p.addr}`);
  const tmp = join(metadataDir, `${KNOWN_PEERS_FILE}.tmp`);
  writeFileSync(tmp, JSON.stringify(peers), { mode: 0o600 });
  renameSync(tmp, join(metadataDir, KNOWN_PEERS_FILE));
}

export function createLogger(): Logger {
  return pino(
    {
      level: process.env.COFFRE_LOG_LEVEL ?? 'info',
      base: undefined,
      // Defence in depth: fields that could hold secrets never reach a log line.
      redact: {
        paths: [
          'secret',
          'secretAccessKey',
          'rpcSecret',
          'adminToken',
          'headers.authorization',
          '*.authorization',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination(2),
  );
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

export async function startNode(config: CoffreConfig, log: Logger = createLogger()): Promise<RunningNode> {
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
  await sseS3.start();
  const identity = loadOrCreateNodeKey(config.metadataDir);
  const rpc = new RpcNode({
    identity,
    networkKey,
    bindAddr: config.rpcBindAddr,
    publicAddr: config.rpcPublicAddr,
    bootstrapPeers: [...new Set([...config.bootstrapPeers, ...loadKnownPeers(config.metadataDir)])],
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
  });
  replication.start();
  model.startGarbageCollector(Math.max(1000, Math.min(60_000, config.gcDelaySeconds * 1000)));
  const local = new LocalStore(model);
  cluster.registerEndpoints(local);
  rpc.setAccessPolicy(cluster.mayCall);
  const store = cluster.store(local, segmentOptions);
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
  orphans.start();
  // Lifecycle rules are applied once a day, by the node that holds the metadata.
  const stopLifecycle = startLifecycleWorker(store, {
    intervalMs: Number(process.env.COFFRE_LIFECYCLE_INTERVAL_MS ?? 24 * 3600_000),
    shouldRun: () => cluster.ownsMetadata(),
    onReport: (report) => log.info(lifecycleLogFields(report), 'lifecycle run'),
    onError: (err) => log.warn({ err: err.message }, 'lifecycle run failed; retried at the next one'),
  });
  // A peer that comes up may know a newer layout (this node was down when it was applied).
  rpc.on('peer-up', (peerId: string) => {
    saveKnownPeers(config.metadataDir, rpc);
    // ... or hold a copy of the metadata that has fallen behind.
    replication.peerUp(peerId);
    // ... or be the node that blocks waited for.
    if (rebalancer.unsettled) void rebalancer.schedule();
    cluster
      .pullLayout(peerId)
      .catch((err: Error) => log.warn({ peer: peerId.slice(0, 16), err: err.message }, 'layout pull failed'));
  });
  let s3: S3Server | undefined;
  let admin: AdminServer | undefined;
  let reloaders: TlsReloader[] = [];
  // Also what a start that fails half-way undoes: a node runs with all of its ports or not at all.
  const stop = async () => {
    log.info({}, 'coffre node stopping');
    for (const r of reloaders) r.stop();
    await Promise.all([s3?.close(), admin?.close()]);
    stopLifecycle();
    await Promise.all([rebalancer.stop(), orphans.stop()]);
    replication.stop();
    await rpc.stop();
    networkKey.fill(0);
    sseS3.lock();
    await model.close();
    log.info({}, 'coffre node stopped');
  };
  let addresses: RunningNode['addresses'];
  try {
    await bindOrExplain(RPC_BIND_KEY, config.rpcBindAddr, () => rpc.start());
    // A pass cut short by a stop, or a layout learnt while this node was down.
    if (rebalancer.unsettled) void rebalancer.schedule();

    const metrics = new S3Metrics();
    const tlsFiles =
      config.s3Api.tlsCert && config.s3Api.tlsKey
        ? { certPath: config.s3Api.tlsCert, keyPath: config.s3Api.tlsKey }
        : undefined;
    const tls = tlsFiles ? await loadTlsOptions(tlsFiles) : undefined;
    const s3Server = new S3Server({ config, store, log, metrics, sseS3 }, tls);
    const adminServer = new AdminServer(
      { config, store, log, metrics, cluster, rpc, rebalancer, replication, sseS3 },
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
        role: cluster.isGateway() ? 'gateway' : 'storage',
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
