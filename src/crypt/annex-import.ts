// crypt/annex-import: adopt a git-annex special remote — its remote.log entry becomes a coffre remote config, and
// its location and chunk logs become coffre's location log for that remote.
import { UserError } from '../util/errors.js';
import {
  chunksIn,
  git,
  listBranchFiles,
  parseRemoteLog,
  presenceIn,
  readBranchFiles,
  requireAnnexRepo,
} from './annex-branch.js';
import { MODES, type Mode } from './cipher.js';
import { CONFIG_VERSION, type RemoteConfig, type S3Location } from './config.js';
import { LocationLog } from './location-log.js';
import { isMacName } from './names.js';

/** remote.log fields coffre maps onto its own config; the rest is kept verbatim in `extra`. */
const KNOWN = new Set([
  'cipher',
  'cipherkeys',
  'pubkeys',
  'encryption',
  'mac',
  'chunk',
  'name',
  'type',
  's3creds',
  'embedcreds',
]);
const S3_FIELDS = new Set([
  'bucket',
  'fileprefix',
  'host',
  'port',
  'protocol',
  'requeststyle',
  'region',
  'datacenter',
  'partsize',
]);

export interface ImportOptions {
  repo: string;
  remote: string;
  as?: string;
  path?: string;
  /** Override the S3 endpoint recorded in remote.log (this machine may reach the server differently). */
  endpoint?: string;
}

export interface ImportResult {
  config: RemoteConfig;
  present: number;
}

function s3LocationFrom(fields: Record<string, string>): S3Location {
  if (!fields.bucket) throw new UserError('the S3 remote has no bucket in remote.log');
  const protocol = fields.protocol ?? (fields.port === '443' || !fields.port ? 'https' : 'http');
  const host = fields.host;
  const endpoint = host ? `${protocol}://${host}${fields.port ? `:${fields.port}` : ''}` : undefined;
  return {
    endpoint,
    bucket: fields.bucket,
    prefix: fields.fileprefix ?? '',
    region: fields.region ?? s3Region(fields),
    pathStyle: fields.requeststyle === 'path',
    ...(fields.partsize ? { partSize: Number(fields.partsize) } : {}),
  };
}

/**
 * The region git-annex signs with: its S3 library takes the endpoint's host name as the v4 region for hosts that
 * are not AWS; on AWS, `datacenter` (default US = us-east-1).
 */
function s3Region(fields: Record<string, string>): string {
  if (fields.host && !fields.host.endsWith('amazonaws.com')) return fields.host;
  return fields.datacenter && fields.datacenter !== 'US' ? fields.datacenter : 'us-east-1';
}

export async function importAnnex(opts: ImportOptions): Promise<ImportResult> {
  await requireAnnexRepo(opts.repo);
  const remoteLog = parseRemoteLog(
    (await readBranchFiles(opts.repo, ['remote.log'])).get('remote.log') ?? '',
  );
  const match = [...remoteLog].find(([uuid, f]) => f.name === opts.remote || uuid === opts.remote);
  if (!match) throw new UserError(`no special remote named ${opts.remote} in ${opts.repo}`);
  const [uuid, fields] = match;
  const type = fields.type;
  if (type !== 'directory' && type !== 'S3')
    throw new UserError(`remote ${opts.remote} has type=${type}; coffre handles directory and S3`);
  const encryption = (fields.encryption ?? 'none') as Mode;
  if (!MODES.includes(encryption))
    throw new UserError(`remote ${opts.remote} has unknown encryption=${encryption}`);
  if (fields.mac && !isMacName(fields.mac))
    throw new UserError(`remote ${opts.remote} has unknown mac=${fields.mac}`);

  let directory: string | undefined;
  if (type === 'directory') {
    directory = opts.path;
    if (!directory) {
      const cfg = await git(opts.repo, ['config', '--get', `remote.${opts.remote}.annex-directory`]).catch(
        () => null,
      );
      directory = cfg?.toString('utf8').trim();
    }
    if (!directory)
      throw new UserError(`remote ${opts.remote}'s directory is not recorded in git config; give --path DIR`);
  }
  const extra: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) if (!KNOWN.has(k) && !S3_FIELDS.has(k)) extra[k] = v;

  const config: RemoteConfig = {
    version: CONFIG_VERSION,
    name: opts.as ?? opts.remote,
    uuid,
    type: type === 'S3' ? 's3' : 'directory',
    ...(directory ? { directory } : {}),
    ...(type === 'S3'
      ? { s3: { ...s3LocationFrom(fields), ...(opts.endpoint ? { endpoint: opts.endpoint } : {}) } }
      : {}),
    encryption,
    ...(fields.cipher ? { cipher: fields.cipher } : {}),
    ...(fields.cipherkeys ? { cipherkeys: fields.cipherkeys } : {}),
    ...(fields.pubkeys ? { pubkeys: fields.pubkeys } : {}),
    ...(fields.mac && isMacName(fields.mac) ? { mac: fields.mac } : {}),
    ...(fields.chunk ? { chunk: fields.chunk } : {}),
    ...(fields.s3creds ? { s3creds: fields.s3creds } : {}),
    ...(fields.embedcreds ? { embedcreds: fields.embedcreds === 'yes' } : {}),
    ...(Object.keys(extra).length ? { extra } : {}),
  };

  // Location and chunk logs of every key, read in one batch.
  const files = (await listBranchFiles(opts.repo)).filter((p) =>
    /^[0-9a-f]{3}\/[0-9a-f]{3}\/.+\.log(\.cnk)?$/.test(p),
  );
  const contents = await readBranchFiles(opts.repo, files);
  const log = LocationLog.load(config.name);
  let present = 0;
  for (const path of files) {
    if (!path.endsWith('.log')) continue;
    const key = path.slice(8, -4);
    const state = presenceIn(contents.get(path) ?? '', uuid);
    if (!state) continue;
    const chunks = chunksIn(contents.get(path + '.cnk') ?? '', uuid);
    log.record({ key, present: state.present, time: state.time, ...(chunks ?? {}) });
    if (state.present) present++;
  }
  log.compact();
  return { config, present };
}
