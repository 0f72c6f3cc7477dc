// Real-browser test of the web console (/ui/): Debian's headless chromium driven by
// playwright-core against a real `tokengate serve`, its admin API and a demo upstream.
//
//   TOKENGATE_BIN=build/gateway/tokengate TOKENGATE_DEMO_UPSTREAM=build/gateway/tokengate-demo-upstream \
//     node tests/browser/console.test.mjs
//
// Screenshots go to tests/artifacts/ (git-ignored); TOKENGATE_UPDATE_DOCS_SCREENSHOT=1
// also copies the wide one to docs/console.png for the README.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const TOKENGATE_BIN = process.env.TOKENGATE_BIN || path.join(ROOT, 'build/gateway/tokengate');
const DEMO_UPSTREAM_BIN = process.env.TOKENGATE_DEMO_UPSTREAM || path.join(ROOT, 'build/tools/tokengate-demo-upstream');
const CHROMIUM = process.env.TOKENGATE_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'tests/artifacts');
// Chromium's start alone took over 20 s once while the other tests loaded both
// cores; the start is not what this test measures.
const START_TIMEOUT_MS = 90000;
const STEP_TIMEOUT_MS = 15000;
const TOKEN_RE = /^tg_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$/;

// ------------------------------------------------------------------ dependencies

function loadPlaywright() {
  const require = createRequire(path.join(HERE, 'package.json'));
  try {
    return require('playwright-core');
  } catch {
    // Not installed yet (fresh checkout): install the locked version. playwright-core
    // never downloads a browser; the system chromium is used.
    console.error('console.test: installing playwright-core into tests/browser/node_modules');
    const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: HERE, stdio: 'inherit' });
    assert.equal(r.status, 0, 'npm ci in tests/browser failed');
    return require('playwright-core');
  }
}

// ------------------------------------------------------------------ processes

const children = [];

// Starts a process and resolves once it has printed every `listening on HOST:PORT`
// line that `want` asks for; stderr is kept for error messages.
function startProcess(name, args, want) {
  return new Promise((resolve, reject) => {
    const child = spawn(args[0], args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    const lines = [];
    const found = {};
    let buffer = '';
    const timer = setTimeout(() => fail(`did not log ${want.join(', ')} within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    function fail(why) {
      clearTimeout(timer);
      reject(new Error(`${name} ${why}; stderr:\n${lines.slice(-50).join('\n')}`));
    }
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        lines.push(line);
        const m = /listening on (\[[^\]]+\]|[^\s:]+):(\d+)(?: \((\w+)\))?/.exec(line);
        if (m) {
          const kind = m[3] || 'public';
          if (!(kind in found)) found[kind] = { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
          if (want.every((k) => k in found)) {
            clearTimeout(timer);
            resolve({ child, found, lines });
          }
        }
      }
    });
    child.on('exit', (code) => fail(`exited with ${code}`));
    child.on('error', (e) => fail(`could not start: ${e.message}`));
  });
}

function stopAll() {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  }
}

function cli(...args) {
  const r = spawnSync(TOKENGATE_BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 });
  assert.equal(r.status, 0, `tokengate ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function createTokenWithCli(config, ...args) {
  const token = cli('token', 'create', '--config', config, ...args).split('\n')[0].trim();
  assert.match(token, TOKEN_RE, 'token create printed no token on its first line');
  return token;
}

// One GET through the gateway's public listener.
function publicGet(endpoint, target, token) {
  return new Promise((resolve, reject) => {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    const req = http.request({ host: endpoint.host, port: endpoint.port, path: target, method: 'GET', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.setTimeout(STEP_TIMEOUT_MS, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

// The identity headers the demo upstream saw, lower-cased names.
function upstreamHeaders(response) {
  assert.equal(response.status, 200, `expected 200 from the upstream, got ${response.status}: ${response.body}`);
  const echo = JSON.parse(response.body);
  const map = {};
  for (const [name, value] of echo.headers) map[name.toLowerCase()] = value;
  return map;
}

async function pollUntil(what, fn, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ------------------------------------------------------------------ the test

async function main() {
  for (const [what, file] of [['tokengate', TOKENGATE_BIN], ['demo upstream', DEMO_UPSTREAM_BIN], ['chromium', CHROMIUM]]) {
    assert.ok(fs.existsSync(file), `${what} not found at ${file} (scripts/setup.sh installs chromium)`);
  }
  const { chromium } = loadPlaywright();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokengate-ui-'));
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  let context;
  try {
    const upstream = await startProcess('tokengate-demo-upstream', [DEMO_UPSTREAM_BIN, '--listen', '127.0.0.1:0'], ['public']);
    const up = upstream.found.public;
    const config = path.join(dir, 'tokengate.yaml');
    fs.writeFileSync(config, `listen: 127.0.0.1:0
workers: 1
admin:
  listen: 127.0.0.1:0
store:
  path: ${path.join(dir, 'tokens')}
  key_file: ${path.join(dir, 'tokengate.key')}
upstreams:
  demo: { url: "http://${up.host}:${up.port}" }
roles:
  reader: { permissions: [orders.read] }
  writer: { permissions: [orders.read, orders.write] }
groups:
  ops: { roles: [writer], permissions: [billing.read] }
licenses: [pro, enterprise]
routes:
  - path: /api/orders/**
    upstream: demo
    require: { permissions: [orders.read] }
  - path: /api/**
    upstream: demo
`);
    // The store is locked while the gateway runs: tokens made by the CLI come first.
    const adminToken = createTokenWithCli(config, '--name', 'admin', '--permission', 'tokengate.admin');
    createTokenWithCli(config, '--name', 'nightly-batch', '--role', 'reader', '--expires', '3d');
    createTokenWithCli(config, '--name', 'short-lived', '--role', 'reader', '--expires', '3s');
    createTokenWithCli(config, '--name', 'billing', '--group', 'ops', '--license', 'enterprise', '--expires', '90d');

    const gateway = await startProcess('tokengate serve', [TOKENGATE_BIN, 'serve', '--config', config], ['public', 'admin']);
    const pub = gateway.found.public;
    const admin = gateway.found.admin;
    const origin = `http://${admin.host}:${admin.port}`;

    const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokengate-ui-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'],
      timeout: START_TIMEOUT_MS,
    });
    context.setDefaultTimeout(STEP_TIMEOUT_MS);
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
    const page = context.pages()[0] || (await context.newPage());

    // Whatever the server sends, the console must work under the strictest policy
    // the admin API sends (docs/admin-api.md, "Headers on every answer"): enforce
    // `default-src 'self'` on the page ourselves.
    const serverCsp = [];
    await page.route(`${origin}/ui/**`, async (route) => {
      const response = await route.fetch();
      const headers = response.headers();
      if (headers['content-security-policy']) serverCsp.push(headers['content-security-policy']);
      headers['content-security-policy'] = "default-src 'self'";
      await route.fulfill({ response, headers });
    });
    const problems = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) problems.push('console: ' + m.text());
    });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    const foreign = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(origin + '/')) foreign.push(r.url());
    });

    // ---- the assets, as the admin listener serves them
    for (const [file, type] of [['', 'text/html'], ['app.js', 'text/javascript'], ['app.css', 'text/css']]) {
      const r = await context.request.get(`${origin}/ui/${file}`);
      assert.equal(r.status(), 200, `/ui/${file}`);
      assert.ok(r.headers()['content-type'].startsWith(type), `/ui/${file} content type ${r.headers()['content-type']}`);
    }

    // ---- sign in: a wrong token is refused, the admin token is accepted
    await page.goto(`${origin}/ui/`);
    await page.getByLabel('Admin token').fill('tg_000000000000_' + '0'.repeat(38));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#sign-in-error').filter({ hasText: 'not accepted' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused token must not be kept');

    await page.getByLabel('Admin token').fill(adminToken);
    await page.getByLabel('Admin token').press('Enter');
    await page.locator('#tokens').waitFor({ state: 'visible' });
    assert.equal(await page.getByLabel('Admin token').inputValue(), '', 'the sign-in field is cleared');
    assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('tokengate.adminToken')), adminToken);

    const row = (name) => page.locator('#token-rows tr', { has: page.locator('.name', { hasText: new RegExp(`^${name}$`) }) });
    for (const name of ['admin', 'nightly-batch', 'short-lived', 'billing']) await row(name).waitFor();

    // ---- expiry marks: 3 days is "soon", 90 days is not; 3 s is expired once it has passed
    assert.ok(await row('nightly-batch').evaluate((r) => r.classList.contains('is-soon')));
    assert.equal(await row('nightly-batch').locator('.badge').textContent(), 'expires soon');
    assert.equal(await row('billing').locator('.badge').count(), 0);
    const shortExpiry = Date.parse(await row('short-lived').locator('td[data-label="Expires"]').getAttribute('title'));
    await pollUntil('the 3 s token to expire', () => Date.now() > shortExpiry);
    await page.getByRole('button', { name: 'Refresh' }).click();
    await pollUntil('the expired mark', () => row('short-lived').evaluate((r) => r.classList.contains('is-expired')));
    assert.equal(await row('short-lived').locator('.badge').textContent(), 'expired');

    // ---- filter box
    await page.getByLabel('Filter').fill('bill');
    await pollUntil('the filter', async () => (await page.locator('#token-rows tr').count()) === 1);
    assert.equal(await page.locator('#token-rows tr .name').textContent(), 'billing');
    await page.getByLabel('Filter').fill('enterprise');  // matches licenses too
    await pollUntil('the filter by license', async () => (await page.locator('#token-rows tr').count()) === 1);
    await page.getByLabel('Filter').fill('');

    // ---- create, with pickers filled from /v1/config
    await page.getByRole('button', { name: 'New token' }).click();
    const dialog = page.locator('#token-dialog');
    await dialog.waitFor({ state: 'visible' });
    for (const n of ['reader', 'writer']) await dialog.locator('#f-roles').getByLabel(n).waitFor();
    await dialog.locator('#f-groups').getByLabel('ops').waitFor();
    for (const n of ['pro', 'enterprise']) await dialog.locator('#f-licenses').getByLabel(n).waitFor();
    await dialog.getByLabel('Name').fill('ci-reader');
    await dialog.getByLabel('Description').fill('made by the browser test');
    await dialog.locator('#f-roles').getByLabel('reader').check();
    await dialog.locator('#f-licenses').getByLabel('pro').check();
    await dialog.getByLabel('Permissions').fill('reports.view, audit.read');
    const in30d = new Date(Date.now() + 30 * 86400e3).toISOString().slice(0, 10);
    await dialog.getByLabel('Expires').fill(in30d);
    await dialog.getByLabel('Rate limit').fill('600/m');
    await dialog.getByLabel('Burst').fill('5');
    await dialog.getByRole('button', { name: 'Create' }).click();

    const secretDialog = page.locator('#secret-dialog');
    await secretDialog.waitFor({ state: 'visible' });
    assert.match(await secretDialog.textContent(), /cannot be viewed\s+again/);
    const plaintext = (await page.locator('#secret-value').textContent()).trim();
    assert.match(plaintext, TOKEN_RE);
    const newId = plaintext.slice(3, 15);

    // The copy button puts exactly the plaintext on the clipboard (compared in the page).
    await secretDialog.getByRole('button', { name: 'Copy' }).click();
    await page.locator('#secret-copy-status').filter({ hasText: 'Copied' }).waitFor();
    assert.ok(await page.evaluate(async () => (await navigator.clipboard.readText()) === document.getElementById('secret-value').textContent));
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-secret.png') });

    // ---- the new token works through the PUBLIC listener, with its identity
    let seen = upstreamHeaders(await publicGet(pub, '/api/orders/17', plaintext));
    assert.equal(seen['x-auth-subject'], newId);
    assert.equal(seen['x-auth-name'], 'ci-reader');
    assert.equal(seen['x-auth-roles'], 'reader');
    assert.equal(seen['x-auth-permissions'], 'audit.read,orders.read,reports.view');
    assert.equal(seen['x-auth-licenses'], 'pro');
    assert.equal(seen['x-auth-groups'], '');

    // ---- closing the dialog removes the plaintext from the page and from storage
    // The text goes in the same task as the close: the dialog's `close` event runs
    // later, and a page already showing the dialog closed must not still hold it.
    assert.equal(await page.evaluate((s) => {
      document.getElementById('secret-close').click();
      return document.documentElement.outerHTML.includes(s);
    }, plaintext.slice(16)), false, 'the plaintext outlived the close');
    await secretDialog.waitFor({ state: 'hidden' });
    await assertGone(page, plaintext);
    await row('ci-reader').waitFor();
    assert.equal(await row('ci-reader').locator('td[data-label="ID"]').textContent(), newId);
    assert.equal(await row('ci-reader').locator('td[data-label="Rate limit"]').textContent(), '600/m, burst 5');
    assert.equal(await row('billing').locator('td[data-label="Rate limit"]').textContent(), 'default');
    await page.screenshot({ path: path.join(ARTIFACTS, 'console.png') });

    // ---- rotate without grace: a new plaintext, shown the same way; the old one stops at once
    await row('ci-reader').getByRole('button', { name: 'Rotate ci-reader' }).click();
    await page.locator('#rotate-dialog').waitFor({ state: 'visible' });
    await page.getByLabel('Old secret keeps working for').selectOption('0');
    await page.locator('#rotate-dialog').getByRole('button', { name: 'Rotate' }).click();
    await secretDialog.waitFor({ state: 'visible' });
    const rotated = (await page.locator('#secret-value').textContent()).trim();
    assert.match(rotated, TOKEN_RE);
    assert.notEqual(rotated, plaintext);
    assert.equal(rotated.slice(3, 15), newId, 'rotation keeps the id');
    assert.equal((await publicGet(pub, '/api/orders/17', plaintext)).status, 401, 'the old secret must stop working');
    assert.equal(upstreamHeaders(await publicGet(pub, '/api/orders/17', rotated))['x-auth-subject'], newId);
    await page.keyboard.press('Escape');  // Escape closes it too, and must clear it the same way
    await secretDialog.waitFor({ state: 'hidden' });
    await assertGone(page, rotated);
    await assertGone(page, plaintext);

    // ---- edit: rename and add a group; the grants change at the gateway at once
    await row('ci-reader').getByRole('button', { name: 'Edit ci-reader' }).click();
    await dialog.waitFor({ state: 'visible' });
    assert.equal(await dialog.getByLabel('Name').inputValue(), 'ci-reader');
    assert.ok(await dialog.locator('#f-roles').getByLabel('reader').isChecked());
    assert.equal(await dialog.getByLabel('Expires').inputValue(), in30d);
    await dialog.getByLabel('Name').fill('ci-ops');
    await dialog.locator('#f-groups').getByLabel('ops').check();
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await row('ci-ops').waitFor();
    seen = upstreamHeaders(await publicGet(pub, '/api/orders/17', rotated));
    assert.equal(seen['x-auth-name'], 'ci-ops');
    assert.equal(seen['x-auth-groups'], 'ops');
    assert.equal(seen['x-auth-roles'], 'reader,writer');

    // ---- API data is text, never markup: a name made of HTML stays inert
    const evil = '<img src=x onerror="window.__pwned=1">';
    await page.getByRole('button', { name: 'New token' }).click();
    await dialog.getByLabel('Name').fill(evil);
    await dialog.getByRole('button', { name: 'Create' }).click();
    await secretDialog.waitFor({ state: 'visible' });
    await secretDialog.getByRole('button', { name: /close/ }).click();
    await pollUntil('the HTML-named row', async () =>
      (await page.locator('#token-rows .name').allTextContents()).includes(evil));
    assert.equal(await page.locator('#token-rows img').count(), 0, 'a token name became an element');
    assert.equal(await page.evaluate(() => window.__pwned), undefined);

    // ---- delete, with confirmation: Cancel keeps it, Delete removes it
    await row('ci-ops').getByRole('button', { name: 'Delete ci-ops' }).click();
    await page.locator('#delete-dialog').getByRole('button', { name: 'Cancel' }).click();
    await row('ci-ops').waitFor();
    await row('ci-ops').getByRole('button', { name: 'Delete ci-ops' }).click();
    assert.match(await page.locator('#delete-dialog').textContent(), new RegExp(newId));
    await page.locator('#delete-dialog').getByRole('button', { name: 'Delete' }).click();
    await row('ci-ops').waitFor({ state: 'detached' });
    assert.equal((await publicGet(pub, '/api/orders/17', rotated)).status, 401, 'a deleted token must fail');

    // ---- keyboard: the create dialog opens from the keyboard, focuses Name, Escape closes
    await page.getByRole('button', { name: 'New token' }).focus();
    await page.keyboard.press('Enter');
    await dialog.waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => document.activeElement.id), 'f-name');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });

    // ---- every control has an accessible name
    const unlabelled = await page.evaluate(() =>
      Array.from(document.querySelectorAll('input, select, button'))
        .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map((e) => e.outerHTML));
    assert.deepEqual(unlabelled, []);

    // ---- narrow window: no horizontal scrolling, every row a card
    await page.setViewportSize({ width: 390, height: 800 });
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
      'the page scrolls sideways at 390 px');
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-narrow.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });

    // ---- sign out forgets the admin token
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#sign-in').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.equal(await page.locator('#token-rows tr').count(), 0);

    assert.deepEqual(problems, [], 'console errors or CSP violations');
    assert.deepEqual(foreign, [], 'requests to other origins');
    if (process.env.TOKENGATE_UPDATE_DOCS_SCREENSHOT) {
      fs.copyFileSync(path.join(ARTIFACTS, 'console.png'), path.join(ROOT, 'docs/console.png'));
    }
    console.log(`console.test: ok (server CSP: ${serverCsp[0] || 'none sent'}; screenshots in ${ARTIFACTS})`);
  } finally {
    if (context) await context.close().catch(() => {});
    stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The plaintext must be nowhere the page keeps: not in the document (markup or
// form values), not in either storage, and not in the JS heap once collected.
async function assertGone(page, plaintext) {
  const secret = plaintext.slice(16);  // the secret part alone
  const where = await page.evaluate((s) => {
    const found = [];
    if (document.documentElement.outerHTML.includes(s)) found.push('document HTML');
    if (document.body.innerText.includes(s)) found.push('visible text');
    for (const e of document.querySelectorAll('input, textarea, select')) if (String(e.value).includes(s)) found.push('form value ' + e.id);
    for (const store of [sessionStorage, localStorage]) {
      for (let i = 0; i < store.length; ++i) {
        const k = store.key(i);
        if (k.includes(s) || String(store.getItem(k)).includes(s)) found.push('storage ' + k);
      }
    }
    const selection = String(window.getSelection());
    if (selection.includes(s)) found.push('selection');
    return found;
  }, secret);
  assert.deepEqual(where, [], 'the plaintext is still in the page');
  assert.ok(!(await heapHolds(page, secret)), 'the plaintext is still reachable from the page\'s JS heap');
}

// Collects garbage in the page and searches a V8 heap snapshot for `needle`: only
// strings still reachable from something the page keeps survive the collection.
async function heapHolds(page, needle) {
  const cdp = await page.context().newCDPSession(page);
  try {
    await cdp.send('HeapProfiler.enable');
    await cdp.send('HeapProfiler.collectGarbage');
    let snapshot = '';
    cdp.on('HeapProfiler.addHeapSnapshotChunk', (e) => (snapshot += e.chunk));
    await cdp.send('HeapProfiler.takeHeapSnapshot', { reportProgress: false, captureNumericValue: false });
    return snapshot.includes(needle);
  } finally {
    await cdp.detach().catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error('console.test: FAILED\n' + (e && e.stack ? e.stack : e));
    stopAll();
    process.exit(1);
  },
);
