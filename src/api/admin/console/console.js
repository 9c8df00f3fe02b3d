// The coffre web console: a page of the node's admin API, calling that API with the session cookie the
// browser holds (HttpOnly: never seen here) and the CSRF token the sign-in gave, sent in a header with every
// call that changes something. All text goes into the page as text (never as HTML), and nothing is loaded
// from anywhere but this node. SSE-C keys typed here are sent with the one request that needs them and
// never stored.
'use strict';

const CSRF_HEADER = 'X-Coffre-CSRF';
let session = null; // { csrfToken, secure, fromLoopback, nodeId }
let pageTimer = null;
// The last upload's progress, kept across the redraw that follows it so the bar still says how it ended.
let lastUpload = { percent: 0 };
// Where the objects page's listing starts (after which key or prefix), for the folder it was set in.
let listFrom = { place: '', after: '' };
// The key whose versions the objects page shows, for the folder it was opened in (kept across redraws).
let openVersions = null;

// ---- small helpers -------------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces an element's content, leaving out the parts a page does not show (null, undefined, false).
function show(root, ...parts) {
  root.replaceChildren(...parts.filter((p) => p !== null && p !== undefined && p !== false));
}

function table(headers, rows) {
  return h(
    'table',
    {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headers.map((t) => h('th', {}, t)),
      ),
    ),
    h('tbody', {}, rows),
  );
}

function say(text, kind = 'ok') {
  const m = document.getElementById('message');
  m.textContent = text;
  m.className = kind;
}

// Sizes of data in binary units; capacities (given as 10G, as `coffre layout assign` takes them) in decimal.
function bytes(n, decimal = false) {
  if (n === null || n === undefined) return '-';
  const base = decimal ? 1000 : 1024;
  const units = decimal ? ['B', 'kB', 'MB', 'GB', 'TB'] : ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function parseSize(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$/i.exec(text);
  if (!m) return undefined;
  const power = { '': 0, k: 1, m: 2, g: 3, t: 4 }[m[2].toLowerCase()];
  const base = m[3].toLowerCase().startsWith('i') ? 1024 : 1000;
  return Math.round(Number(m[1]) * base ** power);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '-';
}

// Saves what a link points at as a file (a detached link may not be followed by every browser).
function saveLink(href, name) {
  const a = h('a', { href, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

function pathOf(...segments) {
  return segments.map(encodeURIComponent).join('/');
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (method !== 'GET' && method !== 'HEAD') headers[CSRF_HEADER] = session?.csrfToken ?? '';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { error: text };
  }
  if (res.status === 401) {
    showSignIn('Your session has ended: sign in again.');
    throw new ApiError(401, data.error ?? 'signed out');
  }
  if (!res.ok) throw new ApiError(res.status, data.error ?? `error ${res.status}`);
  return data;
}

// Runs an action from a button or form, reporting its outcome below the page.
async function act(what, fn) {
  try {
    const r = await fn();
    say(what);
    return r;
  } catch (err) {
    say(`${err.message}`, 'error');
    return undefined;
  }
}

// ---- sign-in ---------------------------------------------------------------------------------------------

function showSignIn(note) {
  session = null;
  clearInterval(pageTimer);
  document.getElementById('nav').hidden = true;
  document.getElementById('sign-out').hidden = true;
  document.getElementById('page').hidden = true;
  document.getElementById('sign-in').hidden = false;
  document.getElementById('whoami').textContent = '';
  if (note) say(note, 'error');
}

function showApp() {
  document.getElementById('sign-in').hidden = true;
  document.getElementById('nav').hidden = false;
  document.getElementById('sign-out').hidden = false;
  document.getElementById('page').hidden = false;
  const node = session.nodeId ? `node ${session.nodeId.slice(0, 12)}` : 'node';
  document.getElementById('whoami').textContent = `${node} · ${session.secure ? 'TLS' : 'loopback HTTP'}`;
  route();
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById('token');
  const res = await fetch('/v1/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    credentials: 'same-origin',
    body: JSON.stringify({ token: input.value }),
  });
  input.value = '';
  const data = await res.json().catch(() => ({}));
  if (!res.ok) return say(data.error ?? `sign-in refused (${res.status})`, 'error');
  session = data;
  say('Signed in.');
  showApp();
}

async function signOut() {
  await api('DELETE', '/v1/session').catch(() => undefined);
  showSignIn();
  say('Signed out.');
}

// ---- pages -----------------------------------------------------------------------------------------------

const PAGES = {
  buckets: bucketsPage,
  keys: keysPage,
  objects: objectsPage,
  cluster: clusterPage,
  encryption: encryptionPage,
  metrics: metricsPage,
};

// Each drawing of a page is built apart and shown only if no later navigation started meanwhile: a slow
// answer for the page just left never replaces the page the operator went to.
let drawing = 0;

function route() {
  if (!session) return;
  clearInterval(pageTimer);
  const [name, ...rest] = location.hash.slice(1).split('/');
  const page = PAGES[name] ? name : 'buckets';
  for (const a of document.querySelectorAll('nav a'))
    a.classList.toggle('current', a.getAttribute('href') === `#${page}`);
  const hash = location.hash;
  const mine = ++drawing;
  const current = () => mine === drawing;
  const container = document.getElementById('page');
  const root = h('div', {});
  PAGES[page](root, rest.map(decodeURIComponent), current)
    .then(() => {
      if (!current()) return;
      container.replaceChildren(root);
      container.setAttribute('data-drawn', hash); // what the page shows now (tests wait for it)
    })
    .catch((err) => {
      if (current() && err.status !== 401) show(container, h('p', { class: 'down' }, err.message));
    });
}

async function bucketsPage(root) {
  const buckets = await api('GET', '/v1/buckets');
  const name = h('input', { id: 'new-bucket', placeholder: 'bucket name', required: true });
  const create = h(
    'form',
    {
      class: 'inline',
      onsubmit: async (e) => {
        e.preventDefault();
        if (
          await act(`Bucket ${name.value} created.`, () => api('POST', '/v1/buckets', { name: name.value }))
        )
          route();
      },
    },
    h('label', { for: 'new-bucket' }, 'New bucket'),
    name,
    h('button', { type: 'submit' }, 'Create'),
  );
  const detail = h('div', { id: 'bucket-detail' });
  const rows = buckets.map((b) =>
    h(
      'tr',
      { 'data-bucket': b.name },
      h(
        'td',
        {},
        h(
          'a',
          { href: '#buckets', onclick: (e) => (e.preventDefault(), showBucket(detail, b.name)) },
          b.name,
        ),
      ),
      h('td', {}, when(b.createdAt)),
      h('td', {}, h('a', { href: `#objects/${encodeURIComponent(b.name)}` }, 'objects')),
    ),
  );
  show(
    root,
    h('h1', {}, 'Buckets'),
    create,
    buckets.length ? table(['Name', 'Created', ''], rows) : h('p', { class: 'note' }, 'No bucket yet.'),
    detail,
  );
}

// An XML document one element a line, indented by depth, for reading and editing in a text area.
function indentXml(text) {
  let depth = 0;
  return (
    text
      // Only between tags, never inside an element's text (an empty <Prefix></Prefix> stays empty).
      .replace(/>(?=<[^/])/g, '>\n')
      .replace(/(<\/[^>]+>)(?=<\/)/g, '$1\n')
      .split('\n')
      .map((line) => {
        if (line.startsWith('</')) depth--;
        const out = '  '.repeat(Math.max(0, depth)) + line;
        if (/^<[^/?!]/.test(line) && !line.endsWith('/>') && !/<\/[^>]+>$/.test(line)) depth++;
        return out;
      })
      .join('\n')
  );
}

async function showBucket(detail, name) {
  const b = await api('GET', `/v1/buckets/${pathOf(name)}`);
  const enc = h(
    'select',
    { id: 'bucket-encryption' },
    h(
      'option',
      { value: '', selected: !b.defaultEncryption },
      'none (a request may still ask for SSE-C or SSE-S3)',
    ),
    h('option', { value: 'AES256', selected: b.defaultEncryption === 'AES256' }, 'SSE-S3 (AES256)'),
  );
  const tags = h('textarea', { id: 'bucket-tags', placeholder: 'key=value, one a line' });
  tags.value = Object.entries(b.tags)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n');
  const cors = h('textarea', {
    id: 'bucket-cors',
    placeholder: '[{"allowedOrigins": ["https://example.com"], "allowedMethods": ["GET"]}]',
  });
  cors.value = b.cors.length ? JSON.stringify(b.cors, null, 2) : '';
  // Versioning, once set, can only be suspended (and not at all under object lock), as in S3.
  const versioning = h(
    'select',
    { id: 'bucket-versioning' },
    b.versioning ? null : h('option', { value: '', selected: true }, 'never enabled (one version per key)'),
    h('option', { value: 'Enabled', selected: b.versioning === 'Enabled' }, 'Enabled'),
    b.objectLock
      ? null
      : h('option', { value: 'Suspended', selected: b.versioning === 'Suspended' }, 'Suspended'),
  );
  const lifecycle = h('textarea', {
    id: 'bucket-lifecycle',
    class: 'code',
    placeholder:
      '<LifecycleConfiguration><Rule><ID>old-logs</ID><Filter><Prefix>logs/</Prefix></Filter>' +
      '<Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule></LifecycleConfiguration>',
  });
  lifecycle.value = b.lifecycle ? indentXml(b.lifecycle) : '';
  const policy = h('textarea', {
    id: 'bucket-policy',
    placeholder:
      '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", ' +
      '"Action": "s3:GetObject", "Resource": "arn:aws:s3:::' +
      b.name +
      '/*"}]}',
  });
  // Shown laid out when it is valid JSON (it is stored as written, and saved as edited here).
  try {
    policy.value = b.policy ? JSON.stringify(JSON.parse(b.policy), null, 2) : '';
  } catch {
    policy.value = b.policy ?? '';
  }
  const shown = { lifecycle: lifecycle.value, policy: policy.value };
  const rule = b.objectLock?.rule;
  const lock = b.objectLock
    ? rule
      ? `enabled; new versions are kept ${rule.days ? `${rule.days} days` : `${rule.years} years`} (${rule.mode}) unless they ask otherwise`
      : 'enabled, with no default retention'
    : 'not enabled (it is chosen when a bucket is created, with an S3 client)';
  const save = async () => {
    let corsRules = null;
    if (cors.value.trim()) {
      try {
        corsRules = JSON.parse(cors.value);
      } catch {
        return say('CORS rules must be JSON: a list of rules', 'error');
      }
    }
    const tagMap = {};
    for (const line of tags.value.split('\n')) {
      if (!line.trim()) continue;
      const eq = line.indexOf('=');
      tagMap[(eq < 0 ? line : line.slice(0, eq)).trim()] = eq < 0 ? '' : line.slice(eq + 1).trim();
    }
    const body = {
      defaultEncryption: enc.value || null,
      tags: Object.keys(tagMap).length ? tagMap : null,
      cors: corsRules,
    };
    // Sent only when edited: the node keeps a policy as its owner wrote it, not as this page lays it out.
    if (lifecycle.value !== shown.lifecycle) body.lifecycle = lifecycle.value.trim() || null;
    if (policy.value !== shown.policy) body.policy = policy.value.trim() || null;
    if (versioning.value) body.versioning = versioning.value;
    if (await act(`Settings of ${name} saved.`, () => api('PATCH', `/v1/buckets/${pathOf(name)}`, body)))
      showBucket(detail, name);
  };
  const remove = async () => {
    if (!confirm(`Delete bucket ${name}? It must be empty.`)) return;
    if (await act(`Bucket ${name} deleted.`, () => api('DELETE', `/v1/buckets/${pathOf(name)}`))) route();
  };
  detail.replaceChildren(
    h(
      'div',
      { class: 'panel' },
      h('h2', {}, `Bucket ${b.name}`),
      h(
        'p',
        {},
        `${b.objects} objects, ${bytes(b.bytes)} · created ${when(b.createdAt)} · id `,
        h('code', {}, b.id),
      ),
      h('div', { class: 'row' }, h('label', { for: 'bucket-encryption' }, 'Default encryption'), enc),
      h('label', { for: 'bucket-tags' }, 'Tags'),
      tags,
      h('label', { for: 'bucket-cors' }, 'CORS rules (JSON)'),
      cors,
      h('div', { class: 'row' }, h('label', { for: 'bucket-versioning' }, 'Versioning'), versioning),
      h('p', { class: 'note', id: 'bucket-object-lock' }, `Object lock: ${lock}.`),
      h('label', { for: 'bucket-lifecycle' }, 'Lifecycle rules (S3 LifecycleConfiguration XML; empty: none)'),
      lifecycle,
      h(
        'label',
        { for: 'bucket-policy' },
        'Bucket policy (JSON, as PutBucketPolicy takes it; empty: none) · ',
        h(
          'span',
          { id: 'bucket-policy-public', class: b.policyPublic ? 'down' : 'note' },
          b.policy === null
            ? 'no policy: access is per key'
            : b.policyPublic
              ? 'PUBLIC: it lets anyone in without a key'
              : 'not public',
        ),
      ),
      policy,
      h('h2', {}, 'Keys with access'),
      b.keys.length
        ? table(
            ['Key', 'Name', 'Read', 'Write', 'Owner'],
            b.keys.map((k) =>
              h(
                'tr',
                {},
                h('td', { class: 'mono' }, k.accessKeyId),
                h('td', {}, k.name ?? ''),
                ...['read', 'write', 'owner'].map((p) => h('td', {}, k[p] ? 'yes' : '')),
              ),
            ),
          )
        : h('p', { class: 'note' }, 'No key has access yet.'),
      h(
        'div',
        { class: 'row' },
        h('button', { id: 'save-bucket', type: 'button', onclick: save }, 'Save settings'),
        h(
          'button',
          { id: 'delete-bucket', type: 'button', class: 'danger', onclick: remove },
          'Delete bucket',
        ),
      ),
    ),
  );
}

async function keysPage(root) {
  const matrix = await api('GET', '/v1/permissions');
  const name = h('input', { id: 'new-key', placeholder: 'key name', required: true });
  const canCreate = h('input', { id: 'new-key-create-bucket', type: 'checkbox' });
  const secretBox = h('div', { id: 'new-secret' });
  const create = h(
    'form',
    {
      class: 'inline',
      onsubmit: async (e) => {
        e.preventDefault();
        const k = await act(`Key ${name.value} created.`, () =>
          api('POST', '/v1/keys', { name: name.value, allowCreateBucket: canCreate.checked }),
        );
        if (!k) return;
        await keysPage(root);
        // The secret is shown this once, in this page only: it is not kept anywhere the page can read again.
        document
          .getElementById('new-secret')
          .replaceChildren(
            h(
              'div',
              { class: 'secret' },
              h('p', {}, 'Copy the secret now: it is shown only this once.'),
              h('p', {}, 'Access key id: ', h('code', { id: 'created-key-id' }, k.accessKeyId)),
              h('p', {}, 'Secret access key: ', h('code', { id: 'created-key-secret' }, k.secretAccessKey)),
            ),
          );
      },
    },
    h('label', { for: 'new-key' }, 'New key'),
    name,
    canCreate,
    h('label', { for: 'new-key-create-bucket' }, 'may create buckets'),
    h('button', { type: 'submit' }, 'Create'),
  );
  const keyRows = matrix.keys.map((k) =>
    h(
      'tr',
      { 'data-key': k.accessKeyId },
      h('td', { class: 'mono' }, k.accessKeyId),
      h('td', {}, k.name),
      h(
        'td',
        {},
        h('input', {
          type: 'checkbox',
          id: `create-bucket-${k.accessKeyId}`,
          'aria-label': `${k.name} may create buckets`,
          checked: k.allowCreateBucket,
          onchange: async (e) => {
            const box = e.target;
            const ok = await act(`${k.name} ${box.checked ? 'may' : 'may no longer'} create buckets.`, () =>
              api('PATCH', `/v1/keys/${pathOf(k.accessKeyId)}`, { allowCreateBucket: box.checked }),
            );
            if (!ok) box.checked = !box.checked;
          },
        }),
      ),
      h(
        'td',
        {},
        h(
          'button',
          {
            type: 'button',
            class: 'danger',
            onclick: async () => {
              if (!confirm(`Delete key ${k.name} (${k.accessKeyId})?`)) return;
              if (
                await act(`Key ${k.name} deleted.`, () => api('DELETE', `/v1/keys/${pathOf(k.accessKeyId)}`))
              )
                keysPage(root);
            },
          },
          'Delete',
        ),
      ),
    ),
  );
  const toggle = (bucket, key, right) => async (e) => {
    const box = e.target;
    const action = box.checked ? 'allow' : 'deny';
    const ok = await act(`${action === 'allow' ? 'Granted' : 'Revoked'} ${right} on ${bucket}.`, () =>
      api('POST', `/v1/buckets/${pathOf(bucket)}/${action}`, { accessKeyId: key, [right]: true }),
    );
    if (!ok) box.checked = !box.checked;
  };
  const matrixTable = table(
    ['Key', ...matrix.buckets.map((b) => b.name)],
    matrix.keys.map((k) =>
      h(
        'tr',
        {},
        h('th', {}, k.name),
        matrix.buckets.map((b) => {
          const p = b.permissions[k.accessKeyId] ?? {};
          return h(
            'td',
            {},
            ['read', 'write', 'owner'].map((right) => {
              const id = `perm-${k.accessKeyId}-${b.name}-${right}`;
              return h(
                'span',
                {},
                h('input', {
                  type: 'checkbox',
                  id,
                  checked: Boolean(p[right]),
                  onchange: toggle(b.name, k.accessKeyId, right),
                }),
                h('label', { for: id }, right[0].toUpperCase() + ' '),
              );
            }),
          );
        }),
      ),
    ),
  );
  show(
    root,
    h('h1', {}, 'Access keys'),
    create,
    secretBox,
    matrix.keys.length
      ? table(['Access key id', 'Name', 'Creates buckets', ''], keyRows)
      : h('p', { class: 'note' }, 'No key yet.'),
    h('h2', {}, 'Permissions (R read, W write, O owner)'),
    matrix.keys.length && matrix.buckets.length
      ? matrixTable
      : h('p', { class: 'note' }, 'Create a key and a bucket first.'),
  );
}

// An SSE-C key as the aws CLI takes it (32 characters) or as S3 sends it (base64 of 32 bytes); base64 out.
function sseCKey(text) {
  if (!text) return undefined;
  const raw = new TextEncoder().encode(text);
  if (raw.length === 32) return btoa(String.fromCharCode(...raw));
  try {
    if (atob(text).length === 32) return text;
  } catch {
    // not base64
  }
  throw new Error('an SSE-C key is 32 characters, or the base64 of 32 bytes');
}

function sseCHeaders(key) {
  return key
    ? {
        'x-amz-server-side-encryption-customer-algorithm': 'AES256',
        'x-amz-server-side-encryption-customer-key': key,
      }
    : {};
}

async function objectsPage(root, [bucketArg, ...prefixParts]) {
  const buckets = await api('GET', '/v1/buckets');
  if (!buckets.length) {
    show(root, h('h1', {}, 'Objects'), h('p', { class: 'note' }, 'Create a bucket first.'));
    return;
  }
  const bucket = buckets.some((b) => b.name === bucketArg) ? bucketArg : buckets[0].name;
  const prefix = prefixParts.join('/');
  const go = (b, p) => {
    location.hash = `#objects/${encodeURIComponent(b)}${p ? '/' + p.split('/').map(encodeURIComponent).join('/') : ''}`;
  };
  const select = h(
    'select',
    { id: 'objects-bucket', onchange: () => go(select.value, '') },
    buckets.map((b) => h('option', { value: b.name, selected: b.name === bucket }, b.name)),
  );
  const place = `${bucket}/${prefix}`;
  const after = listFrom.place === place ? listFrom.after : '';
  const listing = await api(
    'GET',
    `/v1/objects/${pathOf(bucket)}?prefix=${encodeURIComponent(prefix)}&delimiter=/&after=${encodeURIComponent(after)}`,
  );
  const page = (from) => () => {
    listFrom = { place, after: from };
    route();
  };
  const sseAllowed = session.secure || session.fromLoopback;
  const keyInput = h('input', {
    id: 'ssec-key',
    type: 'password',
    autocomplete: 'off',
    placeholder: sseAllowed ? '32 characters or base64' : 'only over TLS or from this machine',
    disabled: !sseAllowed,
  });
  const file = h('input', { id: 'upload-file', type: 'file' });
  const progress = h('progress', { id: 'upload-progress', max: 100, value: lastUpload.percent });
  const upload = () => {
    const f = file.files[0];
    if (!f) return say('Choose a file first.', 'error');
    let key;
    try {
      key = sseCKey(keyInput.value);
    } catch (err) {
      return say(err.message, 'error');
    }
    const xhr = new XMLHttpRequest();
    xhr.open(
      'PUT',
      `/v1/objects/${pathOf(bucket)}/${(prefix + f.name).split('/').map(encodeURIComponent).join('/')}`,
    );
    xhr.setRequestHeader(CSRF_HEADER, session.csrfToken);
    xhr.setRequestHeader('Content-Type', f.type || 'application/octet-stream');
    for (const [k, v] of Object.entries(sseCHeaders(key))) xhr.setRequestHeader(k, v);
    lastUpload = { percent: 0 };
    progress.value = 0;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) progress.value = lastUpload.percent = Math.round((e.loaded / e.total) * 100);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        progress.value = lastUpload.percent = 100;
        say(`Uploaded ${f.name} (${bytes(f.size)}).`);
        route();
      } else {
        let msg = `upload failed (${xhr.status})`;
        try {
          msg = JSON.parse(xhr.responseText).error ?? msg;
        } catch {
          // not JSON
        }
        say(msg, 'error');
      }
    };
    xhr.onerror = () => say('upload failed: the connection broke', 'error');
    xhr.send(f);
  };
  const objectUrl = (objectKey, versionId) =>
    `/v1/objects/${pathOf(bucket)}/${objectKey.split('/').map(encodeURIComponent).join('/')}` +
    (versionId ? `?versionId=${encodeURIComponent(versionId)}` : '');
  // The object (or one version of it: `o.versionId`) saved as a file.
  const download = async (o) => {
    let key;
    try {
      key = sseCKey(keyInput.value);
    } catch (err) {
      return say(err.message, 'error');
    }
    const url = objectUrl(o.key, o.versionId);
    const name = o.key.slice(o.key.lastIndexOf('/') + 1);
    if (!key && o.encryption === 'sse-c')
      return say(`${o.key} is encrypted with SSE-C: type its key first`, 'error');
    if (!key) {
      // A plain download streams straight to disk: the browser follows the link with its session cookie.
      saveLink(url, name);
      return;
    }
    // A header cannot ride on a link, so an SSE-C object comes through fetch (held in memory, then saved).
    const res = await fetch(url, { headers: sseCHeaders(key), credentials: 'same-origin' });
    if (!res.ok)
      return say((await res.json().catch(() => ({}))).error ?? `download failed (${res.status})`, 'error');
    const blobUrl = URL.createObjectURL(await res.blob());
    saveLink(blobUrl, name);
    setTimeout(() => URL.revokeObjectURL(blobUrl), 60_000);
    say(`Downloaded ${name}.`);
  };
  const remove = async (o) => {
    if (!confirm(`Delete ${o.key}?`)) return;
    if (await act(`Deleted ${o.key}.`, () => api('DELETE', objectUrl(o.key)))) route();
  };
  const versionsPanel = h('div', { id: 'versions' });
  const versionKey = h('input', { id: 'versions-key', placeholder: 'key (also one now deleted)' });
  const bypass = h('input', { id: 'versions-bypass', type: 'checkbox' });
  // Every version of one key, newest first, with what object lock allows for each.
  const showVersions = async (objectKey, after = '') => {
    openVersions = { place, key: objectKey };
    let list;
    try {
      list = await api('GET', `${objectUrl(objectKey)}?versions&after=${encodeURIComponent(after)}`);
    } catch (err) {
      return say(err.message, 'error');
    }
    const lockText = (v) =>
      [
        v.legalHold ? 'legal hold' : '',
        v.retention ? `${v.retention.mode} until ${when(v.retention.until)}` : '',
      ]
        .filter(Boolean)
        .join(', ');
    const removeVersion = async (v) => {
      if (!confirm(`Delete version ${v.versionId} of ${objectKey} for good?`)) return;
      const headers = bypass.checked ? { 'x-amz-bypass-governance-retention': 'true' } : {};
      const ok = await act(`Deleted version ${v.versionId} of ${objectKey}.`, async () => {
        const res = await fetch(objectUrl(objectKey, v.versionId), {
          method: 'DELETE',
          headers: { [CSRF_HEADER]: session.csrfToken, ...headers },
          credentials: 'same-origin',
        });
        if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error ?? `error ${res.status}`);
        return true;
      });
      // The listing may change too (the current version gone): the page is redrawn with this panel open.
      if (ok) route();
    };
    versionsPanel.replaceChildren(
      h(
        'div',
        { class: 'panel' },
        h('h2', {}, `Versions of ${objectKey}`),
        list.versions.length
          ? table(
              ['Version', 'Modified', 'Size', 'Encryption', 'Object lock', ''],
              list.versions.map((v) =>
                h(
                  'tr',
                  { 'data-version': v.versionId },
                  h(
                    'td',
                    { class: 'mono' },
                    v.versionId,
                    v.isLatest ? ' (current)' : '',
                    v.deleteMarker ? ' · delete marker' : '',
                  ),
                  h('td', {}, when(v.lastModified)),
                  h('td', { class: 'num' }, v.deleteMarker ? '-' : bytes(v.size)),
                  h(
                    'td',
                    {},
                    !v.encryption || v.encryption === 'plaintext' ? '' : v.encryption.toUpperCase(),
                  ),
                  h('td', { class: 'lock' }, lockText(v)),
                  h(
                    'td',
                    {},
                    v.deleteMarker
                      ? null
                      : h(
                          'button',
                          {
                            type: 'button',
                            class: 'secondary',
                            onclick: () => download({ ...v, key: objectKey }),
                          },
                          'Download',
                        ),
                    ' ',
                    h(
                      'button',
                      {
                        type: 'button',
                        class: 'danger',
                        title: v.lockedForBypass
                          ? 'object lock keeps this version (legal hold or COMPLIANCE retention)'
                          : v.locked
                            ? 'GOVERNANCE retention: tick bypass to delete it'
                            : '',
                        disabled: v.lockedForBypass,
                        onclick: () => removeVersion(v),
                      },
                      'Delete version',
                    ),
                  ),
                ),
              ),
            )
          : h('p', { class: 'note' }, 'No version of this key.'),
        h(
          'div',
          { class: 'row' },
          bypass,
          h('label', { for: 'versions-bypass' }, 'bypass GOVERNANCE retention when deleting'),
          list.next
            ? h(
                'button',
                { type: 'button', class: 'secondary', onclick: () => showVersions(objectKey, list.next) },
                'More versions',
              )
            : null,
        ),
      ),
    );
  };
  const crumbs = [h('a', { class: 'crumb', onclick: () => go(bucket, '') }, bucket)];
  let acc = '';
  for (const part of prefix.split('/').filter(Boolean)) {
    acc += part + '/';
    const target = acc;
    crumbs.push(' / ', h('a', { class: 'crumb', onclick: () => go(bucket, target) }, part));
  }
  const rows = [
    ...listing.prefixes.map((p) =>
      h(
        'tr',
        {},
        h('td', {}, h('a', { class: 'crumb', onclick: () => go(bucket, p) }, p.slice(prefix.length))),
        h('td', {}),
        h('td', {}),
        h('td', {}),
        h('td', {}),
      ),
    ),
    ...listing.objects.map((o) =>
      h(
        'tr',
        { 'data-object': o.key },
        h('td', { class: 'mono' }, o.key.slice(prefix.length)),
        h('td', { class: 'num' }, bytes(o.size)),
        h('td', {}, when(o.lastModified)),
        h('td', {}, o.encryption === 'plaintext' ? '' : o.encryption.toUpperCase()),
        h(
          'td',
          {},
          h('button', { type: 'button', class: 'secondary', onclick: () => download(o) }, 'Download'),
          ' ',
          h('button', { type: 'button', class: 'secondary', onclick: () => showVersions(o.key) }, 'Versions'),
          ' ',
          h('button', { type: 'button', class: 'danger', onclick: () => remove(o) }, 'Delete'),
        ),
      ),
    ),
  ];
  show(
    root,
    h('h1', {}, 'Objects'),
    h(
      'div',
      { class: 'row' },
      h('label', { for: 'objects-bucket' }, 'Bucket'),
      select,
      h('span', {}, ...crumbs),
    ),
    h(
      'div',
      { class: 'panel' },
      h(
        'div',
        { class: 'row' },
        h('label', { for: 'upload-file' }, `Upload to ${bucket}/${prefix}`),
        file,
        h('button', { id: 'upload', type: 'button', onclick: upload }, 'Upload'),
        progress,
      ),
      h(
        'div',
        { class: 'row' },
        h('label', { for: 'ssec-key' }, 'SSE-C key (optional, for uploads and downloads)'),
        keyInput,
        h('span', { class: 'note' }, 'sent with each request that needs it, never stored'),
      ),
    ),
    rows.length
      ? table(['Name', 'Size', 'Modified', 'Encryption', ''], rows)
      : h('p', { class: 'note' }, 'Nothing here yet.'),
    h(
      'div',
      { class: 'row' },
      after ? h('button', { type: 'button', class: 'secondary', onclick: page('') }, 'First page') : null,
      listing.next
        ? h(
            'button',
            { id: 'next-page', type: 'button', class: 'secondary', onclick: page(listing.next) },
            'Next page',
          )
        : null,
    ),
    h(
      'form',
      {
        class: 'inline',
        onsubmit: (e) => {
          e.preventDefault();
          if (versionKey.value) showVersions(versionKey.value);
        },
      },
      h('label', { for: 'versions-key' }, 'Show versions of'),
      versionKey,
      h('button', { id: 'show-versions', type: 'submit', class: 'secondary' }, 'Show versions'),
    ),
    versionsPanel,
  );
  if (openVersions?.place === place) await showVersions(openVersions.key);
}

// The cluster page's parts, each from one section of GET /v1/status.
function healthPart(health) {
  if (!health) return h('p', { class: 'note' }, 'No health report from this node.');
  const degraded = health.degraded ?? health.state === 'degraded';
  // Problems are sentences, or { problem, todo } pairs, as the node words them.
  const problems = (health.problems ?? []).map((p) =>
    typeof p === 'string' ? { problem: p } : { problem: p.problem, todo: p.todo },
  );
  return h(
    'div',
    { id: 'cluster-health' },
    h('p', { class: degraded ? 'down' : 'up' }, degraded ? 'Degraded' : 'Healthy'),
    problems.length
      ? h(
          'ul',
          {},
          problems.map((p) =>
            h('li', {}, p.problem, p.todo ? h('span', { class: 'note' }, ` — ${p.todo}`) : null),
          ),
        )
      : null,
    health.advice?.length
      ? h(
          'ul',
          { class: 'note' },
          health.advice.map((a) => h('li', {}, a)),
        )
      : null,
  );
}

function metadataPart(md, leader, copies) {
  if (!md) return h('p', { class: 'note' }, 'No metadata replication on this node.');
  const roleText = { primary: 'the leader', copy: 'a copy', alone: 'alone (no copies)', none: 'not a copy' };
  return h(
    'div',
    { id: 'cluster-metadata' },
    h(
      'p',
      {},
      'Leader: ',
      h('code', { id: 'metadata-leader', title: leader ?? '' }, leader ? leader.slice(0, 16) : 'none known'),
      ` · term ${md.term} · copies: `,
      copies.length ? copies.map((c) => c.slice(0, 16)).join(', ') : 'none',
    ),
    h(
      'p',
      {},
      `This node is ${roleText[md.role] ?? md.role}, at log entry ${md.position.seq}` +
        ` (committed ${md.committed ?? '-'})${md.resyncing ? ', being rebuilt from a snapshot' : ''}.`,
    ),
    md.copies.length
      ? table(
          ['Copy', 'Holds up to', 'Behind by', 'State'],
          md.copies.map((c) =>
            h(
              'tr',
              { 'data-copy': c.id },
              h('td', { class: 'mono' }, c.id.slice(0, 16)),
              h('td', { class: 'num' }, c.acked),
              h('td', { class: 'num' }, Math.max(0, md.position.seq - c.acked)),
              h('td', { class: c.up ? 'up' : 'down' }, c.up ? 'up' : `failing: ${c.error ?? ''}`),
            ),
          ),
        )
      : null,
  );
}

function rebalanceReport(r) {
  return (
    `${r.checked} blocks looked at, ${r.copied} copied, ${r.removed} removed, ` +
    `${r.left} left for the next pass`
  );
}

function rebalancePart(rb) {
  if (!rb) return h('p', { class: 'note' }, 'No rebalancer on this node.');
  return h(
    'div',
    { id: 'cluster-rebalance' },
    h(
      'p',
      {},
      rb.running
        ? `A pass is running${rb.currentPass ? ` for layout version ${rb.currentPass.layoutVersion}: so far ${rebalanceReport(rb.currentPass)}` : ''}.`
        : rb.settledVersion === null
          ? 'Not settled for any layout version yet.'
          : `Settled at layout version ${rb.settledVersion}: every block of this node is where it belongs.`,
    ),
    rb.lastPass
      ? h(
          'p',
          { class: 'note' },
          `Last pass (layout version ${rb.lastPass.layoutVersion}): ${rebalanceReport(rb.lastPass)}.`,
        )
      : null,
  );
}

function resyncPart(resync, health, short) {
  const owed = health?.underReplicated ?? [];
  if (!resync && !owed.length) return h('p', { class: 'note' }, 'No block resync on this node.');
  const mine = resync?.nodes ?? [];
  return h(
    'div',
    { id: 'cluster-resync' },
    h(
      'p',
      {},
      resync
        ? `${resync.running ? 'Copying now. ' : ''}${resync.copied} missed block copies written since this node started; ` +
            (mine.length ? `${mine.reduce((a, n) => a + n.pending, 0)} still wait.` : 'none waits.')
        : '',
    ),
    mine.length
      ? table(
          ['Owed to node', 'Copies waiting', 'Last error'],
          mine.map((n) =>
            h(
              'tr',
              { 'data-resync': n.node },
              h('td', { class: 'mono', title: n.node }, short(n.node)),
              h('td', { class: 'num' }, n.pending),
              h('td', {}, n.lastError ?? ''),
            ),
          ),
        )
      : null,
    owed.length
      ? h(
          'p',
          { class: 'note' },
          'Across the nodes this node reaches: ',
          owed.map((o) => `${o.pending} copies for ${short(o.node)}`).join(', '),
          '.',
        )
      : null,
  );
}

function scrubPart(scrub) {
  if (!scrub) return h('p', { class: 'note' }, 'No scrub on this node (a gateway holds no blocks).');
  const pass = scrub.current ?? scrub.lastPass;
  const figures = (p) =>
    `${p.checked} blocks (${bytes(p.bytes)}) checked, ${p.corrupt} damaged, ${p.repaired} repaired, ` +
    `${p.unrepairable} beyond repair, ${p.copiesGiven} copies given to other nodes`;
  return h(
    'div',
    { id: 'cluster-scrub' },
    h(
      'p',
      {},
      scrub.running && scrub.current
        ? `A pass is running since ${when(new Date(scrub.current.startedAt).toISOString())}: so far ${figures(scrub.current)}.`
        : pass
          ? `Last pass finished ${when(pass.finishedAt ? new Date(pass.finishedAt).toISOString() : null)}: ${figures(pass)}.`
          : 'No pass yet.',
    ),
    h(
      'p',
      { class: 'note' },
      scrub.nextAt
        ? `Next pass ${when(new Date(scrub.nextAt).toISOString())}`
        : 'Passes run only when asked for',
      ` · at most ${bytes(scrub.bytesPerSecond)}/s · `,
      h(
        'button',
        {
          id: 'scrub-now',
          type: 'button',
          class: 'secondary',
          disabled: scrub.running,
          onclick: async () => {
            if (await act('Scrub pass started.', () => api('POST', '/v1/scrub'))) route();
          },
        },
        'Scrub now',
      ),
    ),
  );
}

// The nodes holding the metadata tables, and which of them leads now: the elected leader when this node
// knows one (it moves by itself when a node fails), else the layout's metadata node.
function metadataRoles(layout, md) {
  const voters = [layout.metadata, ...(layout.metadataCopies ?? [])].filter(Boolean);
  const leader = md?.leader ?? (md?.role === 'primary' ? session.nodeId : undefined) ?? layout.metadata;
  return { leader, copies: voters.filter((id) => id !== leader) };
}

// How long ago a time was, in words an operator reads at a glance.
function ago(iso) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  const text = s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : `${Math.floor(s / 3600)} h`;
  return `${text} ago`;
}

async function clusterPage(root, _args, current) {
  const [status, layout] = await Promise.all([api('GET', '/v1/status'), api('GET', '/v1/layout')]);
  const md = status.metadata;
  const { leader, copies: metaCopies } = metadataRoles(layout, md);
  const copies = new Set(metaCopies);
  const short = (id) => (id ? id.slice(0, 16) : '-');
  const nodeRows = status.nodes.map((n) =>
    h(
      'tr',
      { 'data-node': n.id },
      h('td', { class: 'mono', title: n.id }, n.id.slice(0, 16) + (n.self ? ' (this node)' : '')),
      h('td', { class: 'mono' }, n.addr ?? '-'),
      h(
        'td',
        {},
        n.role + (n.id === leader ? ' · metadata leader' : copies.has(n.id) ? ' · metadata copy' : ''),
      ),
      h('td', {}, n.zone ?? '-'),
      h('td', { class: 'num' }, n.capacity === null ? '-' : bytes(n.capacity, true)),
      h('td', { class: n.up ? 'up' : 'down' }, n.up ? 'up' : 'down'),
      h(
        'td',
        { class: 'num' },
        n.disk ? `${bytes(n.disk.total - n.disk.free)} of ${bytes(n.disk.total)}` : '-',
      ),
      h(
        'td',
        { class: 'last-seen', title: n.lastSeen ?? '' },
        n.self ? 'now' : `${ago(n.lastSeen)}${n.lastSeen ? ` (${when(n.lastSeen)})` : ''}`,
      ),
    ),
  );
  const staged = Object.entries(layout.staged);
  const stagedRows = staged.map(([id, r]) =>
    h(
      'tr',
      {},
      h('td', { class: 'mono' }, id.slice(0, 16)),
      h(
        'td',
        {},
        r === null
          ? 'remove'
          : r.capacity === null
            ? `gateway in ${r.zone}`
            : `storage in ${r.zone}, ${bytes(r.capacity, true)}`,
      ),
    ),
  );
  const nodeId = h('input', { id: 'assign-node', placeholder: 'node id or prefix', required: true });
  const zone = h('input', { id: 'assign-zone', placeholder: 'zone', value: 'default' });
  const capacity = h('input', { id: 'assign-capacity', placeholder: 'capacity, e.g. 10G' });
  const gateway = h('input', { id: 'assign-gateway', type: 'checkbox' });
  const assign = h(
    'form',
    {
      class: 'inline',
      onsubmit: async (e) => {
        e.preventDefault();
        const body = { nodeId: nodeId.value, zone: zone.value };
        if (gateway.checked) body.gateway = true;
        else {
          const c = parseSize(capacity.value);
          if (!c) return say('give a capacity such as 10G, or tick gateway', 'error');
          body.capacity = c;
        }
        if (await act('Change staged.', () => api('POST', '/v1/layout/assign', body))) route();
      },
    },
    h('label', { for: 'assign-node' }, 'Assign'),
    nodeId,
    zone,
    capacity,
    gateway,
    h('label', { for: 'assign-gateway' }, 'gateway'),
    h('button', { type: 'submit' }, 'Stage'),
    h(
      'button',
      {
        type: 'button',
        class: 'secondary',
        onclick: async () => {
          if (await act('Removal staged.', () => api('POST', '/v1/layout/remove', { nodeId: nodeId.value })))
            route();
        },
      },
      'Stage removal',
    ),
  );
  const next = layout.version + 1;
  const apply = h(
    'button',
    {
      id: 'apply-layout',
      type: 'button',
      disabled: staged.length === 0,
      onclick: async () => {
        if (
          await act(`Layout version ${next} applied.`, () =>
            api('POST', '/v1/layout/apply', { version: next }),
          )
        )
          route();
      },
    },
    `Apply as version ${next}`,
  );
  const rb = status.rebalance;
  show(
    root,
    h('h1', {}, `Cluster · layout version ${layout.version}`),
    table(['Node', 'Address', 'Role', 'Zone', 'Capacity', 'State', 'Disk used', 'Last seen'], nodeRows),
    h('h2', {}, 'Staged changes'),
    staged.length ? table(['Node', 'Change'], stagedRows) : h('p', { class: 'note' }, 'Nothing staged.'),
    assign,
    h(
      'div',
      { class: 'row' },
      apply,
      h('span', { class: 'note' }, 'applies only if the layout is still at version ' + layout.version),
    ),
    h('h2', {}, 'Health'),
    healthPart(status.health),
    h('h2', {}, 'Metadata'),
    metadataPart(md, leader, metaCopies),
    h('h2', {}, 'Rebalance'),
    rebalancePart(rb),
    h('h2', {}, 'Resync'),
    resyncPart(status.resync, status.health, short),
    h('h2', {}, 'Scrub'),
    scrubPart(status.scrub),
  );
  // Nodes' states are refreshed while nothing is staged: a change being prepared is not redrawn under the
  // operator's hands (nor its apply button turned into another version's).
  if (staged.length === 0 && current())
    pageTimer = setInterval(() => {
      if (location.hash.startsWith('#cluster') && !document.activeElement?.closest('form')) route();
    }, 10_000);
}

async function encryptionPage(root) {
  const s = await api('GET', '/v1/sse-s3');
  const state = !s.configured ? 'not set up' : s.unlocked ? 'unlocked' : 'locked';
  const userIds = s.userIds ?? {};
  // Each operator a master key is sealed to: by user id where the keyring keeps their public key, and always
  // by fingerprint (what the sealed message is really encrypted to).
  const recipient = (fp) =>
    h(
      'li',
      { 'data-recipient': fp },
      userIds[fp]
        ? h('span', { class: 'user-id' }, userIds[fp])
        : h('span', { class: 'note' }, 'user id not recorded'),
      ' ',
      h(
        'code',
        { class: 'fingerprint' },
        fp
          .toUpperCase()
          .replace(/(.{4})/g, '$1 ')
          .trim(),
      ),
    );
  const operators = [...new Set((s.keys ?? []).flatMap((k) => k.recipients))];
  const current = (s.keys ?? []).find((k) => k.id === s.current);
  const sealedToAllNow = (k) =>
    current &&
    k.recipients.length === current.recipients.length &&
    k.recipients.every((r) => current.recipients.includes(r));
  show(
    root,
    h('h1', {}, 'Encryption'),
    h(
      'p',
      {},
      'SSE-S3 keyring: ',
      h('span', { id: 'sse-s3-state', class: s.unlocked ? 'up' : 'down' }, state),
      s.keyring ? ` · keyring ${s.keyring}` : '',
      s.v ? ` · format ${s.v}` : '',
    ),
    s.damaged ? h('p', { class: 'down' }, s.damaged) : null,
    !s.configured
      ? h('p', { class: 'note' }, 'Create the keyring with `coffre sse-s3 init --recipient KEY`.')
      : null,
    s.configured && !s.unlocked
      ? h(
          'p',
          { class: 'note' },
          'SSE-S3 requests get 503 until it is unlocked: run `coffre sse-s3 unlock --gpg` on an operator machine (master keys never pass through this page).',
        )
      : null,
    s.keys?.length
      ? table(
          ['Master key', 'Created', 'Sealed to', ''],
          s.keys.map((k) =>
            h(
              'tr',
              { 'data-master-key': k.id },
              h('td', { class: 'mono' }, k.id),
              h('td', {}, when(k.created)),
              h('td', {}, h('ul', { class: 'recipients' }, k.recipients.map(recipient))),
              h('td', {}, k.id === s.current ? 'current: new objects use it' : 'kept to read older objects'),
            ),
          ),
        )
      : null,
    operators.length
      ? h(
          'div',
          {},
          h('h2', {}, 'Operators'),
          h('p', { class: 'note' }, 'Any one of them can unlock the keyring with their private key.'),
          h('ul', { id: 'operators', class: 'recipients' }, operators.map(recipient)),
        )
      : null,
    s.keys?.length
      ? h(
          'div',
          {},
          h('h2', {}, 'Rotation'),
          h(
            'p',
            { id: 'rotation-state' },
            s.keys.every(sealedToAllNow)
              ? `${s.keys.length} master key${s.keys.length === 1 ? '' : 's'}, all sealed to the same operators.`
              : 'Some older master keys are sealed to other operators than the current one: `coffre sse-s3 reseal --recipient …` seals them all to the same set.',
          ),
          h(
            'p',
            { class: 'note' },
            '`coffre sse-s3 rotate` adds a master key for new objects at once; objects already stored keep ' +
              'the key they were written with (nothing is re-encrypted, so there is no progress to wait for), ' +
              'and `reseal` re-encrypts the master keys themselves, in one step.',
          ),
        )
      : null,
    h('p', { class: 'note' }, 'No key material is ever shown here.'),
    h('h2', {}, 'SSE-C'),
    h(
      'p',
      {},
      'Customer keys are given per request (Objects page, or any S3 client) over TLS or from this machine only, and never stored.',
    ),
  );
}

// Live charts from the same figures as /metrics, sampled every two seconds by this page.
const samples = [];
const number = (v) => (v >= 100 ? v.toFixed(0) : v < 1e-6 ? '0' : v.toPrecision(3));
const CHARTS = [
  ['Requests / s', (d) => d.requests, number],
  ['Errors / s (4xx, 5xx)', (d) => d.errors, number],
  ['Mean latency (ms)', (d) => d.latencyMs, number],
  ['Bytes in / s', (d) => d.bytesIn, (v) => bytes(Math.round(v))],
  ['Bytes out / s', (d) => d.bytesOut, (v) => bytes(Math.round(v))],
  ['Data disk used (%)', (d) => d.diskPercent, number],
];

function metricTotals(list) {
  const by = Object.fromEntries(list.map((m) => [m.name, m.values]));
  const sum = (name, pick = () => true) => (by[name] ?? []).filter(pick).reduce((a, v) => a + v.value, 0);
  const disk = Object.fromEntries((by.coffre_data_disk_bytes ?? []).map((v) => [v.labels.kind, v.value]));
  return {
    requests: sum('coffre_s3_requests_total'),
    errors: sum('coffre_s3_requests_total', (v) => Number(v.labels.status) >= 400),
    latencySum: sum('coffre_s3_request_duration_seconds', (v) => v.metricName?.endsWith('_sum')),
    latencyCount: sum('coffre_s3_request_duration_seconds', (v) => v.metricName?.endsWith('_count')),
    bytesIn: sum('coffre_s3_bytes_total', (v) => v.labels.direction === 'in'),
    bytesOut: sum('coffre_s3_bytes_total', (v) => v.labels.direction === 'out'),
    diskPercent: disk.total ? ((disk.total - disk.free) / disk.total) * 100 : 0,
    at: Date.now(),
  };
}

function drawChart(canvas, values, format) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio;
  canvas.height = canvas.clientHeight * ratio;
  const g = canvas.getContext('2d');
  g.scale(ratio, ratio);
  const w = canvas.clientWidth;
  const hgt = canvas.clientHeight;
  const max = Math.max(1e-9, ...values);
  g.strokeStyle = '#d8dde6';
  g.strokeRect(0.5, 0.5, w - 1, hgt - 1);
  g.fillStyle = '#5b6577';
  g.font = '11px sans-serif';
  g.fillText(format(max), 4, 12);
  g.strokeStyle = '#2c5d8f';
  g.lineWidth = 1.5;
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i / Math.max(1, values.length - 1)) * (w - 8) + 4;
    const y = hgt - 4 - (v / max) * (hgt - 20);
    if (i === 0) g.moveTo(x, y);
    else g.lineTo(x, y);
  });
  g.stroke();
}

async function metricsPage(root, _args, current) {
  const grid = h('div', { class: 'charts' });
  const canvases = CHARTS.map(([title]) => {
    const c = h('canvas', {});
    const value = h('span', { class: 'note' });
    grid.append(h('div', { class: 'chart' }, h('h3', {}, title, ' ', value), c));
    return { c, value };
  });
  show(
    root,
    h('h1', {}, 'Metrics'),
    h('p', { class: 'note' }, 'The figures /metrics serves, sampled every 2 s by this page.'),
    grid,
  );
  const tick = async () => {
    const totals = metricTotals(await api('GET', '/v1/metrics'));
    const prev = samples.at(-1)?.totals;
    if (prev) {
      const dt = (totals.at - prev.at) / 1000 || 1;
      const n = totals.latencyCount - prev.latencyCount;
      samples.push({
        totals,
        requests: (totals.requests - prev.requests) / dt,
        errors: (totals.errors - prev.errors) / dt,
        latencyMs: n > 0 ? ((totals.latencySum - prev.latencySum) / n) * 1000 : 0,
        bytesIn: (totals.bytesIn - prev.bytesIn) / dt,
        bytesOut: (totals.bytesOut - prev.bytesOut) / dt,
        diskPercent: totals.diskPercent,
      });
    } else
      samples.push({
        totals,
        requests: 0,
        errors: 0,
        latencyMs: 0,
        bytesIn: 0,
        bytesOut: 0,
        diskPercent: totals.diskPercent,
      });
    if (samples.length > 90) samples.shift();
    CHARTS.forEach(([, pick, format], i) => {
      const values = samples.map(pick);
      drawChart(canvases[i].c, values, format);
      canvases[i].value.textContent = format(values.at(-1) ?? 0);
    });
  };
  await tick();
  if (!current()) return;
  pageTimer = setInterval(() => {
    if (location.hash.startsWith('#metrics')) tick().catch(() => undefined);
  }, 2000);
}

// ---- start -----------------------------------------------------------------------------------------------

document.getElementById('sign-in-form').addEventListener('submit', signIn);
document.getElementById('sign-out').addEventListener('click', signOut);
window.addEventListener('hashchange', () => {
  say('');
  route();
});
fetch('/v1/session', { credentials: 'same-origin' })
  .then(async (res) => {
    if (!res.ok) return showSignIn();
    session = await res.json();
    showApp();
  })
  .catch(() => showSignIn('This node does not answer.'));
