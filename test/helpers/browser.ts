// Test helper: a real browser — Debian's chromium, driven by playwright-core (which downloads no browser of
// its own). Locally a missing chromium skips the test; in CI (CI=true) it is a failure, since .ci/run installs it.
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.COFFRE_CHROMIUM ?? '/usr/bin/chromium';

/** A headless chromium, or undefined (the test then skipped) where none is installed. */
export async function launchBrowser(t: TestContext): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM)) {
    if (process.env.CI) throw new Error(`no chromium at ${CHROMIUM} in CI (add it to .ci/run)`);
    t.skip(`needs chromium (${CHROMIUM}, or COFFRE_CHROMIUM)`);
    return undefined;
  }
  // Root (as CI runs) cannot use chromium's sandbox; the pages opened are the test's own node's.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
  t.after(() => browser.close());
  return browser;
}
