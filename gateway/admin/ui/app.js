// tokengate web console: talks to the admin API (/v1/...) of the listener that served it.
// Plain DOM, no framework. Data from the API is only ever set as textContent, never as HTML.
'use strict';

(() => {
  const kStorageKey = 'tokengate.adminToken';
  const kSoonMs = 7 * 24 * 3600 * 1000;  // "expires soon" = within 7 days

  const $ = (id) => document.getElementById(id);

  // Records without any plaintext (create/rotate responses are stripped before they get here).
  let tokens = [];
  let config = { roles: [], groups: [], licenses: [] };
  let editing = null;  // record being edited, or null when creating
  let acting = null;   // record being rotated or deleted

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function adminToken() {
    return sessionStorage.getItem(kStorageKey);
  }

  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + adminToken(), Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'network', 'The gateway cannot be reached (' + e.message + ').');
    }
    if (response.status === 204) return null;
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = null;
      }
    }
    if (!response.ok) {
      const code = data && data.error ? data.error : 'http_' + response.status;
      const message = data && data.message ? data.message : response.status + ' ' + response.statusText;
      if (response.status === 401 && path !== '/v1/config') signOut('Your admin token was refused: ' + message);
      throw new ApiError(response.status, code, message);
    }
    return data;
  }

  // ------------------------------------------------------------------ config

  // /v1/config may list roles and groups as a map name -> definition, as an array
  // of names, or as an array of {name, ...}; accept all three.
  function names(value) {
    if (!value) return [];
    if (Array.isArray(value)) {
      return value.map((v) => (typeof v === 'string' ? v : v && v.name)).filter((v) => typeof v === 'string');
    }
    if (typeof value === 'object') return Object.keys(value);
    return [];
  }

  function normalizeConfig(data) {
    return {
      roles: names(data && data.roles).sort(),
      groups: names(data && data.groups).sort(),
      licenses: names(data && data.licenses).sort(),
      maxLifetime: data && data.tokens && typeof data.tokens.max_lifetime === 'string' ? data.tokens.max_lifetime : '',
    };
  }

  // ------------------------------------------------------------------ sign in / out

  function showSignedIn(signedIn) {
    $('sign-in').hidden = signedIn;
    $('tokens').hidden = !signedIn;
    $('session').hidden = !signedIn;
  }

  function signOut(message) {
    sessionStorage.removeItem(kStorageKey);
    tokens = [];
    renderTable();
    forgetSecret();
    for (const d of document.querySelectorAll('dialog[open]')) d.close();
    showSignedIn(false);
    showError($('sign-in-error'), message || '');
    $('admin-token').focus();
  }

  async function signIn(token) {
    sessionStorage.setItem(kStorageKey, token);
    try {
      config = normalizeConfig(await api('GET', '/v1/config'));
      await loadTokens();
    } catch (e) {
      sessionStorage.removeItem(kStorageKey);
      throw e;
    }
    // The id part of a token is public (docs/admin-api.md, "Token records"), so it
    // can name who is signed in.
    const id = token.slice(3, 15);
    const self = tokens.find((t) => t.id === id);
    $('session-label').textContent = 'Signed in as ' + (self ? self.name + ' (' + id + ')' : id);
    showSignedIn(true);
    $('filter').focus();
  }

  $('sign-in-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('admin-token');
    const token = input.value.trim();
    showError($('sign-in-error'), '');
    try {
      await signIn(token);
      input.value = '';
    } catch (e) {
      showError($('sign-in-error'), e.status === 401 || e.status === 403
        ? 'This token is not accepted as an admin token (' + e.message + ').'
        : e.message);
    }
  });

  $('sign-out').addEventListener('click', () => signOut(''));

  // ------------------------------------------------------------------ table

  async function loadTokens() {
    const data = await api('GET', '/v1/tokens');
    const list = Array.isArray(data) ? data : (data && (data.tokens || data.items)) || [];
    tokens = list.map(withoutSecret).sort((a, b) => (a.name || '').localeCompare(b.name || '') || a.id.localeCompare(b.id));
    renderTable();
  }

  function withoutSecret(record) {
    const copy = Object.assign({}, record);
    delete copy.token;
    return copy;
  }

  function formatTime(value, none) {
    if (!value) return none;
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }

  function expiryState(record, now) {
    if (!record.expires_at) return '';
    const t = Date.parse(record.expires_at);
    if (Number.isNaN(t)) return '';
    if (t <= now) return 'expired';
    if (t - now <= kSoonMs) return 'soon';
    return '';
  }

  function matches(record, needle) {
    if (!needle) return true;
    const fields = [record.name, record.id, record.description]
      .concat(record.roles || [], record.groups || [], record.permissions || [], record.licenses || []);
    return fields.some((f) => typeof f === 'string' && f.toLowerCase().includes(needle));
  }

  function cell(row, label, text, className) {
    const td = document.createElement('td');
    td.dataset.label = label;
    if (className) td.className = className;
    if (text !== undefined) td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function listCell(row, label, values) {
    const td = cell(row, label);
    if (!values || values.length === 0) {
      td.textContent = '—';
      td.classList.add('none');
      return;
    }
    for (const v of values) {
      const chip = document.createElement('span');
      chip.className = 'chip';
      chip.textContent = v;
      td.appendChild(chip);
    }
  }

  function actionButton(label, record, handler, className) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.setAttribute('aria-label', label + ' ' + record.name);
    if (className) b.className = className;
    b.addEventListener('click', () => handler(record));
    return b;
  }

  function renderTable() {
    const body = $('token-rows');
    const needle = $('filter').value.trim().toLowerCase();
    const now = Date.now();
    body.replaceChildren();
    let shown = 0;
    for (const record of tokens) {
      if (!matches(record, needle)) continue;
      ++shown;
      const row = document.createElement('tr');
      row.dataset.id = record.id;
      const state = expiryState(record, now);
      if (state) row.classList.add(state === 'expired' ? 'is-expired' : 'is-soon');

      const nameCell = cell(row, 'Name');
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = record.name;
      nameCell.appendChild(name);
      if (record.description) {
        const desc = document.createElement('span');
        desc.className = 'description';
        desc.textContent = record.description;
        nameCell.appendChild(desc);
      }
      cell(row, 'ID', record.id, 'mono');
      listCell(row, 'Roles', record.roles);
      listCell(row, 'Groups', record.groups);
      listCell(row, 'Permissions', record.permissions);
      listCell(row, 'Licenses', record.licenses);

      const expires = cell(row, 'Expires', formatTime(record.expires_at, 'never'));
      if (record.expires_at) expires.title = record.expires_at;
      if (state) {
        const badge = document.createElement('span');
        badge.className = 'badge ' + (state === 'expired' ? 'badge-expired' : 'badge-soon');
        badge.textContent = state === 'expired' ? 'expired' : 'expires soon';
        expires.appendChild(badge);
      }
      const used = cell(row, 'Last used', formatTime(record.last_used_at, 'never'));
      if (record.last_used_at) used.title = record.last_used_at;
      cell(row, 'Rate limit', rateLimitText(record.rate_limit));

      const actions = cell(row, 'Actions', undefined, 'row-actions');
      actions.appendChild(actionButton('Edit', record, openEdit));
      actions.appendChild(actionButton('Rotate', record, openRotate));
      actions.appendChild(actionButton('Delete', record, openDelete, 'danger'));
      body.appendChild(row);
    }
    $('empty').hidden = shown !== 0;
    $('empty').textContent = tokens.length === 0 ? 'No tokens yet.' : 'No tokens match the filter.';
    $('token-count').textContent = needle ? '(' + shown + ' of ' + tokens.length + ')' : '(' + tokens.length + ')';
  }

  $('filter').addEventListener('input', renderTable);

  $('refresh').addEventListener('click', async () => {
    try {
      await loadTokens();
      setStatus('Refreshed.');
    } catch (e) {
      setStatus('Could not load tokens: ' + e.message);
    }
  });

  function setStatus(text) {
    $('status').textContent = text;
  }

  function showError(element, text) {
    element.textContent = text;
    element.hidden = !text;
  }

  // ------------------------------------------------------------------ create / edit

  function fillPicker(fieldset, kind, available, selected) {
    for (const old of fieldset.querySelectorAll('.option, .none')) old.remove();
    // Names the token holds that the config no longer has still show (checked), so
    // that saving does not silently drop them.
    const all = Array.from(new Set(available.concat(selected || []))).sort();
    if (all.length === 0) {
      const none = document.createElement('span');
      none.className = 'none';
      none.textContent = 'none configured';
      fieldset.appendChild(none);
      return;
    }
    for (const n of all) {
      const label = document.createElement('label');
      label.className = 'option';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.name = kind;
      box.value = n;
      box.checked = (selected || []).includes(n);
      label.appendChild(box);
      label.appendChild(document.createTextNode(' ' + n));
      fieldset.appendChild(label);
    }
  }

  function picked(fieldset) {
    return Array.from(fieldset.querySelectorAll('input[type=checkbox]:checked')).map((b) => b.value);
  }

  function splitPermissions(text) {
    return Array.from(new Set(text.split(/[\s,]+/).filter((p) => p.length > 0)));
  }

  function dateOf(value) {
    if (!value) return '';
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? '' : d.toISOString().slice(0, 10);
  }

  // "100/s, burst 200", or "default" for null (the gateway's configured default).
  function rateLimitText(limit) {
    return limit ? limit.rate + ', burst ' + limit.burst : 'default';
  }

  // The form's rate limit as the API takes it: null (default) or {rate, burst?}.
  function formRateLimit() {
    const rate = $('f-rate').value.trim();
    if (!rate) return null;
    const limit = { rate: rate };
    const burst = $('f-burst').value.trim();
    if (burst) limit.burst = Number(burst);
    return limit;
  }

  function openTokenDialog(record) {
    editing = record;
    $('token-dialog-title').textContent = record ? 'Edit token' : 'New token';
    $('token-submit').textContent = record ? 'Save' : 'Create';
    $('f-name').value = record ? record.name : '';
    $('f-description').value = record ? record.description || '' : '';
    fillPicker($('f-roles'), 'roles', config.roles, record && record.roles);
    fillPicker($('f-groups'), 'groups', config.groups, record && record.groups);
    fillPicker($('f-licenses'), 'licenses', config.licenses, record && record.licenses);
    $('f-permissions').value = record ? (record.permissions || []).join(', ') : '';
    $('f-expires').value = record ? dateOf(record.expires_at) : '';
    $('f-expires').dataset.initial = $('f-expires').value;
    const limit = record && record.rate_limit;
    $('f-rate').value = limit ? limit.rate : '';
    $('f-burst').value = limit ? String(limit.burst) : '';
    $('f-rate').dataset.initial = JSON.stringify(formRateLimit());
    $('f-expires-hint').textContent = config.maxLifetime && config.maxLifetime !== '0'
      ? 'Leave empty for no expiry; the gateway refuses expiries beyond its maximum lifetime (' + config.maxLifetime + ').'
      : 'Leave empty for a token that never expires.';
    showError($('token-form-error'), '');
    $('token-dialog').showModal();
    $('f-name').focus();
  }

  function openEdit(record) {
    openTokenDialog(record);
  }

  $('new-token').addEventListener('click', () => openTokenDialog(null));
  $('token-cancel').addEventListener('click', () => $('token-dialog').close());

  $('token-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {
      name: $('f-name').value.trim(),
      description: $('f-description').value.trim(),
      roles: picked($('f-roles')),
      groups: picked($('f-groups')),
      permissions: splitPermissions($('f-permissions').value),
      licenses: picked($('f-licenses')),
    };
    const day = $('f-expires').value;
    // On edit an untouched date keeps the exact stored expiry instead of moving it
    // to the end of that day.
    if (!editing || day !== $('f-expires').dataset.initial) {
      body.expires_at = day ? day + 'T23:59:59Z' : null;
    }
    // Likewise an untouched rate limit is not sent: an edit by a caller without
    // the right to raise it must not fail over a value it did not change.
    const limit = formRateLimit();
    if (!editing || JSON.stringify(limit) !== $('f-rate').dataset.initial) body.rate_limit = limit;
    const submit = $('token-submit');
    submit.disabled = true;
    try {
      if (editing) {
        await api('PATCH', '/v1/tokens/' + encodeURIComponent(editing.id), body);
        $('token-dialog').close();
        setStatus('Saved ' + body.name + '.');
      } else {
        const created = await api('POST', '/v1/tokens', body);
        $('token-dialog').close();
        showSecret('Token created', created.token, created.name, created.id);
        setStatus('Created ' + created.name + ' (' + created.id + ').');
      }
      await loadTokens();
    } catch (e) {
      showError($('token-form-error'), e.message);
    } finally {
      submit.disabled = false;
    }
  });

  // ------------------------------------------------------------------ the plaintext, once

  // The plaintext lives only in the dialog's text node while it is open; it is not
  // kept in any variable, and closing the dialog (button, Escape) removes it.
  function showSecret(title, plaintext, name, id) {
    $('secret-title').textContent = title + ': ' + name + ' (' + id + ')';
    $('secret-value').textContent = plaintext;
    $('secret-copy-status').textContent = '';
    $('secret-dialog').showModal();
    $('secret-copy').focus();
  }

  // The text is removed before the dialog closes, in the same task: the dialog's
  // `close` event is queued and runs later, so a page that is already showing the
  // dialog as closed would still hold the plaintext until then.
  function forgetSecret() {
    $('secret-value').textContent = '';
    $('secret-copy-status').textContent = '';
  }

  function closeSecret() {
    forgetSecret();
    $('secret-dialog').close();
  }

  $('secret-dialog').addEventListener('close', () => {
    forgetSecret();  // any other way the dialog closed
    $('new-token').focus();
  });
  $('secret-dialog').addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    event.preventDefault();  // our close, not the browser's, so the text goes first
    closeSecret();
  });
  $('secret-close').addEventListener('click', closeSecret);

  $('secret-copy').addEventListener('click', async () => {
    const element = $('secret-value');
    try {
      await navigator.clipboard.writeText(element.textContent);
      $('secret-copy-status').textContent = 'Copied to the clipboard.';
    } catch (e) {
      // No clipboard permission: select the text so Ctrl+C copies it.
      const range = document.createRange();
      range.selectNodeContents(element);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      $('secret-copy-status').textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
    }
  });

  // ------------------------------------------------------------------ rotate

  function openRotate(record) {
    acting = record;
    $('rotate-name').textContent = record.name;
    $('rotate-id').textContent = record.id;
    $('rotate-grace').value = '0';
    showError($('rotate-error'), '');
    $('rotate-dialog').showModal();
    $('rotate-grace').focus();
  }

  $('rotate-cancel').addEventListener('click', () => $('rotate-dialog').close());

  $('rotate-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const grace = Number($('rotate-grace').value);
    const body = grace > 0 ? { grace_seconds: grace } : {};
    const submit = $('rotate-submit');
    submit.disabled = true;
    try {
      const rotated = await api('POST', '/v1/tokens/' + encodeURIComponent(acting.id) + '/rotate', body);
      $('rotate-dialog').close();
      showSecret('Token rotated', rotated.token, rotated.name, rotated.id);
      setStatus('Rotated ' + rotated.name + (grace > 0 ? '; the old secret works for ' +
        $('rotate-grace').selectedOptions[0].textContent + '.' : '; the old secret no longer works.'));
      await loadTokens();
    } catch (e) {
      showError($('rotate-error'), e.message);
    } finally {
      submit.disabled = false;
    }
  });

  // ------------------------------------------------------------------ delete

  function openDelete(record) {
    acting = record;
    $('delete-name').textContent = record.name;
    $('delete-id').textContent = record.id;
    showError($('delete-error'), '');
    $('delete-dialog').showModal();
    $('delete-cancel').focus();
  }

  $('delete-cancel').addEventListener('click', () => $('delete-dialog').close());

  $('delete-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const submit = $('delete-submit');
    submit.disabled = true;
    try {
      await api('DELETE', '/v1/tokens/' + encodeURIComponent(acting.id));
      $('delete-dialog').close();
      setStatus('Deleted ' + acting.name + ' (' + acting.id + ').');
      await loadTokens();
    } catch (e) {
      showError($('delete-error'), e.message);
    } finally {
      submit.disabled = false;
    }
  });

  // ------------------------------------------------------------------ start

  if (adminToken()) {
    signIn(adminToken()).catch((e) => signOut(e.message));
  } else {
    showSignedIn(false);
  }
})();
