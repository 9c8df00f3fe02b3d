// crypt/annex-export: make a coffre remote usable by git-annex — its remote.log line, uuid.log name, location
// logs and chunk logs written into a repository's git-annex branch in one commit. The user then runs
// `git annex enableremote NAME directory=DIR` (directory remotes keep their path in .git/config).
import {
  annexTimestamp,
  chunkLogPath,
  commitBranchFiles,
  formatRemoteLogLine,
  locationLogPath,
  readBranchFiles,
  replaceLine,
  requireAnnexRepo,
} from './annex-branch.js';
import type { RemoteConfig } from './config.js';
import { LocationLog } from './location-log.js';

export interface ExportOptions {
  repo: string;
  as?: string;
}

export function remoteLogFields(config: RemoteConfig, name: string): Record<string, string> {
  const f: Record<string, string> = { ...(config.extra ?? {}), encryption: config.encryption, name };
  if (config.cipher) f.cipher = config.cipher;
  if (config.cipherkeys) f.cipherkeys = config.cipherkeys;
  if (config.pubkeys) f.pubkeys = config.pubkeys;
  if (config.mac) f.mac = config.mac;
  if (config.chunk) f.chunk = config.chunk;
  if (config.s3creds) f.s3creds = config.s3creds;
  if (config.type === 'directory') f.type = 'directory';
  else if (config.s3) {
    f.type = 'S3';
    f.bucket = config.s3.bucket;
    if (config.s3.prefix) f.fileprefix = config.s3.prefix;
    if (config.s3.pathStyle) f.requeststyle = 'path';
    f.signature = 'v4';
    if (config.s3.endpoint) {
      const u = new URL(config.s3.endpoint);
      f.host = u.hostname;
      // git-annex signs with the host as region for non-AWS hosts; datacenter only matters otherwise
      if (config.s3.region !== u.hostname) f.datacenter = config.s3.region;
      f.protocol = u.protocol.replace(':', '');
      f.port = u.port || (u.protocol === 'https:' ? '443' : '80');
    } else f.datacenter = config.s3.region;
  }
  return f;
}

export async function exportAnnex(config: RemoteConfig, opts: ExportOptions): Promise<{ keys: number }> {
  await requireAnnexRepo(opts.repo);
  const name = opts.as ?? config.name;
  const entries = LocationLog.load(config.name).presentKeys();
  const paths = ['remote.log', 'uuid.log'];
  for (const e of entries) {
    paths.push(locationLogPath(e.key));
    if (e.chunkSize) paths.push(chunkLogPath(e.key));
  }
  const current = await readBranchFiles(opts.repo, paths);
  const updates = new Map<string, string>();
  const ofUuid = (l: string) => l.startsWith(config.uuid + ' ');
  updates.set(
    'remote.log',
    replaceLine(
      current.get('remote.log') ?? '',
      ofUuid,
      formatRemoteLogLine(config.uuid, remoteLogFields(config, name)),
    ),
  );
  updates.set(
    'uuid.log',
    replaceLine(
      current.get('uuid.log') ?? '',
      ofUuid,
      `${config.uuid} ${name} timestamp=${annexTimestamp()}`,
    ),
  );
  for (const e of entries) {
    const t = annexTimestamp(e.time);
    const loc = locationLogPath(e.key);
    updates.set(
      loc,
      replaceLine(current.get(loc) ?? '', (l) => l.endsWith(' ' + config.uuid), `${t} 1 ${config.uuid}`),
    );
    if (e.chunkSize && e.chunkCount) {
      const cnk = chunkLogPath(e.key);
      const line = `${t} ${config.uuid}:${e.chunkSize} ${e.chunkCount}`;
      updates.set(
        cnk,
        replaceLine(current.get(cnk) ?? '', (l) => l.includes(` ${config.uuid}:${e.chunkSize} `), line),
      );
    }
  }
  await commitBranchFiles(opts.repo, updates, `coffre crypt export-annex ${name}`);
  return { keys: entries.length };
}
