// The web console in a real browser (Debian's chromium through playwright-core): an operator signs in (after a
// refused attempt), creates a bucket and an access key, grants it rights in the keys × buckets matrix,
// uploads a file (plain and SSE-C) and downloads it, byte for byte, and the AWS SDK with the new key sees the
// same objects; another site's page cannot make the signed-in browser change anything; in a cluster, the
// operator stages and applies a layout change, and a stale apply is refused by the version check.
//
// With COFFRE_CONSOLE_SCREENSHOTS=<dir> the test saves a screenshot of each page there (docs/console.md's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Request } from 'playwright-core';
import { startServer, startServerFor } from '../../helpers/server.js';
import { launchBrowser, open, shot, signIn, watchCsp } from '../../helpers/browser.js';
import {
  mustRun,
  newRpcSecret,
  startNode,
  waitFor,
  type ClusterNode,
} from '../../cluster/cluster-helpers.js';
import { listenOn, closeServer } from '../../../src/util/http-server.js';

test('an operator manages buckets, keys, permissions and objects in the console', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const server = await startServerFor(t);
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('dialog', (d) => void d.accept());
  const violations = watchCsp(page);
  const console = `${server.adminEndpoint}/`;

  // A wrong token is refused, and the console stays closed.
  await page.goto(console);
  await shot(page, 'sign-in');
  await page.fill('#token', 'not-the-token');
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#message.error');
  assert.match((await page.textContent('#message')) ?? '', /wrong admin token/);
  assert.equal(await page.isVisible('#nav'), false);
  assert.deepEqual(await context.cookies(), []);

  await signIn(page, console, server.adminToken);
  const [cookie] = await context.cookies();
  assert.equal(cookie?.name, 'coffre_session');
  assert.equal(cookie?.httpOnly, true);
  assert.equal(cookie?.sameSite, 'Strict');
  assert.equal(await page.evaluate('document.cookie'), '', 'the page script cannot read the session');

  // A bucket, and one of its settings.
  await page.fill('#new-bucket', 'photos');
  await page.click('form.inline button[type=submit]');
  await page.waitForSelector('tr[data-bucket="photos"]');
  await page.click('tr[data-bucket="photos"] a');
  await page.waitForSelector('#bucket-tags');
  await page.fill('#bucket-tags', 'team=web\nkeep=forever');
  await page.click('#save-bucket');
  await page.waitForSelector('#message.ok:has-text("Settings of photos saved")');
  const admin = { authorization: `Bearer ${server.adminToken}` };
  const info = (await (
    await fetch(`${server.adminEndpoint}/v1/buckets/photos`, { headers: admin })
  ).json()) as {
    tags: Record<string, string>;
  };
  assert.deepEqual(info.tags, { team: 'web', keep: 'forever' });
  await shot(page, 'buckets');

  // A key, whose secret is shown once, and rights on the bucket through the matrix.
  await open(page, `${console}#keys`);
  await page.fill('#new-key', 'alice');
  await page.click('form.inline button[type=submit]');
  await page.waitForSelector('#created-key-secret');
  const accessKeyId = (await page.textContent('#created-key-id'))!;
  const secretAccessKey = (await page.textContent('#created-key-secret'))!;
  for (const right of ['read', 'write']) {
    await page.check(`#perm-${accessKeyId}-photos-${right}`);
    await page.waitForSelector(`#message.ok:has-text("Granted ${right} on photos")`);
  }
  await page.check(`#create-bucket-${accessKeyId}`);
  await page.waitForSelector('#message.ok:has-text("alice may create buckets")');
  const key = (await (
    await fetch(`${server.adminEndpoint}/v1/keys/${accessKeyId}`, { headers: admin })
  ).json()) as {
    allowCreateBucket: boolean;
  };
  assert.equal(key.allowCreateBucket, true);
  await shot(page, 'keys');
  await page.reload();
  await page.waitForSelector(`#perm-${accessKeyId}-photos-read`);
  assert.equal(await page.isChecked(`#perm-${accessKeyId}-photos-read`), true);
  assert.equal(await page.isChecked(`#perm-${accessKeyId}-photos-owner`), false);
  assert.equal(await page.textContent('#new-secret'), '', 'the secret is not shown again');

  const alice = new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
  });
  t.after(() => alice.destroy());

  // An upload with its progress bar, read back by the new key and downloaded by the browser.
  const plain = randomBytes(3 * 1024 * 1024 + 17);
  await open(page, `${console}#objects/photos`);
  await page.waitForSelector('#upload-file');
  await page.setInputFiles('#upload-file', {
    name: 'holiday.bin',
    mimeType: 'application/octet-stream',
    buffer: plain,
  });
  await page.click('#upload');
  await page.waitForSelector('tr[data-object="holiday.bin"]');
  assert.equal(await page.getAttribute('#upload-progress', 'value'), '100');
  const viaSdk = await alice.send(new GetObjectCommand({ Bucket: 'photos', Key: 'holiday.bin' }));
  assert.ok(Buffer.from(await viaSdk.Body!.transformToByteArray()).equals(plain));
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('tr[data-object="holiday.bin"] button:has-text("Download")'),
  ]);
  assert.equal(download.suggestedFilename(), 'holiday.bin');
  assert.ok(readFileSync((await download.path())!).equals(plain), 'downloaded bytes are the uploaded ones');

  // An object the key wrote under a prefix is browsed to through its folder.
  await alice.send(new PutObjectCommand({ Bucket: 'photos', Key: '2026/dec/tree.txt', Body: 'a tree' }));
  await page.reload();
  await page.click('a.crumb:has-text("2026/")');
  await page.click('a.crumb:has-text("dec/")');
  await page.waitForSelector('tr[data-object="2026/dec/tree.txt"]');

  // SSE-C: a key typed in the page encrypts the upload; the same key, given to the SDK or the page, reads it.
  const customerKey = 'k'.repeat(16) + 'e'.repeat(16);
  const secret = randomBytes(200_000);
  await open(page, `${console}#objects/photos`);
  await page.waitForSelector('#ssec-key');
  await page.fill('#ssec-key', customerKey);
  await page.setInputFiles('#upload-file', {
    name: 'secret.bin',
    mimeType: 'application/octet-stream',
    buffer: secret,
  });
  await page.click('#upload');
  await page.waitForSelector('tr[data-object="secret.bin"] td:has-text("SSE-C")');
  await shot(page, 'objects');
  const keyB64 = Buffer.from(customerKey).toString('base64');
  const ssec = await alice.send(
    new GetObjectCommand({
      Bucket: 'photos',
      Key: 'secret.bin',
      SSECustomerAlgorithm: 'AES256',
      SSECustomerKey: keyB64,
    }),
  );
  assert.ok(Buffer.from(await ssec.Body!.transformToByteArray()).equals(secret));
  await page.fill('#ssec-key', customerKey);
  const [ssecDownload] = await Promise.all([
    page.waitForEvent('download'),
    page.click('tr[data-object="secret.bin"] button:has-text("Download")'),
  ]);
  assert.ok(readFileSync((await ssecDownload.path())!).equals(secret));
  assert.equal(
    await page.evaluate('JSON.stringify(localStorage) + JSON.stringify(sessionStorage)'),
    '{}{}',
    'the page stores nothing',
  );
  // Without the key, the page's download is refused with S3's reason.
  await page.fill('#ssec-key', '');
  await page.click('tr[data-object="secret.bin"] button:has-text("Download")');
  await page.waitForSelector('#message.error');

  // Deleting an object.
  await page.click('tr[data-object="holiday.bin"] button:has-text("Delete")');
  await page.waitForSelector('tr[data-object="holiday.bin"]', { state: 'detached' });

  await open(page, `${console}#encryption`);
  await page.waitForSelector('#sse-s3-state');
  assert.equal(await page.textContent('#sse-s3-state'), 'not set up');
  await open(page, `${console}#metrics`);
  await page.waitForSelector('.chart canvas');
  // S3 traffic (some of it refused) while the page samples: its request rate leaves zero.
  let stop = false;
  const traffic = (async () => {
    for (let i = 0; !stop; i++) {
      await alice.send(
        new PutObjectCommand({ Bucket: 'photos', Key: `load/${i % 5}`, Body: randomBytes(40_000) }),
      );
      await alice.send(new GetObjectCommand({ Bucket: 'photos', Key: 'missing' })).catch(() => undefined);
    }
  })();
  await waitFor(
    async () => Number(await page.textContent('.chart h3 span')) > 0,
    'the request rate chart shows the traffic',
    30_000,
  );
  await page.waitForTimeout(4000); // a few more samples for the picture (nothing is asserted on time)
  stop = true;
  await traffic;
  await shot(page, 'metrics');

  // Signing out ends the session on the node, not only in the page.
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in:not([hidden])');
  const status = await page.evaluate(async () => (await fetch('/v1/buckets')).status);
  assert.equal(status, 403);
  assert.deepEqual(violations, []);
});

test("another site's page cannot make a signed-in browser change anything", async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const server = await startServer();
  // The attacker's page, on another port of the same machine: the same site as far as cookies go (ports do
  // not count), so SameSite alone would not stop it; the Origin check and the CSRF token must.
  const target = `${server.adminEndpoint}/v1/buckets`;
  const evil = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><body>
      <form id="f" method="post" action="${target}" enctype="text/plain" target="sink">
        <input name='{"name":"evil-form","x":"' value='"}'>
      </form><iframe name="sink"></iframe>
      <script>
        fetch(${JSON.stringify(target)}, { method: 'POST', credentials: 'include', mode: 'no-cors',
          headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ name: 'evil-fetch' }) })
          .finally(() => { document.getElementById('f').submit(); document.title = 'sent'; });
      </script></body>`);
  });
  const evilAddr = await listenOn(evil, '127.0.0.1', 0);
  t.after(async () => {
    await closeServer(evil);
    await server.stop();
    server.cleanup();
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, `${server.adminEndpoint}/`, server.adminToken);
  const attacker = await context.newPage();
  // The requests the browser sent for the attacker's page, and how each ended: with the node's answer (its
  // 403), which the browser may then withhold from the page (Cross-Origin-Resource-Policy, frame-ancestors).
  const answers: { cookie: boolean; outcome: string }[] = [];
  const record = (r: Request, outcome: string) =>
    void r
      .allHeaders()
      .then((h) => answers.push({ cookie: /coffre_session=/.test(h.cookie ?? ''), outcome }));
  attacker.on('requestfinished', (r) => {
    if (r.url() === target) void r.response().then((res) => record(r, `answered ${res?.status()}`));
  });
  attacker.on('requestfailed', (r) => {
    if (r.url() !== target) return;
    const error = r.failure()?.errorText ?? '';
    record(r, /BLOCKED_BY_RESPONSE/.test(error) ? 'answered, withheld' : `failed ${error}`);
  });
  await attacker.goto(`http://${evilAddr}/`);
  await waitFor(async () => answers.length === 2, 'both cross-site requests are answered');
  const buckets = (await (
    await fetch(target, { headers: { authorization: `Bearer ${server.adminToken}` } })
  ).json()) as { name: string }[];
  assert.deepEqual(
    buckets.map((b) => b.name).filter((n) => n.startsWith('evil')),
    [],
    'no cross-site request created a bucket',
  );
  assert.equal(answers.length, 2);
  assert.ok(
    answers.every((a) => a.outcome.startsWith('answered')),
    JSON.stringify(answers),
  );
  assert.ok(
    answers.some((a) => a.cookie),
    `the browser sent the session cookie: ${JSON.stringify(answers)}`,
  );
  const own = await page.evaluate(async () => (await fetch('/v1/buckets')).status);
  assert.equal(own, 200, 'the operator is still signed in');
});

test('in a cluster, the console stages and applies a layout change; a stale apply is refused', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const secretConfig = `rpc_secret = "${newRpcSecret()}"`;
  const nodes: ClusterNode[] = [];
  t.after(async () => {
    for (const n of nodes) {
      await n.stop();
      n.cleanup();
    }
  });
  const first = await startNode({ secretConfig, label: 'console-a' });
  nodes.push(first);
  const second = await startNode({ secretConfig, label: 'console-b' });
  nodes.push(second);
  const firstId = (await first.id()).split('@')[0]!;
  const secondId = (await second.id()).split('@')[0]!;
  await mustRun(first, ['layout', 'assign', firstId.slice(0, 12), '--zone', 'z1', '--capacity', '10G']);
  await mustRun(first, ['layout', 'apply', '--version', '1']);
  await mustRun(second, ['node', 'connect', await first.id()]);
  await waitFor(
    async () => (await mustRun(first, ['status'])).includes(secondId.slice(0, 16)),
    'the nodes know each other',
  );

  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const violations = watchCsp(page);
  await signIn(page, `http://127.0.0.1:${first.adminPort}/#cluster`, first.adminToken);
  await page.waitForSelector(`tr[data-node="${secondId}"]`);
  await page.fill('#assign-node', secondId.slice(0, 12));
  await page.fill('#assign-zone', 'z2');
  await page.fill('#assign-capacity', '20G');
  await page.click('form:has(#assign-node) button[type=submit]');
  await page.waitForSelector('#apply-layout:has-text("Apply as version 2"):not([disabled])');
  await shot(page, 'cluster');
  await page.click('#apply-layout');
  await page.waitForSelector('#message.ok:has-text("Layout version 2 applied")');
  for (const node of nodes) {
    await waitFor(async () => {
      const l = JSON.parse(await mustRun(node, ['layout', 'show', '--json'])) as {
        version: number;
        roles: Record<string, { zone: string; capacity: number }>;
      };
      return l.version === 2 && l.roles[secondId]?.zone === 'z2' && l.roles[secondId]?.capacity === 20e9;
    }, `${node.label} adopts layout version 2`);
  }

  // The page stages version 3; meanwhile another operator applies a version 3 of their own. The page's
  // apply, made for a layout that is no longer current, is refused.
  await page.waitForSelector('h1:has-text("layout version 2")');
  await page.fill('#assign-node', secondId.slice(0, 12));
  await page.fill('#assign-zone', 'z2');
  await page.fill('#assign-capacity', '30G');
  await page.click('form:has(#assign-node) button[type=submit]');
  await page.waitForSelector('#apply-layout:has-text("Apply as version 3"):not([disabled])');
  await mustRun(first, ['layout', 'apply', '--version', '3']);
  await page.click('#apply-layout');
  await page.waitForSelector('#message.error');
  const l = JSON.parse(await mustRun(first, ['layout', 'show', '--json'])) as { version: number };
  assert.equal(l.version, 3);
  assert.deepEqual(violations, []);
});
