// The web console's doors, tried the way an attacker would: a wrong or missing admin token, the token in a URL,
// a state-changing call with the session cookie but without the CSRF token, one from another origin or site,
// a page reached over plain HTTP from the network or under another host name (DNS rebinding), an ended
// session; and what the node answers a signed-in operator: cookie flags, CSP, downloads that cannot run as
// pages of the console's origin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServerFor } from '../../helpers/server.js';
import { call, signIn, bearerApi } from '../../helpers/admin-http.js';
import { startTlsServer } from '../../security/ssec-helpers.js';
import { ConsoleSessions, SESSION_IDLE_MS, SESSION_LIFETIME_MS } from '../../../src/api/admin/sessions.js';

test('sign-in: a wrong or missing token is refused and sets no cookie; the token in a URL counts for nothing', async (t) => {
  const server = await startServerFor(t);
  const json = { 'content-type': 'application/json' };
  for (const body of [JSON.stringify({ token: 'wrong' }), JSON.stringify({}), '{"token": 42}', 'not json']) {
    const r = await call(server, 'POST', '/v1/session', { headers: json, body });
    assert.ok(r.status === 403 || r.status === 400, `${body}: ${r.status}`);
    assert.equal(r.headers['set-cookie'], undefined);
  }
  const inUrl = await call(server, 'POST', `/v1/session?token=${encodeURIComponent(server.adminToken)}`);
  assert.equal(inUrl.status, 403);
  assert.equal(inUrl.headers['set-cookie'], undefined);
  // A sign-in posted by another site's form is refused even with the right token.
  const crossSite = await call(server, 'POST', '/v1/session', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://evil.example' },
    body: `token=${encodeURIComponent(server.adminToken)}`,
  });
  assert.equal(crossSite.status, 403);
  // The console's own form works (as a fallback for a page whose script did not load).
  const form = await call(server, 'POST', '/v1/session', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `token=${encodeURIComponent(server.adminToken)}`,
  });
  assert.equal(form.status, 200);
  // A huge sign-in body is refused without being held.
  const huge = await call(server, 'POST', '/v1/session', {
    headers: json,
    body: Buffer.alloc(200_000, 0x61),
  });
  assert.equal(huge.status, 413);
  assert.match(server.stderr(), /console sign-in refused/);
  assert.doesNotMatch(server.stderr() + server.stdout(), new RegExp(server.adminToken));
});

test('the session cookie is HttpOnly, SameSite=Strict, Path=/; pages and API answers carry a strict CSP', async (t) => {
  const server = await startServerFor(t);
  const { setCookie } = await signIn(server);
  assert.match(setCookie, /^coffre_session=[A-Za-z0-9_-]{43};/);
  assert.match(setCookie, /; HttpOnly/);
  assert.match(setCookie, /; SameSite=Strict/);
  assert.match(setCookie, /; Path=\//);
  assert.doesNotMatch(setCookie, /Secure/, 'plain HTTP (loopback) cannot use a Secure cookie');
  for (const path of ['/', '/console/console.js', '/v1/buckets', '/v1/session']) {
    const r = await call(server, 'GET', path);
    const csp = String(r.headers['content-security-policy']);
    assert.match(csp, /default-src 'self'/, path);
    assert.match(csp, /script-src 'self'(;|$)/, path);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/, path);
    assert.match(csp, /frame-ancestors 'none'/, path);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
  }
  const page = await call(server, 'GET', '/');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  const html = page.body.toString();
  assert.doesNotMatch(
    html,
    /<script>|<script [^>]*>[^<]|\son[a-z]+=|style=/i,
    'no inline script, handler or style',
  );
  assert.doesNotMatch(html, /https?:\/\//, 'no asset from elsewhere');
  assert.equal((await call(server, 'GET', '/console/../../etc/passwd')).status, 403);
  assert.equal((await call(server, 'POST', '/')).status, 405);
});

test('under TLS the session cookie is Secure and __Host- prefixed', async (t) => {
  const { server, ca } = await startTlsServer();
  t.after(async () => {
    await server.stop();
    server.cleanup();
  });
  const { setCookie, cookie, csrf } = await signIn(server, ca);
  assert.match(setCookie, /^__Host-coffre_session=/);
  assert.match(setCookie, /; Secure/);
  assert.match(setCookie, /; HttpOnly/);
  assert.match(setCookie, /; SameSite=Strict/);
  const r = await call(server, 'POST', '/v1/buckets', {
    headers: {
      cookie,
      'x-coffre-csrf': csrf,
      'content-type': 'application/json',
      origin: server.adminEndpoint,
    },
    body: JSON.stringify({ name: 'over-tls' }),
    ca,
  });
  assert.equal(r.status, 200, r.body.toString());
});

test('CSRF: a state-changing call with the cookie but without the token, or from another origin, is refused', async (t) => {
  const server = await startServerFor(t);
  const { cookie, csrf } = await signIn(server);
  const create = (headers: Record<string, string>, name: string) =>
    call(server, 'POST', '/v1/buckets', {
      headers: { cookie, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ name }),
    });
  const own = `http://127.0.0.1:${server.adminPort}`;
  const noToken = await create({ origin: own }, 'csrf-none');
  assert.equal(noToken.status, 403);
  assert.match(String(noToken.json().error), /CSRF/);
  assert.equal((await create({ origin: own, 'x-coffre-csrf': 'x'.repeat(43) }, 'csrf-wrong')).status, 403);
  assert.equal(
    (await create({ 'x-coffre-csrf': csrf, origin: 'http://evil.example' }, 'csrf-origin')).status,
    403,
  );
  assert.equal(
    (await create({ 'x-coffre-csrf': csrf, 'sec-fetch-site': 'cross-site' }, 'csrf-site')).status,
    403,
  );
  // Form-encoded, the way a cross-site <form> would post: still needs the header.
  const form = await call(server, 'POST', '/v1/buckets', {
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'name=csrf-form',
  });
  assert.equal(form.status, 403);
  // Object writes and deletes are state-changing too.
  const put = await call(server, 'PUT', '/v1/objects/any/key', { headers: { cookie }, body: 'x' });
  assert.equal(put.status, 403);
  const list = await call(server, 'GET', '/v1/buckets', { headers: { cookie } });
  assert.deepEqual(
    (list.json() as unknown as { name: string }[]).filter((b) => b.name.startsWith('csrf')),
    [],
    'no refused call created anything',
  );
  const ok = await create({ origin: own, 'x-coffre-csrf': csrf, 'sec-fetch-site': 'same-origin' }, 'csrf-ok');
  assert.equal(ok.status, 200, ok.body.toString());
  // The bearer-token API (the CLI) needs no CSRF token: no browser sends it by itself.
  const bearer = await call(server, 'GET', '/v1/buckets', {
    headers: { authorization: `Bearer ${server.adminToken}` },
  });
  assert.equal(bearer.status, 200);
  const wrongBearer = await call(server, 'GET', '/v1/buckets', {
    headers: { authorization: 'Bearer nope', cookie },
  });
  assert.equal(wrongBearer.status, 403, 'a wrong bearer token is not rescued by a cookie');
  // Signing out ends the session: the cookie is worth nothing after.
  const out = await call(server, 'DELETE', '/v1/session', { headers: { cookie, 'x-coffre-csrf': csrf } });
  assert.equal(out.status, 200);
  assert.match(String(out.headers['set-cookie']?.[0]), /Max-Age=0/);
  assert.equal((await call(server, 'GET', '/v1/buckets', { headers: { cookie } })).status, 401);
  assert.equal((await call(server, 'GET', '/v1/session', { headers: { cookie } })).status, 401);
});

test('plain HTTP: the console answers only this machine, under a loopback name', async (t) => {
  const server = await startServerFor(t);
  const { cookie } = await signIn(server);
  // A loopback peer that relays for someone else (a proxy on this host, not trusted) is the network.
  const relayed = { 'x-forwarded-for': '203.0.113.7' };
  const page = await call(server, 'GET', '/', { headers: relayed });
  assert.equal(page.status, 403);
  assert.match(page.body.toString(), /only to this machine: serve TLS/);
  const signInRelayed = await call(server, 'POST', '/v1/session', {
    headers: { ...relayed, 'content-type': 'application/json' },
    body: JSON.stringify({ token: server.adminToken }),
  });
  assert.equal(signInRelayed.status, 403);
  assert.equal((await call(server, 'GET', '/v1/buckets', { headers: { ...relayed, cookie } })).status, 403);
  // A page of another site whose name was made to resolve to 127.0.0.1 (DNS rebinding).
  const rebound = await call(server, 'GET', '/', { headers: { host: `evil.example:${server.adminPort}` } });
  assert.equal(rebound.status, 403);
  for (const host of ['localhost', '127.0.0.1', '[::1]'].map((h) => `${h}:${server.adminPort}`))
    assert.equal((await call(server, 'GET', '/', { headers: { host } })).status, 200, host);
});

test('objects through the console: refused without sign-in, downloads are attachments, SSE-C only locally', async (t) => {
  const server = await startServerFor(t);
  const { cookie, csrf } = await signIn(server);
  const own = { cookie, 'x-coffre-csrf': csrf, origin: `http://127.0.0.1:${server.adminPort}` };
  assert.equal(
    (
      await call(server, 'POST', '/v1/buckets', {
        headers: { ...own, 'content-type': 'application/json' },
        body: '{"name":"web"}',
      })
    ).status,
    200,
  );
  assert.equal((await call(server, 'GET', '/v1/objects/web')).status, 403);
  assert.equal((await call(server, 'PUT', '/v1/objects/web/a.html', { body: 'x' })).status, 403);
  const html = '<script>alert(1)</script>';
  const put = await call(server, 'PUT', '/v1/objects/web/dir/a.html', {
    headers: { ...own, 'content-type': 'text/html' },
    body: html,
  });
  assert.equal(put.status, 200, put.body.toString());
  const got = await call(server, 'GET', '/v1/objects/web/dir/a.html', { headers: { cookie } });
  assert.equal(got.status, 200);
  assert.equal(got.body.toString(), html);
  assert.equal(got.headers['content-type'], 'application/octet-stream');
  assert.match(String(got.headers['content-disposition']), /^attachment; filename\*=UTF-8''a.html$/);
  const listed = (
    await call(server, 'GET', '/v1/objects/web?prefix=&delimiter=/', { headers: { cookie } })
  ).json();
  assert.deepEqual(listed.prefixes, ['dir/']);
  // Path tricks name no other bucket or file.
  for (const path of [
    '/v1/objects/web/%E0%A4%A',
    '/v1/objects/nope/x',
    '/v1/objects/web/' + 'k'.repeat(2000),
  ]) {
    const r = await call(server, 'GET', path, { headers: { cookie } });
    assert.ok(r.status >= 400 && r.status < 500, `${path}: ${r.status}`);
  }
  // SSE-C from the network over plain HTTP is refused before any byte is stored.
  const key = Buffer.alloc(32, 7).toString('base64');
  const ssec = {
    'x-amz-server-side-encryption-customer-algorithm': 'AES256',
    'x-amz-server-side-encryption-customer-key': key,
  };
  const remote = await call(server, 'PUT', '/v1/objects/web/secret', {
    headers: { authorization: `Bearer ${server.adminToken}`, 'x-forwarded-for': '203.0.113.7', ...ssec },
    body: 'secret',
  });
  assert.equal(remote.status, 400);
  const local = await call(server, 'PUT', '/v1/objects/web/secret', {
    headers: { ...own, ...ssec },
    body: 'secret',
  });
  assert.equal(local.status, 200, local.body.toString());
  assert.equal((await call(server, 'GET', '/v1/objects/web/secret', { headers: { cookie } })).status, 400);
  const back = await call(server, 'GET', '/v1/objects/web/secret', { headers: { cookie, ...ssec } });
  assert.equal(back.body.toString(), 'secret');
  const del = await call(server, 'DELETE', '/v1/objects/web/secret', { headers: own });
  assert.equal(del.status, 204);
});

test('sessions end after their idle time and their lifetime, and are capped in number', () => {
  let now = 1_000_000;
  const sessions = new ConsoleSessions(() => now);
  const a = sessions.create();
  assert.ok(sessions.find(a.id));
  now += SESSION_IDLE_MS - 1;
  assert.ok(sessions.find(a.id), 'used within the idle time');
  now += SESSION_IDLE_MS + 1;
  assert.equal(sessions.find(a.id), undefined, 'idle too long');
  const start = now;
  const b = sessions.create();
  while (now - start < SESSION_LIFETIME_MS - SESSION_IDLE_MS) {
    now += SESSION_IDLE_MS / 2;
    assert.ok(sessions.find(b.id), 'kept alive by use');
  }
  now = start + SESSION_LIFETIME_MS + 1;
  assert.equal(sessions.find(b.id), undefined, 'past its lifetime, however used');
  assert.equal(sessions.find('x'.repeat(43)), undefined);
  for (let i = 0; i < 300; i++) sessions.create();
  assert.ok(sessions.size <= 256);
});

test('bucket settings set through the admin API are checked as S3 checks them, and S3 clients see them', async (t) => {
  const server = await startServerFor(t);
  const api = bearerApi(server);
  const bearer = api.headers;
  const patch = (body: unknown) => api.patchBucket('site', body);
  assert.equal(
    (await call(server, 'POST', '/v1/buckets', { headers: bearer, body: '{"name":"site"}' })).status,
    200,
  );
  const rule = { allowedOrigins: ['https://example.com'], allowedMethods: ['GET'] };
  const refused: unknown[] = [
    { cors: 'yes' },
    { cors: [] },
    { cors: [{ allowedOrigins: ['*'] }] },
    { cors: [{ ...rule, allowedMethods: ['PATCH'] }] },
    { cors: [{ ...rule, maxAgeSeconds: -1 }] },
    { cors: Array.from({ length: 101 }, () => rule) },
    { tags: ['a'] },
    { tags: { 'aws:x': '1' } },
    { tags: { a: 1 } },
    { tags: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) },
    { defaultEncryption: 'aws:kms' },
    { defaultEncryption: 'AES256' }, // no SSE-S3 keyring on this node
    { tags: { ok: 'yes' }, cors: [{ ...rule, allowedMethods: ['PATCH'] }] }, // nothing is half-applied
  ];
  for (const body of refused) {
    const r = await patch(body);
    assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${r.body.toString()}`);
  }
  const unchanged = (await call(server, 'GET', '/v1/buckets/site', { headers: bearer })).json();
  assert.deepEqual(unchanged.tags, {});
  assert.deepEqual(unchanged.cors, []);
  const ok = await patch({ cors: [{ ...rule, maxAgeSeconds: 60 }], tags: { team: 'web' } });
  assert.equal(ok.status, 200, ok.body.toString());
  const grant = JSON.stringify({ accessKeyId: server.accessKeyId, read: true, owner: true });
  assert.equal(
    (await call(server, 'POST', '/v1/buckets/site/allow', { headers: bearer, body: grant })).status,
    200,
  );
  const client = server.client();
  t.after(() => client.destroy());
  const { GetBucketCorsCommand, GetBucketTaggingCommand } = await import('@aws-sdk/client-s3');
  const cors = await client.send(new GetBucketCorsCommand({ Bucket: 'site' }));
  assert.deepEqual(cors.CORSRules?.[0]?.AllowedOrigins, ['https://example.com']);
  assert.equal(cors.CORSRules?.[0]?.MaxAgeSeconds, 60);
  const tags = await client.send(new GetBucketTaggingCommand({ Bucket: 'site' }));
  assert.deepEqual(tags.TagSet, [{ Key: 'team', Value: 'web' }]);
  const removed = await patch({ cors: null, tags: null });
  assert.equal(removed.status, 200);
  assert.deepEqual(removed.json().tags, {});
  assert.equal(
    (await call(server, 'PATCH', '/v1/buckets/none', { headers: bearer, body: '{}' })).status,
    404,
  );
  // The matrix and the metrics the console reads.
  const matrix = (await call(server, 'GET', '/v1/permissions', { headers: bearer })).json();
  assert.deepEqual(
    (matrix.buckets as { name: string }[]).map((b) => b.name),
    ['site'],
  );
  const metrics = (await call(server, 'GET', '/v1/metrics', { headers: bearer })).json() as unknown as {
    name: string;
  }[];
  for (const name of ['coffre_s3_requests_total', 'coffre_s3_bytes_total', 'coffre_data_disk_bytes'])
    assert.ok(
      metrics.some((m) => m.name === name),
      name,
    );
  assert.equal((await call(server, 'GET', '/v1/metrics')).status, 403);
});
