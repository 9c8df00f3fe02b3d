// rpc/cluster: a node's place in the cluster. It serves this node's blocks and metadata to its peers over RPC,
// keeps the cluster layout (and spreads new versions of it), and gives the APIs an ObjectStore that follows
// the layout: metadata calls go to the node elected to lead the metadata, blocks to the storage nodes the layout picks for
// them. Encryption happens above this, in the API of the node that received the request, so what crosses the
// network to storage nodes is ciphertext for encrypted objects, and never a customer key.
import { statfsSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { BlockStore, type BlockHash, type BlockIo, type BlockReadOptions } from '../block/block-store.js';
import { hashBlock } from '../block/pool.js';
import {
  BlockPins,
  readSegment,
  segmentSlices,
  writeSegment,
  type BlockSealer,
  type SegmentWriteOptions,
} from '../model/segments.js';
import type { FileSlice } from '../util/file-slice.js';
import { METADATA_METHODS, METADATA_READS, type LocalStore, type ObjectStore } from '../model/store.js';
import type { Segment } from '../model/types.js';
import { S3Error } from '../util/s3-error.js';
import { decodeData, decodeError, encodeData, encodeError, type EncodedError } from './codec.js';
import {
  decodeBlockDelete,
  decodeBlockGet,
  decodeBlockHas,
  decodeBlockPut,
  decodeDiskUse,
  decodeNodeForget,
  decodeResyncStatusReply,
  decodeStoreCall,
} from './messages.js';
import type { BlockResync } from './resync.js';
import { UserError } from '../util/errors.js';
import {
  blockNodes,
  decodeLayout,
  isGateway,
  metadataNode,
  storageNodes,
  type ClusterLayout,
  type LayoutFile,
} from './layout.js';

// What the cluster needs of the RPC layer (rpc/peering.ts provides it).

/** Size and free space of the file system that holds a node's data_dir, in bytes. */
export interface DiskUse {
  total: number;
  free: number;
}

function diskUseOf(dir: string): DiskUse {
  const fs = statfsSync(dir);
  // bavail: what an unprivileged writer (coffre) can still use, not the blocks kept for root.
  return { total: fs.blocks * fs.bsize, free: fs.bavail * fs.bsize };
}

export interface RpcRequest {
  peerId: string;
  header: unknown;
  body: Readable | null;
}

export interface RpcReply {
  header: unknown;
  body: Readable | null;
}

export interface RpcEndpoints {
  readonly nodeId: string;
  registerEndpoint(
    path: string,
    handler: (req: RpcRequest) => Promise<{ header: unknown; body?: Buffer | Readable | null }>,
  ): void;
  call(
    peerId: string,
    path: string,
    header: unknown,
    body?: Buffer | null,
    opts?: { signal?: AbortSignal },
  ): Promise<RpcReply>;
  knownPeers(): string[];
  connectedPeers(): string[];
  forget(peerId: string): void;
  isIntroduced(peerId: string): boolean;
}

const MAX_RPC_BODY = 80 * 1024 * 1024;
// A metadata call carries records (inline data at most the inline limit) and lists of at most 10 000 names.
const MAX_STORE_CALL_BODY = 16 * 1024 * 1024;
const MAX_LAYOUT_BODY = 4 * 1024 * 1024;

export async function readAll(body: Readable | null, limit = MAX_RPC_BODY): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error('RPC body too large');
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

// The node a call went to could not be reached (the call may not have run).
class PeerUnreachableError extends Error {}

function unavailable(what: string): S3Error {
  return new S3Error('ServiceUnavailable', 503, `${what} is unreachable; please retry`);
}

/** What the cluster's background work (rpc/rebalance, rpc/orphans) logs through: pino's shape. */
export interface ClusterLog {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
}

interface ErrorHeader {
  error?: EncodedError;
}

/** Which node serves metadata calls (rpc/metadata-replication: the elected leader). */
export interface MetadataLeadership {
  /** Whether this node's own tables answer: it leads, or it stands alone. */
  servesHere(): boolean;
  /** Runs a call on this node's tables, answered only if it is safe (see MetadataReplication.serve). */
  serve<T>(run: () => Promise<T>, read?: boolean): Promise<T>;
  /**
   * Whether this node's tables answer reads although no leader can serve them: two metadata nodes, this one
   * of them, the other unreachable. Every acknowledged write is on both, so nothing acknowledged is missing.
   */
  servesDegradedReads(): boolean;
  /** The nodes that hold the metadata tables. */
  metadataNodes(): string[];
  /** The node leading now, as known or found out (waits a little); undefined while there is none. */
  findLeader(): Promise<string | undefined>;
  /** `node` does not lead (it said so, naming `hint`, or could not be reached). */
  notLeader(node: string, hint?: string): void;
  /** The leader this node knows of, if any. */
  knownLeader(): string | undefined;
}

// A metadata call sent to a node that does not lead (any more): the caller turns to `leader`.
class NotLeaderError extends Error {
  constructor(readonly leader?: string) {
    super('not the metadata leader');
  }
}

// How many times a metadata call follows a hint or looks for the leader again before giving up with a 503.
const METADATA_CALL_ATTEMPTS = 4;

function noLeader(): S3Error {
  return new S3Error(
    'ServiceUnavailable',
    503,
    'The cluster is choosing which node leads its metadata (or too few metadata nodes are reachable); please retry.',
  );
}

export class Cluster {
  private layout: ClusterLayout;
  readonly blocks: ClusterBlocks;
  private readonly layoutListeners: ((layout: ClusterLayout) => void)[] = [];
  private leadership?: MetadataLeadership;

  constructor(
    readonly rpc: RpcEndpoints,
    private readonly layoutFile: LayoutFile,
    readonly replicationFactor: number,
    readonly localBlocks: BlockStore,
  ) {
    this.layout = layoutFile.load();
    this.blocks = new ClusterBlocks(this);
  }

  currentLayout(): ClusterLayout {
    return this.layout;
  }

  // A node whose blocks are all its own (no layout, or a layout where it is the only storage node).
  standsAlone(): boolean {
    const storage = storageNodes(this.layout);
    return storage.length === 0 || (storage.length === 1 && storage[0] === this.rpc.nodeId);
  }

  isGateway(): boolean {
    return isGateway(this.layout, this.rpc.nodeId);
  }

  setMetadataLeadership(leadership: MetadataLeadership): void {
    this.leadership = leadership;
  }

  /** Whether this node's tables answer metadata calls: it leads the metadata nodes, or stands alone. */
  ownsMetadata(): boolean {
    if (this.leadership) return this.leadership.servesHere();
    const owner = metadataNode(this.layout);
    return owner === undefined || owner === this.rpc.nodeId;
  }

  /**
   * A metadata call, wherever it is served: by this node's tables when it leads, otherwise by the leader
   * (found, and followed when a node says another leads now). While there is none, a prompt 503.
   */
  async callMetadata(local: LocalStore, method: string, args: unknown[]): Promise<unknown> {
    const run = () => {
      const fn = (local as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]!;
      return fn.apply(local, args);
    };
    const leadership = this.leadership;
    if (!leadership) return run();
    const read = METADATA_READS.has(method);
    for (let attempt = 0; attempt < METADATA_CALL_ATTEMPTS; attempt++) {
      if (leadership.servesHere() || (read && leadership.servesDegradedReads()))
        return leadership.serve(run, read);
      // A read while no leader is known is first asked of the metadata nodes directly, rather than after
      // waiting for an election that two metadata nodes, one gone, cannot hold.
      if (read && attempt === 0 && leadership.knownLeader() === undefined) {
        const answer = await this.degradedRead(leadership, method, args);
        if (answer) return answer.value;
      }
      const leader = await leadership.findLeader();
      if (leader === undefined) break;
      if (leader === this.rpc.nodeId) continue;
      try {
        return await this.callStore(leader, method, args);
      } catch (err) {
        if (err instanceof NotLeaderError) leadership.notLeader(leader, err.leader);
        else if (err instanceof PeerUnreachableError) leadership.notLeader(leader);
        else throw err;
      }
    }
    if (read) {
      const answer = await this.degradedRead(leadership, method, args);
      if (answer) return answer.value;
    }
    throw noLeader();
  }

  // No leader: with two metadata nodes, the one still up answers reads from its own tables; a node that
  // knows a leader names it instead (remembered for the next call).
  private async degradedRead(
    leadership: MetadataLeadership,
    method: string,
    args: unknown[],
  ): Promise<{ value: unknown } | undefined> {
    for (const node of leadership.metadataNodes()) {
      if (node === this.rpc.nodeId) continue;
      try {
        return { value: await this.callStore(node, method, args, true) };
      } catch (err) {
        if (err instanceof NotLeaderError) leadership.notLeader(node, err.leader);
        else if (!(err instanceof PeerUnreachableError)) throw err;
      }
    }
    return undefined;
  }

  /** Calls `listener` with each new layout version this node installs (applied here or learnt from a peer). */
  onNewLayout(listener: (layout: ClusterLayout) => void): void {
    this.layoutListeners.push(listener);
  }

  // Installs `layout` if it is newer than ours; returns whether it was.
  adoptLayout(layout: ClusterLayout): boolean {
    if (layout.version <= this.layout.version) return false;
    this.install({ ...layout, staged: this.layout.staged });
    return true;
  }

  /** Saves staged changes, or (from `layout apply`) a new version. */
  stageLayout(layout: ClusterLayout): void {
    this.install(layout);
  }

  private install(layout: ClusterLayout): void {
    const newVersion = layout.version !== this.layout.version;
    this.layout = layout;
    this.layoutFile.save(layout);
    if (newVersion) for (const listener of this.layoutListeners) listener(layout);
  }

  // Sends the current layout to every known peer (best effort; peers also pull it when they connect).
  async spreadLayout(): Promise<void> {
    const body = encodeData({ ...this.layout, staged: {} });
    await Promise.allSettled(
      this.rpc.knownPeers().map((peer) => this.rpc.call(peer, 'layout/push', {}, body)),
    );
  }

  async pullLayout(peerId: string): Promise<void> {
    const reply = await this.rpc.call(peerId, 'layout/get', {});
    const layout = decodeLayout(decodeData(await readAll(reply.body, MAX_LAYOUT_BODY)), 'layout/get reply');
    this.adoptLayoutFrom(peerId, layout);
  }

  /**
   * A newer layout offered by a peer (pushed to this node, or pulled from it) is adopted only from a node of
   * this node's current layout. A node in no layout yet takes its first one only from a peer its operator
   * connected it to (`coffre node connect`, bootstrap_peers), and only one that names both. So a holder of
   * rpc_secret whom no layout names cannot give itself a role, on a cluster or on a node standing alone.
   */
  adoptLayoutFrom(peerId: string, layout: ClusterLayout): boolean {
    if (this.layout.version === 0) {
      const invited =
        this.rpc.isIntroduced(peerId) && peerId in layout.roles && this.rpc.nodeId in layout.roles;
      if (!invited) return false;
    } else if (!(peerId in this.layout.roles)) return false;
    return this.adoptLayout(layout);
  }

  /**
   * Which peers may call which endpoints (the RPC layer asks before any handler runs). A node that knows
   * rpc_secret can handshake and exchange the layout; only nodes of the applied layout reach blocks and
   * metadata. A node whose role was removed (the layout's `retired`) may still hand over what it holds —
   * its blocks (block/has, block/put) and, a retiring metadata node, its last log entries (meta/*, which
   * check their sender again) — and forward its own S3 clients' metadata calls while it drains (store/call);
   * it reads and deletes no other node's blocks.
   */
  readonly mayCall = (peerId: string, path: string): boolean => {
    if (path === 'layout/get' || path === 'layout/push') return true;
    if (peerId in this.layout.roles) return true;
    const handover =
      path === 'block/has' || path === 'block/put' || path === 'store/call' || path.startsWith('meta/');
    return handover && (this.layout.retired ?? []).includes(peerId);
  };

  /** The file system holding `node`'s blocks (this node's, or a peer's over RPC within `timeoutMs`). */
  async diskUse(node: string, timeoutMs = 3000): Promise<DiskUse> {
    if (node === this.rpc.nodeId) return diskUseOf(this.localBlocks.root);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const reply = await Promise.race([this.rpc.call(node, 'node/disk', {}, null), late]);
      reply.body?.destroy();
      return decodeDiskUse(reply.header, 'node/disk');
    } finally {
      clearTimeout(timer);
    }
  }

  /** Why `nodeId` may not be forgotten here, or undefined when it may. */
  private forgetRefusal(nodeId: string): string | undefined {
    if (nodeId === this.rpc.nodeId) return 'a node cannot forget itself';
    if (nodeId in this.layout.roles)
      return (
        `node ${nodeId.slice(0, 16)}… still has a role in layout version ${this.layout.version}: remove it ` +
        'first (`coffre layout remove`, then `coffre layout apply`), then forget it'
      );
    return undefined;
  }

  /**
   * `coffre node forget`: drops a node that is no longer in the layout from this node's peers and from every
   * peer's it can reach, so that none redials it. Returns the peers that could not be told (each is told by
   * running the command there, or forgets it when it learns that its peers did not).
   */
  async forgetEverywhere(nodeId: string): Promise<{ told: string[]; notTold: string[] }> {
    const refusal = this.forgetRefusal(nodeId);
    if (refusal) throw new UserError(refusal);
    const peers = this.rpc.knownPeers().filter((p) => p !== nodeId);
    this.rpc.forget(nodeId);
    const results = await Promise.all(
      peers.map(async (peer) => {
        try {
          const reply = await this.rpc.call(peer, 'node/forget', { nodeId }, null, {
            signal: AbortSignal.timeout(10_000),
          });
          reply.body?.resume();
          return (reply.header as ErrorHeader).error ? undefined : peer;
        } catch {
          return undefined;
        }
      }),
    );
    const told = peers.filter((_, i) => results[i] !== undefined);
    return { told, notTold: peers.filter((p) => !told.includes(p)) };
  }

  /** How many block copies each reachable peer's writes owe to each node (their resync queues). */
  async peersResyncStatus(): Promise<{ from: string; nodes: { node: string; pending: number }[] }[]> {
    const peers = this.rpc.connectedPeers().filter((p) => p in this.layout.roles);
    const replies = await Promise.all(
      peers.map(async (from) => {
        try {
          const reply = await this.rpc.call(from, 'block/resync-status', {}, null, {
            signal: AbortSignal.timeout(5_000),
          });
          reply.body?.resume();
          return { from, ...decodeResyncStatusReply(reply.header, 'block/resync-status reply') };
        } catch {
          return undefined;
        }
      }),
    );
    return replies.filter((r) => r !== undefined);
  }

  // Serves this node's metadata and blocks to peers.
  registerEndpoints(local: LocalStore, resync?: BlockResync): void {
    this.rpc.registerEndpoint('node/disk', async () => ({ header: { ...diskUseOf(this.localBlocks.root) } }));
    this.rpc.registerEndpoint('block/resync-status', async (req) => {
      req.body?.resume();
      const nodes = (resync?.status().nodes ?? []).map(({ node, pending }) => ({ node, pending }));
      return { header: { nodes } };
    });
    this.rpc.registerEndpoint('node/forget', async (req) => {
      req.body?.resume();
      const { nodeId } = decodeNodeForget(req.header, 'node/forget');
      const refusal = this.forgetRefusal(nodeId);
      if (refusal) return { header: { error: encodeError(new Error(refusal)) } };
      this.rpc.forget(nodeId);
      return { header: {} };
    });
    this.rpc.registerEndpoint('store/call', async (req) => {
      // The call is checked before anything else, so an ill-formed one is refused the same way on every node.
      let call: { method: string; args: unknown[]; degraded: boolean };
      try {
        call = decodeStoreCall(req.header, decodeData(await readAll(req.body, MAX_STORE_CALL_BODY)));
      } catch (err) {
        return { header: { error: encodeError(err) } };
      }
      // A copy of the tables (rpc/metadata-replication) may lag: only the leader answers; the others say
      // which node they know leads, and the caller turns to it. A read asked of a copy while there is no
      // leader is answered by it when its tables hold every acknowledged write (servesDegradedReads).
      const degraded = call.degraded && this.leadership?.servesDegradedReads() === true;
      if (!this.ownsMetadata() && !degraded) {
        const leader = this.leadership?.knownLeader();
        return { header: { notLeader: true, ...(leader ? { leader } : {}) } };
      }
      try {
        const fn = (local as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[call.method]!;
        const run = () => fn.apply(local, call.args);
        const read = METADATA_READS.has(call.method);
        const result = await (this.leadership ? this.leadership.serve(run, read) : run());
        return { header: {}, body: encodeData(result) };
      } catch (err) {
        return { header: { error: encodeError(err) } };
      }
    });
    this.rpc.registerEndpoint('block/put', async (req) => {
      const { hash } = decodeBlockPut(req.header, 'block/put');
      // A block is accepted only under its own name: a peer cannot plant content under another hash. The
      // check runs on a block worker, as it does for blocks this node's own clients write.
      const checked = await hashBlock(await readAll(req.body));
      if (checked.hash !== hash) return { header: { error: { message: 'block does not match its hash' } } };
      await this.localBlocks.write(checked.block, hash);
      return { header: {} };
    });
    this.rpc.registerEndpoint('block/get', async (req) => {
      const { hash, readerVerifies } = decodeBlockGet(req.header, 'block/get');
      try {
        // Each block is hashed once per read: here, unless the reader checks it itself (it then tries another
        // copy on a mismatch). A reader that relies on AES-GCM instead has it checked here, so that a damaged
        // copy is refused before it is sent and the reader turns to another one.
        const verify = readerVerifies !== true;
        return { header: {}, body: await this.localBlocks.read(hash, { verify }) };
      } catch (err) {
        return { header: { error: encodeError(err) } };
      }
    });
    this.rpc.registerEndpoint('block/has', async (req) => {
      const { hash } = decodeBlockHas(req.header, 'block/has');
      return { header: { has: await this.localBlocks.has(hash) } };
    });
    this.rpc.registerEndpoint('block/delete', async (req) => {
      const { hash, unwrittenForMs } = decodeBlockDelete(req.header, 'block/delete');
      await this.localBlocks.remove(hash, unwrittenForMs === undefined ? {} : { unwrittenForMs });
      return { header: {} };
    });
    this.rpc.registerEndpoint('layout/get', async () => ({
      header: {},
      body: encodeData({ ...this.layout, staged: {} }),
    }));
    this.rpc.registerEndpoint('layout/push', async (req) => {
      const layout = decodeLayout(decodeData(await readAll(req.body, MAX_LAYOUT_BODY)), 'layout/push');
      return { header: { adopted: this.adoptLayoutFrom(req.peerId, layout) } };
    });
  }

  // The store the APIs of this node use.
  store(local: LocalStore, segmentOptions: SegmentWriteOptions): ObjectStore {
    // ClusterStore defines the metadata methods at construction, one forwarder each.
    return new ClusterStore(this, local, segmentOptions) as unknown as ObjectStore;
  }

  private async callStore(
    peerId: string,
    method: string,
    args: unknown[],
    degraded = false,
  ): Promise<unknown> {
    let reply: RpcReply;
    try {
      const header = degraded ? { method, degraded } : { method };
      reply = await this.rpc.call(peerId, 'store/call', header, encodeData(args));
    } catch {
      throw new PeerUnreachableError();
    }
    const header = reply.header as ErrorHeader & { notLeader?: unknown; leader?: unknown };
    if (header.notLeader === true) {
      reply.body?.resume();
      const leader =
        typeof header.leader === 'string' && /^[0-9a-f]{64}$/.test(header.leader) ? header.leader : undefined;
      throw new NotLeaderError(leader);
    }
    if (header.error) {
      reply.body?.resume();
      throw decodeError(header.error);
    }
    return decodeData(await readAll(reply.body)) ?? undefined;
  }
}

/**
 * How many of a block's `copies` nodes must hold it before a write of it is acknowledged: a majority (2 of 3;
 * both of 2; 1 of 1). The copies the write could not reach are recorded in the writer's resync queue
 * (rpc/resync) and written to their nodes when they are back.
 */
export function blockWriteQuorum(copies: number): number {
  return Math.floor(copies / 2) + 1;
}

/** Where the copies a write could not place are recorded (rpc/resync's BlockResync). */
export interface MissedCopies {
  /** Records, durably, that `node` lacks block `hash`. */
  missed(node: string, hash: BlockHash): Promise<void>;
  /** `node` holds block `hash` after all (a late write of it succeeded). */
  placed(node: string, hash: BlockHash): Promise<void>;
}

// A block call to a peer that neither answers nor drops its connection (a node stalled, or cut off without a
// reset) is given up after this long, and the next copy is tried: longer than a 1 MiB block takes on any link.
const BLOCK_CALL_TIMEOUT_MS = 30_000;
// Once a write quorum holds a block, the other copies get this long to land before the write is acknowledged
// anyway (and those still under way are recorded as missed, then cleared if they land): it spares the resync
// queue a write for every block whose last copy is merely a little slower.
const STRAGGLER_GRACE_MS = 100;

// Blocks placed by the layout: on this node when it is one of the block's storage nodes (or stands alone),
// otherwise on the chosen peers.
export class ClusterBlocks implements BlockIo {
  private missedCopies: MissedCopies | undefined;

  constructor(private readonly cluster: Cluster) {}

  /** Where this node records the copies its writes could not place (set once the node's database is open). */
  recordMissedCopiesIn(queue: MissedCopies): void {
    this.missedCopies = queue;
  }

  /** The storage nodes that hold `hash` under the current layout (this node alone when it stands alone). */
  targets(hash: BlockHash): string[] {
    const layout = this.cluster.currentLayout();
    if (this.cluster.standsAlone()) return [this.cluster.rpc.nodeId];
    return blockNodes(layout, hash, this.cluster.replicationFactor);
  }

  /**
   * Stores the block on its nodes, in parallel, and resolves once a write quorum of them holds it (before the
   * record that refers to it may commit). When too many have failed for a quorum, it fails at once with a 503:
   * the copies already written are then referenced by nothing and swept later (rpc/orphans).
   */
  async write(data: Uint8Array, knownHash?: BlockHash): Promise<BlockHash> {
    const hash = knownHash ?? BlockStore.hashOf(data);
    const targets = this.targets(hash);
    const need = blockWriteQuorum(targets.length);
    // Acknowledged at a quorum, the write may still be sending the block to its other nodes: it sends a copy
    // of its own, since the caller may reuse `data` (model/segments recycles block buffers) once it returns.
    const block = need < targets.length ? Buffer.from(data) : data;
    const state = new Map<string, 'writing' | 'held' | 'failed'>(targets.map((n) => [n, 'writing']));
    // Nodes recorded in the resync queue as lacking the block (once the write is acknowledged).
    const recorded = new Set<string>();
    let acknowledged = false;
    let firstError: unknown;
    const count = (wanted: string) => [...state.values()].filter((v) => v === wanted).length;
    let settle: (ok: boolean) => void = () => {};
    const quorum = new Promise<boolean>((resolve) => (settle = resolve));
    const attempts = targets.map((node) =>
      this.storeOn(node, hash, block).then(
        () => {
          state.set(node, 'held');
          if (recorded.delete(node)) void this.missedCopies?.placed(node, hash).catch(() => {});
          if (count('held') >= need) settle(true);
        },
        (err: unknown) => {
          state.set(node, 'failed');
          firstError ??= err;
          if (acknowledged && !recorded.has(node)) {
            recorded.add(node);
            void this.missedCopies?.missed(node, hash).catch(() => {});
          }
          if (targets.length - count('failed') < need) settle(false);
        },
      ),
    );
    if (!(await quorum)) {
      if (targets.length > 1 && firstError instanceof S3Error && firstError.status === 503)
        throw unavailable(
          `a write quorum of this block's storage nodes (${need} of ${targets.length}, ${count('held')} reached)`,
        );
      throw firstError;
    }
    if (count('held') < targets.length)
      await Promise.race([Promise.all(attempts), delay(STRAGGLER_GRACE_MS)]);
    // Every copy not known to be placed is recorded before the write is acknowledged, so that a crash right
    // after the acknowledgement cannot forget which node lacks it; one that lands later clears its entry.
    acknowledged = true;
    for (const [node, s] of state) {
      if (s === 'held' || !this.missedCopies) continue;
      recorded.add(node);
      await this.missedCopies.missed(node, hash);
    }
    return hash;
  }

  // A node standing alone holds every block as a local file. In a cluster a block is read through read(),
  // which turns to another replica when this node's copy is missing.
  slice(hash: BlockHash, start: number, end: number): FileSlice | undefined {
    return this.cluster.standsAlone() ? this.cluster.localBlocks.slice(hash, start, end) : undefined;
  }

  /**
   * The first copy that passes its check: this node's own first, then the block's other nodes that are up,
   * then those that are not (a call to them fails at once), then any other node that may still hold it.
   * A copy that is missing, damaged or on a node that does not answer is passed over for the next.
   */
  async read(hash: BlockHash, opts: BlockReadOptions = {}): Promise<Buffer> {
    return this.readExcept(hash, undefined, opts);
  }

  /** As read(), never from `skip` (the node a resync or a repair is for). */
  async readExcept(hash: BlockHash, skip: string | undefined, opts: BlockReadOptions = {}): Promise<Buffer> {
    const targets = this.targets(hash);
    // Made only when needed: an error captures a stack trace, which costs more than a cached block read.
    let targetError: Error | undefined;
    for (const node of this.readOrder(targets)) {
      if (node === skip) continue;
      try {
        return await this.readFrom(node, hash, opts);
      } catch (err) {
        // A miss elsewhere is expected; the error of the block's own nodes is the one to report.
        if (targets.includes(node)) targetError ??= err instanceof Error ? err : new Error(String(err));
      }
    }
    throw targetError ?? unavailable('every storage node holding this block');
  }

  private readOrder(targets: string[]): string[] {
    const self = this.cluster.rpc.nodeId;
    const up = new Set([self, ...this.cluster.rpc.connectedPeers()]);
    const rank = (n: string) => (n === self ? 0 : up.has(n) ? 1 : 2);
    const own = [...targets].sort((a, b) => rank(a) - rank(b));
    return [...own, ...this.otherHolders(targets)];
  }

  /** Block `hash` from this node's store or from `node`, checked against its name unless told otherwise. */
  private async readFrom(node: string, hash: BlockHash, opts: BlockReadOptions): Promise<Buffer> {
    if (node === this.cluster.rpc.nodeId) return this.cluster.localBlocks.read(hash, opts);
    const readerVerifies = opts.verify !== false;
    const signal = AbortSignal.timeout(BLOCK_CALL_TIMEOUT_MS);
    const reply = await this.callNode(node, 'block/get', { hash, readerVerifies }, undefined, signal);
    const err = (reply.header as ErrorHeader).error;
    if (err) {
      reply.body?.resume();
      throw decodeError(err);
    }
    const data = await readAll(reply.body).catch(() => {
      throw unavailable(`storage node ${node.slice(0, 16)}…`);
    });
    if (!readerVerifies) return data;
    // Checked here (on a worker), not by the sender: the reading node trusts no copy it did not verify.
    const checked = await hashBlock(data);
    if (checked.hash !== hash) throw new S3Error('InternalError', 500, 'a block failed its integrity check');
    return checked.block;
  }

  /** Stores the block on `node` (this node's own store when it is this node); a peer checks it against its name. */
  async storeOn(node: string, hash: BlockHash, data: Uint8Array): Promise<void> {
    if (node === this.cluster.rpc.nodeId) {
      await this.cluster.localBlocks.write(data, hash);
      return;
    }
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const signal = AbortSignal.timeout(BLOCK_CALL_TIMEOUT_MS);
    const reply = await this.callNode(node, 'block/put', { hash }, body, signal);
    reply.body?.resume();
    const err = (reply.header as ErrorHeader).error;
    if (err) throw decodeError(err);
  }

  /** Whether `node` (this node, or a peer) holds the block. */
  async heldBy(node: string, hash: BlockHash): Promise<boolean> {
    if (node === this.cluster.rpc.nodeId) return this.cluster.localBlocks.has(hash);
    const signal = AbortSignal.timeout(BLOCK_CALL_TIMEOUT_MS);
    const reply = await this.callNode(node, 'block/has', { hash }, undefined, signal);
    reply.body?.resume();
    return (reply.header as { has?: unknown }).has === true;
  }

  /** Whether a write quorum of the block's nodes holds it (as a write of it would have made sure). */
  async has(hash: BlockHash): Promise<boolean> {
    const targets = this.targets(hash);
    const held = await Promise.all(targets.map((node) => this.heldBy(node, hash).catch(() => false)));
    return held.filter(Boolean).length >= blockWriteQuorum(targets.length);
  }

  /** A call to a peer; a peer that cannot be reached (or does not answer in time) is a 503. */
  private async callNode(
    node: string,
    path: string,
    header: unknown,
    body?: Buffer,
    signal?: AbortSignal,
  ): Promise<RpcReply> {
    try {
      return await this.cluster.rpc.call(node, path, header, body, { signal });
    } catch {
      throw unavailable(`storage node ${node.slice(0, 16)}…`);
    }
  }

  async remove(hash: BlockHash, opts: { unwrittenForMs?: number } = {}): Promise<void> {
    const self = this.cluster.rpc.nodeId;
    const targets = this.targets(hash);
    // Copies a rebalancer has not moved yet go too: left behind, they would be moved to the block's nodes later
    // and stay there, referenced by nothing.
    await Promise.allSettled(
      [...targets, ...this.otherHolders(targets)].map((node) =>
        node === self
          ? this.cluster.localBlocks.remove(hash, opts)
          : this.cluster.rpc.call(node, 'block/delete', { hash, ...opts }).then((r) => r.body?.resume()),
      ),
    );
  }

  /**
   * Nodes other than `targets` that may still hold a block: after a layout change a block stays where it was
   * until the rebalancer (rpc/rebalance) has copied it to its new nodes, and a node leaving the layout keeps
   * its blocks until then. The other storage nodes first, then every other peer that is not a gateway. None
   * for a node standing alone.
   */
  private otherHolders(targets: string[]): string[] {
    const layout = this.cluster.currentLayout();
    if (Object.keys(layout.roles).length === 0) return [];
    const self = this.cluster.rpc.nodeId;
    const candidates = new Set([...storageNodes(layout), self, ...this.cluster.rpc.knownPeers()]);
    return [...candidates].filter((node) => !targets.includes(node) && !isGateway(layout, node));
  }
}

// The ObjectStore of a node in a cluster: metadata from the node leading the metadata (this node's own model
// when it leads or stands alone), blocks through ClusterBlocks.
class ClusterStore {
  private readonly pins = new BlockPins();

  constructor(
    private readonly cluster: Cluster,
    private readonly local: LocalStore,
    private readonly segmentOptions: SegmentWriteOptions,
  ) {
    for (const method of METADATA_METHODS) {
      (this as unknown as Record<string, unknown>)[method] = (...args: unknown[]) =>
        this.metadataCall(method, args);
    }
  }

  private metadataCall(method: (typeof METADATA_METHODS)[number], args: unknown[]): Promise<unknown> {
    return this.cluster.callMetadata(this.local, method, args);
  }

  writeSegment(source: AsyncIterable<Buffer | Uint8Array | string>, sealer?: BlockSealer): Promise<Segment> {
    if (this.ownsMetadata()) return this.local.writeSegment(source, sealer);
    // Collection runs on the metadata node, which holds no pins for this node's writes: nothing to keep here.
    return writeSegment(this.cluster.blocks, this.pins, source, this.segmentOptions, sealer).then(
      (segment) => {
        this.pins.unpin(segment.blocks.map((b) => b.hash));
        return segment;
      },
    );
  }

  releaseSegments(segments: Segment[]): void {
    if (this.ownsMetadata()) this.local.releaseSegments(segments);
  }

  retainSegments(segments: Segment[]): void {
    if (this.ownsMetadata()) this.local.retainSegments(segments);
  }

  readSegment(segment: Segment, start: number, end: number, opts?: BlockReadOptions): Readable {
    if (this.ownsMetadata()) return this.local.readSegment(segment, start, end, opts);
    return readSegment(this.cluster.blocks, segment, start, end, opts);
  }

  segmentSlices(segment: Segment, start: number, end: number): AsyncIterable<Buffer | FileSlice> {
    if (this.ownsMetadata()) return this.local.segmentSlices(segment, start, end);
    return segmentSlices(this.cluster.blocks, segment, start, end);
  }

  private ownsMetadata(): boolean {
    return this.cluster.ownsMetadata();
  }
}
