// Test harness for clusters on loopback: several coffre server processes, each with its own directory and
// ports, sharing one rpc_secret (or not, to test refusal), joined and given roles through the real CLI.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import {
  COFFRE_BIN,
  COFFRE_NODE_FLAGS,
  PICKED_PORTS,
  boundPorts,
  runCoffre,
  runCommand,
  writeTestConfig,
} from '../helpers/server.js';

export interface NodeOptions {
  // The rpc_secret line(s) of the config; undefined writes none (the node must then refuse to start).
  secretConfig?: string;
  extraConfig?: string;
  env?: Record<string, string>;
  label?: string;
  // Extra arguments for node itself (e.g. --cpu-prof, which NODE_OPTIONS does not accept).
  nodeArgs?: string[];
  // The address the node binds (127.0.0.1 unless told), and the network namespace it runs in (`ip netns
  // exec`, which execs the node in place: the process killed is the node itself).
  host?: string;
  netns?: string;
}

export interface ClusterNode {
  label: string;
  dir: string;
  configPath: string;
  endpoint: string;
  s3Port: number;
  rpcPort: number;
  adminPort: number;
  adminToken: string;
  // The access key printed on the node's first start (a gateway's own key is unused once it joins).
  accessKeyId: string;
  secretAccessKey: string;
  process: ChildProcess | null;
  stdout(): string;
  stderr(): string;
  id(): Promise<string>;
  /** A GET on the node's admin API, as JSON (faster than the CLI for a test that polls; not in a namespace). */
  admin(path: string): Promise<unknown>;
  cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  start(): Promise<void>;
  kill(): Promise<void>;
  stop(): Promise<void>;
  cleanup(): void;
}

export const newRpcSecret = (): string => randomBytes(32).toString('hex');

// Ping often so that tests see a peer go down and come back within seconds.
const FAST_PEERING = { COFFRE_RPC_PING_MS: '500' };

export async function createNode(opts: NodeOptions): Promise<ClusterNode> {
  const dir = mkdtempSync(join(tmpdir(), `coffre-cluster-${opts.label ?? 'node'}-`));
  const adminToken = randomBytes(24).toString('base64url');
  const configOptions = {
    secretConfig: opts.secretConfig ?? '',
    extraConfig: opts.extraConfig,
    ...(opts.host ? { host: opts.host } : {}),
  };
  // The first start lets the system pick the ports; the configuration is then rewritten with them (for the
  // CLI, and so that a restarted node comes back where its peers know it).
  const configPath = writeTestConfig(dir, PICKED_PORTS, adminToken, configOptions);
  // The admin API listens on the node's loopback: in a namespace, the CLI runs there too.
  const cli = (args: string[]) =>
    opts.netns
      ? runCommand('ip', [
          'netns',
          'exec',
          opts.netns,
          process.execPath,
          COFFRE_BIN,
          '-c',
          configPath,
          ...args,
        ])
      : runCoffre(['-c', configPath, ...args]);
  let firstStart = true;
  let out = '';
  let err = '';
  let exited: Promise<void> = Promise.resolve();
  const node: ClusterNode = {
    label: opts.label ?? 'node',
    dir,
    configPath,
    endpoint: '',
    s3Port: 0,
    rpcPort: 0,
    adminPort: 0,
    adminToken,
    accessKeyId: '',
    secretAccessKey: '',
    process: null,
    stdout: () => out,
    stderr: () => err,
    async id() {
      const r = await cli(['node', 'id']);
      if (r.code !== 0) throw new Error(`node id failed: ${r.stderr}`);
      return r.stdout.trim();
    },
    cli,
    async admin(path) {
      const r = await fetch(`http://127.0.0.1:${node.adminPort}${path}`, {
        headers: { authorization: `Bearer ${adminToken}` },
        signal: AbortSignal.timeout(10_000),
      });
      if (!r.ok) throw new Error(`admin ${path}: ${r.status}`);
      return r.json();
    },
    async start() {
      const command = [
        process.execPath,
        ...COFFRE_NODE_FLAGS,
        ...(opts.nodeArgs ?? []),
        COFFRE_BIN,
        'server',
        '--config',
        configPath,
      ];
      const argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...command] : command;
      const child = spawn(argv[0]!, argv.slice(1), {
        env: { ...process.env, COFFRE_LOG_LEVEL: 'info', ...FAST_PEERING, ...opts.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      node.process = child;
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      exited = new Promise((r) => child.once('close', () => r()));
      const startedAt = out.length;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${node.label} did not start:\n${out}\n${err}`)),
          20_000,
        );
        const check = () => {
          if (boundPorts(out.slice(startedAt))) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout!.on('data', check);
        child.once('close', (code) => {
          clearTimeout(timer);
          reject(new Error(`${node.label} exited with ${code}:\n${out}\n${err}`));
        });
      });
      const ports = boundPorts(out.slice(startedAt))!;
      if (firstStart) {
        writeTestConfig(dir, ports, adminToken, configOptions);
        firstStart = false;
      }
      Object.assign(node, {
        endpoint: `http://${opts.host ?? '127.0.0.1'}:${ports.s3}`,
        s3Port: ports.s3,
        rpcPort: ports.rpc,
        adminPort: ports.admin,
      });
      if (!node.accessKeyId) {
        node.accessKeyId = /AWS_ACCESS_KEY_ID=(\S+)/.exec(out)?.[1] ?? '';
        node.secretAccessKey = /AWS_SECRET_ACCESS_KEY=(\S+)/.exec(out)?.[1] ?? '';
      }
    },
    async kill() {
      if (node.process && node.process.exitCode === null) node.process.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (node.process && node.process.exitCode === null) node.process.kill('SIGTERM');
      await exited;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return node;
}

export async function startNode(opts: NodeOptions): Promise<ClusterNode> {
  const node = await createNode(opts);
  await node.start();
  return node;
}

// An S3 client for `endpoint` using the credentials of `keyHolder` (the node that holds the metadata).
export function s3Client(endpoint: string, keyHolder: ClusterNode): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: keyHolder.accessKeyId, secretAccessKey: keyHolder.secretAccessKey },
    maxAttempts: 1,
  });
}

export async function mustRun(node: ClusterNode, args: string[]): Promise<string> {
  const r = await node.cli(args);
  if (r.code !== 0) throw new Error(`coffre ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

// Joins `others` to `first` and applies a layout, all through the CLI as an operator would.
export async function formCluster(
  first: ClusterNode,
  roles: { node: ClusterNode; zone: string; gateway?: boolean }[],
): Promise<void> {
  for (const { node } of roles) {
    if (node === first) continue;
    await mustRun(node, ['node', 'connect', await first.id()]);
  }
  for (const { node, zone, gateway } of roles) {
    const id = (await node.id()).split('@')[0]!;
    await mustRun(first, [
      'layout',
      'assign',
      id.slice(0, 12),
      '--zone',
      zone,
      ...(gateway ? ['--gateway'] : ['--capacity', '10G']),
    ]);
  }
  const shown = JSON.parse(await mustRun(first, ['layout', 'show', '--json'])) as { version: number };
  await mustRun(first, ['layout', 'apply', '--version', String(shown.version + 1)]);
  // Every node must have adopted the layout before the test goes on.
  await waitFor(async () => {
    for (const { node } of roles) {
      const l = JSON.parse(await mustRun(node, ['layout', 'show', '--json'])) as { version: number };
      if (l.version !== shown.version + 1) return false;
    }
    return true;
  }, 'every node adopts the layout');
}

export interface StatusNode {
  id: string;
  up: boolean;
  role: string;
  zone: string | null;
  capacity: number | null;
  self: boolean;
}

export async function clusterStatus(node: ClusterNode): Promise<StatusNode[]> {
  return (JSON.parse(await mustRun(node, ['status', '--json'])) as { nodes: StatusNode[] }).nodes;
}

export async function waitFor(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// Block files under a node's data dir (named by their 64-hex hash; tmp/ holds only writes in progress).
export function blockFiles(node: ClusterNode): string[] {
  const root = join(node.dir, 'data');
  const files: string[] = [];
  const walk = (d: string) => {
    if (!existsSync(d)) return;
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/^[0-9a-f]{64}$/.test(name)) files.push(p);
    }
  };
  walk(root);
  return files;
}
