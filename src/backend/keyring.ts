// backend/keyring: the SSE-S3 keyring of gateways in front of one backend, kept in that backend, and the
// hand-off of its master keys from one gateway to the others (docs/gateway.md, "SSE-S3 keyring").
//
// The sealed keyring (the very text a keyring file holds: only operators' OpenPGP keys open it) is one record
// at `prefix` + ".coffre/sse-s3/keyring", sealed once more as every shared record is (records.ts, under a key
// derived from rpc_secret): the backend's operator can neither read it nor put another keyring in its place.
// Every gateway reads it at start and again every REFRESH_MS, so `init`, `rotate`, `reseal` and `drop-key` made
// through one gateway reach the others.
//
// Gateways find each other in the backend: each writes, every ANNOUNCE_MS, a sealed record at
// ".coffre/gateways/<node id>" with its RPC address and the digest of the keyring it holds unlocked (if any).
// An unlocked gateway that sees a peer without its keyring pushes the master keys to it over the RPC (Secret
// Handshake + box-stream, keyed by rpc_secret): a push, never a request — no endpoint hands keys to whoever
// asks. The receiver takes a push only from a gateway announced in the backend, and only keys that open the
// keyring it reads from the backend itself, named by the same digest (SseS3Keys.unlockWith): a peer can hand
// over nothing but the keys of the keyring already there.
import type { Logger } from 'pino';
import type { RpcNode, RpcRequest } from '../rpc/peering.js';
import type { KeyringSource, SseS3Keys } from '../sse/sse-s3-keys.js';
import { UserError, errorMessage } from '../util/errors.js';
import { isConflict, type SharedRecords } from './records.js';

/** The RPC endpoint a gateway receives master keys on. */
export const SSE_S3_KEYS_PATH = 'sse-s3/keys';
/** How often a gateway announces itself, reads the others' announcements, and re-reads the keyring. */
export const ANNOUNCE_MS = Number(process.env.COFFRE_GATEWAY_ANNOUNCE_MS ?? 2_000);
/** An announcement older than this is a gateway gone (stopped or killed). */
export const ANNOUNCE_TTL_MS = Math.max(10_000, ANNOUNCE_MS * 5);
const RECORD_VERSION = 1;
// Bounds on a push, checked before anything else. A push is one RPC header (64 KiB at most): a keyring of more
// master keys than this is not handed over (drop old keys: `coffre sse-s3 rewrap`, then `drop-key`).
const MAX_PUSHED_KEYS = 512;
const KEY_ID = /^[0-9a-f]{16}$/;
const KEY_BASE64 = /^[A-Za-z0-9+/]{43}=$/;
const DIGEST = /^[0-9a-f]{64}$/;
const NODE_ID = /^[0-9a-f]{64}$/;

interface KeyringRecord {
  v: number;
  text: string;
}

/** What a gateway says of itself in the backend. */
export interface GatewayAnnouncement {
  v: number;
  nodeId: string;
  /** host:port its RPC listener is reached at; null if it binds a wildcard without rpc_public_addr. */
  rpcAddr: string | null;
  /** When it last announced, and when it started (ms since the epoch, its clock). */
  at: number;
  started: number;
  /** Digest of the sealed keyring it holds unlocked, if any, and the id of its current master key. */
  digest?: string;
  current?: string;
}

/** The sealed keyring as a record in the backend (a KeyringSource for SseS3Keys). */
export class BackendKeyringSource implements KeyringSource {
  constructor(
    private readonly records: SharedRecords,
    readonly where: string,
  ) {}

  async load(): Promise<{ text: string; version?: string } | undefined> {
    const { value, etag } = await this.records.readState<KeyringRecord>('sse-s3', 'keyring');
    if (value === undefined) return undefined;
    if (value.v !== RECORD_VERSION || typeof value.text !== 'string')
      throw new UserError(`the SSE-S3 keyring record in ${this.where} is not one this coffre reads`);
    return { text: value.text, version: etag };
  }

  async save(text: string, version: string | undefined): Promise<string | undefined> {
    try {
      return await this.records.writeState('sse-s3', 'keyring', { v: RECORD_VERSION, text }, version ?? null);
    } catch (err) {
      if (isConflict(err))
        throw new UserError(
          'another gateway changed the SSE-S3 keyring at the same time: check `coffre sse-s3 status` and run the command again',
        );
      throw err;
    }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A push's header, checked into its type (anything else is refused before the keyring is read). */
export function parsePush(header: unknown): { digest: string; keys: Map<string, Buffer> } {
  if (!isRecord(header)) throw new UserError('a key push is an object');
  const { digest, keys } = header;
  if (typeof digest !== 'string' || !DIGEST.test(digest))
    throw new UserError('a key push names its keyring by a 64-hex-digit digest');
  if (!isRecord(keys)) throw new UserError('a key push carries an object of key id → key');
  const entries = Object.entries(keys);
  if (entries.length === 0 || entries.length > MAX_PUSHED_KEYS)
    throw new UserError(`a key push carries 1 to ${MAX_PUSHED_KEYS} keys`);
  const map = new Map<string, Buffer>();
  for (const [id, key] of entries) {
    if (!KEY_ID.test(id) || typeof key !== 'string' || !KEY_BASE64.test(key)) {
      for (const k of map.values()) k.fill(0);
      throw new UserError('a key push carries 16-hex-digit key ids and 32-byte base64 keys');
    }
    map.set(id, Buffer.from(key, 'base64'));
  }
  return { digest, keys: map };
}

function parseAnnouncement(value: unknown): GatewayAnnouncement | undefined {
  if (!isRecord(value) || value.v !== RECORD_VERSION) return undefined;
  const { nodeId, rpcAddr, at, started, digest, current } = value;
  if (typeof nodeId !== 'string' || !NODE_ID.test(nodeId)) return undefined;
  if (rpcAddr !== null && (typeof rpcAddr !== 'string' || rpcAddr.length > 300)) return undefined;
  if (typeof at !== 'number' || !Number.isFinite(at)) return undefined;
  if (typeof started !== 'number' || !Number.isFinite(started)) return undefined;
  if (digest !== undefined && (typeof digest !== 'string' || !DIGEST.test(digest))) return undefined;
  if (current !== undefined && (typeof current !== 'string' || !KEY_ID.test(current))) return undefined;
  return { v: RECORD_VERSION, nodeId, rpcAddr, at, started, digest, current };
}

/**
 * A gateway's part in the keyring hand-off: announces itself, keeps the keyring fresh, pushes its master keys
 * to peers that lack them, and takes pushes from announced peers.
 */
export class KeyringHandOff {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  // The gateways announced in the backend as last read (node id → announcement), this one left out.
  private peers = new Map<string, GatewayAnnouncement>();
  // What this gateway pushed each peer: the keyring's digest and the peer's start. One push per keyring and
  // per start of the peer, so that an operator's `coffre sse-s3 lock` of a peer holds until it restarts.
  private readonly pushed = new Map<string, string>();
  private readonly started = Date.now();

  constructor(
    private readonly records: SharedRecords,
    private readonly rpc: RpcNode,
    private readonly keys: SseS3Keys,
    private readonly log: Pick<Logger, 'info' | 'warn'>,
  ) {}

  /** Who may call the endpoint: gateways announced in this backend (checked again by the handler). */
  mayPush(peerId: string): boolean {
    return this.peers.has(peerId);
  }

  async start(): Promise<void> {
    this.rpc.registerEndpoint(SSE_S3_KEYS_PATH, (req) => this.receive(req));
    if (this.rpc.addr === null)
      this.log.warn(
        {},
        'this gateway binds its RPC port to a wildcard address without rpc_public_addr: other gateways cannot reach it to hand it SSE-S3 keys (set rpc_public_addr)',
      );
    // An operator's unlock (or a rotation) here reaches the other gateways at once, not at the next tick,
    // and reaches again those that were locked since they were last handed the keys.
    this.keys.onUnlocked(() => {
      this.pushed.clear();
      this.tickSoon();
    });
    await this.tick();
    this.timer = setInterval(() => this.tickSoon(), ANNOUNCE_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
    // Gone at once rather than after ANNOUNCE_TTL_MS (a gateway killed -9 just ages out).
    await this.records.removeState('gateways', this.rpc.nodeId).catch(() => undefined);
  }

  /** The gateways announced within ANNOUNCE_TTL_MS, this one included (for the re-wrap pass). */
  async liveGateways(): Promise<GatewayAnnouncement[]> {
    const now = Date.now();
    return (await this.records.listState<unknown>('gateways'))
      .map(parseAnnouncement)
      .filter((a): a is GatewayAnnouncement => a !== undefined && now - a.at < ANNOUNCE_TTL_MS);
  }

  private tickSoon(): void {
    if (this.stopped || this.running) return;
    this.running = this.tick()
      .catch((err: unknown) =>
        this.log.warn(
          { err: errorMessage(err) },
          'SSE-S3 keyring hand-off: backend or peer failed; retrying',
        ),
      )
      .finally(() => {
        this.running = undefined;
      });
  }

  private async tick(): Promise<void> {
    await this.keys.refresh();
    const status = this.keys.status();
    const own: GatewayAnnouncement = {
      v: RECORD_VERSION,
      nodeId: this.rpc.nodeId,
      rpcAddr: this.rpc.addr,
      at: Date.now(),
      started: this.started,
      // The key it writes new objects with (what a rewrap pass waits on), and the keyring it can hand on.
      ...(status.unlocked ? { current: status.current } : {}),
      ...(status.unlocked && !status.stale && status.sealedDigest ? { digest: status.sealedDigest } : {}),
    };
    await this.records.writeState('gateways', this.rpc.nodeId, own);
    const live = await this.liveGateways();
    this.peers = new Map(live.filter((a) => a.nodeId !== this.rpc.nodeId).map((a) => [a.nodeId, a]));
    const handOver = this.keys.handOver();
    try {
      const connected = new Set(this.rpc.connectedPeers());
      for (const peer of this.peers.values()) {
        // Dialled in the background (the RPC layer retries): a peer gone silent must not hold up the others.
        if (!connected.has(peer.nodeId)) {
          if (peer.rpcAddr) this.dial(`${peer.nodeId}@${peer.rpcAddr}`);
          continue;
        }
        if (!handOver || peer.digest === handOver.digest) continue;
        const mark = `${handOver.digest}@${peer.started}`;
        if (this.pushed.get(peer.nodeId) === mark) continue;
        if (await this.push(peer.nodeId, handOver)) this.pushed.set(peer.nodeId, mark);
      }
    } finally {
      for (const k of handOver?.keys.values() ?? []) k.fill(0);
    }
  }

  private dial(address: string): void {
    try {
      this.rpc.connect(address).catch(() => undefined);
    } catch {
      // An address the RPC layer does not take (announced by a gateway misconfigured): nothing to dial.
    }
  }

  private async push(
    peerId: string,
    handOver: { digest: string; keys: Map<string, Buffer> },
  ): Promise<boolean> {
    const header = {
      digest: handOver.digest,
      keys: Object.fromEntries([...handOver.keys].map(([id, k]) => [id, k.toString('base64')])),
    };
    try {
      const reply = await this.rpc.call(peerId, SSE_S3_KEYS_PATH, header);
      reply.body?.destroy();
      this.log.info({ peer: peerId.slice(0, 16) }, 'SSE-S3 master keys handed to a peer gateway');
      return true;
    } catch (err) {
      this.log.warn(
        { peer: peerId.slice(0, 16), err: errorMessage(err) },
        'SSE-S3 master keys not handed to a peer gateway; retrying',
      );
      return false;
    }
  }

  // A push from a peer: refused unless the peer is announced in the backend and the keys open the keyring
  // read from the backend now, under the digest the push names.
  private async receive(req: RpcRequest): Promise<{ header: unknown }> {
    req.body?.resume();
    const push = parsePush(req.header);
    try {
      // Who pushed: a gateway of this backend, as the backend says now (not only as last read).
      const live = await this.liveGateways();
      if (!live.some((a) => a.nodeId === req.peerId && a.nodeId !== this.rpc.nodeId))
        throw new UserError('keys are taken only from gateways announced in this backend');
      await this.keys.refresh();
      if (this.keys.holds(push.digest)) return { header: { taken: false } };
      this.keys.unlockWith(push.keys, push.digest, true);
      this.log.info({ peer: req.peerId.slice(0, 16) }, 'SSE-S3 keyring unlocked by a peer gateway');
      return { header: { taken: true } };
    } finally {
      for (const k of push.keys.values()) k.fill(0);
    }
  }
}

/** Where a gateway's keyring lives, as status and messages name it. */
export function keyringWhere(config: { endpoint: string; bucket: string; prefix: string }): string {
  return `backend ${config.endpoint} bucket ${config.bucket}, ${config.prefix}.coffre/sse-s3/keyring`;
}
