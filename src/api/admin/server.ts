// api/admin: the administration HTTP API (access keys, buckets, permissions, layout, SSE-S3, objects) guarded
// by the admin token — as a bearer token (the CLI) or through a web console session (console.ts,
// sessions.ts) — with /health open and /metrics guarded by metrics_token or the admin token (open only with
// metrics_public). JSON in, JSON out, except object bodies.
import { closeServer, listenOn, refuseTunnels } from '../../util/http-server.js';
import { clientTransport, type ClientTransport } from '../../util/client-transport.js';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { CoffreConfig } from '../../config/config.js';
import type { ObjectStore } from '../../model/store.js';
import { applyLifecycle, lifecycleLogFields, type LifecycleReport } from '../../model/lifecycle.js';
import type { AccessKeyRecord, BucketRecord } from '../../model/types.js';
import { S3Error } from '../../util/s3-error.js';
import { UserError } from '../../util/errors.js';
import { AdminError } from './errors.js';
import {
  ConsoleAssets,
  consoleTransportRefusal,
  crossOriginRefusal,
  isConsolePage,
  refuseConsole,
  setSecurityHeaders,
} from './console.js';
import {
  ConsoleSessions,
  SESSION_LIFETIME_MS,
  clearCookieHeader,
  csrfMatches,
  sessionCookie,
  setCookieHeader,
  type ConsoleSession,
} from './sessions.js';
import { serveObjects } from './objects.js';
import { WarningLimiter } from '../../util/log-limit.js';
import { checkedCorsRules } from '../s3/cors.js';
import { checkedBucketTags } from '../s3/tagging.js';
import { lifecycleRulesFromXml, lifecycleXml } from '../s3/lifecycle.js';
import { checkedPolicy } from '../s3/bucket-policy.js';
import { storedPolicy } from '../s3/authorize.js';
import { isPublic } from '../s3/policy.js';
import type { CorsRule, LifecycleRule, VersioningState } from '../../model/types.js';
import type { S3Metrics } from './metrics.js';
import { checkBucketName } from '../s3/router.js';
import type { Cluster } from '../../rpc/cluster.js';
import type { Rebalancer } from '../../rpc/rebalance.js';
import { applyStaged, metadataReplicas, nextRoles, stageRole } from '../../rpc/layout.js';
import type { MetadataReplication } from '../../rpc/metadata-replication.js';
import type { SseS3Keys } from '../../sse/sse-s3-keys.js';
import type { KeyRewrap } from '../../backend/rewrap.js';
import type { BackendLease } from '../../backend/lease.js';
import type { RpcNode } from '../../rpc/peering.js';
import type { BlockResync } from '../../rpc/resync.js';
import type { Scrubber } from '../../rpc/scrub.js';
import { clusterHealth, type StatusNode } from './health.js';

export { AdminError };

const MAX_BODY = 64 * 1024;
// A request must be done by then (a slow client holds no connection for long), except an object transfer,
// which an authenticated operator may take as long as the bytes keep moving (the idle timeout still holds).
const REQUEST_DEADLINE_MS = 60_000;
const IDLE_TIMEOUT_MS = 60_000;

// Tokens are compared through their SHA-256 so that neither length nor content leaks through timing.
export function tokenMatches(given: string | undefined, expected: string | undefined): boolean {
  if (!given || !expected) return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h?.startsWith('Bearer ')) return undefined;
  return h.slice('Bearer '.length).trim();
}

// A JSON object, or (for the console's sign-in form) application/x-www-form-urlencoded fields.
async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new AdminError(413, 'request body too large');
    parts.push(chunk as Buffer);
  }
  if (size === 0) return {};
  if ((req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded'))
    return Object.fromEntries(new URLSearchParams(Buffer.concat(parts).toString('utf8')));
  try {
    const v: unknown = JSON.parse(Buffer.concat(parts).toString('utf8'));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new AdminError(400, 'request body must be a JSON object');
  }
}

export async function keyInfo(store: ObjectStore, k: AccessKeyRecord, withSecret = false) {
  const buckets = (await store.listBuckets())
    .filter((b) => b.permissions[k.id])
    .map((b) => ({ name: b.name, id: b.id, ...b.permissions[k.id]! }));
  return {
    accessKeyId: k.id,
    name: k.name,
    ...(withSecret ? { secretAccessKey: k.secret } : {}),
    createdAt: new Date(k.createdAt).toISOString(),
    allowCreateBucket: k.allowCreateBucket,
    buckets,
  };
}

export async function bucketInfo(store: ObjectStore, b: BucketRecord) {
  let objects = 0;
  let bytes = 0;
  let cursor: string | undefined;
  while (true) {
    const page = await store.listObjects(b.id, '', cursor, 1000);
    for (const o of page) {
      objects++;
      bytes += o.size;
    }
    if (page.length < 1000) break;
    cursor = page[page.length - 1]!.key;
  }
  const names = new Map((await store.listKeys()).map((k) => [k.id, k.name]));
  return {
    name: b.name,
    id: b.id,
    createdAt: new Date(b.createdAt).toISOString(),
    objects,
    bytes,
    keys: Object.entries(b.permissions).map(([accessKeyId, p]) => ({
      accessKeyId,
      name: names.get(accessKeyId),
      ...p,
    })),
    cors: b.cors ?? [],
    defaultEncryption: b.defaultEncryption ?? null,
    tags: b.tags ?? {},
    versioning: b.versioning ?? null,
    objectLock: b.objectLock ?? null,
    // As GetBucketLifecycleConfiguration answers it, so that what an S3 client sets reads the same here.
    lifecycle: b.lifecycle?.length ? lifecycleXml(b.lifecycle) : null,
    // As written (GetBucketPolicy's text), and whether it lets anyone in without a key.
    policy: b.policy ?? null,
    policyPublic: policyIsPublic(b),
  };
}

function policyIsPublic(b: BucketRecord): boolean | null {
  const policy = storedPolicy(b);
  if (!policy) return null;
  return policy !== 'unreadable' && isPublic(policy);
}

// A bucket policy's JSON text (or the document itself), checked as PutBucketPolicy checks it.
async function policyFrom(store: ObjectStore, bucket: string, v: unknown): Promise<string> {
  const text =
    typeof v === 'string' ? v : typeof v === 'object' && v !== null ? JSON.stringify(v) : undefined;
  if (text === undefined)
    throw new AdminError(400, 'policy must be a bucket policy document, as JSON text (or null to remove it)');
  try {
    await checkedPolicy(store, bucket, text);
  } catch (err) {
    if (err instanceof S3Error) throw new AdminError(400, `policy: ${err.message}`);
    throw err;
  }
  return text;
}

// Versioning as PutBucketVersioning takes it: once set, it is suspended, never unset.
function versioningFrom(v: unknown, b: BucketRecord): VersioningState {
  if (v !== 'Enabled' && v !== 'Suspended')
    throw new AdminError(400, 'versioning must be "Enabled" or "Suspended" (once set, it is never unset)');
  if (v === 'Suspended' && b.objectLock)
    throw new AdminError(409, 'object lock is enabled on this bucket: its versioning cannot be suspended');
  return v;
}

// Lifecycle rules as S3's LifecycleConfiguration XML, checked by the S3 call's own parser.
function lifecycleFrom(v: unknown): LifecycleRule[] {
  if (typeof v !== 'string')
    throw new AdminError(400, 'lifecycle must be a LifecycleConfiguration XML document (or null)');
  try {
    return lifecycleRulesFromXml(v);
  } catch (err) {
    if (err instanceof S3Error) throw new AdminError(400, `lifecycle: ${err.message}`);
    throw err;
  }
}

// The settings PATCH /v1/buckets/<name> changes, each checked as the S3 call that sets it checks it.
function corsRulesFrom(v: unknown): CorsRule[] {
  if (!Array.isArray(v)) throw new AdminError(400, 'cors must be a list of rules (or null to remove them)');
  const strings = (x: unknown, name: string): string[] => {
    if (x === undefined) return [];
    if (!Array.isArray(x) || !x.every((e) => typeof e === 'string' && e.length <= 1024))
      throw new AdminError(400, `cors: ${name} must be a list of strings`);
    return x as string[];
  };
  const rules = v.map((r: unknown) => {
    if (typeof r !== 'object' || r === null) throw new AdminError(400, 'cors: each rule must be an object');
    const rule = r as Record<string, unknown>;
    const maxAge = rule.maxAgeSeconds;
    if (maxAge !== undefined && (typeof maxAge !== 'number' || !Number.isSafeInteger(maxAge) || maxAge < 0))
      throw new AdminError(400, 'cors: maxAgeSeconds must be a whole number of seconds');
    if (rule.id !== undefined && typeof rule.id !== 'string')
      throw new AdminError(400, 'cors: id must be text');
    return {
      ...(rule.id !== undefined ? { id: rule.id as string } : {}),
      allowedOrigins: strings(rule.allowedOrigins, 'allowedOrigins'),
      allowedMethods: strings(rule.allowedMethods, 'allowedMethods'),
      allowedHeaders: strings(rule.allowedHeaders, 'allowedHeaders'),
      exposeHeaders: strings(rule.exposeHeaders, 'exposeHeaders'),
      ...(maxAge !== undefined ? { maxAgeSeconds: maxAge as number } : {}),
    };
  });
  try {
    return checkedCorsRules(rules);
  } catch (err) {
    if (err instanceof S3Error)
      throw new AdminError(
        400,
        `cors: give 1 to 100 rules, each with allowedOrigins and allowedMethods (GET, PUT, POST, DELETE, HEAD): ${err.message}`,
      );
    throw err;
  }
}

function tagsFrom(v: unknown): Record<string, string> {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new AdminError(400, 'tags must be an object of key → value (or null to remove them)');
  const pairs = Object.entries(v as Record<string, unknown>);
  if (!pairs.every(([, value]) => typeof value === 'string'))
    throw new AdminError(400, 'tags: every value must be text');
  try {
    return checkedBucketTags(pairs as [string, string][]);
  } catch (err) {
    if (err instanceof S3Error) throw new AdminError(400, `tags: ${err.message}`);
    throw err;
  }
}

// The request target, decoded: a path that is not valid percent-encoding is the client's mistake (400).
function parseAdminUrl(target: string | undefined): {
  pathname: string;
  parts: string[];
  query: URLSearchParams;
} {
  try {
    const url = new URL(target ?? '/', 'http://admin');
    return {
      pathname: url.pathname,
      parts: url.pathname.split('/').filter(Boolean).map(decodeURIComponent),
      query: url.searchParams,
    };
  } catch {
    throw new AdminError(400, 'the request path is not valid percent-encoding');
  }
}

function bool(v: unknown, name: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new AdminError(400, `${name} must be true or false`);
  return v;
}

function str(v: unknown, name: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new AdminError(400, `${name} is required`);
  return v;
}

export class AdminServer {
  readonly server: http.Server | https.Server;
  private readonly sessions = new ConsoleSessions();
  private readonly assets = new ConsoleAssets();
  private readonly failedSignIns: WarningLimiter;

  constructor(
    private readonly deps: {
      config: CoffreConfig;
      store: ObjectStore;
      log: Logger;
      metrics: S3Metrics;
      cluster?: Cluster;
      rpc?: RpcNode;
      rebalancer?: Rebalancer;
      replication?: MetadataReplication;
      sseS3?: SseS3Keys;
      resync?: BlockResync;
      scrub?: Scrubber;
      rewrap?: KeyRewrap;
      // In front of a backend: runs are one at a time across the gateways (backend/lease.ts).
      lifecycleLease?: BackendLease;
    },
    tls?: https.ServerOptions,
  ) {
    // Whatever a request makes the handler throw is answered there; this catch is the last guard, so that
    // no request can turn into an unhandled rejection (which would end the process).
    const handler = (req: IncomingMessage, res: ServerResponse) =>
      void this.handle(req, res).catch((err: unknown) => this.lastResort(res, err));
    // No overall request timeout at the server: an upload through the console may take long. Each request
    // has its deadline instead (handle), lifted for an authenticated object transfer.
    const options = {
      maxHeaderSize: 16 * 1024,
      headersTimeout: 30_000,
      requestTimeout: 0,
      connectionsCheckingInterval: 1_000,
    };
    this.server = tls
      ? https.createServer({ ...options, ...tls }, handler)
      : http.createServer(options, handler);
    this.server.timeout = IDLE_TIMEOUT_MS;
    this.server.on('clientError', (_err: Error, socket: import('node:net').Socket) => {
      if (socket.writable)
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
    refuseTunnels(this.server);
    this.failedSignIns = new WarningLimiter((m) => deps.log.warn({}, m), 'failed console sign-ins');
  }

  private send(res: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
    const text = contentType === 'application/json' ? JSON.stringify(body) + '\n' : String(body);
    res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private lastResort(res: ServerResponse, err: unknown): void {
    this.deps.log.error({ err: String((err as Error)?.message ?? err) }, 'admin request failed');
    if (!res.headersSent) this.send(res, 500, { error: 'internal error' });
    else res.destroy();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { config, metrics } = this.deps;
    const deadline = setTimeout(() => req.destroy(), REQUEST_DEADLINE_MS);
    deadline.unref();
    res.once('close', () => clearTimeout(deadline));
    setSecurityHeaders(res);
    try {
      const url = parseAdminUrl(req.url);
      const parts = url.parts;
      if (url.pathname === '/health') return this.send(res, 200, { status: 'ok' });
      if (url.pathname === '/metrics') {
        // Behind metrics_token, or the admin token when there is none; open only with metrics_public = true.
        const given = bearer(req);
        const allowed =
          config.admin.metricsPublic ||
          tokenMatches(given, config.admin.metricsToken) ||
          tokenMatches(given, config.admin.adminToken);
        if (!allowed) throw new AdminError(403, 'a valid metrics or admin token is required');
        return this.send(res, 200, await metrics.registry.metrics(), metrics.registry.contentType);
      }
      const transport = clientTransport(req, config.trustedProxies);
      if (isConsolePage(url.pathname)) {
        const refusal = consoleTransportRefusal(req, transport);
        if (refusal) return refuseConsole(res, refusal);
        return this.assets.serve(req, res, url.pathname);
      }
      if (url.pathname === '/v1/session')
        return this.send(res, 200, await this.sessionRoute(req, res, transport));
      this.authenticate(req, transport);
      if (parts[0] === 'v1' && parts[1] === 'objects') {
        clearTimeout(deadline);
        return await serveObjects(this.deps, req, res, url.pathname, url.query, transport);
      }
      const body = req.method === 'POST' || req.method === 'PATCH' ? await readJson(req) : {};
      if (parts[0] === 'v1' && parts[1] === 'sse-s3')
        return this.send(res, 200, await this.sseS3Route(req, parts[2], body));
      return this.send(res, 200, await this.route(req.method ?? 'GET', parts, body));
    } catch (err) {
      if (res.headersSent) return void res.destroy();
      if (err instanceof AdminError) return this.send(res, err.status, { error: err.message });
      if (err instanceof S3Error) return this.send(res, err.status, { error: err.message, code: err.code });
      this.deps.log.error({ err: String((err as Error)?.message ?? err) }, 'admin request failed');
      return this.send(res, 500, { error: 'internal error' });
    }
  }

  // Who may call the API: the bearer of the admin token (the CLI, scripts), or a browser signed in to the
  // console whose state-changing calls come from the console's own page with the session's CSRF token.
  private authenticate(req: IncomingMessage, transport: ClientTransport): void {
    const { config } = this.deps;
    if (req.headers.authorization !== undefined) {
      if (!tokenMatches(bearer(req), config.admin.adminToken))
        throw new AdminError(403, 'a valid admin token is required');
      return;
    }
    const id = sessionCookie(req, transport.secure);
    if (id === undefined) throw new AdminError(403, 'a valid admin token is required');
    const refusal = consoleTransportRefusal(req, transport);
    if (refusal) throw new AdminError(403, refusal);
    const session = this.sessions.find(id);
    if (!session) throw new AdminError(401, 'the console session has ended: sign in again');
    if (req.method !== 'GET' && req.method !== 'HEAD') this.checkSameOrigin(req, transport, session);
  }

  private checkSameOrigin(req: IncomingMessage, transport: ClientTransport, session?: ConsoleSession): void {
    const crossOrigin = crossOriginRefusal(req, transport);
    if (crossOrigin) throw new AdminError(403, crossOrigin);
    if (session && !csrfMatches(req, session))
      throw new AdminError(403, 'the CSRF token is missing or wrong: reload the console page');
  }

  // POST signs in (the admin token in a JSON or form body, never in a URL), GET tells the page its session
  // and CSRF token after a reload, DELETE signs out.
  private async sessionRoute(req: IncomingMessage, res: ServerResponse, transport: ClientTransport) {
    const refusal = consoleTransportRefusal(req, transport);
    if (refusal) throw new AdminError(403, refusal);
    const id = sessionCookie(req, transport.secure);
    const about = (s: ConsoleSession) => ({
      csrfToken: s.csrfToken,
      expiresAt: new Date(s.created + SESSION_LIFETIME_MS).toISOString(),
      nodeId: this.deps.rpc?.nodeId,
      secure: transport.secure,
      fromLoopback: transport.fromLoopback,
    });
    if (req.method === 'GET') {
      const session = this.sessions.find(id);
      if (!session) throw new AdminError(401, 'not signed in');
      return about(session);
    }
    if (req.method === 'DELETE') {
      const session = this.sessions.find(id);
      if (session) this.checkSameOrigin(req, transport, session);
      this.sessions.end(id);
      res.setHeader('Set-Cookie', clearCookieHeader(transport.secure));
      return { signedOut: true };
    }
    if (req.method !== 'POST') throw new AdminError(405, 'sign in with POST, sign out with DELETE');
    this.checkSameOrigin(req, transport);
    const body = await readJson(req);
    const token = typeof body.token === 'string' ? body.token : undefined;
    if (!tokenMatches(token, this.deps.config.admin.adminToken)) {
      this.failedSignIns.report(
        `console sign-in refused (wrong admin token) from ${transport.clientAddress}`,
      );
      throw new AdminError(403, 'wrong admin token');
    }
    this.sessions.end(id);
    const created = this.sessions.create();
    res.setHeader('Set-Cookie', setCookieHeader(created.id, transport.secure));
    return about(created.session);
  }

  // The SSE-S3 keyring: its sealed file and state, and the operations that change it. Master keys cross this
  // API only to unlock, and only over TLS or from loopback, as SSE-C keys do on the S3 API.
  private async sseS3Route(req: IncomingMessage, action: string | undefined, body: Record<string, unknown>) {
    const keys = this.deps.sseS3;
    if (!keys) throw new AdminError(503, 'this node serves no SSE-S3');
    const publicKeys = () => {
      const list = body.publicKeys;
      if (!Array.isArray(list) || list.length === 0 || !list.every((k) => typeof k === 'string'))
        throw new AdminError(400, 'publicKeys: give at least one armored OpenPGP public key');
      return list as string[];
    };
    try {
      if (!action && req.method === 'GET') {
        // A gateway reads the keyring from its backend again: another gateway may have changed it.
        await keys.refresh();
        return {
          ...keys.status(),
          userIds: await keys.recipientUserIds(),
          sealed: keys.configured ? keys.sealedText() : undefined,
        };
      }
      if (action === 'rewrap') return await this.rewrapRoute(req.method ?? 'GET');
      if (req.method !== 'POST') throw new AdminError(404, 'unknown endpoint');
      if (action === 'init') await keys.init(publicKeys());
      else if (action === 'rotate') await keys.rotate(publicKeys());
      else if (action === 'reseal') await keys.reseal(publicKeys());
      else if (action === 'unlock') {
        const transport = clientTransport(req, this.deps.config.trustedProxies);
        if (!transport.secure && !transport.fromLoopback)
          throw new AdminError(400, 'master keys are accepted only over TLS or from loopback');
        const given = body.keys;
        if (typeof given !== 'object' || given === null || Array.isArray(given))
          throw new AdminError(400, 'keys: an object of id → base64 key');
        const digest = body.sealedDigest;
        if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest))
          throw new AdminError(
            400,
            'sealedDigest: the SHA-256 (hex) of the sealed keyring the keys came from',
          );
        const map = new Map(
          Object.entries(given as Record<string, unknown>).map(([id, k]) => [
            id,
            Buffer.from(typeof k === 'string' ? k : '', 'base64'),
          ]),
        );
        try {
          keys.unlockWith(map, digest);
        } finally {
          for (const k of map.values()) k.fill(0);
        }
      } else if (action === 'drop') {
        const keyId = body.keyId;
        if (typeof keyId !== 'string' || !/^[0-9a-f]{16}$/.test(keyId))
          throw new AdminError(400, 'keyId: the 16-hex-digit id of the master key to drop');
        const rewrap = this.deps.rewrap;
        if (!rewrap)
          throw new AdminError(
            400,
            "dropping a master key is offered on gateways in front of a backend, where `coffre sse-s3 rewrap` moves every object off it (not yet on a node's own store)",
          );
        const refusal = await rewrap.dropRefusal(keyId);
        if (refusal) throw new AdminError(409, `master key ${keyId} is still needed: ${refusal}`);
        await keys.drop(keyId, publicKeys());
      } else if (action === 'lock') keys.lock();
      else throw new AdminError(404, 'unknown endpoint');
      return { ...keys.status(), userIds: await keys.recipientUserIds() };
    } catch (err) {
      if (err instanceof UserError) throw new AdminError(400, err.message);
      throw err;
    }
  }

  // The re-wrap pass of a gateway's objects (backend/rewrap.ts): its progress, or a pass started or resumed.
  private async rewrapRoute(method: string): Promise<unknown> {
    const rewrap = this.deps.rewrap;
    if (!rewrap)
      throw new AdminError(
        400,
        "rewrap is offered on gateways in front of a backend (not yet on a node's own store)",
      );
    if (method === 'GET') return (await rewrap.progress()) ?? {};
    if (method === 'POST') return await rewrap.start();
    throw new AdminError(404, 'unknown endpoint');
  }

  private async requireKey(idOrName: string): Promise<AccessKeyRecord> {
    const k = await this.deps.store.findKey(idOrName);
    if (!k) throw new AdminError(404, `no access key ${idOrName}`);
    return k;
  }

  private async requireBucket(name: string): Promise<BucketRecord> {
    const b = await this.deps.store.bucketByName(name);
    if (!b) throw new AdminError(404, `no bucket ${name}`);
    return b;
  }

  private async route(method: string, parts: string[], body: Record<string, unknown>): Promise<unknown> {
    const store = this.deps.store;
    const [version, resource, id, action] = parts;
    if (version !== 'v1') throw new AdminError(404, 'unknown endpoint');
    if (resource === 'status' && method === 'GET') return await this.clusterStatus();
    if (resource === 'scrub' && method === 'POST') {
      const scrub = this.deps.scrub;
      if (!scrub) throw new AdminError(503, 'this node runs no scrub');
      if (this.requireCluster().isGateway()) throw new AdminError(400, 'a gateway holds no blocks to scrub');
      void scrub.runNow();
      return scrub.status();
    }
    if (resource === 'forget' && method === 'POST') {
      const nodeId = this.resolveNode(str(body.nodeId, 'nodeId'));
      try {
        return { forgotten: nodeId, ...(await this.requireCluster().forgetEverywhere(nodeId)) };
      } catch (err) {
        if (err instanceof UserError) throw new AdminError(400, err.message);
        throw err;
      }
    }
    if (resource === 'connect' && method === 'POST') {
      const peer = str(body.peer, 'peer');
      try {
        await this.requireRpc().connect(peer);
      } catch (err) {
        throw new AdminError(502, `cannot connect to ${peer}: ${(err as Error).message}`);
      }
      return this.clusterStatus();
    }
    if (resource === 'layout') return this.layoutRoute(method, id, body);
    if (resource === 'permissions' && !id && method === 'GET') return this.permissionMatrix();
    if (resource === 'metrics' && !id && method === 'GET')
      return this.deps.metrics.registry.getMetricsAsJSON();
    if (resource === 'lifecycle' && id === 'run' && !action && method === 'POST')
      return this.runLifecycle(body.now);
    if (resource === 'keys') {
      if (!id && method === 'GET')
        return (await store.listKeys()).map((k) => ({ accessKeyId: k.id, name: k.name }));
      if (!id && method === 'POST') {
        const k = await store.createKey(
          str(body.name, 'name'),
          bool(body.allowCreateBucket, 'allowCreateBucket'),
        );
        return keyInfo(store, k, true);
      }
      if (id && !action && method === 'GET')
        return keyInfo(store, await this.requireKey(id), body.showSecret === true);
      if (id && !action && method === 'PATCH') {
        const k = await this.requireKey(id);
        await store.setKeyCreateBucket(k.id, bool(body.allowCreateBucket, 'allowCreateBucket'));
        return keyInfo(store, (await store.getKey(k.id))!);
      }
      if (id && !action && method === 'DELETE') {
        const k = await this.requireKey(id);
        await store.deleteKey(k.id);
        return { deleted: k.id };
      }
    }
    if (resource === 'buckets') {
      if (!id && method === 'GET')
        return (await store.listBuckets()).map((b) => ({
          name: b.name,
          id: b.id,
          createdAt: new Date(b.createdAt).toISOString(),
        }));
      if (!id && method === 'POST') {
        const name = str(body.name, 'name');
        try {
          checkBucketName(name);
        } catch {
          throw new AdminError(
            400,
            `invalid bucket name "${name}": use 3-63 lower-case letters, digits, dots and hyphens`,
          );
        }
        if (await store.bucketByName(name)) throw new AdminError(409, `bucket ${name} already exists`);
        return bucketInfo(store, await store.createBucket(name));
      }
      if (id && !action && method === 'GET') return bucketInfo(store, await this.requireBucket(id));
      if (id && !action && method === 'PATCH') return bucketInfo(store, await this.updateBucket(id, body));
      if (id && !action && method === 'DELETE') {
        await this.requireBucket(id);
        try {
          await store.deleteBucket(id);
        } catch (err) {
          if (err instanceof S3Error && err.code === 'BucketNotEmpty')
            throw new AdminError(409, `bucket ${id} is not empty`);
          throw err;
        }
        return { deleted: id };
      }
      if (id && (action === 'allow' || action === 'deny') && method === 'POST') {
        const b = await this.requireBucket(id);
        const k = await this.requireKey(str(body.accessKeyId, 'accessKeyId'));
        const current = b.permissions[k.id] ?? { read: false, write: false, owner: false };
        const want = {
          read: bool(body.read, 'read'),
          write: bool(body.write, 'write'),
          owner: bool(body.owner, 'owner'),
        };
        if (!want.read && !want.write && !want.owner)
          throw new AdminError(400, 'say which permission: read, write and/or owner');
        const next =
          action === 'allow'
            ? {
                read: current.read || want.read,
                write: current.write || want.write,
                owner: current.owner || want.owner,
              }
            : {
                read: current.read && !want.read,
                write: current.write && !want.write,
                owner: current.owner && !want.owner,
              };
        return bucketInfo(store, await store.setPermission(b.id, k.id, next));
      }
    }
    throw new AdminError(404, 'unknown endpoint');
  }

  // Every key and every bucket with the rights each key holds there: the console's keys × buckets matrix.
  private async permissionMatrix() {
    const store = this.deps.store;
    const [keys, buckets] = await Promise.all([store.listKeys(), store.listBuckets()]);
    return {
      keys: keys.map((k) => ({ accessKeyId: k.id, name: k.name, allowCreateBucket: k.allowCreateBucket })),
      buckets: buckets.map((b) => ({ name: b.name, permissions: b.permissions })),
    };
  }

  // Default encryption, CORS rules, tags, versioning, lifecycle rules and the bucket policy; a setting absent
  // from the body is left as it is, null removes it.
  private async updateBucket(name: string, body: Record<string, unknown>): Promise<BucketRecord> {
    const store = this.deps.store;
    let b = await this.requireBucket(name);
    const enc = body.defaultEncryption;
    if (enc !== undefined) {
      if (enc !== null && enc !== 'AES256')
        throw new AdminError(400, 'defaultEncryption must be "AES256" (SSE-S3) or null');
      if (enc === 'AES256' && !this.deps.sseS3?.configured)
        throw new AdminError(
          400,
          'SSE-S3 is not set up on this node: create its keyring with `coffre sse-s3 init` first',
        );
    }
    const cors = body.cors === undefined || body.cors === null ? body.cors : corsRulesFrom(body.cors);
    const tags = body.tags === undefined || body.tags === null ? body.tags : tagsFrom(body.tags);
    const versioning = body.versioning === undefined ? undefined : versioningFrom(body.versioning, b);
    const lifecycle =
      body.lifecycle === undefined || body.lifecycle === null
        ? body.lifecycle
        : lifecycleFrom(body.lifecycle);
    const policy =
      body.policy === undefined || body.policy === null
        ? body.policy
        : await policyFrom(store, b.name, body.policy);
    // Everything is checked before anything is changed.
    if (versioning !== undefined && versioning !== b.versioning)
      b = await store.setBucketVersioning(b.id, versioning);
    if (lifecycle !== undefined)
      b = await store.setBucketLifecycle(b.id, (lifecycle as LifecycleRule[] | null) ?? undefined);
    if (policy !== undefined) b = await store.setBucketPolicy(b.id, (policy as string | null) ?? undefined);
    if (enc !== undefined) b = await store.setBucketEncryption(b.id, enc ?? undefined);
    if (cors !== undefined) b = await store.setBucketCors(b.id, (cors as CorsRule[] | null) ?? undefined);
    if (tags !== undefined)
      b = await store.setBucketTags(b.id, (tags as Record<string, string> | null) ?? undefined);
    return b;
  }

  // `now` lets an operator (or a test) apply the rules as of another date; object lock is judged by the store
  // at the real time whatever it says, so no date given here frees a protected version.
  private async runLifecycle(now: unknown): Promise<LifecycleReport> {
    let at = Date.now();
    if (now !== undefined) {
      at = typeof now === 'string' ? Date.parse(now) : NaN;
      if (Number.isNaN(at))
        throw new AdminError(400, 'now must be a date, as 2030-01-31 or 2030-01-31T12:00:00Z');
    }
    const report = await this.underLifecycleLease((signal) => applyLifecycle(this.deps.store, at, signal));
    this.deps.log.info(lifecycleLogFields(report), 'lifecycle run');
    return report;
  }

  // A run on a gateway, while it holds the lifecycle lease; refused while another gateway's run holds it.
  private async underLifecycleLease(
    pass: (signal?: AbortSignal) => Promise<LifecycleReport>,
  ): Promise<LifecycleReport> {
    const lease = this.deps.lifecycleLease;
    if (!lease) return pass();
    const outcome = await lease.run(pass);
    if (outcome.ran) return outcome.value;
    const where = outcome.holder ? ` on gateway ${outcome.holder.slice(0, 16)}…` : ' on another gateway';
    throw new AdminError(
      409,
      `a lifecycle run is in progress${where}; retry when it ends (within a minute or two)`,
    );
  }

  private requireRpc(): RpcNode {
    if (!this.deps.rpc) throw new AdminError(503, 'this node has no RPC layer');
    return this.deps.rpc;
  }

  private requireCluster(): Cluster {
    if (!this.deps.cluster) throw new AdminError(503, 'this node has no cluster layer');
    return this.deps.cluster;
  }

  private async clusterStatus() {
    const rpc = this.requireRpc();
    const cluster = this.requireCluster();
    const layout = cluster.currentLayout();
    const status = rpc.status();
    const roleOf = (id: string) => {
      const r = layout.roles[id];
      if (!r) return { role: 'none', zone: null, capacity: null };
      return { role: r.capacity === null ? 'gateway' : 'storage', zone: r.zone, capacity: r.capacity };
    };
    const nodes: Omit<StatusNode, 'disk'>[] = [
      {
        id: status.nodeId,
        addr: status.addr,
        up: true,
        lastSeen: new Date().toISOString(),
        self: true,
        ...roleOf(status.nodeId),
      },
      ...status.peers.map((p) => ({
        id: p.id,
        addr: p.addr,
        up: p.up,
        lastSeen: p.lastSeen ? p.lastSeen.toISOString() : null,
        self: false,
        ...roleOf(p.id),
      })),
    ];
    for (const id of Object.keys(layout.roles)) {
      if (!nodes.some((n) => n.id === id))
        nodes.push({ id, addr: null, up: false, lastSeen: null, self: false, ...roleOf(id) });
    }
    const resync = this.deps.resync?.status() ?? null;
    const owed = [
      ...(resync ? [{ from: status.nodeId, nodes: resync.nodes }] : []),
      ...(await cluster.peersResyncStatus()),
    ];
    // A gateway holds no blocks: it has no scrub to report.
    const scrub = cluster.isGateway() ? null : (this.deps.scrub?.status() ?? null);
    // Each node that is up says how full its disk is (peers within a few seconds, all at once).
    const withDisk: StatusNode[] = await Promise.all(
      nodes.map(async (n) => ({ ...n, disk: n.up ? await cluster.diskUse(n.id).catch(() => null) : null })),
    );
    const inputs = {
      layoutVersion: layout.version,
      nodes: withDisk,
      rebalance: this.deps.rebalancer?.status() ?? null,
      metadata: this.deps.replication?.status() ?? null,
      sseS3: this.deps.sseS3?.status() ?? null,
      replicationFactor: cluster.replicationFactor,
      owed,
      scrub,
    };
    return { nodeId: status.nodeId, ...inputs, resync, health: clusterHealth(inputs) };
  }

  // A node named by a unique prefix of its id, among the nodes this node knows.
  private resolveNode(prefix: string): string {
    const known = new Set([
      this.requireRpc().nodeId,
      ...this.requireRpc().knownPeers(),
      ...Object.keys(this.requireCluster().currentLayout().roles),
    ]);
    const matches = [...known].filter((id) => id.startsWith(prefix.toLowerCase()));
    if (matches.length === 1) return matches[0]!;
    if (/^[0-9a-f]{64}$/.test(prefix)) return prefix;
    if (matches.length === 0)
      throw new AdminError(404, `no known node id starts with ${prefix} (connect to it first)`);
    throw new AdminError(400, `node id prefix ${prefix} is ambiguous`);
  }

  private async layoutRoute(method: string, action: string | undefined, body: Record<string, unknown>) {
    const cluster = this.requireCluster();
    const layout = cluster.currentLayout();
    if (!action && method === 'GET')
      return { ...layout, metadataCopies: metadataReplicas(layout, cluster.replicationFactor).slice(1) };
    if (action === 'assign' && method === 'POST') {
      const nodeId = this.resolveNode(str(body.nodeId, 'nodeId'));
      const gateway = bool(body.gateway, 'gateway');
      const capacity = body.capacity;
      if (gateway === (capacity !== undefined))
        throw new AdminError(400, 'give either a capacity or gateway, not both');
      if (
        capacity !== undefined &&
        (typeof capacity !== 'number' || !Number.isSafeInteger(capacity) || capacity <= 0)
      ) {
        throw new AdminError(400, 'capacity must be a positive number of bytes');
      }
      const zone =
        typeof body.zone === 'string' && body.zone ? body.zone : (layout.roles[nodeId]?.zone ?? 'default');
      cluster.stageLayout(
        stageRole(layout, nodeId, { zone, capacity: gateway ? null : (capacity as number) }),
      );
      return cluster.currentLayout();
    }
    if (action === 'remove' && method === 'POST') {
      cluster.stageLayout(stageRole(layout, this.resolveNode(str(body.nodeId, 'nodeId')), null));
      return cluster.currentLayout();
    }
    if (action === 'apply' && method === 'POST') {
      if (typeof body.version !== 'number') throw new AdminError(400, 'version is required');
      let next;
      try {
        // A layout that takes the role from the metadata node hands it to its most complete copy.
        const successor =
          this.deps.replication && body.version === layout.version + 1
            ? await this.deps.replication.chooseSuccessor(layout, nextRoles(layout, body.version))
            : undefined;
        next = applyStaged(layout, body.version, {
          successor,
          replicationFactor: cluster.replicationFactor,
        });
      } catch (err) {
        throw new AdminError(400, (err as Error).message);
      }
      cluster.stageLayout(next);
      await cluster.spreadLayout();
      return next;
    }
    throw new AdminError(404, 'unknown endpoint');
  }

  /** Resolves with the address bound (`host:port`; port 0 in the configuration lets the system pick). */
  listen(host: string, port: number): Promise<string> {
    return listenOn(this.server, host, port);
  }

  close(): Promise<void> {
    return closeServer(this.server);
  }
}
