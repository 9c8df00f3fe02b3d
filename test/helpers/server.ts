// Test harness: starts a real coffre server process on 127.0.0.1 with its own data directory and ports, and
// gives tests an endpoint, the first access key, and ways to stop or kill it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, type TestContext } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..', '..');
export const COFFRE_BIN = join(REPO_ROOT, 'bin', 'coffre.js');

/**
 * The node flags bin/coffre.js starts node with (its sh line) for every command. Tests and benchmarks spawn this very node binary
 * on the file themselves, so they pass the flags explicitly: what they run and measure is what users run.
 */
export const COFFRE_NODE_FLAGS: readonly string[] = launcherFlags();

function launcherFlags(): string[] {
  const line = readFileSync(COFFRE_BIN, 'utf8').split('\n')[1] ?? '';
  const flags = /exec node (.*) "\$0" "\$@"$/.exec(line)?.[1];
  if (flags === undefined) throw new Error(`${COFFRE_BIN}: no launcher line (exec node … "$0" "$@")`);
  return flags.split(' ');
}

/** The ports a started node reports it bound (its configuration asks for port 0: the system picks free ones). */
export function boundPorts(out: string): { s3: number; admin: number; rpc: number } | undefined {
  const m =
    /coffre is serving S3 on https?:\/\/[^\s]*:(\d+)[^\n]*\nadmin API on https?:\/\/[^\s,]*:(\d+), RPC on [^\s]*:(\d+)\n/.exec(
      out,
    );
  if (!m) return undefined;
  // A first start goes on with the access key banner, written in the same breath: wait for its last line.
  const rest = out.slice(m.index + m[0].length);
  if (/^A first access key/.test(rest) && !/\nTry: [^\n]*\n/.test(rest)) return undefined;
  return { s3: Number(m[1]), admin: Number(m[2]), rpc: Number(m[3]) };
}

/** Ports that let the system pick: a test server never probes for a free port and then releases it. */
export const PICKED_PORTS = { s3: 0, admin: 0, rpc: 0 } as const;

export interface ServerOptions {
  host?: string; // the address the S3 and RPC ports bind to (127.0.0.1 unless told; admin stays on loopback)
  dir?: string; // reuse a data directory (restart)
  extraConfig?: string; // appended to the top level of coffre.toml
  secretConfig?: string; // the rpc_secret line(s); a fresh random rpc_secret when absent
  s3Extra?: string; // appended to [s3_api]
  s3Region?: string; // the [s3_api] s3_region (us-east-1 when absent)
  adminExtra?: string; // appended to [admin]
  env?: Record<string, string>;
  // Node flags added to the launcher's (a benchmark's --cpu-prof, which NODE_OPTIONS does not take).
  nodeFlags?: string[];
  // The access key to use when the node prints none (it found keys already: another gateway made them).
  accessKey?: { id: string; secret: string };
}

export interface TestServer {
  dir: string;
  configPath: string;
  endpoint: string;
  s3Port: number;
  adminPort: number;
  rpcPort: number;
  adminEndpoint: string;
  adminToken: string;
  accessKeyId: string;
  secretAccessKey: string;
  process: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  client(opts?: Partial<{ forcePathStyle: boolean }>): S3Client;
  stop(): Promise<void>;
  kill(): Promise<void>;
  cleanup(): void;
}

export function writeTestConfig(
  dir: string,
  ports: { s3: number; admin: number; rpc: number },
  adminToken: string,
  opts: ServerOptions,
): string {
  const configPath = join(dir, 'coffre.toml');
  writeFileSync(
    configPath,
    [
      'metadata_dir = "meta"',
      'data_dir = "data"',
      `rpc_bind_addr = "${opts.host ?? '127.0.0.1'}:${ports.rpc}"`,
      opts.secretConfig ?? `rpc_secret = "${randomBytes(32).toString('hex')}"`,
      'gc_delay_seconds = 1',
      opts.extraConfig ?? '',
      '[s3_api]',
      `api_bind_addr = "${opts.host ?? '127.0.0.1'}:${ports.s3}"`,
      `s3_region = "${opts.s3Region ?? 'us-east-1'}"`,
      'root_domain = ".s3.localhost"',
      opts.s3Extra ?? '',
      '[admin]',
      `api_bind_addr = "127.0.0.1:${ports.admin}"`,
      `admin_token = "${adminToken}"`,
      opts.adminExtra ?? '',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return configPath;
}

interface Previous {
  dir: string;
  ports: { s3: number; admin: number; rpc: number };
  adminToken: string;
  accessKeyId: string;
  secretAccessKey: string;
}

const previousRuns = new Map<string, Previous>();

export async function startServer(opts: ServerOptions = {}): Promise<TestServer> {
  const prev = opts.dir ? previousRuns.get(opts.dir) : undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'coffre-test-'));
  const adminToken = prev?.adminToken ?? randomBytes(24).toString('base64url');
  // A first start lets the system pick the ports, then the configuration is rewritten with them, so the CLI
  // finds the node and a restart comes back on the same ports.
  const configPath = prev ? join(dir, 'coffre.toml') : writeTestConfig(dir, PICKED_PORTS, adminToken, opts);
  const child = spawn(
    process.execPath,
    [...COFFRE_NODE_FLAGS, ...(opts.nodeFlags ?? []), COFFRE_BIN, 'server', '--config', configPath],
    {
      env: { ...process.env, COFFRE_LOG_LEVEL: process.env.COFFRE_LOG_LEVEL ?? 'info', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const started = new Promise<void>((resolveStart, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`coffre server did not start in time:\n${out}\n${err}`)),
      20_000,
    );
    const check = () => {
      if (boundPorts(out)) {
        clearTimeout(timer);
        resolveStart();
      }
    };
    child.stdout!.on('data', check);
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`coffre server exited with ${code}:\n${out}\n${err}`));
    });
  });
  try {
    await started;
  } catch (e) {
    // A server that never came up (a test of a refused configuration) leaves nothing behind but its dir.
    child.kill('SIGKILL');
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const ports = boundPorts(out)!;
  if (!prev) writeTestConfig(dir, ports, adminToken, opts);
  const accessKeyId = prev?.accessKeyId ?? /AWS_ACCESS_KEY_ID=(\S+)/.exec(out)?.[1] ?? opts.accessKey?.id;
  const secretAccessKey =
    prev?.secretAccessKey ?? /AWS_SECRET_ACCESS_KEY=(\S+)/.exec(out)?.[1] ?? opts.accessKey?.secret;
  if (!accessKeyId || !secretAccessKey) throw new Error(`no access key printed:\n${out}`);
  previousRuns.set(dir, { dir, ports, adminToken, accessKeyId, secretAccessKey });
  const tls = (opts.s3Extra ?? '').includes('tls_cert');
  const endpoint = `${tls ? 'https' : 'http'}://127.0.0.1:${ports.s3}`;
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  return {
    dir,
    configPath,
    endpoint,
    s3Port: ports.s3,
    adminPort: ports.admin,
    rpcPort: ports.rpc,
    adminEndpoint: `${tls ? 'https' : 'http'}://127.0.0.1:${ports.admin}`,
    adminToken,
    accessKeyId,
    secretAccessKey,
    process: child,
    stdout: () => out,
    stderr: () => err,
    client: (o = {}) =>
      new S3Client({
        endpoint,
        region: 'us-east-1',
        forcePathStyle: o.forcePathStyle ?? true,
        credentials: { accessKeyId, secretAccessKey },
      }),
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Runs the coffre CLI as a user would, returning its exit code and output.
export async function runCoffre(
  args: string[],
  env: Record<string, string> = {},
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCommand(process.execPath, [COFFRE_BIN, ...args], env, input);
}

export async function runCommand(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
  input?: string,
  cwd?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'], cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', rej);
    child.once('close', (code) => res({ code: code ?? -1, stdout, stderr }));
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

/** A server for one test: stopped, and its directory removed, when the test ends. */
export async function startServerFor(t: TestContext, opts: ServerOptions = {}): Promise<TestServer> {
  const server = await startServer(opts);
  t.after(async () => {
    await server.stop();
    server.cleanup();
  });
  return server;
}

/**
 * One server for all the tests of a file: started before them with `opts`, handed to `take` with an S3 client
 * of its first key, and stopped (its directory removed) after them.
 */
export function serveForFile(
  take: (started: { server: TestServer; s3: S3Client }) => void,
  opts: ServerOptions = {},
): void {
  let server: TestServer | undefined;
  let s3: S3Client | undefined;
  before(async () => {
    server = await startServer(opts);
    s3 = server.client();
    take({ server, s3 });
  });
  after(async () => {
    s3?.destroy();
    await server?.stop();
    server?.cleanup();
  });
}
