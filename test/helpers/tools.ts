// Test helper: external clients (aws CLI, rclone, s3cmd, restic, git-annex, gpg …). Locally a missing tool skips
// the test with its name; in CI (CI=true) a missing tool is a failure, since .ci/run installs them all.
import { execFileSync } from 'node:child_process';
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
