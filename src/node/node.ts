// node: assembles a running coffre node from its configuration — the model (metadata + blocks), the S3 and
// admin APIs — and takes it down cleanly.
import type https from 'node:https';
import { TlsReloader, loadTlsOptions } from '../api/tls.js';
import pino, { type Logger } from 'pino';
import type { CoffreConfig } from '../config/config.js';
import { parseBindAddress } from '../config/config.js';
import { Model } from '../model/model.js';
import { LocalStore } from '../model/store.js';
import { S3Server } from '../api/s3/server.js';
import { AdminServer } from '../api/admin/server.js';
import { S3Metrics } from '../api/admin/metrics.js';

export interface RunningNode {
  config: CoffreConfig;
  model: Model;
  s3: S3Server;
  admin: AdminServer;
  log: Logger;
  stop(): Promise<void>;
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

export async function startNode(config: CoffreConfig, log: Logger = createLogger()): Promise<RunningNode> {
  const model = new Model({
    metadataDir: config.metadataDir,
    dataDir: config.dataDir,
    blockSize: config.blockSize,
    inlineThreshold: config.inlineThreshold,
    gcDelayMs: config.gcDelaySeconds * 1000,
  });
  model.startGarbageCollector(Math.max(1000, Math.min(60_000, config.gcDelaySeconds * 1000)));
  const metrics = new S3Metrics();
  const tlsFiles =
    config.s3Api.tlsCert && config.s3Api.tlsKey
      ? { certPath: config.s3Api.tlsCert, keyPath: config.s3Api.tlsKey }
      : undefined;
  const tls = tlsFiles ? await loadTlsOptions(tlsFiles) : undefined;
  const store = new LocalStore(model);
  const s3 = new S3Server({ config, store, log, metrics }, tls);
  const admin = new AdminServer({ config, store, log, metrics }, tls);
  // Renewed certificates are picked up on SIGHUP or when the files change, without a restart.
  const reloaders = tlsFiles
    ? [s3.server, admin.server].map((server) =>
        new TlsReloader(server as https.Server, tlsFiles, {
          onReload: (fingerprint) => log.info({ fingerprint }, 'TLS certificate reloaded'),
          onError: (err) =>
            log.error({ err: err.message }, 'TLS certificate reload failed; keeping the previous one'),
        }).start(),
      )
    : [];
  const s3Addr = parseBindAddress(config.s3Api.apiBindAddr);
  const adminAddr = parseBindAddress(config.admin.apiBindAddr);
  await s3.listen(s3Addr.host, s3Addr.port);
  await admin.listen(adminAddr.host, adminAddr.port);
  log.info(
    { s3: config.s3Api.apiBindAddr, admin: config.admin.apiBindAddr, tls: Boolean(tls) },
    'coffre node started',
  );
  return {
    config,
    model,
    s3,
    admin,
    log,
    async stop() {
      for (const r of reloaders) r.stop();
      await Promise.all([s3.close(), admin.close()]);
      await model.close();
    },
  };
}
