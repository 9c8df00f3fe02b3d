// rpc/peering: a node's connections to the rest of the cluster. An RpcNode listens on rpc_bind_addr for
// Secret Handshake connections keyed by the rpc_secret, dials bootstrap peers and every peer it learns of,
// keeps one multiplexed channel per peer (either side may call the other over it), pings each peer
// periodically, marks peers down when a channel dies and redials them with exponential backoff, and
// exchanges peer lists (id, address) with every ping so that nodes find each other from one bootstrap peer.
//
// API (what the S3 gateway forwarding, the cluster layer and the CLI use):
//
//   const node = new RpcNode({ identity, networkKey, bindAddr: '0.0.0.0:3901', publicAddr, bootstrapPeers });
//   await node.start();                                  // listen, then dial bootstrap peers in the background
//   node.nodeId                                          // 64 hex digits; peers write us as `${nodeId}@${addr}`
//   node.registerEndpoint('block/get', async ({ peerId, header, body, signal }) => ({ header, body }));
//   const { header, body } = await node.call(peerId, 'block/get', { hash }, null, { priority: Priority.Bulk });
//   await node.connect('<id>@host:port');                // e.g. `coffre node connect`
//   node.status()                                        // { nodeId, addr, peers: [{ id, addr, up, lastSeen, … }] }
//   node.on('peer-up' | 'peer-down', (peerId) => …)
//   await node.stop();
//
// Paths starting with `rpc/` are reserved for this layer (ping and peer exchange). Handlers get the caller's
// authenticated node id; bodies are streams in both directions (Buffer or Readable out, Readable in). A call
// to a peer that is not connected fails at once with a PeerUnavailableError (code PEER_DOWN) rather than
// waiting: callers that want to wait retry, as the cluster layer does.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { HandshakeError } from '../net/handshake.js';
import { sodium } from '../net/sodium.js';
import { Mux, Priority, RemoteError, openMux, type Body, type MuxReply } from '../net/mux.js';
import { connectSecure, createSecureServer, type SecureChannel } from '../net/secure-channel.js';
import { WarningLimiter } from '../util/log-limit.js';
import { closeServer, formatHostPort, listenOn } from '../util/http-server.js';
import { nodeIdOf, parseHostPort, parseNodeId, parsePeerAddress, type NodeIdentity } from './identity.js';

export { Priority, RemoteError };

/** Where log lines go (a pino logger fits). Nothing secret is ever logged. */
export interface RpcLogger {
  info(msg: string): void;
  warn(msg: string): void;
  debug?(msg: string): void;
}

export interface RpcNodeOptions {
  identity: NodeIdentity;
  /** The cluster's rpc_secret (32 bytes): the Secret Handshake network key. */
  networkKey: Buffer;
  /** host:port to listen on (port 0: any free port). Default 127.0.0.1:3901. */
  bindAddr?: string;
  /** host:port peers should dial to reach us; default: the bound address unless it is a wildcard. */
  publicAddr?: string;
  /** Peers to dial at start, as `<id>@host:port`. */
  bootstrapPeers?: string[];
  /** Node ids an operator told this node to forget (`coffre node forget`): not learned from peer lists. */
  forgottenPeers?: string[];
  /** Interval between pings (and peer-list exchanges) per peer. Default 15 s. */
  pingIntervalMs?: number;
  /** A ping unanswered this long marks the peer down. Default 10 s. */
  pingTimeoutMs?: number;
  /** Redial backoff: first delay and cap. Defaults 1 s and 60 s. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Deadline for connect + handshake + version tag. Default 10 s. */
  connectTimeoutMs?: number;
  logger?: RpcLogger;
}

export interface RpcRequest {
  /** The caller's node id, authenticated by the handshake. */
  peerId: string;
  path: string;
  header: unknown;
  body: Readable | null;
  /** Aborted if the caller cancels or the connection drops. */
  signal: AbortSignal;
}

export interface RpcResponse {
  header: unknown;
  body?: Body | null;
}

export type RpcReply = MuxReply;

export type RpcHandler = (req: RpcRequest) => RpcResponse | Promise<RpcResponse>;

export interface CallOptions {
  priority?: Priority;
  signal?: AbortSignal;
}

export interface PeerStatus {
  id: string;
  /** host:port we dial, if known. */
  addr: string | null;
  up: boolean;
  /** Last successful handshake or ping. */
  lastSeen: Date | null;
  /** Why the last connection attempt or ping failed (no secrets). */
  lastError: string | null;
}

export interface RpcStatus {
  nodeId: string;
  addr: string | null;
  peers: PeerStatus[];
}

/** A call to a peer that is not connected. */
export class PeerUnavailableError extends Error {
  readonly code = 'PEER_DOWN';
  constructor(peerId: string) {
    super(`peer ${peerId.slice(0, 16)}… is not connected`);
    this.name = 'PeerUnavailableError';
  }
}

const PING_PATH = 'rpc/ping';
const RESERVED_PREFIX = 'rpc/';

interface PeerListEntry {
  id: string;
  addr: string;
}

interface PingHeader {
  addr: string | null;
  peers: PeerListEntry[];
}

interface Peer {
  id: string;
  publicKey: Buffer;
  addr: string | null;
  mux: Mux | null;
  /** Node id of whoever opened the current channel (for the duplicate-channel tie-break). */
  opener: string | null;
  lastSeen: number | null;
  lastError: string | null;
  failures: number;
  retryTimer: NodeJS.Timeout | null;
  dialing: Promise<void> | null;
  pinging: boolean;
}

const noopLogger: RpcLogger = { info: () => {}, warn: () => {} };

function short(id: string): string {
  return id.slice(0, 16);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class RpcNode extends EventEmitter {
  readonly nodeId: string;
  private readonly networkKey: Buffer;
  private readonly peers = new Map<string, Peer>();
  private readonly endpoints = new Map<string, RpcHandler>();
  // Who may call what; until the node sets a policy, peers reach no endpoint at all (only the ping).
  private mayCall: (peerId: string, path: string) => boolean = () => false;
  private readonly introduced = new Set<string>();
  private readonly forgotten: Set<string>;
  private readonly log: RpcLogger;
  // Anyone who reaches the RPC port can fail a handshake: a few are logged, the rest counted.
  private readonly refusedConnections: WarningLimiter;
  private server: net.Server | null = null;
  private advertised: string | null = null;
  private listening: string | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  private readonly pingIntervalMs: number;
  private readonly pingTimeoutMs: number;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private readonly connectTimeoutMs: number;

  constructor(private readonly opts: RpcNodeOptions) {
    super();
    if (opts.networkKey.length !== 32) throw new Error('rpc: the network key (rpc_secret) must be 32 bytes');
    if (sodium.sodium_is_zero(opts.networkKey))
      throw new Error('rpc: the network key (rpc_secret) is all zeros');
    // Our own copy: a caller wiping its buffer must not silently change the key of every later handshake.
    // Wiped in stop().
    this.networkKey = Buffer.from(opts.networkKey);
    this.nodeId = opts.identity.id ?? nodeIdOf(opts.identity.publicKey);
    this.log = opts.logger ?? noopLogger;
    this.refusedConnections = new WarningLimiter((m) => this.log.warn(m), 'refused RPC connections');
    this.pingIntervalMs = opts.pingIntervalMs ?? 15_000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 10_000;
    this.reconnectMinMs = opts.reconnectMinMs ?? 1_000;
    this.reconnectMaxMs = opts.reconnectMaxMs ?? 60_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.forgotten = new Set(opts.forgottenPeers ?? []);
  }

  /** The address the RPC listener is bound to (null before start). */
  get listeningOn(): string | null {
    return this.listening;
  }

  /** The address peers should dial to reach this node (null if unknown, e.g. bound to a wildcard). */
  get addr(): string | null {
    return this.advertised;
  }

  /** Starts listening, then dials the bootstrap peers (in the background: start() does not wait for them). */
  async start(): Promise<void> {
    const { host, port } = parseHostPort(this.opts.bindAddr ?? '127.0.0.1:3901', { allowAnyPort: true });
    const server = createSecureServer(
      {
        networkKey: this.networkKey,
        identity: this.opts.identity,
        timeoutMs: this.connectTimeoutMs,
        authorize: (key) => !key.equals(this.opts.identity.publicKey),
        onHandshakeError: (err, remote) =>
          this.refusedConnections.report(`rpc: refused connection from ${remote ?? '?'}: ${err.message}`),
      },
      (channel) => this.acceptChannel(channel),
    );
    this.listening = await listenOn(server, host, port);
    server.on('error', (err) => this.log.warn(`rpc: listener error: ${err.message}`));
    this.server = server;
    const bound = server.address() as net.AddressInfo;
    if (this.opts.publicAddr) this.advertised = formatHostPort(...hostPort(this.opts.publicAddr));
    else if (host !== '0.0.0.0' && host !== '::') this.advertised = formatHostPort(host, bound.port);
    this.log.info(`rpc: node ${short(this.nodeId)}… listening on ${this.listening}`);
    this.pingTimer = setInterval(() => this.pingAll(), this.pingIntervalMs);
    this.pingTimer.unref();
    for (const peer of this.opts.bootstrapPeers ?? []) {
      this.connect(peer).catch(() => {}); // failures are logged and retried
    }
  }

  /** Closes every channel and the listener. */
  async stop(): Promise<void> {
    this.refusedConnections.close();
    this.stopped = true;
    if (this.pingTimer) clearInterval(this.pingTimer);
    for (const peer of this.peers.values()) {
      if (peer.retryTimer) clearTimeout(peer.retryTimer);
      peer.retryTimer = null;
      peer.mux?.destroy();
      peer.mux = null;
    }
    const server = this.server;
    this.server = null;
    if (server) await closeServer(server); // and the connections it accepted

    this.networkKey.fill(0);
  }

  /** Adds `<id>@host:port` to the known peers and dials it; resolves once connected. Retries on failure. */
  connect(peerAddress: string): Promise<void> {
    const target = parsePeerAddress(peerAddress);
    if (target.id === this.nodeId) return Promise.resolve();
    this.introduced.add(target.id);
    this.forgotten.delete(target.id);
    const peer = this.peerFor(target.id);
    peer.addr = formatHostPort(target.host, target.port);
    if (peer.mux && !peer.mux.closed) return Promise.resolve();
    return this.dial(peer);
  }

  /**
   * Whether this node's operator named `peerId` (`coffre node connect`, bootstrap_peers), as opposed to a
   * peer that merely dialed in or was learned from a peer list: a node in no cluster yet takes its first
   * layout only from such a peer.
   */
  isIntroduced(peerId: string): boolean {
    return this.introduced.has(peerId);
  }

  /**
   * Drops a peer for good (`coffre node forget`, for a dead node no longer in the layout): its channel is
   * closed, it is not redialled, and peer lists that still name it do not bring it back. It comes back only if
   * an operator connects to it again or it dials this node itself.
   */
  forget(peerId: string): void {
    this.forgotten.add(peerId);
    this.introduced.delete(peerId);
    const peer = this.peers.get(peerId);
    if (!peer) return;
    this.peers.delete(peerId);
    if (peer.retryTimer) clearTimeout(peer.retryTimer);
    peer.retryTimer = null;
    const mux = peer.mux;
    peer.mux = null; // so that its close is not taken for the peer going down (and redialled)
    mux?.destroy();
    this.log.info(`rpc: forgot peer ${short(peerId)}…`);
    this.emit('peer-forgotten', peerId);
  }

  /** Node ids this node was told to forget (kept with its known peers across restarts). */
  forgottenPeers(): string[] {
    return [...this.forgotten].sort();
  }

  /** Decides, before any handler runs, which peers may call which endpoints. */
  setAccessPolicy(mayCall: (peerId: string, path: string) => boolean): void {
    this.mayCall = mayCall;
  }

  /** Serves `path` to peers. Paths under `rpc/` are reserved. */
  registerEndpoint(path: string, handler: RpcHandler): void {
    if (path.startsWith(RESERVED_PREFIX))
      throw new Error(`rpc: endpoint paths under ${RESERVED_PREFIX} are reserved`);
    if (this.endpoints.has(path)) throw new Error(`rpc: endpoint ${path} is already registered`);
    this.endpoints.set(path, handler);
  }

  /** Calls `path` on a connected peer. A reply body, if any, must be consumed or destroyed. */
  call(
    peerId: string,
    path: string,
    header: unknown,
    body?: Body | null,
    opts: CallOptions = {},
  ): Promise<RpcReply> {
    const mux = this.peers.get(peerId)?.mux;
    if (!mux || mux.closed) return Promise.reject(new PeerUnavailableError(peerId));
    return mux.request(path, header, body ?? null, opts);
  }

  /** Ids of every peer this node knows of (connected or not). */
  knownPeers(): string[] {
    return [...this.peers.keys()];
  }

  /** Ids of the peers connected right now. */
  connectedPeers(): string[] {
    return [...this.peers.values()].filter((p) => p.mux && !p.mux.closed).map((p) => p.id);
  }

  status(): RpcStatus {
    return {
      nodeId: this.nodeId,
      addr: this.advertised,
      peers: [...this.peers.values()]
        .map((p) => ({
          id: p.id,
          addr: p.addr,
          up: p.mux !== null && !p.mux.closed,
          lastSeen: p.lastSeen === null ? null : new Date(p.lastSeen),
          lastError: p.lastError,
        }))
        .sort((a, b) => a.id.localeCompare(b.id)),
    };
  }

  // ------------------------------------------------------------------ channels

  private peerFor(id: string): Peer {
    let peer = this.peers.get(id);
    if (!peer) {
      peer = {
        id,
        publicKey: parseNodeId(id),
        addr: null,
        mux: null,
        opener: null,
        lastSeen: null,
        lastError: null,
        failures: 0,
        retryTimer: null,
        dialing: null,
        pinging: false,
      };
      this.peers.set(id, peer);
    }
    return peer;
  }

  private dial(peer: Peer): Promise<void> {
    if (peer.dialing) return peer.dialing;
    if (peer.retryTimer) clearTimeout(peer.retryTimer);
    peer.retryTimer = null;
    const addr = peer.addr;
    if (!addr || this.stopped) return Promise.reject(new PeerUnavailableError(peer.id));
    const { host, port } = parseHostPort(addr);
    peer.dialing = (async () => {
      try {
        const channel = await connectSecure(host, port, {
          networkKey: this.networkKey,
          identity: this.opts.identity,
          serverPublicKey: peer.publicKey,
          timeoutMs: this.connectTimeoutMs,
        });
        const mux = await this.openChannel(channel, true);
        if (this.stopped) {
          mux.destroy();
          throw new PeerUnavailableError(peer.id);
        }
        this.adopt(peer, mux, this.nodeId);
      } catch (err) {
        peer.failures++;
        peer.lastError = errorText(err);
        this.log.warn(`rpc: cannot connect to ${short(peer.id)}…@${addr}: ${peer.lastError}`);
        this.scheduleRedial(peer);
        throw err;
      } finally {
        peer.dialing = null;
      }
    })();
    return peer.dialing;
  }

  private async openChannel(channel: SecureChannel, initiator: boolean): Promise<Mux> {
    const peerId = channel.remoteId;
    return openMux(channel, { initiator, handler: (req) => this.dispatch(peerId, req) });
  }

  private acceptChannel(channel: SecureChannel): void {
    if (this.stopped) return void channel.destroy();
    const peerId = channel.remoteId;
    channel.on('error', () => {}); // reported through the mux's close
    // A forgotten node that dials in is alive after all: it is a peer again.
    this.forgotten.delete(peerId);
    this.openChannel(channel, false).then(
      (mux) => this.adopt(this.peerFor(peerId), mux, peerId),
      (err: unknown) => this.log.warn(`rpc: channel from ${short(peerId)}… failed: ${errorText(err)}`),
    );
  }

  /**
   * Makes `mux` the peer's channel. If both nodes dialled each other at once there are two channels; both
   * sides keep the one opened by the node with the smaller id, so they agree without talking about it.
   */
  private adopt(peer: Peer, mux: Mux, opener: string): void {
    // A dial that ends after the peer was forgotten.
    if (this.stopped || this.peers.get(peer.id) !== peer) return void mux.destroy();
    const current = peer.mux;
    if (current && !current.closed) {
      const preferred = this.nodeId < peer.id ? this.nodeId : peer.id;
      if (peer.opener === preferred && opener !== preferred) {
        mux.close();
        return;
      }
      peer.mux = null; // so its close is not taken for the peer going down
      current.close();
    }
    peer.mux = mux;
    peer.opener = opener;
    peer.failures = 0;
    peer.lastError = null;
    peer.lastSeen = Date.now();
    if (peer.retryTimer) clearTimeout(peer.retryTimer);
    peer.retryTimer = null;
    mux.on('close', (err: Error) => {
      if (peer.mux !== mux) return;
      peer.mux = null;
      peer.lastError = err.message;
      this.log.info(`rpc: peer ${short(peer.id)}… down: ${err.message}`);
      this.emit('peer-down', peer.id);
      this.scheduleRedial(peer);
    });
    if (!current || current.closed) {
      this.log.info(`rpc: peer ${short(peer.id)}… up`);
      this.emit('peer-up', peer.id);
    }
    void this.ping(peer); // exchange addresses and peer lists right away
  }

  private scheduleRedial(peer: Peer): void {
    if (this.stopped || !peer.addr || peer.retryTimer || peer.dialing || (peer.mux && !peer.mux.closed))
      return;
    if (this.peers.get(peer.id) !== peer) return; // forgotten meanwhile
    const base = Math.min(this.reconnectMaxMs, this.reconnectMinMs * 2 ** Math.min(peer.failures, 20));
    const delay = base / 2 + Math.random() * (base / 2); // jitter so a restarted cluster does not stampede
    peer.retryTimer = setTimeout(() => {
      peer.retryTimer = null;
      this.dial(peer).catch(() => {});
    }, delay);
    peer.retryTimer.unref();
  }

  // ------------------------------------------------------------------ ping and peer exchange

  private peerList(): PeerListEntry[] {
    const list: PeerListEntry[] = [];
    for (const p of this.peers.values()) if (p.addr) list.push({ id: p.id, addr: p.addr });
    return list;
  }

  private learn(entries: unknown): void {
    if (!Array.isArray(entries)) return;
    for (const e of entries.slice(0, 10_000) as Partial<PeerListEntry>[]) {
      if (typeof e?.id !== 'string' || typeof e.addr !== 'string' || e.id === this.nodeId) continue;
      if (this.forgotten.has(e.id)) continue;
      try {
        parseNodeId(e.id);
        parseHostPort(e.addr);
      } catch {
        continue;
      }
      const known = this.peers.has(e.id);
      const peer = this.peerFor(e.id);
      if (!peer.addr) peer.addr = e.addr;
      if (!known) {
        this.log.info(`rpc: learned of peer ${short(e.id)}…@${e.addr}`);
        this.dial(peer).catch(() => {});
      }
    }
  }

  private async ping(peer: Peer): Promise<void> {
    const mux = peer.mux;
    if (!mux || mux.closed || peer.pinging) return;
    peer.pinging = true;
    try {
      const header: PingHeader = { addr: this.advertised, peers: this.peerList() };
      const reply = await mux.request(PING_PATH, header, null, {
        priority: Priority.High,
        signal: AbortSignal.timeout(this.pingTimeoutMs),
      });
      reply.body?.destroy();
      peer.lastSeen = Date.now();
      this.learn((reply.header as Partial<PingHeader> | null)?.peers);
    } catch (err) {
      if (peer.mux === mux && !mux.closed) {
        peer.lastError = `ping failed: ${errorText(err)}`;
        this.log.warn(`rpc: peer ${short(peer.id)}… ${peer.lastError}`);
        mux.destroy(); // its close marks the peer down and schedules a redial
      }
    } finally {
      peer.pinging = false;
    }
  }

  private pingAll(): void {
    for (const peer of this.peers.values()) {
      if (peer.mux && !peer.mux.closed) void this.ping(peer);
      else this.scheduleRedial(peer);
    }
  }

  private async dispatch(
    peerId: string,
    req: { path: string; header: unknown; body: Readable | null; signal: AbortSignal },
  ): Promise<RpcResponse> {
    if (req.path === PING_PATH) {
      // peerFor, not get: the first ping can arrive before this side has adopted the channel.
      const peer = this.peerFor(peerId);
      const h = req.header as Partial<PingHeader> | null;
      {
        peer.lastSeen = Date.now();
        if (typeof h?.addr === 'string') {
          try {
            parseHostPort(h.addr);
            peer.addr = h.addr;
          } catch {
            // ignore a malformed address
          }
        }
      }
      this.learn(h?.peers);
      const reply: PingHeader = { addr: this.advertised, peers: this.peerList() };
      return { header: reply };
    }
    // Permission first: a peer outside the layout learns nothing, not even which endpoints exist.
    if (!this.mayCall(peerId, req.path))
      throw new RemoteError(`${req.path} is only for nodes of the cluster layout`, 'FORBIDDEN');
    const handler = this.endpoints.get(req.path);
    if (!handler) throw new RemoteError(`no endpoint ${req.path}`, 'NO_SUCH_ENDPOINT');
    return handler({ peerId, ...req });
  }
}

function hostPort(addr: string): [string, number] {
  const { host, port } = parseHostPort(addr);
  return [host, port];
}

/** True for errors that mean "the peer is unreachable right now" rather than "the call failed". */
export function isUnavailable(err: unknown): boolean {
  return (
    err instanceof PeerUnavailableError ||
    err instanceof HandshakeError ||
    (err as { name?: string })?.name === 'MuxError'
  );
}
