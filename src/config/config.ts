// config: coffre.toml — schema, defaults and validation. Names follow Garage's where they exist so that
// Garage users feel at home. Every refusal names the key at fault.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { UserError, errorMessage } from '../util/errors.js';
import { requirePrivateFile } from '../util/private-file.js';
import { TrustedProxies } from '../util/client-transport.js';
import {
  LOG_FORMATS,
  LOG_LEVELS,
  isLogFormat,
  isLogLevel,
  type LogFormat,
  type LogLevel,
} from '../util/log.js';

export interface S3ApiConfig {
  apiBindAddr: string;
  s3Region: string;
  rootDomain?: string;
  tlsCert?: string;
  tlsKey?: string;
  // Lets SSE-C through over plain HTTP from non-loopback clients: only for a trusted TLS-terminating proxy.
  allowSseCOverHttp: boolean;
  // How long a request may take before its signature (or POST policy) is checked, whatever it sends.
  unauthenticatedTimeoutSecs: number;
  // How long any connection may stay silent (no byte either way) in the middle of a request or response.
  idleTimeoutSecs: number;
}

export interface AdminConfig {
  apiBindAddr: string;
  adminToken?: string;
  metricsToken?: string;
  // /metrics without any token: only when the operator says so (it tells request rates, buckets' activity
  // and disk use to whoever can reach the admin port).
  metricsPublic: boolean;
}

export interface SseS3Config {
  // The sealed SSE-S3 keyring (master keys encrypted to operators' OpenPGP keys): made by `coffre sse-s3 init`.
  keyringFile: string;
  // An operator's OpenPGP private key that unlocks the keyring at start, for nodes that must start unattended
  // (whoever reads this file and the keyring can read every SSE-S3 object). Without it, an operator unlocks
  // a started node with `coffre sse-s3 unlock`.
  unlockKeyFile?: string;
}

// An existing S3 service that holds this node's objects (backend/): the node keeps no object data itself and
// encrypts everything before it leaves. All coffre buckets live in one backend bucket, each under
// `prefix` + its name + '/' (docs/gateway.md says why one bucket).
export interface BackendConfig {
  type: 's3';
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey?: string;
  // A file holding the secret (mode 0600), instead of writing it in coffre.toml.
  secretAccessKeyFile?: string;
  bucket: string;
  prefix: string;
  // Path style (http://host/bucket/key) or virtual-hosted style (http://bucket.host/key).
  pathStyle: boolean;
  // PEM certificates trusted for the endpoint's TLS, in addition to the system's.
  caBundle?: string;
}

// Objects up to this many stored bytes live in their metadata record. A block of its own costs a small object
// a file created, fsync'd, renamed and its directory fsync'd (two journal commits, about 3 ms on a busy
// machine) before the record's commit, and a file opened and hashed on every read; inline, the object rides in
// the commit and the read the record needs anyway. Kept far below a block so records stay small.
const INLINE_THRESHOLD = 16 * 1024;

export interface CoffreConfig {
  configPath: string;
  metadataDir: string;
  dataDir: string;
  rpcBindAddr: string;
  rpcPublicAddr?: string;
  rpcSecret?: string;
  rpcSecretFile?: string;
  allowWorldReadableSecrets: boolean;
  // Reverse proxies believed about the client's address and scheme (X-Forwarded-For, X-Forwarded-Proto).
  trustedProxies: TrustedProxies;
  bootstrapPeers: string[];
  replicationFactor: number;
  blockSize: number;
  inlineThreshold: number;
  gcDelaySeconds: number;
  // Background scrub of block files (rpc/scrub): hours from one pass's end to the next (0: only on demand),
  // and the most it reads, in MiB per second.
  scrubIntervalHours: number;
  scrubRateMib: number;
  // What the node logs and how; unset: info, and pretty on a terminal, JSON otherwise (COFFRE_LOG_LEVEL and
  // COFFRE_LOG_FORMAT win over both).
  logLevel?: LogLevel;
  logFormat?: LogFormat;
  s3Api: S3ApiConfig;
  admin: AdminConfig;
  sseS3: SseS3Config;
  backend?: BackendConfig;
}

type Table = Record<string, unknown>;

const MIB = 1024 * 1024;

class Reader {
  private readonly seen = new Set<string>();
  constructor(
    private readonly table: Table,
    private readonly section: string,
  ) {}

  private name(key: string): string {
    return this.section ? `[${this.section}] ${key}` : key;
  }

  private take(key: string): unknown {
    this.seen.add(key);
    return this.table[key];
  }

  string(key: string): string | undefined {
    const v = this.take(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.length === 0)
      throw new UserError(`config: ${this.name(key)} must be a non-empty string`);
    return v;
  }

  address(key: string, fallback: string): string {
    const v = this.string(key) ?? fallback;
    parseBindAddress(v, this.name(key));
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.take(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') throw new UserError(`config: ${this.name(key)} must be true or false`);
    return v;
  }

  integer(key: string, fallback: number, min: number, max: number): number {
    const v = this.take(key);
    if (v === undefined) return fallback;
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      throw new UserError(`config: ${this.name(key)} must be an integer between ${min} and ${max}`);
    }
    return n;
  }

  choice<T extends string>(key: string, allowed: readonly T[], is: (v: string) => v is T): T | undefined {
    const v = this.string(key);
    if (v === undefined) return undefined;
    if (!is(v))
      throw new UserError(`config: ${this.name(key)} must be one of ${allowed.join(', ')}, not "${v}"`);
    return v;
  }

  stringList(key: string): string[] {
    const v = this.take(key);
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      throw new UserError(`config: ${this.name(key)} must be a list of strings`);
    }
    return v as string[];
  }

  section_(key: string): Table {
    const v = this.take(key);
    if (v === undefined) return {};
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw new UserError(`config: [${key}] must be a table`);
    }
    return v as Table;
  }

  refuseUnknown(): void {
    for (const key of Object.keys(this.table)) {
      if (!this.seen.has(key)) throw new UserError(`config: unknown key ${this.name(key)}`);
    }
  }
}

export function parseBindAddress(addr: string, what = 'address'): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UserError(`config: ${what} must look like HOST:PORT, got "${addr}"`);
  return { host: m[1] ?? m[2]!, port };
}

export function parseConfig(text: string, configPath: string): CoffreConfig {
  let doc: Table;
  try {
    doc = parseToml(text) as Table;
  } catch (err) {
    throw new UserError(`config: ${configPath} is not valid TOML: ${errorMessage(err).split('\n')[0]}`);
  }
  const base = dirname(resolve(configPath));
  const path = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const top = new Reader(doc, '');
  const metadataDir = top.string('metadata_dir');
  const dataDir = top.string('data_dir');
  if (!metadataDir) throw new UserError('config: metadata_dir is required');
  if (!dataDir) throw new UserError('config: data_dir is required');
  const rpcSecretFile = top.string('rpc_secret_file');
  const config: CoffreConfig = {
    configPath: resolve(configPath),
    metadataDir: path(metadataDir),
    dataDir: path(dataDir),
    rpcBindAddr: top.address('rpc_bind_addr', '127.0.0.1:3901'),
    rpcPublicAddr: top.string('rpc_public_addr'),
    rpcSecret: top.string('rpc_secret'),
    rpcSecretFile: rpcSecretFile ? path(rpcSecretFile) : undefined,
    allowWorldReadableSecrets: top.bool('allow_world_readable_secrets', false),
    trustedProxies: new TrustedProxies(top.stringList('trusted_proxies')),
    bootstrapPeers: top.stringList('bootstrap_peers'),
    replicationFactor: top.integer('replication_factor', 1, 1, 7),
    blockSize: top.integer('block_size', MIB, 64 * 1024, 64 * MIB),
    inlineThreshold: top.integer('inline_threshold', INLINE_THRESHOLD, 0, 64 * 1024),
    gcDelaySeconds: top.integer('gc_delay_seconds', 600, 0, 30 * 24 * 3600),
    scrubIntervalHours: top.integer('scrub_interval_hours', 30 * 24, 0, 365 * 24),
    scrubRateMib: top.integer('scrub_rate_mib', 16, 1, 100_000),
    logLevel: top.choice('log_level', LOG_LEVELS, isLogLevel),
    logFormat: top.choice('log_format', LOG_FORMATS, isLogFormat),
    s3Api: {
      apiBindAddr: '127.0.0.1:3900',
      s3Region: 'us-east-1',
      allowSseCOverHttp: false,
      unauthenticatedTimeoutSecs: 30,
      idleTimeoutSecs: 60,
    },
    admin: { apiBindAddr: '127.0.0.1:3903', metricsPublic: false },
    sseS3: { keyringFile: '' },
  };
  const s3 = new Reader(top.section_('s3_api'), 's3_api');
  const tlsCert = s3.string('tls_cert');
  const tlsKey = s3.string('tls_key');
  if (Boolean(tlsCert) !== Boolean(tlsKey))
    throw new UserError('config: [s3_api] tls_cert and tls_key go together');
  config.s3Api = {
    apiBindAddr: s3.address('api_bind_addr', '127.0.0.1:3900'),
    s3Region: s3.string('s3_region') ?? 'us-east-1',
    rootDomain: s3.string('root_domain')?.replace(/^\./, ''),
    tlsCert: tlsCert ? path(tlsCert) : undefined,
    tlsKey: tlsKey ? path(tlsKey) : undefined,
    allowSseCOverHttp: s3.bool('allow_ssec_over_http', false),
    unauthenticatedTimeoutSecs: s3.integer('unauthenticated_timeout_secs', 30, 1, 3600),
    idleTimeoutSecs: s3.integer('idle_timeout_secs', 60, 1, 3600),
  };
  s3.refuseUnknown();
  const admin = new Reader(top.section_('admin'), 'admin');
  config.admin = {
    apiBindAddr: admin.address('api_bind_addr', '127.0.0.1:3903'),
    adminToken: admin.string('admin_token'),
    metricsToken: admin.string('metrics_token'),
    metricsPublic: admin.bool('metrics_public', false),
  };
  admin.refuseUnknown();
  const sse = new Reader(top.section_('sse_s3'), 'sse_s3');
  const keyringFile = sse.string('keyring_file');
  const unlockKeyFile = sse.string('unlock_key_file');
  config.sseS3 = {
    keyringFile: keyringFile ? path(keyringFile) : resolve(config.metadataDir, 'sse_s3_keyring.json'),
    unlockKeyFile: unlockKeyFile ? path(unlockKeyFile) : undefined,
  };
  sse.refuseUnknown();
  if (doc.backend !== undefined)
    config.backend = parseBackend(new Reader(top.section_('backend'), 'backend'), path);
  top.refuseUnknown();
  return config;
}

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

function parseBackend(r: Reader, path: (p: string) => string): BackendConfig {
  const type = r.string('type');
  if (type !== 's3') throw new UserError('config: [backend] type must be "s3"');
  const endpoint = r.string('endpoint');
  if (!endpoint)
    throw new UserError('config: [backend] endpoint is required (e.g. "https://s3.example.com")');
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash)
    throw new UserError(`config: [backend] endpoint must be an http:// or https:// URL, got "${endpoint}"`);
  const accessKeyId = r.string('access_key_id');
  if (!accessKeyId) throw new UserError('config: [backend] access_key_id is required');
  const secretAccessKey = r.string('secret_access_key');
  const secretFile = r.string('secret_access_key_file');
  if (Boolean(secretAccessKey) === Boolean(secretFile))
    throw new UserError(
      'config: [backend] needs exactly one of secret_access_key and secret_access_key_file',
    );
  const bucket = r.string('bucket');
  if (!bucket || !BUCKET_NAME.test(bucket))
    throw new UserError('config: [backend] bucket must name the backend bucket (3-63 of a-z 0-9 . -)');
  const prefix = r.string('prefix') ?? '';
  if (prefix !== '' && (prefix.startsWith('/') || !prefix.endsWith('/')))
    throw new UserError('config: [backend] prefix must end with "/" and not start with one (e.g. "coffre/")');
  const addressing = r.string('addressing') ?? 'path';
  if (addressing !== 'path' && addressing !== 'virtual-hosted')
    throw new UserError('config: [backend] addressing must be "path" or "virtual-hosted"');
  const caBundle = r.string('ca_bundle');
  const config: BackendConfig = {
    type,
    endpoint: endpoint.replace(/\/+$/, ''),
    region: r.string('region') ?? 'us-east-1',
    accessKeyId,
    secretAccessKey,
    secretAccessKeyFile: secretFile ? path(secretFile) : undefined,
    bucket,
    prefix,
    pathStyle: addressing === 'path',
    caBundle: caBundle ? path(caBundle) : undefined,
  };
  r.refuseUnknown();
  return config;
}

export function loadConfig(configPath: string): CoffreConfig {
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new UserError(
        `config: ${configPath} not found (start \`coffre server\` once to create it, or pass --config)`,
      );
    }
    throw new UserError(`config: cannot read ${configPath}: ${errorMessage(err)}`);
  }
  const config = parseConfig(text, configPath);
  refuseReadableInlineSecrets(configPath, config);
  return config;
}

// A secret written in coffre.toml is only as private as the file: readable by group or others, it is refused
// (as rpc_secret_file is) unless the operator allows it explicitly.
function refuseReadableInlineSecrets(configPath: string, config: CoffreConfig): void {
  if (process.platform === 'win32' || config.allowWorldReadableSecrets) return;
  const inline = [
    config.rpcSecret !== undefined && 'rpc_secret',
    config.admin.adminToken !== undefined && 'admin_token',
    config.admin.metricsToken !== undefined && 'metrics_token',
    config.backend?.secretAccessKey !== undefined && '[backend] secret_access_key',
  ].filter((name): name is string => Boolean(name));
  if (inline.length === 0) return;
  requirePrivateFile(`config: ${configPath} holds ${inline.join(' and ')} but`, configPath, {
    howToAllow: 'set allow_world_readable_secrets = true',
  });
}

export const DEFAULT_CONFIG_PATH = 'coffre-data/coffre.toml';

// Every command finds its node the same way: --config, then COFFRE_CONFIG, then ./coffre-data/coffre.toml.
export function resolveConfigPath(flag?: string): string {
  return resolve(flag || process.env.COFFRE_CONFIG || DEFAULT_CONFIG_PATH);
}
