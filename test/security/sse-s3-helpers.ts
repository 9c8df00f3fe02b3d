// Test helper for SSE-S3: an operator's OpenPGP key pair in files, as `gpg --armor --export[-secret-keys]`
// writes them, and a server whose keyring is sealed to it.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { runCoffre, type TestServer } from '../helpers/server.js';

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
