// medchain web UI: the consortium explorer and the patient portal.
// Everything here talks to this node's /api; nothing is loaded from elsewhere.
// Without a sign-in the explorer shows only public fields; patients, member
// organizations' admins and the regulator sign in with their key to see
// their own scope in detail (the node decides what each may see).
// A key stays in this page: it signs the login challenge and a patient's
// transactions with WebCrypto (Ed25519), opens records sealed to it
// (nacl.js), and is never sent anywhere.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const view = () => $("#view");
let timers = [];
let eventSource = null;
const portal = { me: null, seed: null, publicKey: null };
const session = { me: null };  // who is signed in (GET /api/session), or null

function clearTimers() {
  timers.forEach(clearInterval);
  timers = [];
  if (eventSource) { eventSource.close(); eventSource = null; }
}

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
// Bytes arrive as {"$bytes": hex} (node/jsonval.py).
const text = (v) => (v && typeof v === "object" && "$bytes" in v ? v.$bytes : v);
const short = (v, n = 12) => { const h = text(v); return h && h.length > n ? h.slice(0, n) + "…" : h || ""; };
const time = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "");
// A hash or key as hex, whatever shape it came in: {$bytes: hex}, a hex string, bytes.
const hexOf = (v) => (v instanceof Uint8Array ? hex(v) : typeof v === "string" ? v : v && typeof v.$bytes === "string" ? v.$bytes : "");
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s) => Uint8Array.from(s.match(/../g) || [], (x) => parseInt(x, 16));

async function api(path, opts = {}) {
  const res = await fetch(path, { credentials: "same-origin", ...opts });
  const body = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) { const e = new Error(body.error || res.statusText); e.status = res.status; throw e; }
  return body;
}
const post = (path, body) => api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}) });

function who(s) {
  if (!s) return "";
  if (s.kind === "patient") return `patient <span class="mono">${esc(short(s.id, 10))}</span>`;
  if (s.kind === "practitioner") return `practitioner <span class="mono">${esc(short(s.id, 10))}</span> @ ${esc(s.org)}`;
  if (s.org) return `${esc(s.kind)} @ ${esc(s.org)}`;
  return `${esc(s.kind)} <span class="mono">${esc(s.id)}</span>`;
}

function showError(err) {
  const signIn = err.status === 401 ? '<p id="sign-in-hint"><a href="#/signin">Sign in</a> to see it.</p>' : "";
  view().innerHTML = `<section><p class="error">${esc(err.message || err)}</p>${signIn}<p><a href="#/">Back to the consortium</a></p></section>`;
}

// What stands where the node withheld details.
function hidden() {
  return session.me
    ? '<span class="muted hidden-detail">not in your view</span>'
    : '<span class="muted hidden-detail"><a href="#/signin">sign in to see details</a></span>';
}

// -- who is signed in ------------------------------------------------------------

async function refreshSession() {
  try { session.me = await api("/api/session"); } catch (e) { session.me = null; }
  const box = $("#whoami");
  if (!box) return;
  if (!session.me) {
    box.innerHTML = '<a href="#/signin" id="nav-signin">Sign in</a>';
    return;
  }
  const m = session.me;
  const label = m.kind === "patient" ? `patient ${esc(short(m.id, 10))}`
    : m.kind === "regulator" ? `regulator (${esc(m.org)})` : `${esc(m.org)} admin`;
  box.innerHTML = `<span id="signed-in-as" title="${esc(m.sees)}">${label}</span> <button class="secondary" id="signout">Sign out</button>`;
  $("#signout").onclick = async () => {
    await post("/api/session/logout");
    portal.seed = null; portal.me = null;
    await route();
  };
}

// A key-file sign-in (signed in this page) and the CLI path for encrypted keys.
function signInForm(intro) {
  return `
    <section><h2>Sign in with your key</h2>
      <p class="muted">${intro} Your key file is read by this page only: it signs a one-time challenge from the node, and it is never uploaded.</p>
      <div class="row"><input type="file" id="keyfile" accept=".json,.key,application/json"><button id="signin">Sign in</button></div>
      <p id="signin-error" class="error" hidden></p>
    </section>
    <section><h2>Or sign with the command line (encrypted keys)</h2>
      <div class="row"><button class="secondary" id="get-challenge">Get a challenge</button></div>
      <pre class="mono" id="cli-cmd"></pre>
      <label>Public key (hex)<input type="text" id="cli-key"></label>
      <label>Signature (hex)<input type="text" id="cli-sig"></label>
      <div class="row"><button id="cli-signin">Sign in</button></div>
    </section>`;
}

function wireSignIn(base, onDone) {
  const fail = (e) => { const p = $("#signin-error"); p.hidden = false; p.textContent = e.message || e; };
  $("#signin").onclick = async () => {
    try {
      const f = $("#keyfile").files[0];
      if (!f) throw new Error("choose your key file first");
      const k = await readKeyFile(f);
      const ch = await post(`${base}/challenge`);
      const msg = MsgPack.encode([ch.domain, ch.chain_id, ch.audience, unhex(ch.challenge)]);
      const sig = await sign(k.seed, msg);
      await post(`${base}/login`, { public_key: k.publicKey, challenge: ch.challenge, signature: hex(sig) });
      await onDone(k);
    } catch (e) { fail(e); }
  };
  let cliChallenge = null;
  $("#get-challenge").onclick = async () => {
    cliChallenge = await post(`${base}/challenge`);
    $("#cli-cmd").textContent = `medchain portal sign --key YOUR_KEY_FILE --chain-id ${cliChallenge.chain_id} --audience ${cliChallenge.audience} --challenge ${cliChallenge.challenge}`;
  };
  $("#cli-signin").onclick = async () => {
    try {
      if (!cliChallenge) throw new Error("get a challenge first");
      await post(`${base}/login`, { public_key: $("#cli-key").value.trim(), challenge: cliChallenge.challenge, signature: $("#cli-sig").value.trim() });
      await onDone(null);
    } catch (e) { fail(e); }
  };
}

let returnTo = "#/";

async function signInPage() {
  view().innerHTML = `<h1>Sign in</h1>
    <p class="muted">Without signing in, this explorer shows heights, hashes, times, counts, members and, of each transaction, its call, size and outcome.
    A member organization's admin sees the transactions its keys signed and the events it is a party to; the regulator sees everything; a patient sees their own.</p>
    ${signInForm("Use your organization's admin key (admin.key), the regulator's, or your patient key.")}`;
  wireSignIn("/api/session", async (k) => {
    if (k) { portal.seed = k.seed; portal.publicKey = k.publicKey; }
    await refreshSession();
    location.hash = returnTo;
  });
}

// -- consortium ---------------------------------------------------------------

async function consortiumPage() {
  view().innerHTML = `
    <h1>Consortium</h1>
    <section><div class="stats" id="stats"></div></section>
    <section><h2>Members</h2><table id="members"><thead><tr><th>Organization</th><th>Role</th><th>Node</th><th>Liveness</th><th></th></tr></thead><tbody></tbody></table></section>
    <section><h2>Commit rate and latency (this node, last minutes)</h2>
      <div class="legend"><span class="r">— committed tx/s</span><span class="l">- - p50 commit latency (ms)</span></div>
      <svg class="chart" id="chart" viewBox="0 0 800 180" preserveAspectRatio="none"></svg></section>
    <section><h2>Recent blocks</h2><table id="blocks"><thead><tr><th>Height</th><th>Hash</th><th>Txs</th><th>Time</th><th>Proposer</th></tr></thead><tbody></tbody></table></section>`;
  const refresh = async () => {
    try {
      const [s, members, blocks] = await Promise.all([api("/api/status"), api("/api/members"), api("/api/blocks?limit=15")]);
      $("#stats").innerHTML = [
        ["Height", `<span id="height">${s.height}</span>`],
        ["View", `<span id="view-no">${s.view}</span>${s.view_changing ? " (changing)" : ""}`],
        ["Primary", esc(s.primary)],
        ["This node", esc(s.org)],
        ["Members", `${s.members} (f = ${s.f})`],
        ["Pool", s.pool],
      ].map(([k, v]) => `<div class="stat">${k}<b>${v}</b></div>`).join("");
      $("#footer").textContent = `chain ${s.chain_id} · state root ${short(s.state_root, 16)}`;
      $("#members tbody").innerHTML = members.map((m) => `<tr>
        <td>${esc(m.name)} <span class="muted">(${esc(m.org_id)})</span></td><td>${esc(m.role)}</td>
        <td class="mono">${esc(short(m.node_key, 16))}${m.this_node ? ' <span class="pill">this node</span>' : ""}</td>
        <td class="${m.up ? "up" : "down"}">${m.up ? "up" : "unreachable"}</td>
        <td>${m.primary ? '<span class="pill">primary</span>' : ""}</td></tr>`).join("");
      $("#blocks tbody").innerHTML = blocks.blocks.map((b) => `<tr>
        <td><a href="#/block/${b.height}">${b.height}</a></td><td class="mono">${esc(short(b.hash, 20))}</td>
        <td>${b.txs}</td><td>${time(b.timestamp_ms)}</td><td>${esc(b.proposer)}</td></tr>`).join("");
    } catch (e) { $("#stats").innerHTML = `<p class="error">${esc(e.message)}</p>`; }
  };
  const chart = async () => {
    try { drawChart((await api("/api/history")).samples); } catch (e) { /* next time */ }
  };
  await Promise.all([refresh(), chart()]);
  timers.push(setInterval(refresh, 1500), setInterval(chart, 5000));
}

function drawChart(samples) {
  const svg = $("#chart");
  if (!svg) return;
  const W = 800, H = 180, pad = 24;
  const pts = samples.filter((s) => s.tx_per_s !== null);
  if (pts.length < 2) { svg.innerHTML = `<text x="10" y="20">collecting samples…</text>`; return; }
  const t0 = pts[0].t_ms, t1 = pts[pts.length - 1].t_ms || t0 + 1;
  const maxR = Math.max(1, ...pts.map((p) => p.tx_per_s));
  const maxL = Math.max(1, ...pts.map((p) => p.p50_ms || 0));
  const x = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (W - 2 * pad);
  const y = (v, m) => H - pad - (v / m) * (H - 2 * pad);
  const line = (f, m) => pts.map((p, i) => `${i ? "L" : "M"}${x(p.t_ms).toFixed(1)},${y(f(p), m).toFixed(1)}`).join(" ");
  svg.innerHTML = `
    <path class="rate" d="${line((p) => p.tx_per_s, maxR)}"/>
    <path class="lat" d="${line((p) => p.p50_ms || 0, maxL)}"/>
    <text x="4" y="14">${maxR.toFixed(0)} tx/s</text>
    <text x="${W - 90}" y="14">${maxL} ms</text>
    <text x="4" y="${H - 6}">${Math.round((t1 - t0) / 60000)} min</text>`;
}

async function blockPage(arg) {
  // "#/block/REF" or "#/block/REF/OFFSET": the server sends one page of transactions
  const [ref, off] = arg.split("/");
  const offset = Math.max(0, parseInt(off || "0", 10) || 0);
  const b = await api(`/api/blocks/${encodeURIComponent(ref)}?offset=${offset}`);
  const h = b.header, c = b.certificate;
  const end = b.offset + b.txs.length;
  const pageLink = (o, label) => `<a href="#/block/${b.height}/${o}">${label}</a>`;
  const pager = b.tx_count > b.txs.length ? `<p id="tx-pages">transactions ${b.txs.length ? b.offset + 1 : 0}–${end} of ${b.tx_count}
    ${b.offset > 0 ? pageLink(Math.max(0, b.offset - b.limit), "previous") : ""}
    ${end < b.tx_count ? pageLink(end, "next") : ""}</p>` : "";
  view().innerHTML = `
    <h1>Block <span id="block-height">${b.height}</span></h1>
    <section><h2>Header</h2><dl class="kv">
      <dt>Hash</dt><dd class="mono" id="block-hash">${esc(b.hash)}</dd>
      <dt>Previous</dt><dd class="mono">${b.height > 1 ? `<a href="#/block/${b.height - 1}">${esc(h.prev_hash)}</a>` : esc(h.prev_hash)}</dd>
      <dt>Time</dt><dd>${time(h.timestamp_ms)}</dd>
      <dt>Proposer</dt><dd>${esc(h.proposer_org)}</dd>
      <dt>Transactions Merkle root</dt><dd class="mono">${esc(h.tx_root)} <span class="muted">(RFC 6962 over ${b.tx_count} tx ids)</span></dd>
      <dt>State root before / after</dt><dd class="mono">${esc(h.state_root)}<br>${esc(b.state_root_after)}</dd>
      <dt>Validator set</dt><dd class="mono">${esc(h.validator_set_hash)}</dd>
    </dl></section>
    <section><h2>Commit certificate</h2>${c ? `<p id="cert-summary">${c.votes.length} of ${b.quorum} required signatures (view ${c.view}, sequence ${c.seq}) from ${c.votes.map((v) => esc(v.org)).join(", ")}</p>` : '<p class="muted">none</p>'}</section>
    <section><h2>Transactions</h2>${pager}<table id="txs"><thead><tr><th>#</th><th>Tx id</th><th>Call</th><th>Size</th><th>Sender</th><th>Result</th></tr></thead><tbody>
      ${b.txs.map((t, i) => `<tr data-detail="${esc(t.detail)}"><td>${b.offset + i}</td><td class="mono"><a href="#/tx/${t.tx_id}">${esc(short(t.tx_id, 20))}</a></td><td>${esc(t.contract)}.${esc(t.method)}</td><td>${t.size} B</td><td>${t.sender ? who(t.sender) : hidden()}</td><td class="${t.ok ? "permit" : "deny"}">${t.ok ? "ok" : "failed"}</td></tr>`).join("")}
    </tbody></table></section>`;
}

async function txPage(id) {
  const t = await api(`/api/tx/${encodeURIComponent(id)}`);
  const full = t.detail === "full";
  const pre = (v) => `<pre class="mono">${esc(JSON.stringify(v, null, 1))}</pre>`;
  const note = full ? ""
    : t.detail === "events" ? '<p class="notice" id="tx-hidden">Only the events you are a party to are shown; the arguments, result and sender are not in your view.</p>'
    : session.me ? '<p class="notice" id="tx-hidden">The arguments, events, result and sender of this transaction are not in your view.</p>'
    : '<p class="notice" id="tx-hidden">Arguments, events, result and sender are hidden: <a href="#/signin">sign in to see details</a>.</p>';
  view().innerHTML = `<h1>Transaction</h1><section><dl class="kv" id="tx-fields">
    <dt>Id</dt><dd class="mono">${esc(t.tx_id)}</dd>
    <dt>Status</dt><dd id="tx-status">${esc(t.status)}${full && t.reason ? ` — ${esc(t.reason)}` : ""}</dd>
    <dt>Block</dt><dd>${t.height ? `<a href="#/block/${t.height}">${t.height}</a> (index ${t.index})` : ""}</dd>
    <dt>Call</dt><dd>${esc(t.contract)}.${esc(t.method)}</dd>
    <dt>Size</dt><dd>${t.size ?? ""} bytes</dd>
    <dt>Sender</dt><dd id="tx-sender">${full ? who(t.sender) : hidden()}</dd>
    <dt>Arguments</dt><dd id="tx-args">${full ? pre(t.args) : hidden()}</dd>
    ${full && "result" in t ? `<dt>Result</dt><dd id="tx-result">${pre(t.result)}</dd>` : ""}
    <dt>Events</dt><dd id="tx-events">${t.events ? pre(t.events) : hidden()}</dd>
  </dl>${note}</section>`;
}

async function recordPage(id) {
  const r = await api(`/api/records/${encodeURIComponent(id)}`);
  const row = (v) => `<tr><td>${v.version}</td><td>${esc(v.category)}</td><td>${esc(v.clinical_year)}</td><td>${esc(v.custodian)}</td><td class="mono sha256">${esc(hexOf(v.content_hash))}</td><td class="mono">${esc(short(v.patient, 10))}</td></tr>`;
  view().innerHTML = `<h1>Record <span class="mono">${esc(id)}</span></h1>
    <section><p class="muted">The record's content stays encrypted at its custodian; the chain holds its fingerprint.</p>
    <table id="record-versions"><thead><tr><th>Version</th><th>Category</th><th>Clinical year</th><th>Custodian</th><th>SHA-256</th><th>Patient (pseudonym)</th></tr></thead>
    <tbody>${r.history.map(row).join("")}</tbody></table></section>`;
}

// -- patient portal ---------------------------------------------------------

const PKCS8_ED25519 = unhex("302e020100300506032b657004220420");

async function importSeed(seed) {
  const der = new Uint8Array(PKCS8_ED25519.length + 32);
  der.set(PKCS8_ED25519); der.set(seed, PKCS8_ED25519.length);
  return crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
}
async function sign(seed, bytes) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, await importSeed(seed), bytes));
}

async function readKeyFile(file) {
  let doc;
  try { doc = JSON.parse(await file.text()); } catch (e) { throw new Error("that is not a medchain key file"); }
  if (!doc || doc.medchain_key === undefined) throw new Error("that is not a medchain key file");
  if (!doc.seed) throw new Error("this key file is encrypted: sign the challenge with `medchain portal sign` and paste the signature below");
  return { seed: unhex(doc.seed), publicKey: doc.public_key };
}

async function portalPage() {
  try {
    portal.me = await api("/api/portal/me");
    return renderPatient();
  } catch (e) { /* not signed in */ }
  view().innerHTML = `<h1>Patient portal</h1>${signInForm("Sign in with your patient key.")}`;
  wireSignIn("/api/portal", async (k) => {
    if (k) { portal.seed = k.seed; portal.publicKey = k.publicKey; }
    await refreshSession();
    await portalPage();
  });
}

function renderPatient() {
  const me = portal.me;
  const canSign = portal.seed !== null && portal.publicKey === me.public_key;
  view().innerHTML = `
    <h1>Your records <span class="muted mono" id="patient-id">${esc(me.patient)}</span></h1>
    <div class="row"><button class="secondary" id="logout">Sign out</button><span class="muted" id="live">live updates: connecting…</span></div>
    <section><h2>Who used your data</h2><p id="access-new" class="notice" hidden>New accesses were logged: <a href="#/portal" id="access-newest">see the newest</a>.</p>
      <table id="access-log"><thead><tr><th>When</th><th>Record</th><th>Who</th><th>Purpose</th><th>Decision</th><th>Why</th><th>Under</th></tr></thead><tbody></tbody></table>
      <div class="row pager" id="access-pages"><button class="secondary" id="access-prev" disabled>← previous (newer)</button><span class="muted" id="access-where"></span><button class="secondary" id="access-next" disabled>next (older) →</button></div></section>
    <section><h2>Your consents</h2><p id="consent-msg" hidden></p><table id="consents"><thead><tr><th>Consent</th><th>For</th><th>Purpose</th><th>Which records</th><th>Until</th><th>Status</th><th></th></tr></thead><tbody></tbody></table>
      ${canSign ? grantForm(me.grant_options) : '<p class="muted">To grant or revoke from this page, sign in with your key file.</p>'}</section>
    <section><h2>Your records across institutions</h2><table id="records"><thead><tr><th>Year</th><th>Category</th><th>Held by</th><th>Record</th><th></th></tr></thead><tbody></tbody></table>
      <p class="muted">${canSign
        ? "Contents stay encrypted at each institution. Open one: this page signs the request with your key, the institution logs the access on chain and sends the record sealed to your key, and it is decrypted and checked against its on-chain fingerprint here."
        : "Contents stay encrypted at each institution. To open them here, sign in with your key file; or use <code>medchain records timeline</code>."}</p>
      <div id="record-view"></div></section>`;
  $("#logout").onclick = async () => { await post("/api/portal/logout"); portal.seed = null; portal.me = null; await refreshSession(); location.hash = "#/portal"; portalPage(); };
  if (canSign) wireGrantForm();
  fillPatient();
  accessLog.cursors = []; accessLog.cursor = null; accessLog.rows = [];
  $("#access-next").onclick = () => { accessLog.cursors.push(accessLog.cursor); loadAccesses(accessLog.next); };
  $("#access-prev").onclick = () => loadAccesses(accessLog.cursors.pop() ?? null);
  $("#access-newest").onclick = (ev) => { ev.preventDefault(); accessLog.cursors = []; loadAccesses(null); };
  loadAccesses(null);
  eventSource = new EventSource("/api/portal/events");
  eventSource.onopen = () => { $("#live").textContent = "live updates: on"; };
  // CLOSED: the server refused the stream (e.g. too many views open); the browser will not retry
  eventSource.onerror = (ev) => {
    const l = $("#live");
    if (l) l.textContent = ev.target.readyState === EventSource.CLOSED ? "live updates: off (reload to retry)" : "live updates: reconnecting…";
  };
  const reload = async () => {
    try { portal.me = await api("/api/portal/me"); fillPatient(); } catch (e) { /* session over */ }
  };
  // a new access shows on the newest page at once; on an older page, a notice says so
  eventSource.addEventListener("access", () => {
    if (accessLog.cursor === null) loadAccesses(null, true);
    else $("#access-new").hidden = false;
  });
  ["consent", "records"].forEach((k) => eventSource.addEventListener(k, reload));
}

// The access log, one page at a time: the server pages with a cursor (the last
// entry shown); going back to newer pages retraces the cursors used.
const accessLog = { cursors: [], cursor: null, next: null, rows: [], asked: 0 };

async function loadAccesses(cursor, live = false) {
  const before = new Set(accessLog.rows.map((a) => a.access_id));
  const asked = ++accessLog.asked;
  let page;
  try {
    page = await api(`/api/portal/accesses${cursor ? `?before=${encodeURIComponent(cursor)}` : ""}`);
  } catch (e) { return; /* session over */ }
  if (asked !== accessLog.asked) return;  // a later page was asked for meanwhile
  accessLog.cursor = cursor; accessLog.next = page.next; accessLog.rows = page.accesses;
  const fresh = (a) => live && before.size && !before.has(a.access_id);
  const body = $("#access-log tbody");
  if (!body) return;
  body.innerHTML = page.accesses.map((a) => `<tr class="${fresh(a) ? "fresh" : ""}" data-access="${esc(a.access_id)}">
    <td>${time(a.timestamp_ms)}</td><td><span class="mono">${esc(a.record_id)}</span> <span class="muted">at ${esc(a.custodian_name)}</span></td>
    <td class="who">${esc(a.requester_text)}</td><td>${esc(a.purpose)}</td>
    <td class="decision ${a.decision === "permit" ? "permit" : "deny"}">${esc(a.decision_text)}</td>
    <td class="reason">${esc(a.reason_text)}</td><td class="consent">${esc(a.consent_text)}</td></tr>`).join("")
    || `<tr><td colspan="7" class="muted">${cursor ? "no older accesses" : "nobody has asked for your records yet"}</td></tr>`;
  const pageNo = accessLog.cursors.length + 1;
  $("#access-where").textContent = page.accesses.length ? `page ${pageNo} (newest first)` : "";
  $("#access-prev").disabled = cursor === null;
  $("#access-next").disabled = !page.next;
  if (cursor === null) $("#access-new").hidden = true;
}

function fillPatient() {
  const me = portal.me;
  const canSign = portal.seed !== null && portal.publicKey === me.public_key;
  $("#consents tbody").innerHTML = me.consents.map((c) => `<tr data-consent="${esc(c.id)}">
    <td class="mono">${esc(short(c.id, 12))}</td><td class="grantee">${esc(c.grantee_text)}</td><td class="purpose">${esc(c.purpose_text)}</td>
    <td class="scope">${esc(c.scope_text)}${c.referral ? `<div class="muted referral">${esc(c.referral.text)}</div>` : ""}</td>
    <td>${time(c.expires_ms)}</td><td class="status">${esc(c.state)}</td>
    <td>${c.state === "active" ? `<button class="revoke" data-id="${esc(c.id)}" ${canSign ? "" : "disabled"}>Revoke</button>` : ""}</td></tr>`).join("") || '<tr><td colspan="7" class="muted">no consents</td></tr>';
  document.querySelectorAll("button.revoke").forEach((b) => { b.onclick = () => revoke(b.dataset.id); });
  $("#records tbody").innerHTML = me.records.map((r) => `<tr data-record="${esc(r.record_id)}"><td>${esc(r.clinical_year)}</td><td>${esc(r.category)}</td><td>${esc(r.custodian_name || r.custodian)}</td><td class="mono">${esc(r.record_id)}</td>
    <td><button class="secondary open-record" data-id="${esc(r.record_id)}" ${canSign ? "" : "disabled"}>Open</button></td></tr>`).join("") || '<tr><td colspan="5" class="muted">no records</td></tr>';
  document.querySelectorAll("button.open-record").forEach((b) => { b.onclick = () => openRecord(b.dataset.id); });
}

// Granting a consent: the page builds and signs consent.grant with the patient's
// key, as for a revocation; the node only relays it.
function grantForm(opts) {
  const option = (o) => `<option value="${esc(o.value ?? o.id)}">${esc(o.text ?? o.name)}</option>`;
  return `<form id="grant-form" class="grant" autocomplete="off"><h3>Grant a consent</h3>
    <div class="row"><label>To <select id="grant-org">${opts.organizations.map(option).join("")}</select></label>
      <label>For <select id="grant-purpose">${opts.purposes.map(option).join("")}</select></label></div>
    <fieldset id="grant-categories"><legend>Which records</legend>
      <label><input type="checkbox" value="*"> all your records</label>
      ${opts.categories.map((c) => `<label><input type="checkbox" value="${esc(c.value)}"> ${esc(c.text)}</label>`).join("")}</fieldset>
    <div class="row"><label>Dated <select id="grant-period"><option value="any">any date</option><option value="last">in the last days…</option><option value="range">between two dates…</option></select></label>
      <label id="grant-last" hidden>the last <input type="number" id="grant-last-days" value="730" min="1" max="36500"> days</label>
      <span id="grant-range" hidden><label>from <input type="date" id="grant-from"></label> <label>to <input type="date" id="grant-to"></label></span></div>
    <div class="row"><label>Lasting <input type="number" id="grant-days" value="90" min="1" max="36500"> days</label>
      <button type="button" id="grant">Sign and grant</button></div></form>`;
}

function wireGrantForm() {
  $("#grant-period").onchange = () => {
    $("#grant-last").hidden = $("#grant-period").value !== "last";
    $("#grant-range").hidden = $("#grant-period").value !== "range";
  };
  $("#grant").onclick = grantConsent;
}

function wholeNumber(sel, what) {
  const v = $(sel).value.trim();
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || n < 1 || n > 36500) throw new Error(`${what}: a whole number of days from 1 to 36500`);
  return n;
}

function grantArgs() {
  const picked = [...document.querySelectorAll("#grant-categories input:checked")].map((i) => i.value);
  if (!picked.length) throw new Error("choose which records the consent covers");
  const kind = $("#grant-period").value;
  let period = {};
  if (kind === "last") period = { last_days: wholeNumber("#grant-last-days", "the period") };
  if (kind === "range") {
    const from = $("#grant-from").value, to = $("#grant-to").value;
    if (!from && !to) throw new Error("give the first date, the last date, or both");
    if (from && to && from > to) throw new Error("the period ends before it starts");
    if (from) period.from = from;
    if (to) period.to = to;
  }
  return {
    grantee_kind: "org",
    grantee: $("#grant-org").value,
    categories: picked.includes("*") ? ["*"] : picked,
    purpose: $("#grant-purpose").value,
    period,
    days: wholeNumber("#grant-days", "how long it lasts"),
  };
}

async function grantConsent() {
  const msg = $("#consent-msg");
  msg.hidden = false; msg.className = "notice";
  try {
    const args = grantArgs();
    msg.textContent = "signing and committing…";
    const res = await post("/api/portal/submit", { tx: await signTx("consent", "grant", args) });
    if (res.status !== "committed") throw new Error(res.reason || res.status);
    msg.textContent = `consent granted in block ${res.height}`;
    portal.me = await api("/api/portal/me");
    fillPatient();
  } catch (e) { msg.className = "error"; msg.textContent = e.message || e; }
}

let lastNonce = 0n;
function nextNonce() {
  const n = BigInt(Date.now()) * 1000n;
  lastNonce = n > lastNonce ? n : lastNonce + 1n;
  return lastNonce;
}

async function signTx(contract, method, args) {
  const me = portal.me;
  const sender = unhex(portal.publicKey);
  const nonce = nextNonce();
  const sig = await sign(portal.seed, MsgPack.encode(["medchain/tx/v1", me.chain_id, sender, nonce, contract, method, args]));
  return hex(MsgPack.encode([me.chain_id, sender, nonce, contract, method, args, sig]));
}

function summary(res) {
  const code = res.code || res.type?.[0] || res.vaccineCode || res.medicationCodeableConcept || {};
  const what = code.text || code.coding?.[0]?.display || "";
  const when = res.effectiveDateTime || res.onsetDateTime || res.performedPeriod?.start || res.period?.start || res.occurrenceDateTime || res.authoredOn || res.recordedDate || res.issued || "";
  const value = res.valueQuantity ? `${res.valueQuantity.value} ${res.valueQuantity.unit || ""}` : res.valueCodeableConcept?.text || "";
  return [res.resourceType, what, value, when].filter(Boolean).join(" · ");
}

async function openRecord(recordId) {
  const out = $("#record-view");
  const rec = portal.me.records.find((r) => r.record_id === recordId);
  out.innerHTML = `<p class="notice">asking ${esc(rec.custodian_name || rec.custodian)} for record <span class="mono">${esc(recordId)}</span>…</p>`;
  try {
    const tx = await signTx("access", "request_many", { purpose: "treatment", records: [recordId] });
    const reply = await post("/api/portal/fetch", { tx });
    if (reply.error) throw new Error(reply.error);
    const item = reply.items.find((i) => i.record_id === recordId);
    if (!item || item.status !== "ok") throw new Error(item ? `${item.status}: ${item.reason}` : "no answer for this record");
    const sealed = Uint8Array.from(atob(item.sealed), (c) => c.charCodeAt(0));
    const [, content] = MsgPack.decode(await Nacl.openSealed(sealed, portal.seed));
    const digest = hex(new Uint8Array(await crypto.subtle.digest("SHA-256", content)));
    const anchored = hexOf(rec.content_hash);  // bytes travel as {$bytes: hex}
    const verified = digest === anchored;
    const resource = JSON.parse(new TextDecoder().decode(content));
    out.innerHTML = `<article class="record" data-record="${esc(recordId)}">
      <h3>${esc(summary(resource))}</h3>
      <p class="${verified ? "permit" : "deny"}" id="record-integrity">${verified
        ? `SHA-256 ${esc(short(digest, 16))} matches the fingerprint anchored on chain`
        : `INTEGRITY ERROR: SHA-256 ${esc(short(digest, 16))} differs from the anchored ${esc(short(anchored, 16))}`}</p>
      <p class="muted">held by ${esc(rec.custodian_name || rec.custodian)}; this access is in your log (transaction <span class="mono">${esc(short(reply.tx_id, 16))}</span>)</p>
      <details><summary>FHIR resource</summary><pre class="mono" id="record-json">${esc(JSON.stringify(resource, null, 1))}</pre></details></article>`;
  } catch (e) { out.innerHTML = `<p class="error">${esc(e.message || e)}</p>`; }
}

async function revoke(consentId) {
  const msg = $("#consent-msg");
  msg.hidden = false; msg.className = "notice"; msg.textContent = "signing and committing…";
  try {
    const tx = await signTx("consent", "revoke", { consent_id: consentId });
    const res = await post("/api/portal/submit", { tx });
    if (res.status !== "committed") throw new Error(res.reason || res.status);
    msg.textContent = `consent revoked in block ${res.height}`;
    portal.me = await api("/api/portal/me");
    fillPatient();
  } catch (e) { msg.className = "error"; msg.textContent = e.message || e; }
}

// -- routing ------------------------------------------------------------------

async function route() {
  clearTimers();
  const h = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = h.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  $("#nav-consortium").classList.toggle("active", page !== "portal" && page !== "signin");
  $("#nav-portal").classList.toggle("active", page === "portal");
  if (page !== "signin") returnTo = location.hash || "#/";
  await refreshSession();
  try {
    if (page === "signin") await signInPage();
    else if (page === "block") await blockPage(arg);
    else if (page === "tx") await txPage(arg);
    else if (page === "record") await recordPage(arg);
    else if (page === "portal") await portalPage();
    else await consortiumPage();
  } catch (e) { showError(e); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#search").onsubmit = async (ev) => {
    ev.preventDefault();
    const q = $("#search-q").value.trim();
    if (!q) return;
    try {
      const r = await api(`/api/search?q=${encodeURIComponent(q)}`);
      location.hash = `#/${r.kind}/${encodeURIComponent(r.ref)}`;
    } catch (e) { showError(e); }
  };
  window.addEventListener("hashchange", route);
  route();
});
