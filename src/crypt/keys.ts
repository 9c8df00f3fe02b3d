// crypt/keys: OpenPGP public and secret keys for a remote — from key files (armored or binary) or from the user's
// GnuPG (`gpg --export`, `gpg --export-secret-keys`, or `gpg --decrypt` when the secret key cannot be exported).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as openpgp from 'openpgp';
import { UserError } from '../util/errors.js';

/** git-annex names keys by the 16-hex-digit long id of the primary key. */
export function longKeyId(key: openpgp.Key): string {
  return key.getKeyID().toHex().toUpperCase();
}

/** Every key id (primary and subkeys) of a key, upper-case hex. */
export function allKeyIds(key: openpgp.Key): string[] {
  return key.getKeyIDs().map((id) => id.toHex().toUpperCase());
}

async function readAnyKeys(data: Buffer, what: string): Promise<openpgp.Key[]> {
  try {
    const text = data.subarray(0, 64).toString('latin1');
    if (text.includes('-----BEGIN PGP'))
      return await openpgp.readKeys({ armoredKeys: data.toString('utf8') });
    return await openpgp.readKeys({ binaryKeys: data });
  } catch (err) {
    throw new UserError(`cannot read OpenPGP key(s) from ${what}: ${(err as Error).message}`);
  }
}

export interface GpgResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs gpg in batch mode; input goes to stdin. A missing gpg is a user-facing error. */
// `maxOutput`: gpg is stopped, and the run fails, once it has written more than this (a decompression bomb
// sealed to the user's key must not fill memory).
export function runGpg(args: string[], input?: Buffer, maxOutput = Infinity): Promise<GpgResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('gpg', ['--batch', '--quiet', '--no-tty', ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let written = 0;
    child.stdout.on('data', (d: Buffer) => {
      written += d.length;
      if (written > maxOutput) {
        out.length = 0;
        child.kill('SIGKILL');
        return;
      }
      out.push(d);
    });
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new UserError('gpg is not installed (needed to use GnuPG keys)') : e),
    );
    child.on('close', (code) =>
      resolve({
        code: written > maxOutput ? 1 : (code ?? 1),
        stdout: Buffer.concat(out),
        stderr:
          written > maxOutput
            ? `gpg wrote more than ${maxOutput} bytes`
            : Buffer.concat(err).toString('utf8'),
      }),
    );
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

/** Public keys named by key id / fingerprint (from GnuPG) or by file path. Returns them with their long ids. */
export async function loadPublicKeys(specs: string[]): Promise<openpgp.PublicKey[]> {
  const keys: openpgp.PublicKey[] = [];
  for (const spec of specs) {
    let found: openpgp.Key[];
    if (existsSync(spec)) found = await readAnyKeys(readFileSync(spec), spec);
    else {
      const r = await runGpg(['--export', spec]);
      if (r.code !== 0 || r.stdout.length === 0)
        throw new UserError(`no OpenPGP public key ${spec} in the GnuPG keyring`);
      found = await readAnyKeys(r.stdout, `gpg key ${spec}`);
    }
    for (const k of found) {
      const pub = k.toPublic();
      try {
        await pub.getEncryptionKey();
      } catch {
        throw new UserError(`OpenPGP key ${longKeyId(pub)} has no usable encryption subkey`);
      }
      keys.push(pub);
    }
  }
  return keys;
}

/** Where secret keys come from: key files first, then (unless disabled) GnuPG. */
export interface SecretKeySource {
  files: string[];
  useGpg: boolean;
}

/** Loads usable (unprotected) secret keys from the files, and from GnuPG for the wanted ids. */
export async function loadSecretKeys(
  source: SecretKeySource,
  wantedIds: string[],
): Promise<openpgp.PrivateKey[]> {
  const out: openpgp.PrivateKey[] = [];
  for (const file of source.files) {
    if (!existsSync(file)) throw new UserError(`secret key file not found: ${file}`);
    for (const k of await readAnyKeys(readFileSync(file), file)) {
      if (!k.isPrivate()) throw new UserError(`${file} holds a public key, not a secret key`);
      if (k.isDecrypted()) out.push(k);
      else
        throw new UserError(
          `secret key ${longKeyId(k)} in ${file} is passphrase-protected; export it without a passphrase or use GnuPG`,
        );
    }
  }
  if (source.useGpg) {
    for (const id of wantedIds) {
      if (out.some((k) => allKeyIds(k).some((x) => x.endsWith(id) || id.endsWith(x)))) continue;
      const r = await runGpg(['--pinentry-mode', 'error', '--export-secret-keys', id]).catch(() => null);
      if (!r || r.code !== 0 || r.stdout.length === 0) continue;
      for (const k of await readAnyKeys(r.stdout, `gpg secret key ${id}`).catch(() => [])) {
        if (k.isPrivate() && k.isDecrypted()) out.push(k);
      }
    }
  }
  return out;
}

/** Asks gpg to decrypt a message (gpg-agent handles protected keys); null when gpg cannot. */
export async function gpgDecrypt(message: Buffer, maxOutput = Infinity): Promise<Buffer | null> {
  const r = await runGpg(['--decrypt'], message, maxOutput).catch(() => null);
  if (!r || r.code !== 0) return null;
  return r.stdout;
}
