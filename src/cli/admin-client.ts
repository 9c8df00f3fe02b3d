// cli/admin-client: how administrative commands reach their node — the token-guarded admin API named in the
// node's coffre.toml (found through --config, COFFRE_CONFIG or ./coffre-data/coffre.toml).
import { loadConfig, parseBindAddress, resolveConfigPath, type CoffreConfig } from '../config/config.js';
import { UserError, errorMessage } from '../util/errors.js';
import type { Command } from 'commander';

export interface AdminTarget {
  config: CoffreConfig;
  baseUrl: string;
}

export function adminTarget(cmd: Command): AdminTarget {
  const globals = cmd.optsWithGlobals() as { config?: string };
  const config = loadConfig(resolveConfigPath(globals.config));
  if (!config.admin.adminToken) {
    throw new UserError(`no admin_token in ${config.configPath} [admin]: add one (e.g. openssl rand -base64 32)`);
  }
  const { host, port } = parseBindAddress(config.admin.apiBindAddr);
  const scheme = config.s3Api.tlsCert ? 'https' : 'http';
  const connectHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return { config, baseUrl: `${scheme}://${connectHost}:${port}` };
}

export async function adminCall(target: AdminTarget, method: string, path: string, body?: unknown): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(target.baseUrl + path, {
      method,
      headers: {
        authorization: `Bearer ${target.config.admin.adminToken}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? errorMessage(err);
    throw new UserError(`cannot reach the node's admin API at ${target.baseUrl} (${cause}): is \`coffre server\` running?`);
  }
  const text = await res.text();
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new UserError(`the admin API answered ${res.status} with something that is not JSON`);
  }
  if (!res.ok) throw new UserError((data as { error?: string }).error ?? `admin API error ${res.status}`);
  return data;
}

export function print(data: unknown, json: boolean, human: (d: never) => string): void {
  process.stdout.write(json ? JSON.stringify(data, null, 2) + '\n' : human(data as never) + '\n');
}
