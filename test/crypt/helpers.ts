// Shared test helpers for crypt: run the coffre CLI as a subprocess, find required tools.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as openpgp from 'openpgp';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const BIN = resolve('bin/coffre.js');

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function coffre(args: string[], env: Record<string, string>, input?: string): Run {
  const r = spawnSync(process.execPath, [BIN, 'crypt', ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    input,
    maxBuffer: 64 << 20,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The key of a `coffre crypt ls` line (`KEY  PATH…`: the paths it was put from follow it). */
export const keyOfLine = (line: string): string => line.split('  ')[0]!;

/** Runs and asserts success, returning stdout. */
export function ok(args: string[], env: Record<string, string>): string {
  const r = coffre(args, env);
  if (r.code !== 0) throw new Error(`coffre crypt ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

/** Reason to skip when tools are missing; in CI (CI=true) missing tools are a failure instead. */
export function missingTools(names: string[]): string | false {
  const missing = names.filter((n) => !hasTool(n));
  if (missing.length === 0) return false;
  if (process.env.CI === 'true') throw new Error(`required tools missing in CI: ${missing.join(', ')}`);
  return `needs ${missing.join(', ')}`;
}

const tempDirs: string[] = [];

// Each test file runs in its own process: its directories go when it exits. git-annex leaves its object
// directories without write permission, which stops a removal run by anyone but root.
process.once('exit', () => {
  for (const dir of tempDirs) {
    spawnSync('chmod', ['-R', 'u+w', dir]);
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A fresh directory under the system's temporary directory, removed when the test process exits. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `coffre-${prefix}-`));
  tempDirs.push(dir);
  return dir;
}

/** Stops the gpg-agent a test's GNUPGHOME started (gpg leaves one running per home). */
export function stopGpgAgent(home: string | undefined): void {
  if (home) spawnSync('gpgconf', ['--homedir', home, '--kill', 'gpg-agent']);
}

/** A fresh OpenPGP key pair written as armored files in `dir` (the secret one 0600), with its key id. */
export async function keyPair(dir: string, name: string): Promise<{ pub: string; sec: string; id: string }> {
  const k = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ email: `${name}@example.invalid` }],
    format: 'object',
  });
  const pub = join(dir, `${name}.pub.asc`);
  const sec = join(dir, `${name}.sec.asc`);
  writeFileSync(pub, k.publicKey.armor());
  writeFileSync(sec, k.privateKey.armor(), { mode: 0o600 });
  return { pub, sec, id: k.publicKey.getKeyID().toHex().toUpperCase() };
}
