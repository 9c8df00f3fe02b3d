// Test helper: a real browser — Debian's chromium, driven by playwright-core (which downloads no browser of
// its own). Locally a missing chromium skips the test; in CI (CI=true) it is a failure, since .ci/run installs it.
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

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

// The console's pages, as the browser tests drive them. With COFFRE_CONSOLE_SCREENSHOTS=<dir>, shot() saves a
// screenshot of a page there (docs/console.md's pictures).
const SHOTS = process.env.COFFRE_CONSOLE_SCREENSHOTS;

export async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  await page.waitForTimeout(300); // let the last repaint land (a picture, not an assertion)
  await page.screenshot({ path: join(SHOTS, `console-${name}.png`), fullPage: true });
}

// Every Content-Security-Policy violation or script error the page reports: there must be none.
export function watchCsp(page: Page): string[] {
  const violations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
  });
  page.on('pageerror', (e) => violations.push(`page error: ${e.message}`));
  return violations;
}

// Goes to a page of the console and waits until that page is drawn (not the one before it).
export async function open(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.waitForSelector(`#page[data-drawn="${new URL(url).hash}"]`);
}

export async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(url);
  await page.fill('#token', token);
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#nav:not([hidden])');
}
