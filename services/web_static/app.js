// IZ*Net web page: presentation only. Every answer comes from the JSON API beside it (services/web.py),
// which calls the gateway and gallery gRPC APIs. No framework, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { key: sessionStorage.getItem("iznet-key") || "", gallery: "", info: null };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function showError(err) {
  const box = $("#alert");
  box.textContent = err ? `${err.code ? err.code + ": " : ""}${err.error || err.message || err}` : "";
  box.hidden = !err;
}

function tooLarge(file) {
  const limit = state.info ? state.info.max_upload : Infinity;
  return file.size > limit
    ? { code: "INVALID_ARGUMENT", error: `image too large: ${file.size.toLocaleString("en")} bytes > limit ${limit.toLocaleString("en")}` }
    : null;
}

async function api(path, { method = "GET", body = null, params = {} } = {}) {
  if (body instanceof File && tooLarge(body)) throw tooLarge(body);
  const q = new URLSearchParams({ gallery: state.gallery, ...params });
  const headers = {};
  if (state.key) headers["X-Api-Key"] = state.key;
  let resp;
  try {
    resp = await fetch(`${path}?${q}`, { method, body, headers });
  } catch (e) {
    throw { code: "UNAVAILABLE", error: `the web server did not answer (${e.message})` };
  }
  let doc;
  try { doc = await resp.json(); } catch (e) { doc = { code: "INTERNAL", error: `HTTP ${resp.status}` }; }
  if (!resp.ok) {
    if (doc.code === "UNAUTHENTICATED") setKeyState(false, doc.error);
    throw doc;
  }
  return doc;
}

function setKeyState(ok, reason) {
  const s = $("#key-state");
  s.textContent = ok ? "key accepted" : `key refused: ${reason || "wrong API key"}`;
  s.className = ok ? "ok" : "bad";
}

async function loadInfo() {
  const info = await api("/api/info");
  state.info = info;
  const sel = $("#gallery");
  const names = info.galleries.length ? info.galleries : [info.default_gallery];
  const keep = state.gallery || sessionStorage.getItem("iznet-gallery") || info.default_gallery;
  sel.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  sel.value = names.includes(keep) ? keep : names[0];
  state.gallery = sel.value;
  setKeyState(info.key_ok, "the gateway wants a valid API key");
  return info;
}

// ------------------------------------------------------------------------------------------- label
const fmt = (v, d = 3) => (typeof v === "number" ? v.toFixed(d) : v ?? "");

function versionList(dl, r) {
  const rows = [
    ["Detector", r.detector && `${r.detector.name} ${r.detector.version}`],
    ["Embedder", r.embedder && `${r.embedder.name} ${r.embedder.version} (${(r.embedder.digest || "").slice(0, 19)})`],
    ["Gallery", r.gallery && r.gallery.name ? `${r.gallery.name} v${r.gallery.version} — ${r.gallery.people} people, threshold ${fmt(r.gallery.threshold)}` : "none"],
  ];
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v || "—" })]));
}

async function labelPhoto(file) {
  showError(null);
  $("#label-result").hidden = true;
  if (!file) return;
  $("#label-status").textContent = `Labelling ${file.name}…`;
  const t0 = performance.now();
  try {
    const r = await api("/api/label", { method: "POST", body: file, params: { name: file.name } });
    const img = $("#annotated");
    await new Promise((ok) => { img.onload = ok; img.onerror = ok; img.src = r.annotated; });
    const ms = performance.now() - t0;
    const tbody = $("#faces tbody");
    tbody.replaceChildren(...r.faces.map((f, i) => el("tr", { class: f.unknown ? "unknown" : "known" },
      el("td", { text: i + 1 }), el("td", { class: "name", text: f.name }), el("td", { text: fmt(f.score) }),
      el("td", { text: fmt(f.threshold) }), el("td", { text: f.box.map((v) => Math.round(v)).join(", ") }),
      el("td", { text: f.note || "" }))));
    versionList($("#label-versions"), r);
    const names = r.faces.map((f) => f.name).join(", ") || "no faces";
    $("#label-status").textContent =
      `${file.name}: ${r.faces.length} face(s): ${names} — ${Math.round(ms)} ms from upload to annotated photo ` +
      `(gateway ${Math.round((r.timings_ms || {}).total || 0)} ms)`;
    $("#label-status").dataset.ms = String(Math.round(ms));
    $("#label-result").hidden = false;
  } catch (err) {
    $("#label-status").textContent = `${file.name}: not labelled`;
    showError(err);
  }
}

function setupLabel() {
  const drop = $("#drop");
  $("#label-file").addEventListener("change", (e) => labelPhoto(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    labelPhoto(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("#label-file").click(); });
}

// ------------------------------------------------------------------------------------------- people
async function loadPeople() {
  const r = await api("/api/people");
  const v = r.version;
  $("#people-summary").textContent =
    `${v.name} version ${v.version}: ${r.people.length} people, ${v.exemplars} exemplars`;
  const list = $("#people-list");
  list.replaceChildren(...r.people.map((p) => personItem(p)));
  for (const p of r.people) loadThumbs(p);
}

function personItem(p) {
  const li = el("li", { class: "person card", "data-person": p.name });
  const thumbs = el("div", { class: "thumbs" });
  const rename = el("button", { type: "button", text: "Rename" });
  const remove = el("button", { type: "button", class: "danger", text: "Remove" });
  rename.addEventListener("click", async () => {
    const name = prompt(`New name for ${p.name}`, p.name);
    if (!name || name === p.name) return;
    try { showError(null); await api("/api/rename", { method: "POST", body: JSON.stringify({ person: p.name, new_name: name }) }); await loadPeople(); }
    catch (err) { showError(err); }
  });
  remove.addEventListener("click", async () => {
    if (!confirm(`Remove ${p.name} and all ${p.exemplars} exemplars from ${state.gallery}?`)) return;
    try { showError(null); await api("/api/remove", { method: "POST", body: JSON.stringify({ person: p.name }) }); await loadPeople(); }
    catch (err) { showError(err); }
  });
  li.append(el("h3", { text: p.name }), el("p", { text: `${p.exemplars} exemplar(s)` }), thumbs,
    el("p", { class: "actions" }, rename, remove));
  return li;
}

async function loadThumbs(p) {
  const li = document.querySelector(`li[data-person="${CSS.escape(p.name)}"] .thumbs`);
  try {
    const r = await api("/api/exemplars", { params: { person: p.name } });
    li.replaceChildren(...r.exemplars.map((e) => el("img", { src: e.src, alt: `${p.name}, from ${e.source || "a photo"}`, width: 64, height: 64 })));
  } catch (err) {
    li.replaceChildren(el("span", { class: "muted", text: err.error || "no thumbnails" }));
  }
}

function setupEnroll() {
  $("#enroll-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    showError(null);
    const person = $("#enroll-person").value.trim();
    const files = [...$("#enroll-files").files];
    const out = $("#enroll-results");
    out.replaceChildren();
    let added = 0;
    for (const f of files) {
      const li = el("li", { text: `${f.name}: enrolling…` });
      out.append(li);
      try {
        const r = await api("/api/enroll", { method: "POST", body: f, params: { person, name: f.name } });
        if (r.status === "enrolled") added++;
        li.textContent = r.status === "enrolled"
          ? `${f.name}: enrolled as ${r.person}${r.note ? ` (${r.note})` : ""}`
          : `${f.name}: rejected — ${r.reason}: ${r.detail}`;
        li.className = r.status;
      } catch (err) {
        li.textContent = `${f.name}: not enrolled — ${err.code}: ${err.error}`;
        li.className = "rejected";
        if (err.code === "UNAUTHENTICATED") break;
      }
    }
    out.append(el("li", { class: "summary", text: `${added} of ${files.length} photo(s) enrolled for ${person}` }));
    try { await loadPeople(); } catch (err) { showError(err); }
  });
}

// ------------------------------------------------------------------------------------------- versions, models
async function loadVersions() {
  const [v, m] = await Promise.all([api("/api/versions"), api("/api/models")]);
  const s = v.served;
  const rows = [["Gallery", `${s.name}, version ${s.version} (served)`], ["Model", `${s.model.name} ${s.model.version} ${s.model.digest}`],
    ["People / exemplars", `${s.people} / ${s.exemplars}`], ["Threshold", `${fmt(s.threshold)}${v.threshold && v.threshold.source ? ` (${v.threshold.source})` : ""}`],
    ["Rule", v.rule], ["Detector", v.detector], ["Keeps crops", v.keep_crops ? "yes" : "no"]];
  $("#served").replaceChildren(...rows.flatMap(([k, val]) => [el("dt", { text: k }), el("dd", { text: val ?? "" })]));
  $("#history tbody").replaceChildren(...v.history.map((h) => el("tr", { class: h.version === s.version ? "current" : "" },
    el("td", { text: h.version + (h.version === s.version ? " (current)" : "") }), el("td", { text: h.action }),
    el("td", { text: h.model_name }), el("td", { text: h.people }), el("td", { text: h.exemplars }), el("td", { text: h.at }))));
  $("#models").replaceChildren(...m.models.map(modelCard));
}

function modelCard(c) {
  const details = el("dl");
  const skip = new Set(["name", "kind", "summary", "source", "default", "available"]);
  for (const [k, v] of Object.entries(c)) {
    if (skip.has(k) || v === null || v === "" || (typeof v === "object" && !Object.keys(v).length)) continue;
    details.append(el("dt", { text: k }), el("dd", { text: typeof v === "object" ? JSON.stringify(v) : v }));
  }
  return el("article", { class: `card model ${c.available ? "" : "unavailable"}` },
    el("h3", { text: `${c.name}${c.default ? " (default)" : ""}` }),
    el("p", { class: "muted", text: `${c.kind}, ${c.source}${c.available ? "" : " — not available here"}` }),
    el("p", { text: c.summary || "" }), el("details", {}, el("summary", { text: "Card" }), details));
}

// ------------------------------------------------------------------------------------------- jobs
async function loadJobs() {
  const r = await api("/api/jobs");
  $("#jobs-summary").textContent = r.jobs.length
    ? `${r.jobs.length} job(s) recorded in ${r.folder}${r.live ? " (live progress from Redis)" : ""}`
    : `no jobs recorded in ${r.folder} yet (submit one with iznet jobs submit)`;
  $("#jobs tbody").replaceChildren(...r.jobs.map((j) => {
    const p = j.progress || {};
    const pct = p.total ? Math.round((100 * p.done) / p.total) : (j.state === "SUCCESS" ? 100 : null);
    const bar = pct === null ? el("span", { text: p.done ? `${p.done} ${p.unit || ""}` : "—" })
      : el("progress", { max: 100, value: pct, "aria-label": `${j.id} ${pct}%` }, `${pct}%`);
    const cell = el("td", {}, bar, p.phase ? ` ${p.phase}` : "", pct !== null ? ` ${pct}%` : "");
    const outs = j.error || Object.values(j.outputs).join(", ");
    return el("tr", { class: (j.state || "").toLowerCase() }, el("td", { title: j.id, text: j.id.slice(0, 12) }), el("td", { text: j.kind }),
      el("td", { text: j.state }), cell, el("td", { text: j.submitted_at || "" }), el("td", { text: outs || "" }));
  }));
}

// ------------------------------------------------------------------------------------------- pages
const loaders = { label: async () => {}, people: loadPeople, versions: loadVersions, jobs: loadJobs };

async function show() {
  const page = (location.hash || "#label").slice(1);
  const name = page in loaders ? page : "label";
  for (const p of Object.keys(loaders)) $(`#page-${p}`).hidden = p !== name;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  showError(null);
  document.body.dataset.ready = "";
  try { await loaders[name](); } catch (err) { showError(err); }
  document.body.dataset.ready = name;
}

async function start() {
  $("#api-key").value = state.key;
  $("#key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    state.key = $("#api-key").value.trim();
    sessionStorage.setItem("iznet-key", state.key);
    try { showError(null); await loadInfo(); await show(); } catch (err) { showError(err); }
  });
  $("#gallery").addEventListener("change", (e) => {
    state.gallery = e.target.value; sessionStorage.setItem("iznet-gallery", state.gallery); show();
  });
  setupLabel();
  setupEnroll();
  window.addEventListener("hashchange", show);
  try { await loadInfo(); } catch (err) { showError(err); }
  await show();
}

start();
