// cli/admin-client: how administrative commands reach their node — the token-guarded admin API named in the
// node's coffre.toml (found through --config, COFFRE_CONFIG or ./coffre-data/coffre.toml), over HTTPS when
// the node serves TLS (trusting the node's own certificate, which may be self-signed), and over plain HTTP
// only to a loopback address.
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { loadConfig, parseBindAddress, resolveConfigPath, type CoffreConfig } from '../config/config.js';
import { UserError, errorMessage } from '../util/errors.js';
import { isLoopback } from '../util/client-transport.js';
import { reachableHost } from '../util/http-server.js';

export interface AdminTarget {
  config: CoffreConfig;
  host: string;
  port: number;
  // How to reach the node: TLS with the node's certificate as the trust anchor, or plain HTTP (loopback only).
  // 'tls-or-loopback-http': the configuration names no certificate but an earlier `--tls-self-signed` run left
  // one; TLS is tried first, and plain HTTP only when the node answers in clear on a loopback address.
  transport: 'tls' | 'http' | 'tls-or-loopback-http';
  ca?: Buffer;
}

export function adminTarget(cmd: Command): AdminTarget {
  const globals = cmd.optsWithGlobals() as { config?: string };
  const config = loadConfig(resolveConfigPath(globals.config));
  if (!config.admin.adminToken) {
    throw new UserError(
      `no admin_token in ${config.configPath} [admin]: add one (e.g. openssl rand -base64 32)`,
    );
  }
  const { host, port } = parseBindAddress(config.admin.apiBindAddr);
  const connectHost = reachableHost(host);
  // `coffre server --tls-self-signed` keeps its certificate beside the config.
  const selfSigned = join(dirname(config.configPath), 'tls', 'cert.pem');
  const target: AdminTarget = config.s3Api.tlsCert
    ? { config, host: connectHost, port, transport: 'tls', ca: readFileSync(config.s3Api.tlsCert) }
    : existsSync(selfSigned)
      ? { config, host: connectHost, port, transport: 'tls-or-loopback-http', ca: readFileSync(selfSigned) }
      : { config, host: connectHost, port, transport: 'http' };
  // The admin token (and, for `sse-s3 unlock`, master keys) never leave this machine in clear: refused here,
  // before anything is sent, rather than by the node once it has been.
  if (target.transport === 'http' && !isLoopbackHost(connectHost)) {
    throw new UserError(
      `refusing to send the admin token over plain HTTP to ${config.admin.apiBindAddr}: serve TLS on that ` +
        'node ([s3_api] tls_cert and tls_key, or `coffre server --tls-self-signed`), or run this command on the node',
    );
  }
  return target;
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || isLoopback(host);
}

// Whether a TLS attempt failed because the node speaks plain HTTP on that port (it answered a ClientHello
// with an HTTP error): nothing secret was sent, since the token goes only after the handshake.
function answeredInClear(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException & { library?: string; reason?: string };
  return (
    e.code === 'EPROTO' ||
    e.code === 'ERR_SSL_WRONG_VERSION_NUMBER' ||
    /wrong version number|packet length too long/i.test(String(e.message))
  );
}

async function request(
  target: AdminTarget,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; text: string }> {
  if (target.transport !== 'tls-or-loopback-http') return send(target, target.transport, method, path, body);
  try {
    return await send(target, 'tls', method, path, body);
  } catch (err) {
    if (!answeredInClear(err) || !isLoopbackHost(target.host)) throw err;
    return send(target, 'http', method, path, body);
  }
}

function send(
  target: AdminTarget,
  transport: 'tls' | 'http',
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const options = {
      host: target.host,
      port: target.port,
      method,
      path,
      headers: {
        authorization: `Bearer ${target.config.admin.adminToken}`,
        ...(body !== undefined
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
          : {}),
      },
      timeout: 30_000,
    };
    const onResponse = (res: http.IncomingMessage) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }),
      );
      res.on('error', reject);
    };
    const req =
      transport === 'tls'
        ? https.request({ ...options, ca: target.ca, servername: 'localhost' }, onResponse)
        : http.request(options, onResponse);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

export async function adminCall(
  target: AdminTarget,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  let res: { status: number; text: string };
  try {
    res = await request(target, method, path, body === undefined ? undefined : JSON.stringify(body));
  } catch (err) {
    const where = `${target.transport === 'http' ? 'http' : 'https'}://${target.host}:${target.port}`;
    const cause = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
    throw new UserError(
      `cannot reach the node's admin API at ${where} (${cause}): is \`coffre server\` running?`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(res.text);
  } catch {
    throw new UserError(`the admin API answered ${res.status} with something that is not JSON`);
  }
  if (res.status < 200 || res.status >= 300)
    throw new UserError((data as { error?: string }).error ?? `admin API error ${res.status}`);
  return data;
}

export function print(data: unknown, json: boolean, human: (d: never) => string): void {
  process.stdout.write(json ? JSON.stringify(data, null, 2) + '\n' : human(data as never) + '\n');
}
