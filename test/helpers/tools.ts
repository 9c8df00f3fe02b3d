// Test helper: external clients (aws CLI, rclone, s3cmd, restic, git-annex, gpg …). Locally a missing tool skips
// the test with its name; in CI (CI=true) a missing tool is a failure, since .ci/run installs them all.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { TestContext } from 'node:test';

export function hasTool(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// Returns true when the test may go on; otherwise marks it skipped (or throws in CI).
export function requireTools(t: TestContext, ...names: string[]): boolean {
  const missing = names.filter((n) => !hasTool(n));
  if (missing.length === 0) return true;
  if (process.env.CI) throw new Error(`missing tools in CI: ${missing.join(', ')} (add them to .ci/run)`);
  t.skip(`needs ${missing.join(', ')}`);
  return false;
}

/** What a client's configuration needs of a coffre server: its endpoint and an access key. */
export interface ClientTarget {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Writes an rclone configuration (mode 0600) with remote `[coffre]` for `target`, then `extra` lines. */
export function writeRcloneConfig(path: string, target: ClientTarget, extra: string[] = []): void {
  const lines = [
    '[coffre]',
    'type = s3',
    'provider = Other',
    'env_auth = false',
    `access_key_id = ${target.accessKeyId}`,
    `secret_access_key = ${target.secretAccessKey}`,
    'region = us-east-1',
    `endpoint = ${target.endpoint}`,
    'force_path_style = true',
    ...extra,
  ];
  writeFileSync(path, [...lines, ''].join('\n'), { mode: 0o600 });
}

/** Writes an s3cmd configuration (mode 0600) for `target` over plain HTTP (SigV4), then `extra` lines. */
export function writeS3cmdConfig(path: string, target: ClientTarget, extra: string[] = []): void {
  const hostPort = new URL(target.endpoint).host;
  const lines = [
    '[default]',
    `access_key = ${target.accessKeyId}`,
    `secret_key = ${target.secretAccessKey}`,
    `host_base = ${hostPort}`,
    `host_bucket = ${hostPort}`,
    'bucket_location = us-east-1',
    'use_https = False',
    'signature_v2 = False',
    'progress_meter = False',
    ...extra,
  ];
  writeFileSync(path, [...lines, ''].join('\n'), { mode: 0o600 });
}
