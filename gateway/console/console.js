// Shareline owner console (one ES module, served at /console/console.js).
// It signs in through /console/me, then calls the owner RPCs (JSON, cookie + X-CSRF-Token).
// Rules it keeps (session content is hostile):
//  - user strings reach the DOM only as text: el() appends strings as text nodes and sets only the
//    attributes in SAFE_ATTR; no HTML-parsing DOM call (no inner/outer HTML setter, no adjacent-HTML
//    insertion, no document writing) and no HTML built as strings;
//  - no user string in href/src: the only external href is the share URL from the server, and only
//    when it starts with http:// or https://; the preview iframe's src is /console/preview/<encoded id>
//    with an empty sandbox attribute set before it;
//  - CSP: no inline handlers, no style attributes or style properties (classes only), no code from
//    strings; nothing is put on the window object.

const RPC = '/rpc/shareline.v1.Sessions/';
const PAGE = 25;
const SAFE_ATTR =
  /^(?:id|class|type|name|for|role|title|value|placeholder|autocomplete|datetime|maxlength|tabindex|hidden|disabled|readonly|required|selected|rel|target|(?:aria|data)-[a-z-]+)$/;
const PALETTE = [ // [r, g, b] of swatch-0 .. swatch-8 in console.css
  [100, 116, 139], [239, 68, 68], [249, 115, 22], [234, 179, 8], [34, 197, 94],
  [20, 184, 166], [59, 130, 246], [139, 92, 246], [236, 72, 153],
];

const $ = (sel, root = document) => root.querySelector(sel);

/** Builds an element. Strings become text nodes; only safe attributes are set. */
function el(tag, attrs = {}, ...kids) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'href') { // internal hash links or the server's http(s) share URL only
      if (/^(#|https?:\/\/)/i.test(String(v))) n.setAttribute('href', String(v));
      continue;
    }
    if (!SAFE_ATTR.test(k)) throw new Error('el: attribute not allowed: ' + k);
    if (k === 'value') n.value = String(v);
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid == null || kid === false) continue;
    n.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return n;
}

// ---- state ----
const st = {
  csrf: '',
  me: null,
  projects: [],
  gen: 0, // bumped on every route change: answers for an older view are dropped
  timer: 0,
  polling: false,
  list: { params: {}, items: [], next: null, key: '' },
  cur: null, // open session: {id, data}
  edits: new Map(), // open inline title forms: key -> draft text
  share: null, // share dialog data: {settings, findings}
  flash: '', // a message for the next view (set before a navigation)
};

// ---- status area ----
function setStatus(msg, isError = false) {
  const s = $('#status');
  s.textContent = msg || '';
  s.classList.toggle('error', !!isError && !!msg);
}

// ---- server calls ----
class RpcError extends Error {
  constructor(code, message, silent = false) { super(message); this.code = code; this.silent = silent; }
}

async function rpc(method, body = {}) {
  let res;
  try {
    res = await fetch(RPC + method, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': st.csrf },
      body: JSON.stringify(body),
    });
  } catch (e) {
    throw new RpcError('unavailable', 'Cannot reach the server (' + e.message + ')');
  }
  if (res.status === 401) {
    showSignIn('Your sign-in has expired. Please sign in again.');
    throw new RpcError('unauthenticated', 'Signed out', true);
  }
  let data = null;
  try { data = await res.json(); } catch { /* empty or not JSON */ }
  if (!res.ok) {
    const msg = data && typeof data.message === 'string' ? data.message : 'Request failed (HTTP ' + res.status + ')';
    throw new RpcError(data && data.code ? String(data.code) : 'http_' + res.status, method + ': ' + msg);
  }
  return data || {};
}

/** Runs fn with the buttons disabled; errors go to #status. Returns fn's value or undefined. */
async function act(buttons, fn, okMsg) {
  const bs = [buttons].flat().filter(Boolean);
  const a = document.activeElement;
  const fk = a && bs.includes(a) ? a.getAttribute('data-focus-key') : null; // a disabled button loses focus
  bs.forEach((b) => { b.disabled = true; });
  try {
    const r = await fn();
    if (okMsg) setStatus(okMsg);
    return r;
  } catch (e) {
    if (!e.silent) setStatus(e.message || String(e), true);
    return undefined;
  } finally {
    bs.forEach((b) => { b.disabled = false; });
    const now = document.activeElement;
    if (fk && (!now || now === document.body)) byKey('data-focus-key', fk)?.focus();
  }
}

// ---- small formatting helpers ----
function fmtTime(iso) {
  const d = new Date(iso);
  return iso && !isNaN(d) ? d.toLocaleString() : String(iso || '');
}
function timeEl(iso) { return el('time', { datetime: iso || null }, fmtTime(iso)); }
function plural(n, one, many) { return n + ' ' + (n === 1 ? one : many); }

function swatchClass(color) {
  const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(String(color || '').trim());
  if (!m) return null;
  const h = m[1].length === 3 ? m[1].replace(/./g, '$&$&') : m[1];
  const rgb = [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16));
  let best = 0, bestD = Infinity;
  PALETTE.forEach((p, i) => {
    const d = p.reduce((a, v, j) => a + (v - rgb[j]) ** 2, 0);
    if (d < bestD) { bestD = d; best = i; }
  });
  return 'swatch swatch-' + best;
}

function projectTag(p) {
  if (!p) return null;
  const sw = swatchClass(p.color);
  return el('span', { class: 'project-tag' },
    sw && el('span', { class: sw, 'aria-hidden': 'true' }),
    p.icon ? el('span', { class: 'project-icon', 'aria-hidden': 'true' }, p.icon) : null,
    el('span', { class: 'project-name' }, p.name || 'Untitled project'));
}

function badge(pub) {
  return el('span', { class: 'badge ' + (pub ? 'badge-public' : 'badge-private') }, pub ? 'Public' : 'Private');
}

function hiddenSummary(n) {
  if (!n) return 'No exchanges are hidden';
  return n === 1 ? "You've hidden 1 exchange" : "You've hidden " + n + ' exchanges';
}

// "YYYY-MM-DD" (local day) -> "YYYY-MM-DDTHH:MM:SSZ" of its local midnight, plus `plus` days
function dayToUtc(day, plus = 0) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day || '');
  if (!m) return null;
  const d = new Date(+m[1], +m[2] - 1, +m[3] + plus);
  return isNaN(d) ? null : d.toISOString().slice(0, 19) + 'Z';
}

// ---- views: sign-in / app shell ----
function view() { return $('#app-view'); }

function stopPolling() {
  clearInterval(st.timer);
  st.timer = 0;
}

function showSignIn(msg) {
  stopPolling();
  st.gen++;
  st.me = null;
  st.csrf = '';
  st.cur = null;
  st.edits.clear();
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  $('#boot-msg').hidden = true;
  view().hidden = true;
  view().replaceChildren();
  $('#nav').hidden = true;
  $('#who').hidden = true;
  $('#logout').hidden = true;
  $('#signin-view').hidden = false;
  setStatus(msg || '', !!msg);
}

function showApp() {
  $('#boot-msg').hidden = true;
  $('#signin-view').hidden = true;
  view().hidden = false;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  const who = $('#who');
  who.hidden = false;
  who.replaceChildren('Signed in as ', el('strong', {}, st.me.handle || st.me.name || 'owner'));
}

/** Is the user typing in the view or in an open inline form? Then live refreshes wait. */
function editing() {
  const a = document.activeElement;
  return st.edits.size > 0 || !!(a && view().contains(a) && a.matches('input, select, textarea'));
}

function poll(ms, fn) {
  stopPolling();
  const gen = st.gen;
  st.timer = setInterval(async () => {
    if (document.visibilityState !== 'visible' || st.polling || editing() || gen !== st.gen) return;
    if ($('#confirm-dialog').open) return;
    st.polling = true;
    try { await fn(gen); } catch (e) { if (!e.silent) setStatus(e.message, true); } finally { st.polling = false; }
  }, ms);
}

/** Re-renders the view, keeping focus on the control with the same data-focus-key. */
function render(nodes) {
  const a = document.activeElement;
  const key = a && view().contains(a) ? a.getAttribute('data-focus-key') : null;
  view().replaceChildren(...[nodes].flat());
  if (key) byKey('data-focus-key', key)?.focus();
}

// ---- routing ----
function route() {
  if (!st.me) return;
  setStatus(st.flash);
  st.flash = '';
  stopPolling();
  st.gen++;
  st.edits.clear();
  st.cur = null;
  const h = location.hash || '#/';
  let m;
  for (const a of document.querySelectorAll('#nav a')) a.removeAttribute('aria-current');
  if (h === '#/projects') {
    $('#nav-projects').setAttribute('aria-current', 'page');
    showProjects();
  } else if ((m = /^#\/session\/(.+)$/.exec(h))) {
    let id = null;
    try { id = decodeURIComponent(m[1]); } catch { /* bad escape */ }
    if (id) showSession(id);
    else location.hash = '#/';
  } else {
    $('#nav-sessions').setAttribute('aria-current', 'page');
    showList();
  }
}

async function loadProjects() {
  const r = await rpc('ListProjects', {});
  st.projects = Array.isArray(r.projects) ? r.projects : [];
  return st.projects;
}

// ---- sessions list ----
function listRequest(extra = {}) {
  const p = st.list.params, req = {};
  if (p.query) req.query = p.query;
  if (p.project_id) req.project_id = Number(p.project_id);
  if (p.from) req.from = dayToUtc(p.from);
  if (p.to) req.to = dayToUtc(p.to, 1); // "to" is exclusive: the end of the chosen day
  return Object.assign(req, extra);
}

function projectOptions(selected) {
  return [el('option', { value: '' }, 'All projects'),
    ...st.projects.map((p) => el('option', { value: String(p.project_id), selected: String(p.project_id) === String(selected) },
      (p.icon ? p.icon + ' ' : '') + (p.name || 'Untitled project')))];
}

function showList() {
  const p = st.list.params;
  const field = (id, label, input) => el('div', { class: 'field' }, el('label', { for: id }, label), input);
  const form = el('form', { id: 'search-form', class: 'search', role: 'search' },
    field('search-query', 'Search', el('input', { id: 'search-query', type: 'search', name: 'query', maxlength: 200, value: p.query || '' })),
    field('filter-project', 'Project', el('select', { id: 'filter-project', name: 'project' }, projectOptions(p.project_id))),
    field('filter-from', 'From', el('input', { id: 'filter-from', type: 'date', name: 'from', value: p.from || '' })),
    field('filter-to', 'To', el('input', { id: 'filter-to', type: 'date', name: 'to', value: p.to || '' })),
    el('div', { class: 'field field-submit' }, el('button', { type: 'submit' }, 'Search')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const params = {
      query: $('#search-query').value.trim(), project_id: $('#filter-project').value,
      from: $('#filter-from').value, to: $('#filter-to').value,
    };
    if (params.from && params.to && params.from > params.to) {
      setStatus('"From" must not be after "To".', true);
      return;
    }
    st.list.params = params;
    const btn = form.querySelector('button[type=submit]');
    act(btn, () => loadList(st.gen, true), null);
  });
  render([el('h1', {}, 'Sessions'), form, el('ul', { id: 'session-list', class: 'session-list' }),
    el('div', { id: 'more-slot', class: 'row' })]);
  if (st.list.items.length) renderList(); // the last result, until the fresh one arrives
  const gen = st.gen;
  act(null, async () => {
    await loadProjects().catch((e) => { if (!e.silent) setStatus(e.message, true); });
    const sel = $('#filter-project');
    if (sel && gen === st.gen) sel.replaceChildren(...projectOptions(st.list.params.project_id));
    await loadList(gen, true);
  });
  poll(5000, (g) => loadList(g, false));
}

/** Loads the list's first page(s); `fresh` starts over, else re-runs the shown query (live). */
async function loadList(gen, fresh) {
  const L = st.list;
  if (!fresh && L.items.length > 200) return; // too many loaded pages to re-run in one call
  const size = fresh ? PAGE : Math.min(200, Math.max(PAGE, L.items.length));
  const r = await rpc('ListSessions', listRequest({ page_size: size }));
  if (gen !== st.gen) return;
  const items = Array.isArray(r.sessions) ? r.sessions : [];
  const key = JSON.stringify([items, r.next_page_token || null]);
  if (!fresh && key === L.key) return;
  L.items = items;
  L.next = r.next_page_token || null;
  L.key = key;
  renderList();
}

async function loadMore(btn) {
  const L = st.list, gen = st.gen;
  await act(btn, async () => {
    const r = await rpc('ListSessions', listRequest({ page_size: PAGE, page_token: L.next }));
    if (gen !== st.gen) return;
    L.items = L.items.concat(Array.isArray(r.sessions) ? r.sessions : []);
    L.next = r.next_page_token || null;
    L.key = JSON.stringify([L.items, L.next]);
    renderList();
  });
}

function sessionItem(s) {
  const btn = el('button', { type: 'button', class: 'session-link', 'data-session-id': s.session_id, 'data-focus-key': 's:' + s.session_id },
    el('span', { class: 'sl-title' }, s.title || 'Untitled session'),
    el('span', { class: 'sl-meta' }, projectTag(s.project), timeEl(s.updated_at), badge(!!s.public)),
    s.snippet ? el('span', { class: 'snippet' }, s.snippet) : null);
  btn.addEventListener('click', () => { location.hash = '#/session/' + encodeURIComponent(s.session_id); });
  return el('li', {}, btn);
}

function renderList() {
  const ul = $('#session-list'), slot = $('#more-slot');
  if (!ul || !slot) return;
  const a = document.activeElement;
  const key = a && ul.contains(a) ? a.getAttribute('data-focus-key') : null;
  ul.replaceChildren(...(st.list.items.length ? st.list.items.map(sessionItem)
    : [el('li', { class: 'empty muted' }, 'No sessions found.')]));
  if (key) byKey('data-focus-key', key)?.focus();
  const hadFocus = document.activeElement && document.activeElement.id === 'more';
  slot.replaceChildren();
  if (st.list.next) {
    const more = el('button', { id: 'more', type: 'button' }, 'More');
    more.addEventListener('click', () => loadMore(more));
    slot.append(more);
    if (hadFocus) more.focus();
  }
}

// ---- one session ----
function showSession(id) {
  st.cur = { id, data: null };
  render([el('p', { class: 'crumbs' }, el('a', { href: '#/' }, '← Sessions')), el('p', { class: 'muted' }, 'Loading…')]);
  const gen = st.gen;
  act(null, () => loadSession(gen, true));
  poll(3000, (g) => loadSession(g, false));
}

async function loadSession(gen, force) {
  const cur = st.cur;
  if (!cur) return;
  let s;
  try {
    s = await rpc('GetSession', { session_id: cur.id });
  } catch (e) {
    if (e.code === 'not_found' && gen === st.gen) {
      stopPolling();
      render([el('p', { class: 'crumbs' }, el('a', { href: '#/' }, '← Sessions')), el('h1', {}, 'Session not found'),
        el('p', {}, 'This session does not exist or was deleted.')]);
    }
    throw e;
  }
  if (gen !== st.gen || st.cur !== cur) return;
  // versions only grow: an answer older than what is shown (a poll that was sent before a change
  // and answered after it) is dropped, or it would show the old state again until the next poll
  if (cur.data && Number(s.version) < Number(cur.data.version)) return;
  if (!force && cur.data && cur.data.version === s.version) return;
  cur.data = s;
  renderSession();
}

/** An inline title form: Enter saves (form submit), Escape cancels. */
function titleForm({ key, value, label, inputAttrs, onSave }) {
  const input = el('input', Object.assign({ type: 'text', maxlength: 500, 'aria-label': label, value, placeholder: 'Default title' }, inputAttrs));
  const save = el('button', { type: 'submit' }, 'Save');
  const cancel = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
  const form = el('form', { class: 'inline-edit' }, input, save, cancel);
  const editKey = key === 'session' ? 'edit-session' : 'edit-' + key;
  const close = () => { st.edits.delete(key); renderSession(); byKey('data-focus-key', editKey)?.focus(); };
  input.addEventListener('input', () => st.edits.set(key, input.value));
  input.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { ev.preventDefault(); close(); } });
  cancel.addEventListener('click', close);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const ok = await act([save, cancel, input], () => onSave(input.value.trim()).then(() => true), 'Title saved');
    if (ok) {
      st.edits.delete(key);
      await act(null, () => loadSession(st.gen, true));
      byKey('data-focus-key', editKey)?.focus();
    }
  });
  return form;
}

function byKey(attr, key) {
  return [...view().querySelectorAll('[' + attr + ']')].find((n) => n.getAttribute(attr) === key) || null;
}

function openEdit(key, value) {
  st.edits.set(key, value);
  renderSession();
  const input = byKey('data-edit-key', key);
  if (input) { input.focus(); input.select(); }
}

function renderSession() {
  const cur = st.cur;
  if (!cur || !cur.data) return;
  const s = cur.data;
  const exchanges = Array.isArray(s.exchanges) ? s.exchanges : [];
  const hidden = exchanges.filter((e) => e.hidden).length;

  let head;
  if (st.edits.has('session')) {
    head = titleForm({
      key: 'session', value: st.edits.get('session'), label: 'Session title',
      inputAttrs: { id: 'session-title-input', 'data-edit-key': 'session' },
      onSave: (title) => rpc('UpdateSessionTitle', { session_id: cur.id, title }),
    });
  } else {
    const edit = el('button', { id: 'edit-session-title', type: 'button', class: 'secondary', 'data-focus-key': 'edit-session' }, 'Edit title');
    edit.addEventListener('click', () => openEdit('session', s.custom_title ?? s.title ?? ''));
    head = el('div', { class: 'title-row' }, el('h1', { id: 'session-title' }, s.title || 'Untitled session'), edit);
  }
  const share = el('button', { id: 'open-share', type: 'button', 'data-focus-key': 'share' }, 'Share');
  share.addEventListener('click', () => openShare());
  const del = el('button', { id: 'delete-session', type: 'button', class: 'danger secondary', 'data-focus-key': 'delete-session' }, 'Delete session');
  del.addEventListener('click', () => deleteSession(del));

  render([
    el('p', { class: 'crumbs' }, el('a', { href: '#/' }, '← Sessions')),
    head,
    el('p', { class: 'meta' }, projectTag(s.project), badge(!!s.public),
      el('span', {}, plural(exchanges.length, 'exchange', 'exchanges')),
      el('span', {}, hiddenSummary(hidden)),
      s.updated_at ? el('span', {}, 'updated ', timeEl(s.updated_at)) : null),
    el('div', { class: 'row actions' }, share, del),
    exchanges.length ? el('div', { class: 'exchanges' }, exchanges.map(exchangeEl))
      : el('p', { class: 'muted' }, 'This session has no exchanges.'),
  ]);
}

function exchangeEl(ex, i) {
  const cur = st.cur, n = i + 1, key = 'ex:' + ex.id;
  let head;
  if (st.edits.has(key)) {
    head = titleForm({
      key, value: st.edits.get(key), label: 'Title of exchange ' + n,
      inputAttrs: { class: 'exchange-title-input', 'data-edit-key': key },
      onSave: (title) => rpc('UpdateExchangeTitle', { session_id: cur.id, exchange_id: ex.id, title }),
    });
  } else {
    const edit = el('button', { type: 'button', class: 'edit-exchange-title secondary', 'aria-label': 'Edit title of exchange ' + n, 'data-focus-key': 'edit-' + key }, 'Edit title');
    edit.addEventListener('click', () => openEdit(key, ex.custom_title ?? ex.title ?? ''));
    head = el('div', { class: 'title-row' }, el('h2', { class: 'ex-title' }, el('span', { class: 'ex-num' }, n + '. '), ex.title || 'Exchange ' + n), edit);
  }
  const eye = el('button', {
    type: 'button', class: 'eye', 'aria-pressed': ex.hidden ? 'false' : 'true',
    'aria-label': 'Visible to viewers: Exchange ' + n, 'data-focus-key': 'eye-' + key,
  }, el('span', { class: 'eye-icon', 'aria-hidden': 'true' }), ex.hidden ? 'Hidden' : 'Visible');
  eye.addEventListener('click', () => act(eye, async () => {
    const r = await rpc('SetExchangesHidden', { session_id: cur.id, exchange_ids: [ex.id], hidden: !ex.hidden });
    setStatus((ex.hidden ? 'Exchange ' + n + ' is visible to viewers. ' : 'Exchange ' + n + ' is hidden from viewers. ') + hiddenSummary(r.hidden_count));
    await loadSession(st.gen, true);
  }));
  const del = el('button', { type: 'button', class: 'delete-exchange danger secondary', 'aria-label': 'Delete exchange ' + n, 'data-focus-key': 'del-' + key }, 'Delete');
  del.addEventListener('click', async () => {
    const yes = await confirmDialog('Delete this exchange? Viewers and you will no longer see it. This cannot be undone.');
    if (!yes) { del.focus(); return; }
    await act(del, async () => {
      await rpc('DeleteExchange', { session_id: cur.id, exchange_id: ex.id });
      await loadSession(st.gen, true);
    }, 'Exchange deleted');
  });
  return el('article', { class: 'exchange' + (ex.hidden ? ' is-hidden' : ''), 'data-exchange-id': String(ex.id), 'aria-label': 'Exchange ' + n },
    head,
    el('div', { class: 'ex-bar' },
      el('span', { class: 'ex-meta' }, ex.created_at ? timeEl(ex.created_at) : null,
        ex.hidden ? el('span', { class: 'hidden-mark' }, 'Hidden from viewers') : null),
      el('span', { class: 'ex-actions' }, eye, del)),
    el('div', { class: 'ex-body' },
      el('h3', { class: 'label' }, 'Prompt'), el('div', { class: 'text prompt' }, ex.prompt ?? ''),
      el('h3', { class: 'label' }, 'Response'), el('div', { class: 'text response' }, ex.response ?? '')));
}

async function deleteSession(btn) {
  const cur = st.cur;
  const yes = await confirmDialog('Delete this session? Its share link stops working and all its exchanges are removed. This cannot be undone.', 'Delete session');
  if (!yes || st.cur !== cur) return;
  const ok = await act(btn, () => rpc('DeleteSession', { session_id: cur.id }).then(() => true));
  if (ok) { st.flash = 'Session deleted'; location.hash = '#/'; }
}

// ---- confirmation dialog (never window.confirm) ----
let confirmResolve = null;
function confirmDone(answer) {
  const r = confirmResolve;
  confirmResolve = null;
  if (r) r(answer);
}

function confirmDialog(text, yesLabel = 'Delete') {
  const d = $('#confirm-dialog');
  $('#confirm-text').textContent = text;
  $('#confirm-yes').textContent = yesLabel;
  confirmDone(false);
  return new Promise((resolve) => {
    confirmResolve = resolve;
    d.showModal();
  });
}

// ---- share dialog ----
async function openShare() {
  const d = $('#share-dialog');
  if (!st.cur) return;
  st.share = null;
  closePreview();
  $('#share-heading').textContent = 'Share: ' + ((st.cur.data && st.cur.data.title) || 'session');
  $('#findings').replaceChildren(el('li', { class: 'muted' }, 'Loading…'));
  d.showModal();
  await act(null, refreshShare);
}

async function refreshShare() {
  const cur = st.cur;
  if (!cur) return;
  const [settings, f] = await Promise.all([
    rpc('GetShareSettings', { session_id: cur.id }),
    rpc('ListFindings', { session_id: cur.id }),
  ]);
  if (st.cur !== cur) return;
  st.share = { settings, findings: Array.isArray(f.findings) ? f.findings : [], truncated: !!f.truncated };
  renderShare();
  const frame = $('#preview-frame');
  if (frame) showPreview(); // reload: the viewer's page changed
}

function renderShare() {
  const { settings: s, findings, truncated } = st.share;
  const pub = !!s.public;
  const t = $('#share-toggle');
  t.setAttribute('aria-pressed', pub ? 'true' : 'false');
  t.textContent = pub ? 'Public' : 'Private';
  $('#share-explain').textContent = pub
    ? 'Anyone with the link can view this session (read-only). New exchanges appear automatically. Press to make it private.'
    : 'Only you can see this session. Press to make it public; until then the link shows a "not found" page.';
  const url = typeof s.share_url === 'string' && /^https?:\/\//i.test(s.share_url) ? s.share_url : '';
  const input = $('#share-url');
  input.value = url;
  $('#copy-link').disabled = !url;
  const open = $('#share-open'); // the one external href: the server's http(s) share URL
  if (url && pub) { open.setAttribute('href', url); open.hidden = false; } else { open.removeAttribute('href'); open.hidden = true; }
  $('#share-link-note').textContent = pub ? 'The link is live.' : 'The link works only while the session is public.';
  $('#hidden-summary').textContent = hiddenSummary(Number(s.hidden_count) || 0);
  const red = Number(s.findings_redacted) || 0;
  $('#redacted-summary').textContent = red ? plural(red, 'likely secret is', 'likely secrets are') + ' redacted in the public view.' : '';

  const exNum = new Map(((st.cur && st.cur.data && st.cur.data.exchanges) || []).map((e, i) => [String(e.id), i + 1]));
  const ul = $('#findings');
  if (!findings.length) {
    ul.replaceChildren(el('li', { class: 'muted' }, 'No secrets found.'));
    return;
  }
  ul.replaceChildren(...findings.map((f) => {
    const redacted = f.state !== 'revealed';
    const where = (f.field || '') + (f.exchange_id != null ? ' of exchange ' + (exNum.get(String(f.exchange_id)) || f.exchange_id) : '');
    const btn = el('button', { type: 'button', class: 'finding-toggle secondary', 'aria-label': (redacted ? 'Reveal ' : 'Redact ') + (f.kind || 'finding') + ' in ' + where }, redacted ? 'Reveal' : 'Redact');
    btn.addEventListener('click', () => act(btn, async () => {
      await rpc('ResolveFinding', { session_id: st.cur.id, finding_id: f.finding_id, state: redacted ? 'revealed' : 'redacted' });
      await refreshShare();
      await loadSession(st.gen, true);
    }, redacted ? 'Revealed in the public view' : 'Redacted in the public view'));
    return el('li', { class: 'finding', 'data-finding-id': String(f.finding_id) },
      el('span', { class: 'finding-kind' }, f.kind || 'secret'),
      el('span', { class: 'finding-field muted' }, where),
      el('code', { class: 'finding-preview' }, f.preview || ''),
      el('span', { class: 'badge ' + (redacted ? 'badge-private' : 'badge-public') }, redacted ? 'Redacted' : 'Revealed'),
      btn);
  }));
  if (truncated) ul.append(el('li', { class: 'muted' }, 'More findings exist; only the first ones are listed.'));
}

async function toggleShare() {
  const t = $('#share-toggle');
  if (!st.share || !st.cur) return;
  const want = !st.share.settings.public;
  await act(t, async () => {
    await rpc('SetVisibility', { session_id: st.cur.id, public: want });
    await refreshShare();
    await loadSession(st.gen, true);
  }, want ? 'The session is public: anyone with the link can view it.' : 'The session is private: the link no longer works.');
}

async function copyLink() {
  const input = $('#share-url');
  const text = input.value;
  if (!text) return;
  let ok = false;
  if (navigator.clipboard && navigator.clipboard.writeText) {
    try { await navigator.clipboard.writeText(text); ok = true; } catch { /* fall back below */ }
  }
  if (!ok) {
    input.focus();
    input.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
  }
  if (ok) {
    input.setAttribute('data-copied', text);
    setStatus('Copied');
  } else {
    input.focus();
    input.select();
    setStatus('Could not copy automatically: the link is selected, press Ctrl+C (or ⌘C).', true);
  }
}

function showPreview() {
  if (!st.cur) return;
  const area = $('#preview-area');
  const frame = document.createElement('iframe');
  frame.setAttribute('sandbox', ''); // empty: no scripts, no same-origin; set before src
  frame.id = 'preview-frame';
  frame.title = 'Preview as viewer';
  frame.setAttribute('src', '/console/preview/' + encodeURIComponent(st.cur.id));
  area.replaceChildren(el('p', { class: 'muted small' }, 'Exactly what a viewer sees' + (st.share && !st.share.settings.public ? ' once the session is public' : '') + ':'), frame);
  area.hidden = false;
  $('#share-dialog').classList.add('wide');
}

function closePreview() {
  const area = $('#preview-area');
  area.replaceChildren();
  area.hidden = true;
  $('#share-dialog').classList.remove('wide');
}

// ---- projects ----
function showProjects() {
  render([el('h1', {}, 'Projects'), el('p', { class: 'muted' }, 'Loading…')]);
  const gen = st.gen;
  act(null, async () => {
    await loadProjects();
    if (gen === st.gen) renderProjects();
  });
}

function renderProjects() {
  const items = st.projects.map((p, i) => {
    const name = el('input', { type: 'text', name: 'name', maxlength: 200, required: true, value: p.name || '', id: 'project-' + i + '-name' });
    const icon = el('input', { type: 'text', name: 'icon', maxlength: 64, value: p.icon || '', id: 'project-' + i + '-icon' });
    const color = el('input', { type: 'text', name: 'color', maxlength: 32, value: p.color || '', placeholder: '#3b82f6', id: 'project-' + i + '-color' });
    const save = el('button', { type: 'submit' }, 'Save');
    const form = el('form', { class: 'project-form', 'aria-label': 'Edit project ' + (p.name || '') },
      el('div', { class: 'field' }, el('label', { for: 'project-' + i + '-name' }, 'Name'), name),
      el('div', { class: 'field' }, el('label', { for: 'project-' + i + '-icon' }, 'Icon'), icon),
      el('div', { class: 'field' }, el('label', { for: 'project-' + i + '-color' }, 'Colour'), color),
      el('div', { class: 'field field-submit' }, save));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const req = { project_id: p.project_id };
      if (name.value.trim() !== (p.name || '')) req.name = name.value.trim();
      if (icon.value.trim() !== (p.icon || '')) req.icon = icon.value.trim();
      if (color.value.trim() !== (p.color || '')) req.color = color.value.trim();
      if (Object.keys(req).length === 1) { setStatus('Nothing to change.'); return; }
      if (req.name === '') { setStatus('The project name must not be empty.', true); return; }
      const ok = await act([save, name, icon, color], () => rpc('UpdateProject', req).then(() => true), 'Project saved');
      if (ok) await act(null, async () => { await loadProjects(); renderProjects(); });
    });
    const show = el('button', { type: 'button', class: 'secondary' }, 'Show sessions');
    show.addEventListener('click', () => {
      st.list.params = { project_id: String(p.project_id) };
      location.hash = '#/';
    });
    const sw = swatchClass(p.color);
    return el('li', { class: 'project', 'data-project-id': String(p.project_id) },
      el('div', { class: 'project-head' },
        el('span', { class: 'project-icon big' }, p.icon || ''),
        el('h2', { class: 'project-title' }, p.name || 'Untitled project'),
        el('span', { class: 'project-color' }, sw && el('span', { class: sw, 'aria-hidden': 'true' }), p.color || 'no colour'),
        el('span', { class: 'muted' }, plural(Number(p.session_count) || 0, 'session', 'sessions')),
        show),
      form);
  });
  render([el('h1', {}, 'Projects'),
    items.length ? el('ul', { id: 'project-list', class: 'project-list' }, items) : el('p', { class: 'muted' }, 'No projects yet.')]);
}

// ---- sign out ----
async function logout(btn) {
  await act(btn, async () => {
    let res;
    try {
      res = await fetch('/console/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': st.csrf } });
    } catch (e) {
      throw new RpcError('unavailable', 'Cannot reach the server (' + e.message + ')');
    }
    if (!res.ok && res.status !== 401) throw new RpcError('http_' + res.status, 'Sign out failed (HTTP ' + res.status + ')');
    showSignIn();
    setStatus('Signed out.');
  });
}

// ---- start ----
async function boot() {
  $('#logout').addEventListener('click', (ev) => logout(ev.currentTarget));
  $('#share-close').addEventListener('click', () => $('#share-dialog').close());
  $('#share-dialog').addEventListener('close', () => { closePreview(); st.share = null; $('#open-share')?.focus(); });
  $('#share-toggle').addEventListener('click', toggleShare);
  $('#copy-link').addEventListener('click', copyLink);
  $('#preview-open').addEventListener('click', showPreview);
  $('#confirm-yes').addEventListener('click', () => { confirmDone(true); $('#confirm-dialog').close(); });
  $('#confirm-no').addEventListener('click', () => { confirmDone(false); $('#confirm-dialog').close(); });
  // Escape: a close event while no dialog is open again (a late event of an earlier one is ignored)
  $('#confirm-dialog').addEventListener('close', (ev) => { if (!ev.target.open) confirmDone(false); });
  window.addEventListener('hashchange', route);

  let res;
  try {
    res = await fetch('/console/me', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  } catch (e) {
    $('#boot-msg').textContent = 'Cannot reach the server.';
    setStatus('Cannot reach the server (' + e.message + ')', true);
    return;
  }
  if (res.status === 401) { showSignIn(); return; }
  let me = null;
  try { me = await res.json(); } catch { /* below */ }
  if (!res.ok || !me || typeof me.csrf !== 'string') {
    $('#boot-msg').textContent = 'The console could not start.';
    setStatus('Could not read the sign-in (HTTP ' + res.status + ')', true);
    return;
  }
  st.me = me;
  st.csrf = me.csrf;
  showApp();
  route();
}

boot();
