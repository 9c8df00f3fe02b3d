// The console's encryption and cluster pages in a real browser (Debian's chromium through playwright-core): the
// encryption page names the operators each SSE-S3 master key is sealed to by their OpenPGP user id (locked or
// not) and shows no key material; in a three-node cluster with a node down, the cluster page says the cluster
// is degraded, which block copies wait for the down node, who leads the metadata and when each node was last
// seen, and shows the queue empty once the node is back; a scrub pass started from the page is reported.
//
// With COFFRE_CONSOLE_SCREENSHOTS=<dir> the test saves a screenshot of each page there (docs/console.md's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { startServerFor } from '../../helpers/server.js';
import { launchBrowser, open, shot, signIn, watchCsp } from '../../helpers/browser.js';
import { mustCli, operatorKey } from '../../security/sse-s3-helpers.js';
import {
  formCluster,
  mustRun,
  newRpcSecret,
  s3Client,
  startNode,
  waitFor,
  type ClusterNode,
} from '../../cluster/cluster-helpers.js';

test('the encryption page names the operators of each master key by user id, and shows no key material', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const server = await startServerFor(t);
  const alice = await operatorKey('alice');
  const bob = await operatorKey('bob');
  await mustCli(server, ['sse-s3', 'init', '--recipient', alice.publicFile, '--recipient', bob.publicFile]);
  // Bob leaves: the new master key is sealed to Alice alone, the first still to both.
  const rotated = await mustCli(server, ['sse-s3', 'rotate', '--recipient', alice.publicFile]);
  // The CLI names them too.
  assert.match(rotated, /sealed to [0-9a-f]{40} \(alice <alice@example\.org>\), [0-9a-f]{40} \(bob/);
  const admin = { authorization: `Bearer ${server.adminToken}` };
  const state = (await (await fetch(`${server.adminEndpoint}/v1/sse-s3`, { headers: admin })).json()) as {
    current: string;
    keys: { id: string; recipients: string[] }[];
    userIds: Record<string, string>;
  };
  assert.equal(state.keys.length, 2);
  const [first, second] = state.keys as [(typeof state.keys)[0], (typeof state.keys)[0]];
  assert.equal(first.recipients.length, 2);
  assert.deepEqual(second.recipients.length, 1);
  const aliceFp = second.recipients[0]!;
  const bobFp = first.recipients.find((r) => r !== aliceFp)!;
  assert.equal(state.userIds[aliceFp], 'alice <alice@example.org>');
  assert.equal(state.userIds[bobFp], 'bob <bob@example.org>');

  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const violations = watchCsp(page);
  const console = `${server.adminEndpoint}/`;
  await signIn(page, `${console}#encryption`, server.adminToken);
  await page.waitForSelector('#page[data-drawn="#encryption"]');
  assert.equal(await page.textContent('#sse-s3-state'), 'unlocked');
  const userIdOf = (key: string, fp: string) =>
    page.textContent(`tr[data-master-key="${key}"] li[data-recipient="${fp}"] .user-id`);
  assert.equal(await userIdOf(first.id, aliceFp), 'alice <alice@example.org>');
  assert.equal(await userIdOf(first.id, bobFp), 'bob <bob@example.org>');
  assert.equal(await userIdOf(second.id, aliceFp), 'alice <alice@example.org>');
  assert.equal(await page.$(`tr[data-master-key="${second.id}"] li[data-recipient="${bobFp}"]`), null);
  assert.equal(await page.$$eval('#operators li', (l) => l.length), 2);
  assert.match((await page.textContent('#rotation-state')) ?? '', /sealed to other operators/);
  await shot(page, 'encryption');
  // Nothing sealed, armored or secret is in the page: the node sends the sealed file to the CLI, and the
  // page puts none of it in the document.
  const text = (await page.textContent('body')) ?? '';
  assert.doesNotMatch(text, /BEGIN PGP|PRIVATE KEY/);
  const sealed = readFileSync(join(server.dir, 'meta', 'sse_s3_keyring.json'), 'utf8');
  assert.doesNotMatch(sealed, /PRIVATE KEY/);

  // Locked, the page still names the operators (from the public keys the file keeps).
  await mustCli(server, ['sse-s3', 'lock']);
  await page.reload();
  await page.waitForSelector('#page[data-drawn="#encryption"]');
  assert.equal(await page.textContent('#sse-s3-state'), 'locked');
  assert.equal(await userIdOf(first.id, bobFp), 'bob <bob@example.org>');
  assert.deepEqual(violations, []);
});

const nodeId = async (n: ClusterNode) => (await n.id()).split('@')[0]!;

test('the cluster page shows a node down, the copies waiting for it and the metadata leader, then the node back', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const secretConfig = `rpc_secret = "${newRpcSecret()}"`;
  const extraConfig = `replication_factor = 3\nblock_size = ${64 * 1024}`;
  const env = { COFFRE_RESYNC_RETRY_MS: '1000' };
  const nodes = await Promise.all(
    ['pa', 'pb', 'pc'].map((label) => startNode({ secretConfig, extraConfig, label, env })),
  );
  t.after(async () => {
    for (const n of nodes) {
      await n.kill();
      n.cleanup();
    }
  });
  await formCluster(
    nodes[0]!,
    nodes.map((node, i) => ({ node, zone: `z${i + 1}` })),
  );
  const ids = await Promise.all(nodes.map(nodeId));
  const layout = JSON.parse(await mustRun(nodes[0]!, ['layout', 'show', '--json'])) as { metadata: string };
  // The page is served by the metadata node; the node taken down is another.
  const viewer = nodes[ids.indexOf(layout.metadata)]!;
  const victimIndex = ids.findIndex((id) => id !== layout.metadata);
  const victim = nodes[victimIndex]!;
  const victimId = ids[victimIndex]!;

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const violations = watchCsp(page);
  const console = `http://127.0.0.1:${viewer.adminPort}/`;
  await signIn(page, `${console}#cluster`, viewer.adminToken);
  await page.waitForSelector(`tr[data-node="${victimId}"]`);
  assert.equal(await page.textContent('#metadata-leader'), layout.metadata.slice(0, 16));
  assert.match((await page.textContent(`tr[data-node="${layout.metadata}"]`)) ?? '', /metadata leader/);
  for (const id of ids.filter((i) => i !== layout.metadata))
    assert.match((await page.textContent(`tr[data-node="${id}"]`)) ?? '', /metadata copy/);
  assert.match((await page.textContent(`tr[data-node="${victimId}"] .last-seen`)) ?? '', /ago/);

  // A node down while objects are written: the copies it misses wait in the writers' queues.
  await victim.kill();
  const client = s3Client(viewer.endpoint, viewer);
  t.after(() => client.destroy());
  await client.send(new CreateBucketCommand({ Bucket: 'pages' }));
  for (let i = 0; i < 4; i++)
    await client.send(
      new PutObjectCommand({ Bucket: 'pages', Key: `o/${i}`, Body: randomBytes(150 * 1024) }),
    );
  await waitFor(
    async () => {
      await open(page, `${console}#cluster`);
      return (
        (await page.textContent(`tr[data-node="${victimId}"] td.down`)) === 'down' &&
        (await page.$(`tr[data-resync="${victimId}"]`)) !== null
      );
    },
    'the page shows the node down and copies waiting for it',
    60_000,
  );
  const pending = Number(await page.textContent(`tr[data-resync="${victimId}"] td.num`));
  assert.ok(pending > 0, `copies waiting: ${pending}`);
  assert.equal(await page.textContent('#cluster-health p'), 'Degraded');
  assert.match((await page.textContent('#cluster-health')) ?? '', new RegExp(victimId.slice(0, 16)));
  await shot(page, 'cluster-degraded');

  // Back: the queue drains and the page says so.
  await victim.start();
  await waitFor(
    async () => {
      await open(page, `${console}#cluster`);
      return (
        (await page.$(`tr[data-resync="${victimId}"]`)) === null &&
        (await page.textContent('#cluster-health p')) === 'Healthy'
      );
    },
    'the page shows the copies written and the cluster healthy',
    120_000,
  );
  assert.match((await page.textContent('#cluster-resync')) ?? '', /[1-9]\d* missed block copies written/);

  // A scrub pass started from the page is reported by it.
  await page.click('#scrub-now');
  await page.waitForSelector('#message.ok:has-text("Scrub pass started")');
  await waitFor(
    async () => {
      await open(page, `${console}#cluster`);
      return /Last pass finished .*blocks .* checked/.test((await page.textContent('#cluster-scrub')) ?? '');
    },
    'the page reports the scrub pass',
    60_000,
  );
  assert.deepEqual(violations, []);
});

test('the console sets versioning and lifecycle rules, and lists, downloads and deletes versions as object lock allows', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const server = await startServerFor(t);
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('dialog', (d) => void d.accept());
  const violations = watchCsp(page);
  const console = `${server.adminEndpoint}/`;
  const admin = { authorization: `Bearer ${server.adminToken}` };
  const bucketInfo = async (name: string) =>
    (await (await fetch(`${server.adminEndpoint}/v1/buckets/${name}`, { headers: admin })).json()) as {
      versioning: string | null;
      lifecycle: string | null;
      policy: string | null;
    };
  await signIn(page, console, server.adminToken);

  // The bucket page: versioning on, a lifecycle rule, both as S3 clients then read them.
  await page.fill('#new-bucket', 'album');
  await page.click('form.inline button[type=submit]');
  await page.waitForSelector('tr[data-bucket="album"]');
  await page.click('tr[data-bucket="album"] a');
  await page.waitForSelector('#bucket-versioning');
  await page.selectOption('#bucket-versioning', 'Enabled');
  await page.fill(
    '#bucket-lifecycle',
    '<LifecycleConfiguration><Rule><ID>drafts</ID><Filter><Prefix>drafts/</Prefix></Filter>' +
      '<Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays>' +
      '</NoncurrentVersionExpiration></Rule></LifecycleConfiguration>',
  );
  await page.fill(
    '#bucket-policy',
    JSON.stringify({
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Allow', Principal: '*', Action: 's3:GetObject', Resource: 'arn:aws:s3:::album/*' },
      ],
    }),
  );
  await page.click('#save-bucket');
  await page.waitForSelector('#message.ok:has-text("Settings of album saved")');
  await page.waitForSelector('#bucket-policy-public:has-text("PUBLIC")');
  const info = await bucketInfo('album');
  assert.equal(info.versioning, 'Enabled');
  assert.match(info.lifecycle ?? '', /<ID>drafts<\/ID>.*<NoncurrentDays>7<\/NoncurrentDays>/);
  assert.match(info.policy ?? '', /"Principal":"\*"/);
  // Once enabled, versioning offers Suspended, never "never enabled".
  await page.waitForSelector('#bucket-versioning option[value=""]', { state: 'detached' });
  assert.notEqual(await page.$('#bucket-versioning option[value="Suspended"]'), null);
  await shot(page, 'bucket-settings');
  // A malformed rule is refused with S3's reason, and nothing of that save is applied.
  await page.selectOption('#bucket-versioning', 'Suspended');
  await page.fill('#bucket-lifecycle', '<LifecycleConfiguration><Rule></Rule></LifecycleConfiguration>');
  await page.click('#save-bucket');
  await page.waitForSelector('#message.error:has-text("lifecycle")');
  assert.equal((await bucketInfo('album')).versioning, 'Enabled');

  // Two uploads of one name make two versions; the older one downloads as it was, then is deleted.
  const v1 = randomBytes(70_000);
  const v2 = randomBytes(50_000);
  await open(page, `${console}#objects/album`);
  for (const buffer of [v1, v2]) {
    await page.setInputFiles('#upload-file', { name: 'cover.bin', mimeType: 'image/png', buffer });
    await page.click('#upload');
    await page.waitForSelector(
      `#message.ok:has-text("Uploaded cover.bin (${Math.round(buffer.length / 102.4) / 10} KiB)")`,
    );
    await page.waitForSelector('tr[data-object="cover.bin"]');
  }
  // The policy set on the bucket page lets anyone read, with no key.
  const anonymous = await fetch(`${server.endpoint}/album/cover.bin`);
  assert.equal(anonymous.status, 200);
  assert.ok(Buffer.from(await anonymous.arrayBuffer()).equals(v2));
  await page.click('tr[data-object="cover.bin"] button:has-text("Versions")');
  await page.waitForSelector('#versions tr[data-version]');
  const rows = await page.$$eval('#versions tr[data-version]', (l) =>
    l.map((r) => [r.getAttribute('data-version'), r.textContent]),
  );
  assert.equal(rows.length, 2);
  assert.match(rows[0]![1]!, /\(current\)/);
  const older = rows[1]![0]!;
  await shot(page, 'versions');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click(`#versions tr[data-version="${older}"] button:has-text("Download")`),
  ]);
  assert.ok(readFileSync((await download.path())!).equals(v1), 'the older version, byte for byte');
  await page.click(`#versions tr[data-version="${older}"] button:has-text("Delete version")`);
  await page.waitForSelector(`#message.ok:has-text("Deleted version ${older}")`);
  await page.waitForSelector(`#versions tr[data-version="${older}"]`, { state: 'detached' });
  assert.equal(await page.$$eval('#versions tr[data-version]', (l) => l.length), 1);
  // Deleting the object leaves a delete marker: the key is gone from the folder, its versions are not.
  await page.click('tr[data-object="cover.bin"] button:has-text("Delete")');
  await page.waitForSelector('tr[data-object="cover.bin"]', { state: 'detached' });
  await page.fill('#versions-key', 'cover.bin');
  await page.click('#show-versions');
  await page.waitForSelector('#versions tr[data-version]:has-text("delete marker")');

  // Object lock: a COMPLIANCE version offers no delete; a GOVERNANCE one only with bypass ticked.
  const client = server.client();
  t.after(() => client.destroy());
  await client.send(new CreateBucketCommand({ Bucket: 'vault', ObjectLockEnabledForBucket: true }));
  const until = new Date(Date.now() + 3600_000);
  for (const mode of ['COMPLIANCE', 'GOVERNANCE'] as const)
    await client.send(
      new PutObjectCommand({
        Bucket: 'vault',
        Key: mode.toLowerCase(),
        Body: mode,
        ObjectLockMode: mode,
        ObjectLockRetainUntilDate: until,
      }),
    );
  await open(page, `${console}#objects/vault`);
  await page.click('tr[data-object="compliance"] button:has-text("Versions")');
  await page.waitForSelector('#versions tr[data-version] td.lock:has-text("COMPLIANCE until")');
  assert.equal(await page.isDisabled('#versions button:has-text("Delete version")'), true);
  await page.click('tr[data-object="governance"] button:has-text("Versions")');
  await page.waitForSelector('#versions tr[data-version] td.lock:has-text("GOVERNANCE until")');
  await page.click('#versions button:has-text("Delete version")');
  await page.waitForSelector('#message.error:has-text("Access Denied")');
  await page.check('#versions-bypass');
  await page.click('#versions button:has-text("Delete version")');
  await page.waitForSelector('#message.ok:has-text("Deleted version")');
  await page.waitForSelector('#versions p.note:has-text("No version of this key")');
  assert.deepEqual(violations, []);
});
