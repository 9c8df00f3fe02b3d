// cli/crypt: `coffre crypt …`, client-side encryption for any S3 store or directory (git-annex design).
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { UserError } from '../util/errors.js';
import { exportAnnex } from '../crypt/annex-export.js';
import { git } from '../crypt/annex-branch.js';
import { importAnnex } from '../crypt/annex-import.js';
import { MODES, generateCipher, reencryptCipher, type Mode } from '../crypt/cipher.js';
import {
  CONFIG_VERSION,
  checkRemoteName,
  listRemotes,
  loadConfig,
  parseSize,
  remoteExists,
  saveConfig,
  type RemoteConfig,
} from '../crypt/config.js';
import { encodeCreds, envCreds } from '../crypt/creds.js';
import { ContentMismatchError, keyForFile, type CryptRemote } from '../crypt/crypt-remote.js';
import { loadPublicKeys, longKeyId, type SecretKeySource } from '../crypt/keys.js';
import { LocationLog, type LocationEntry } from '../crypt/location-log.js';
import { DEFAULT_MAC, KeyFormatError, isMacName, parseKey, type MacName } from '../crypt/names.js';
import { closeRemote, openCipher, openRemote, openStore, publicKeysOf } from '../crypt/open-remote.js';
import { IntegrityError, OversizeError, WrongKeyError } from '../crypt/openpgp.js';
import { FormatError } from '../crypt/packets.js';
import { TruncatedError } from '../crypt/byte-reader.js';
import type { S3Store } from '../crypt/remote-s3.js';
import { rotate } from '../crypt/rotate.js';
import { publishedConfig, readState, sealedBy, stateEntries } from '../crypt/remote-meta.js';
import { publishShared, syncShared, type SharedSession } from '../crypt/shared-remote.js';
import { MissingObjectError } from '../crypt/store.js';
import * as openpgp from 'openpgp';

// Node's names for a certificate chain it does not trust: a self-signed endpoint (coffre --tls-self-signed, a
// test MinIO) or a private CA.
const UNTRUSTED_CERTIFICATE = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
]);

/** For an endpoint whose certificate is not trusted: what to set so that it is. */
export function untrustedCertificateHint(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !UNTRUSTED_CERTIFICATE.has(code)) return undefined;
  return (
    `the endpoint's TLS certificate is not trusted (${code}): if it is self-signed or from a private CA, ` +
    'run with NODE_EXTRA_CA_CERTS=/path/to/its-cert.pem (for coffre --tls-self-signed: coffre-data/tls/cert.pem)'
  );
}

/** Turns the crypt layer's meaningful errors into one-line user errors; `context` prefixes the message. */
function explain(err: unknown, context: string): Error {
  const at = context ? `${context}: ` : '';
  if (err instanceof UserError) return err;
  if (err instanceof MissingObjectError) return new UserError(`${at}missing object — ${err.message}`);
  if (err instanceof WrongKeyError) return new UserError(`${at}wrong or missing key — ${err.message}`);
  if (err instanceof IntegrityError || err instanceof TruncatedError) {
    return new UserError(`${at}integrity check failed — ${err.message}`);
  }
  if (err instanceof ContentMismatchError) return new UserError(`${at}${err.message}`);
  if (err instanceof OversizeError)
    return new UserError(`${at}object refused, a corrupted or hostile object — ${err.message}`);
  if (err instanceof FormatError)
    return new UserError(`${at}corrupted or unsupported object — ${err.message}`);
  if (err instanceof KeyFormatError) return new UserError(err.message, 2);
  if (err instanceof RangeError) return new UserError(`${at}${err.message}`);
  const tls = untrustedCertificateHint(err);
  if (tls) return new UserError(`${at}${tls}`);
  // S3 service errors carry $metadata (checked by shape, so the AWS SDK loads only for S3 remotes)
  const s3 = err as { $metadata?: { httpStatusCode?: number }; name?: string; message?: string } | null;
  if (s3?.$metadata) {
    return new UserError(
      `${at}S3 refused: ${s3.name} (HTTP ${s3.$metadata.httpStatusCode ?? '?'}) ${s3.message}`,
    );
  }
  return err as Error;
}

/** What a command argument names: an annex key, or a file `put` stored (from the location log). */
interface Target {
  key: string;
  /** The path the user gave, when they gave one. */
  path?: string;
}

/**
 * Each argument as the key(s) it names: an annex key as it is, a path as the keys `put` recorded for it (the
 * newest only with `newest`, for get). Anything else is a one-line mistake naming the argument.
 */
function resolveTargets(name: string, args: string[], log: LocationLog, newest = false): Target[] {
  return args.flatMap((arg): Target[] => {
    if (isAnnexKey(arg)) return [{ key: arg }];
    const found = log.keysForPath(arg).sort((a, b) => b.time - a.time);
    if (found.length === 0)
      throw new UserError(
        `${name}: ${arg} is neither an annex key (SHA256E-s…--…) nor a file stored with put; ` +
          `\`coffre crypt ls ${name}\` lists both`,
        2,
      );
    return (newest ? found.slice(0, 1) : found).map((e) => ({ key: e.key, path: arg }));
  });
}

function isAnnexKey(text: string): boolean {
  try {
    parseKey(text);
    return true;
  } catch (err) {
    if (err instanceof KeyFormatError) return false;
    throw err;
  }
}

function collectList(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

// Key files given on the command line are the keys to use: a file that does not open the remote is an error
// saying so, never a silent turn to GnuPG (which may prompt, or open it with a key the user did not mean).
function keySource(opts: { secretKey?: string[]; gpg?: boolean }): SecretKeySource {
  const files = opts.secretKey ?? [];
  return { files, useGpg: opts.gpg !== false && files.length === 0 };
}

function jobsOf(v: string | undefined): number {
  const n = Number(v ?? '1');
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new UserError(`--jobs must be 1..64, not ${v}`);
  return n;
}

/** Runs `work` over items with at most `jobs` at once; after the first failure no new item starts. */
async function pool<T>(items: T[], jobs: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const runners = Array.from({ length: Math.min(jobs, items.length) }, async () => {
    while (!failed && next < items.length) {
      try {
        await work(items[next++]);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  });
  await Promise.all(runners);
}

/** Progress bars on stderr when it is a terminal; silent otherwise. */
class Progress {
  private readonly bars = process.stderr.isTTY
    ? new cliProgress.MultiBar(
        { format: ' {bar} {percentage}% {value}/{total} B {name}', hideCursor: true, clearOnComplete: true },
        cliProgress.Presets.shades_classic,
      )
    : null;

  track(name: string, total: number): (n: number) => void {
    if (!this.bars) return () => {};
    const bar = this.bars.create(total, 0, { name });
    let done = 0;
    return (n) => {
      done += n;
      bar.update(done);
      if (done >= total) this.bars?.remove(bar);
    };
  }

  stop(): void {
    this.bars?.stop();
  }
}

interface KeyOpts {
  secretKey?: string[];
  gpg?: boolean;
}

function addKeyOptions(cmd: Command): Command {
  return cmd
    .option('--secret-key <file>', 'OpenPGP secret key file (armored or binary); repeatable', collectList)
    .option('--no-gpg', 'do not ask GnuPG for secret keys');
}

async function withRemote<T>(
  name: string,
  opts: KeyOpts,
  fn: (r: CryptRemote, c: RemoteConfig, s: SharedSession) => Promise<T>,
  mutating = false,
) {
  const config = loadConfig(name);
  let session: SharedSession | null = null;
  try {
    const source = keySource(opts);
    session = { config, remote: await openRemote(config, source), source, state: null, ahead: false };
    // Another machine may have changed the remote: take its newer entries (and a rotation) first.
    if (config.storeInRemote) await syncShared(session);
    const result = await fn(session.remote, session.config, session);
    if (config.storeInRemote && (mutating || session.ahead)) await publishShared(session);
    return result;
  } catch (err) {
    throw explain(err, name);
  } finally {
    if (session) closeRemote(session.remote);
  }
}

function printJson(data: unknown): void {
  process.stdout.write(JSON.stringify(data, null, 2) + '\n');
}

interface InitOpts extends KeyOpts {
  type: string;
  path?: string;
  endpoint?: string;
  bucket?: string;
  prefix?: string;
  region?: string;
  encryption?: string;
  keyid?: string[];
  storeConfig?: boolean;
  fromRemote?: boolean;
  mac?: string;
  chunk?: string;
  embedcreds?: boolean;
  pad?: boolean;
}

type Location = Pick<RemoteConfig, 'type' | 'directory' | 's3'>;

/** Where the remote lives, from the init options. */
function locationFrom(o: InitOpts): Location {
  if (o.type === 'directory') {
    if (!o.path) throw new UserError('--type directory needs --path DIR');
    const dir = resolve(o.path);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`no such directory: ${dir}`);
    return { type: 'directory', directory: dir };
  }
  if (o.type === 's3') {
    if (!o.bucket) throw new UserError('--type s3 needs --bucket B');
    const s3 = {
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      bucket: o.bucket,
      prefix: o.prefix ?? '',
      region: o.region ?? 'us-east-1',
      pathStyle: true,
    };
    return { type: 's3', s3 };
  }
  throw new UserError(`--type must be directory or s3`);
}

/** A second machine adopts a remote published with --store-config: it must hold one of the secret keys. */
async function adoptRemote(name: string, o: InitOpts): Promise<void> {
  const location = locationFrom(o);
  const probe = { version: CONFIG_VERSION, name, uuid: '', encryption: 'none' as const, ...location };
  const store = await openStore(probe, null);
  let state;
  try {
    state = await readState(store);
  } catch (err) {
    throw explain(err, name);
  } finally {
    store.close?.();
  }
  if (!state)
    throw new UserError(
      `${store.description} holds no coffre configuration (was it initialized with --store-config?)`,
    );
  const config = publishedConfig(state, { name, ...location });
  let remote: CryptRemote | null = null;
  try {
    remote = await openRemote(config, keySource(o));
    if (state.format === 2 && !sealedBy(state, remote.cipher))
      throw new UserError(
        `${store.description}: the stored configuration is not sealed by its own cipher; refusing it`,
      );
    remote.log.merge(await stateEntries(state, remote.cipher, remote.store));
    saveConfig(config);
    const count = remote.log.presentKeys().length;
    process.stdout.write(
      `adopted ${name} (encryption=${config.encryption}, ${count} key(s), uuid ${config.uuid})\n`,
    );
  } catch (err) {
    throw explain(err, name);
  } finally {
    if (remote) closeRemote(remote);
  }
}

async function initRemote(name: string, o: InitOpts): Promise<void> {
  checkRemoteName(name);
  if (remoteExists(name)) throw new UserError(`crypt remote ${name} already exists`);
  if (o.fromRemote) return adoptRemote(name, o);
  if (!MODES.includes(o.encryption as Mode))
    throw new UserError(`--encryption must be one of ${MODES.join(', ')}`);
  const mode = o.encryption as Mode;
  if (o.mac && !isMacName(o.mac)) {
    throw new UserError(`--mac must be HMACSHA1, HMACSHA224, HMACSHA256, HMACSHA384 or HMACSHA512`);
  }
  if (o.chunk) parseSize(o.chunk);
  if (o.pad && mode === 'none')
    throw new UserError('--pad needs encryption (padding lives inside the OpenPGP message)');
  if (o.storeConfig && mode !== 'hybrid' && mode !== 'pubkey') {
    throw new UserError(`--store-config needs hybrid or pubkey encryption (${mode} would expose the cipher)`);
  }
  const keys = o.keyid?.length ? await loadPublicKeys(o.keyid) : [];
  if (keys.length > 0 && (mode === 'none' || mode === 'shared')) {
    throw new UserError(`--keyid makes no sense with --encryption ${mode}`);
  }
  const location = locationFrom(o);
  const fields = await generateCipher(mode, keys, o.mac as MacName | undefined);
  const config: RemoteConfig = {
    version: CONFIG_VERSION,
    name,
    uuid: randomUUID(),
    ...fields,
    ...location,
    ...(o.chunk ? { chunk: o.chunk } : {}),
    ...(o.pad ? { pad: 'padme' as const } : {}),
    ...(o.storeConfig ? { storeInRemote: true } : {}),
    ...(keys.length > 0 ? { publicKeys: keysArmored(keys) } : {}),
  };
  if (config.type === 's3') {
    // git-annex's default: embed credentials when the cipher is encrypted to keys (hybrid, pubkey)
    const embed = o.embedcreds ?? Boolean(config.cipher && config.cipherkeys);
    const creds = envCreds();
    if (o.embedcreds && !creds)
      throw new UserError('--embedcreds needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set');
    if (embed && creds) {
      const cipher = await openCipher(config, keySource(o));
      config.s3creds = await encodeCreds(creds, cipher.mode === 'none' ? null : cipher);
      config.embedcreds = true;
      cipher.dispose();
    }
    const store = (await openStore(config, null)) as S3Store;
    try {
      await store.claim(config.uuid);
    } catch (err) {
      throw err instanceof UserError
        ? err
        : new UserError(
            `cannot reach ${store.description}: ${untrustedCertificateHint(err) ?? (err as Error).message}`,
          );
    } finally {
      store.close();
    }
  }
  saveConfig(config);
  if (config.storeInRemote) await withRemote(name, o, async () => {}, true);
  const keyNote = config.cipherkeys ?? config.pubkeys;
  process.stdout.write(
    `initialized ${name} (${config.type}, encryption=${mode}${keyNote ? ` to ${keyNote}` : ''}, uuid ${config.uuid})\n`,
  );
}

/** One armored block holding every key (readKeys reads only the first of several blocks). */
function keysArmored(keys: openpgp.PublicKey[]): string {
  const bytes = Buffer.concat(keys.map((k) => Buffer.from(k.write())));
  return openpgp.armor(openpgp.enums.armor.publicKey, bytes);
}

export function registerCryptCommands(program: Command): void {
  const crypt = program
    .command('crypt')
    .description('client-side encryption for S3 stores and directories, byte-compatible with git-annex');

  crypt
    .command('init <name>')
    .description('create an encrypted remote (a directory or an S3 bucket)')
    .addOption(new Option('--type <type>', 'remote type').choices(['directory', 's3']).makeOptionMandatory())
    .option('--path <dir>', 'directory for --type directory')
    .option('--endpoint <url>', 'S3 endpoint URL')
    .option('--bucket <bucket>', 'S3 bucket')
    .option('--prefix <prefix>', 'prefix for object names in the bucket (git-annex fileprefix)')
    .option('--region <region>', 'S3 region', 'us-east-1')
    .option('--encryption <mode>', `one of ${MODES.join(', ')}`)
    .option('--keyid <id>', 'OpenPGP key (GnuPG key id/fingerprint or key file); repeatable', collectList)
    .option('--mac <mac>', `HMAC for object names (default ${DEFAULT_MAC})`)
    .option('--chunk <size>', 'split files into chunks of this size (e.g. 1MiB)')
    .option(
      '--pad',
      'pad objects to Padmé sizes so stored sizes reveal little (gpg/git-annex still read them)',
    )
    .option('--embedcreds', 'store the S3 credentials in the remote config, encrypted with the cipher')
    .option('--no-embedcreds', 'never store S3 credentials')
    .option(
      '--store-config',
      'also keep the config and location log (encrypted) in the remote, for other machines',
    )
    .option(
      '--from-remote',
      'adopt a remote created elsewhere with --store-config (needs one of its secret keys)',
    )
    .option('--secret-key <file>', 'OpenPGP secret key file; repeatable', collectList)
    .option('--no-gpg', 'do not ask GnuPG for secret keys')
    .action((name: string, o: InitOpts) => initRemote(name, o));

  addKeyOptions(
    crypt
      .command('put <name> <files...>')
      .description("encrypt and store files; prints each file's annex key")
      .option('-j, --jobs <n>', 'parallel transfers', '1')
      .option('--json', 'print JSON'),
  ).action(async (name: string, files: string[], o: KeyOpts & { jobs?: string; json?: boolean }) => {
    const jobs = jobsOf(o.jobs);
    for (const f of files)
      if (!existsSync(f) || !statSync(f).isFile()) throw new UserError(`not a file: ${f}`);
    await withRemote(
      name,
      o,
      async (remote) => {
        const progress = new Progress();
        const results: { file: string; key: string }[] = [];
        try {
          await pool(files, jobs, async (file) => {
            const { key, size } = await keyForFile(file);
            const key2 = await remote.storeFile(file, { key, size }, progress.track(file, size));
            results.push({ file, key: key2 });
            if (!o.json) process.stdout.write(`${key2}  ${file}\n`);
          });
        } finally {
          progress.stop();
        }
        if (o.json) printJson(results);
      },
      true,
    );
  });

  addKeyOptions(
    crypt
      .command('get <name> <keys...>')
      .description(
        'retrieve and decrypt content by annex key or by the path it was put from (verified before it is written)',
      )
      .option(
        '-o, --output <path>',
        "output file (one key) or directory (several); default: the file's name, or the key",
      )
      .option('-j, --jobs <n>', 'parallel transfers', '1'),
  ).action(async (name: string, args: string[], o: KeyOpts & { output?: string; jobs?: string }) => {
    const jobs = jobsOf(o.jobs);
    const intoDir = o.output && existsSync(o.output) && statSync(o.output).isDirectory();
    if (args.length > 1 && o.output && !intoDir)
      throw new UserError('-o must be a directory when getting several keys', 2);
    await withRemote(name, o, async (remote) => {
      const targets = resolveTargets(name, args, remote.log, true);
      const progress = new Progress();
      try {
        await pool(targets, jobs, async ({ key, path }) => {
          const fileName = path ? basename(path) : key;
          const out = intoDir ? resolve(o.output!, fileName) : (o.output ?? fileName);
          await remote
            .retrieveFile(key, out, progress.track(fileName, parseKey(key).size ?? 0))
            .catch((err) => {
              throw explain(err, `${name}: ${path ?? key}`);
            });
        });
      } finally {
        progress.stop();
      }
    });
  });

  addKeyOptions(
    crypt.command('rm <name> <keys...>').description('remove content from the remote, by annex key or path'),
  ).action(async (name: string, args: string[], o: KeyOpts) => {
    await withRemote(
      name,
      o,
      async (remote) => {
        for (const { key } of resolveTargets(name, args, remote.log)) await remote.removeKey(key);
      },
      true,
    );
  });

  crypt
    .command('ls [name] [paths...]')
    .description(
      "list a remote's keys and the paths they were put from, from the location log (without a name: the remotes)",
    )
    .option('--json', 'print JSON')
    .action((name: string | undefined, filter: string[] | undefined, o: { json?: boolean }) => {
      if (!name) {
        const rows = listRemotes().map((n) => {
          const c = loadConfig(n);
          return {
            name: n,
            type: c.type,
            encryption: c.encryption,
            uuid: c.uuid,
            where: c.directory ?? c.s3?.bucket,
          };
        });
        if (o.json) printJson(rows);
        else
          for (const r of rows) process.stdout.write(`${r.name}\t${r.type}\t${r.encryption}\t${r.where}\n`);
        return;
      }
      loadConfig(name);
      const log = LocationLog.load(name);
      const entries = filter?.length
        ? [...new Set(resolveTargets(name, filter, log).map((t) => t.key))]
            .map((key) => log.get(key))
            .filter((e): e is LocationEntry => e?.present === true)
        : log.presentKeys();
      const rows = entries.map((e) => ({
        key: e.key,
        size: parseKey(e.key).size ?? null,
        chunks: e.chunkCount ?? null,
        paths: e.paths ?? [],
      }));
      if (o.json) printJson(rows);
      else
        for (const r of rows)
          process.stdout.write(r.paths.length ? `${r.key}  ${r.paths.join('  ')}\n` : `${r.key}\n`);
    });

  addKeyOptions(
    crypt
      .command('fsck <name> [keys...]')
      .description('check that content is present; --full also decrypts and verifies each hash')
      .option('--full', 'decrypt and verify content')
      .option('-j, --jobs <n>', 'parallel checks', '1')
      .option('--json', 'print JSON'),
  ).action(
    async (name: string, keys: string[], o: KeyOpts & { full?: boolean; json?: boolean; jobs?: string }) => {
      const jobs = jobsOf(o.jobs);
      await withRemote(name, o, async (remote) => {
        const wanted =
          keys.length > 0
            ? [...new Set(resolveTargets(name, keys, remote.log).map((t) => t.key))]
            : remote.log.presentKeys().map((e) => e.key);
        const results: { key: string; ok: boolean; problem?: string }[] = [];
        await pool(wanted, jobs, async (key) => {
          let problem: string | undefined;
          try {
            const missing = await remote.missingObjects(key);
            if (missing.length > 0) problem = `missing ${missing.length} object(s): ${missing[0]}…`;
            else if (o.full) await remote.verify(key);
          } catch (err) {
            // Said once, on the key's own FAIL line (the key is not repeated inside the problem).
            const e = explain(err, '');
            if (!(e instanceof UserError)) throw e;
            problem = e.message;
          }
          results.push({ key, ok: !problem, ...(problem ? { problem } : {}) });
          if (!o.json) process.stdout.write(problem ? `FAIL ${key}: ${problem}\n` : `ok   ${key}\n`);
        });
        if (o.json) printJson(results);
        const bad = results.filter((r) => !r.ok).length;
        if (bad > 0) throw new UserError(`fsck: ${bad} of ${results.length} key(s) failed`);
      });
    },
  );

  crypt
    .command('unused <name>')
    .description(
      'keys the remote holds that nothing references (a git-annex repo, or files under a directory)',
    )
    .option('--repo <dir>', 'a git-annex repository whose files reference keys')
    .option('--dir <dir>', 'a directory whose files reference keys (hashed as SHA256E)', collectList)
    .option('--json', 'print JSON')
    .action(async (name: string, o: { repo?: string; dir?: string[]; json?: boolean }) => {
      loadConfig(name);
      if (!o.repo && !o.dir)
        throw new UserError('unused needs --repo R or --dir DIR to know which keys are in use');
      const used = new Set<string>();
      if (o.repo) {
        const out = await git(o.repo, ['annex', 'find', '--include=*', '--format=${key}\\n']);
        for (const k of out.toString('utf8').split('\n')) if (k) used.add(k);
      }
      for (const d of o.dir ?? []) for (const f of walk(d)) used.add((await keyForFile(f)).key);
      const unused = LocationLog.load(name)
        .presentKeys()
        .filter((e) => !used.has(e.key))
        .map((e) => e.key);
      if (o.json) printJson(unused);
      else for (const k of unused) process.stdout.write(`${k}\n`);
    });

  const keysCmd = crypt.command('keys').description("change which OpenPGP keys can open a remote's cipher");
  for (const action of ['add', 'remove'] as const) {
    addKeyOptions(
      keysCmd
        .command(`${action} <name> <keyid>`)
        .description(
          action === 'add'
            ? "give a key access (the cipher is re-encrypted; objects untouched) — git-annex's keyid+="
            : "drop a key from the cipher (keyid-=); does NOT revoke: use 'rotate' for that",
        ),
    ).action(async (name: string, keyid: string, o: KeyOpts) => {
      const config = loadConfig(name);
      if (!config.storeInRemote) {
        await changeKeys(config, action, keyid, o).catch((err) => {
          throw explain(err, name);
        });
        return;
      }
      // Shared: start from the remote's current config, and publish the change to the other machines.
      await withRemote(
        name,
        o,
        async (_remote, current, session) => {
          await changeKeys(current, action, keyid, o);
          session.config = loadConfig(name);
        },
        true,
      );
    });
  }

  addKeyOptions(
    crypt
      .command('rotate <name>')
      .description(
        'new cipher, every object re-encrypted under its new name, old objects removed (resumable)',
      ),
  ).action(async (name: string, o: KeyOpts) => {
    const config = loadConfig(name);
    try {
      const r = await rotate(config, keySource(o));
      process.stdout.write(
        `rotated ${name}: ${r.copied} key(s) re-encrypted, ${r.removed} old key(s) removed${r.resumed ? ' (resumed)' : ''}\n`,
      );
    } catch (err) {
      throw explain(err, name);
    }
  });

  crypt
    .command('import-annex')
    .description('adopt a git-annex special remote (remote.log, location and chunk logs)')
    .requiredOption('--repo <dir>', 'the git-annex repository')
    .requiredOption('--remote <name>', 'the special remote (name or uuid)')
    .option('--as <name>', 'name for the coffre remote (default: the same)')
    .option('--path <dir>', 'directory of a directory remote (default: from git config)')
    .option('--endpoint <url>', 'S3 endpoint to use instead of the one in remote.log')
    .option('--json', 'print JSON')
    .action(
      async (o: {
        repo: string;
        remote: string;
        as?: string;
        path?: string;
        endpoint?: string;
        json?: boolean;
      }) => {
        const name = o.as ?? o.remote;
        checkRemoteName(name);
        if (remoteExists(name)) throw new UserError(`crypt remote ${name} already exists`);
        const { config, present } = await importAnnex({
          ...o,
          repo: resolve(o.repo),
          path: o.path && resolve(o.path),
        });
        saveConfig(config);
        if (o.json) printJson({ name, uuid: config.uuid, encryption: config.encryption, keys: present });
        else
          process.stdout.write(
            `imported ${name} (encryption=${config.encryption}, ${present} key(s) present)\n`,
          );
      },
    );

  crypt
    .command('export-annex <name>')
    .description("write a coffre remote into a git-annex repo's branch (then: git annex enableremote)")
    .requiredOption('--repo <dir>', 'the git-annex repository')
    .option('--as <name>', 'remote name in git-annex (default: the same)')
    .action(async (name: string, o: { repo: string; as?: string }) => {
      const config = loadConfig(name);
      const { keys } = await exportAnnex(config, { repo: resolve(o.repo), as: o.as });
      const rname = o.as ?? name;
      const hint = config.type === 'directory' ? ` directory=${config.directory}` : '';
      process.stdout.write(
        `exported ${rname} with ${keys} key(s); next: git annex enableremote ${rname}${hint}\n`,
      );
    });
}

function* walk(dir: string): Generator<string> {
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = resolve(dir, ent.name);
    if (ent.isDirectory()) yield* walk(p);
    else if (ent.isFile()) yield p;
  }
}

async function changeKeys(
  config: RemoteConfig,
  action: 'add' | 'remove',
  keyid: string,
  o: KeyOpts,
): Promise<void> {
  const mode = config.encryption;
  if (mode !== 'hybrid' && mode !== 'pubkey' && mode !== 'sharedpubkey') {
    throw new UserError(`remote ${config.name} has encryption=${mode}: no keys to ${action}`);
  }
  const listed =
    (mode === 'sharedpubkey' ? config.pubkeys : config.cipherkeys)?.split(',').filter(Boolean) ?? [];
  const known = await publicKeysOf(config);
  const byId = new Map(known.map((k) => [longKeyId(k), k]));
  for (const id of listed)
    if (!byId.has(id)) for (const k of await loadPublicKeys([id])) byId.set(longKeyId(k), k);
  if (action === 'add') {
    for (const k of await loadPublicKeys([keyid])) byId.set(longKeyId(k), k);
  } else {
    const target = [...byId.keys()].find(
      (id) => id === keyid.toUpperCase() || keyid.toUpperCase().endsWith(id),
    );
    if (!target || !listed.includes(target))
      throw new UserError(`key ${keyid} is not a key of remote ${config.name}`);
    byId.delete(target);
  }
  const keep = [...byId.entries()]
    .filter(([id]) => action === 'add' || listed.includes(id))
    .map(([, k]) => k);
  let fields;
  if (mode === 'sharedpubkey') fields = await reencryptCipher(config, Buffer.alloc(0), keep);
  else {
    const cipher = await openCipher(config, keySource(o));
    fields = await reencryptCipher(config, cipher.cipherText, keep);
    cipher.dispose();
  }
  saveConfig({ ...config, ...fields, publicKeys: keysArmored(keep) });
  const ids = fields.cipherkeys ?? fields.pubkeys;
  process.stdout.write(`${config.name}: keys now ${ids}\n`);
  if (action === 'remove') {
    process.stderr.write(
      `note: removing a key does not revoke it — it may already hold the cipher. Run 'coffre crypt rotate ${config.name}' to revoke.\n`,
    );
  }
}
