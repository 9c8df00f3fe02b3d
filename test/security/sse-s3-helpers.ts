// Test helper for SSE-S3: an operator's OpenPGP key pair in files, as `gpg --armor --export[-secret-keys]`
// writes them, and a server whose keyring is sealed to it.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { runCoffre, type TestServer } from '../helpers/server.js';

// The CLI remembers the keyrings it unlocked or created (cli/known-keyrings.ts): in tests, in a file of their
// own, never the user's ~/.config/coffre.
process.env.COFFRE_KNOWN_KEYRINGS ??= join(
  mkdtempSync(join(tmpdir(), 'coffre-known-keyrings-')),
  'known-keyrings.json',
);

export interface Operator {
  dir: string;
  publicFile: string;
  privateFile: string;
}

export async function operatorKey(name: string, passphrase?: string): Promise<Operator> {
  const dir = mkdtempSync(join(tmpdir(), `coffre-operator-${name}-`));
  const { publicKey, privateKey } = await openpgp.generateKey({
    type: 'curve25519',
    userIDs: [{ name, email: `${name}@example.org` }],
    passphrase,
    format: 'armored',
  });
  const publicFile = join(dir, 'operator.pub.asc');
  const privateFile = join(dir, 'operator.sec.asc');
  writeFileSync(publicFile, publicKey);
  writeFileSync(privateFile, privateKey, { mode: 0o600 });
  return { dir, publicFile, privateFile };
}

/** Runs the coffre CLI against `server`, asserting success; returns its stdout. */
export async function mustCli(
  server: TestServer,
  args: string[],
  env: Record<string, string> = {},
): Promise<string> {
  const r = await runCoffre(['-c', server.configPath, ...args], env);
  assert.equal(r.code, 0, `coffre ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const lp = (...fields: Buffer[]) =>
  Buffer.concat(
    fields.flatMap((f) => {
      const n = Buffer.alloc(4);
      n.writeUInt32BE(f.length);
      return [n, f];
    }),
  );

/** An SSE-S3 keyring file as an attacker reads it off the disk (docs/formats-sse.md, section 7). */
export interface KeyringOnDisk {
  format: string;
  v: number;
  keyring?: string;
  current: string;
  keys: { id: string; created: string; recipients: string[]; sealed: string; check?: string }[];
  mac?: string;
}

/**
 * What someone who can write a node's metadata_dir can make without any secret: an SSE-S3 keyring entry holding
 * a master key they chose, sealed to an operator's public key, in the format of the file `file` and claiming
 * place `position` in it. Built from the format's description, not from coffre's code.
 */
export async function plantedEntry(
  publicKeyArmored: string,
  file: KeyringOnDisk,
  position: number,
  masterKey: Buffer = randomBytes(32),
): Promise<KeyringOnDisk['keys'][number]> {
  const id = randomBytes(8).toString('hex');
  const created = new Date().toISOString();
  const at = Buffer.alloc(4);
  at.writeUInt32BE(position);
  const payload =
    file.v === 1
      ? Buffer.concat([Buffer.from('coffre/sse-s3-master-key/v1\0', 'ascii'), lp(Buffer.from(id)), masterKey])
      : Buffer.concat([
          Buffer.from('coffre/sse-s3-master-key/v2\0', 'ascii'),
          lp(Buffer.from(file.keyring ?? ''), Buffer.from(id), Buffer.from(created)),
          at,
          masterKey,
        ]);
  const key = await openpgp.readKey({ armoredKey: publicKeyArmored });
  const sealed = await openpgp.encrypt({
    message: await openpgp.createMessage({ binary: payload }),
    encryptionKeys: key,
  });
  const check = createHmac('sha256', masterKey)
    .update(Buffer.concat([Buffer.from('coffre/sse-s3-key-check/v1\0', 'ascii'), lp(Buffer.from(id))]))
    .digest('hex');
  return { id, created, recipients: [key.getFingerprint()], sealed, check };
}
