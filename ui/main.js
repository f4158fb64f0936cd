// The profiles, grouped by service, with each one's state from the app's agent and a live
// countdown to expiry. The page follows the agent's events ("agent"): no polling. No secret
// and no token ever reaches this page.
const { invoke } = window.__TAURI__.core;
const { listen } = window.__TAURI__.event;

const STATE_LABELS = {
  valid: "valid",
  refreshing: "refreshing",
  expiring: "expiring",
  expired: "expired",
  login_required: "login required",
  error: "error",
};

/** name -> row ({name, preset, service, scheme, base_url, status}) */
const rows = new Map();
/** name -> the last action's outcome, shown beside the buttons */
const outcomes = new Map();

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  return td;
}

// "in 4 min 20 s", "in 2 h 5 min", "3 min ago"
function countdown(expiresAt, now) {
  if (!expiresAt) return "";
  let s = Math.round((Date.parse(expiresAt) - now) / 1000);
  const past = s < 0;
  s = Math.abs(s);
  let text;
  if (s < 60) text = `${s} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min ${s % 60} s`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  else text = `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  return past ? `${text} ago` : `in ${text}`;
}

function render() {
  const body = document.querySelector("#profiles tbody");
  const groups = new Map();
  for (const r of [...rows.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!groups.has(r.service)) groups.set(r.service, []);
    groups.get(r.service).push(r);
  }
  const out = [];
  for (const service of [...groups.keys()].sort()) {
    const head = document.createElement("tr");
    head.className = "group";
    const th = document.createElement("th");
    th.colSpan = 6;
    th.scope = "rowgroup";
    th.textContent = service;
    head.append(th);
    out.push(head);
    for (const r of groups.get(service)) {
      const tr = document.createElement("tr");
      tr.dataset.profile = r.name;
      const state = r.status?.state ?? "unknown";
      tr.dataset.state = state;
      const badge = cell(STATE_LABELS[state] ?? state, `state ${state}`);
      if (r.status?.last_error) badge.title = r.status.last_error;
      const exp = cell(countdown(r.status?.expires_at, Date.now()), "expires");
      if (r.status?.expires_at) exp.dataset.expiresAt = r.status.expires_at;
      tr.append(cell(r.name, "name"), badge, exp, cell(r.preset, "preset"), cell(r.base_url, "url"), actions(r.name));
      out.push(tr);
    }
  }
  body.replaceChildren(...out);
  document.getElementById("empty").hidden = rows.size > 0;
  document.getElementById("status").textContent = `${rows.size} profile(s)`;
  tick();
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

// Delete asks once more in place (no modal): the first click arms it, the second deletes
// the profile and its keychain items; Escape or leaving the button disarms it.
function deleteButton(name) {
  const b = button("Delete", `Delete ${name}`, async () => {
    if (b.dataset.armed !== "true") {
      b.dataset.armed = "true";
      b.textContent = "Delete? Click again";
      b.classList.add("danger");
      return;
    }
    b.disabled = true;
    try {
      await invoke("delete_profile", { name });
      outcomes.delete(name);
    } catch (e) {
      outcomes.set(name, { text: e?.message ?? String(e), bad: true });
      render();
    }
  });
  const disarm = () => {
    b.dataset.armed = "false";
    b.textContent = "Delete";
    b.classList.remove("danger");
  };
  b.addEventListener("blur", disarm);
  b.addEventListener("keydown", (e) => e.key === "Escape" && disarm());
  return b;
}

function actions(name) {
  const td = document.createElement("td");
  td.className = "actions";
  const out = document.createElement("span");
  out.className = "outcome";
  out.setAttribute("role", "status");
  const o = outcomes.get(name);
  if (o) {
    out.textContent = o.text;
    out.classList.toggle("bad", o.bad);
  }
  const act = (fn) => async (ev) => {
    ev.currentTarget.disabled = true;
    outcomes.set(name, await fn().catch((e) => ({ text: e?.message ?? String(e), bad: true })));
    render();
  };
  td.append(
    button("Renew", `Renew ${name} now`, act(async () => {
      const s = await invoke("renew", { name });
      return { text: `renewed: ${STATE_LABELS[s.state] ?? s.state}`, bad: false };
    })),
    button("Inspect", `Inspect the token of ${name}`, () => inspect(name)),
    button("Use", `Commands that use ${name}`, () => showUse(name)),
    button("Test", `Test ${name} through the helper`, act(async () => {
      const t = await invoke("test_profile", { name, path: rows.get(name)?.test_path ?? null });
      const why = t.keyport_error ? ` (${t.keyport_error})` : "";
      return { text: `${t.status}${why} · ${Math.round(t.ms)} ms`, bad: t.status >= 400 };
    })),
    deleteButton(name),
    out,
  );
  return td;
}

// Copy as curl / HTTPie / Python: commands built by the app that reach the profile through
// the helper and read the key themselves.
async function showUse(name) {
  const box = document.getElementById("use");
  const list = box.querySelector(".snippets");
  box.querySelector("h2").textContent = `Use ${name} from a tool`;
  list.replaceChildren();
  try {
    const s = await invoke("snippets", { name });
    for (const [label, key] of [["curl", "curl"], ["HTTPie", "httpie"], ["Python requests", "python"]]) {
      const head = document.createElement("div");
      head.className = "snippet-head";
      const title = document.createElement("span");
      title.textContent = label;
      const copy = button("Copy", `Copy as ${label}`, async () => {
        try {
          await navigator.clipboard.writeText(s[key]);
          copy.textContent = "Copied";
        } catch (e) {
          copy.textContent = "Select and copy";
        }
      });
      head.append(title, copy);
      const pre = document.createElement("pre");
      pre.dataset.snippet = key;
      pre.textContent = s[key];
      list.append(head, pre);
    }
  } catch (e) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = e?.message ?? String(e);
    list.append(p);
  }
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

function when(t) {
  return t ? `${new Date(t).toLocaleString()} (${countdown(t, Date.now())})` : null;
}

// The token inspector: what the token says about itself, decoded here by the core and
// labelled as unverified. The token itself never reaches the page.
async function inspect(name) {
  const box = document.getElementById("inspector");
  const note = box.querySelector(".note");
  const dl = box.querySelector("dl");
  const claims = document.getElementById("claims");
  box.querySelector("h2").textContent = `Token of ${name}`;
  dl.replaceChildren();
  claims.textContent = "";
  box.querySelector("details").hidden = true;
  box.dataset.kind = "";
  try {
    const t = await invoke("inspect_token", { name });
    const i = t.inspection;
    box.dataset.kind = i?.kind ?? "none";
    if (!i) {
      note.textContent = "No valid credential right now: its state says why.";
    } else if (i.kind === "opaque") {
      note.textContent = `An opaque token (${i.length} characters): nothing can be read from it.`;
    } else {
      note.textContent = "A JWT, decoded here and not verified: Keyport holds no key to check its signature.";
      box.querySelector("details").hidden = false;
      claims.textContent = JSON.stringify({ header: i.header, claims: i.claims }, null, 2);
    }
    const items = [
      ["Sent in", t.header && (t.scheme_word ? `${t.header}: ${t.scheme_word} …` : `${t.header}: …`)],
      ["Expires", when(i?.expires_at)],
      ["Issued", when(i?.issued_at)],
      ["Not before", when(i?.not_before)],
      ["Issuer", i?.issuer],
      ["Subject", i?.subject],
      ["Audience", i?.audience?.join(", ")],
      ["Scopes", i?.scopes?.join(" ")],
    ];
    for (const [k, v] of items) {
      if (!v) continue;
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dd.dataset.field = k.toLowerCase().replace(" ", "_");
      dl.append(dt, dd);
    }
  } catch (e) {
    note.textContent = e?.message ?? String(e);
  }
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

// Updates the countdowns once a second, only while one is shown and the window is visible.
let timer = null;
function tick() {
  const cells = document.querySelectorAll("td.expires[data-expires-at]");
  for (const c of cells) c.textContent = countdown(c.dataset.expiresAt, Date.now());
  const want = cells.length > 0 && document.visibilityState === "visible";
  if (want && timer === null) timer = setInterval(tick, 1000);
  if (!want && timer !== null) {
    clearInterval(timer);
    timer = null;
  }
}
document.addEventListener("visibilitychange", tick);

function showError(e) {
  const err = document.getElementById("error");
  err.textContent = e?.message ?? String(e);
  err.hidden = false;
}

async function reload() {
  try {
    const list = await invoke("list_profiles");
    rows.clear();
    for (const p of list) rows.set(p.name, p);
    document.getElementById("error").hidden = true;
  } catch (e) {
    showError(e);
  }
  render();
}

function onAgentEvent(ev) {
  switch (ev.event) {
    case "snapshot":
    case "added":
    case "removed":
    case "changed":
      // (a profile's service and base URL come from the config: read it again)
      return reload();
    case "state":
    case "renewal_succeeded":
    case "renewal_failed": {
      const r = rows.get(ev.profile.name);
      if (!r) return reload();
      r.status = ev.profile;
      return render();
    }
    default:
  }
}

// Where local tools reach the helper, or why they can't (a port in use, say).
async function showHelper() {
  const el = document.getElementById("helper");
  try {
    const h = await invoke("helper_info");
    el.textContent = h.url ? `Helper: ${h.url}/PROFILE` : "";
    if (h.error) el.textContent = `${el.textContent ? el.textContent + " · " : ""}Helper: ${h.error}`;
    el.classList.toggle("bad", Boolean(h.error));
  } catch (e) {
    el.textContent = "";
  }
}

async function start() {
  await listen("agent", (e) => onAgentEvent(e.payload));
  await listen("agent-error", (e) => showError(e.payload));
  await reload();
  await showHelper();
  document.body.dataset.loaded = "true";
}

start();
