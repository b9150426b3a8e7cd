// nmbridge dashboard (docs/dashboard.md). Plain DOM: every piece of event text goes in
// through textContent, never as HTML. Live updates come from the journal's SSE stream;
// the browser's EventSource resumes with Last-Event-ID, and the page drops any seq it
// has already shown, so a reconnect neither repeats nor skips an event.

const SEVERITIES = ["debug", "info", "notice", "warning", "error", "critical"];
const MAX_EVENTS = 2000;   // kept in memory for the filters
const MAX_ROWS = 500;      // rendered
const state = {
  info: null, zone: undefined, devices: [], health: null, events: [], lastSeq: 0, shownSeqs: [],
  paused: false, pendingWhilePaused: 0, source: null, disconnectedSince: null, linkEvents: {}, measurements: {},
  dicom: { open: 0, lastStudy: null, seen: false }, page: "devices",
};

// ---------- helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function timeOf(iso, withDate = false) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const options = { timeZone: state.zone, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
  if (withDate) Object.assign(options, { year: "numeric", month: "2-digit", day: "2-digit" });
  return new Intl.DateTimeFormat("en-CA", options).format(date).replace(",", "");
}

function mbq(bq) {
  if (typeof bq !== "number") return "";
  return bq >= 1e9 ? `${(bq / 1e9).toFixed(2)} GBq` : `${(bq / 1e6).toFixed(2)} MBq`;
}

function hexDump(hex) {
  if (!hex) return "";
  const bytes = hex.match(/../g) || [];
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.slice(i, i + 16);
    const ascii = row.map((b) => { const c = parseInt(b, 16); return c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : "."; }).join("");
    lines.push(`${i.toString(16).padStart(6, "0")}  ${row.join(" ").padEnd(47, " ")}  ${ascii}`);
  }
  return lines.join("\n");
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (response.status === 401) { location.assign("/ui/login"); throw new Error("session expired"); }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function debounce(fn, ms) {
  let timer = null;
  return () => { if (timer === null) timer = setTimeout(() => { timer = null; fn(); }, ms); };
}

function kindMatches(pattern, kind) {
  if (!pattern) return true;
  return pattern.split(",").map((p) => p.trim()).filter(Boolean).some((p) => {
    const re = new RegExp("^" + p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
    return re.test(kind);
  });
}

function summaryText(event) {
  const d = event.data || {};
  if (event.kind === "dosecal.measurement") return `${d.nuclide ?? "?"} ${mbq(d.activity_bq)}`;
  const parts = [];
  for (const [key, value] of Object.entries(d)) {
    parts.push(`${key}=${typeof value === "object" ? JSON.stringify(value) : value}`);
    if (parts.length >= 6) break;
  }
  return parts.join(" ");
}

// ---------- devices page

function deviceState(device) {
  if (device.stale) return "stale";
  if (device.link === "down" || (!device.driver_running && device.enabled)) return "down";
  if (device.link === "up") return "up";
  return "unknown";
}

function renderDevices() {
  const tiles = document.getElementById("tiles");
  const nodes = [];
  for (const device of state.devices) {
    const s = deviceState(device);
    const change = state.linkEvents[device.id];
    const measurement = state.measurements[device.id];
    const label = { up: "UP", stale: "STALE", down: "DOWN", unknown: "UNKNOWN" }[s];
    const since = change ? `since ${timeOf(change.time)}` : "";
    nodes.push(el("article", { class: `tile ${s}`, "data-device": device.id, "data-state": s, "aria-label": `${device.id}: ${label} ${since}` },
      el("h2", {}, el("span", { text: device.id }), el("span", { class: `state ${s}`, text: label })),
      el("div", { class: "since", text: [since, device.link_reason ? `(${device.link_reason})` : ""].filter(Boolean).join(" ") }),
      el("dl", {},
        el("dt", { text: "Driver" }), el("dd", { text: device.driver + (device.driver_running ? "" : " (not running)") }),
        el("dt", { text: "Measured" }), el("dd", { class: "measurement" },
          measurement ? `${mbq(measurement.data.activity_bq)} ${measurement.data.nuclide ?? ""}` : "—"),
        measurement ? [el("dt", { text: "at" }), el("dd", {}, el("a", { href: `#/event/${measurement.seq}`, text: timeOf(measurement.time) }))] : null,
        el("dt", { text: "Last event" }), el("dd", {}, device.last_event
          ? el("a", { href: `#/event/${device.last_event.seq}`, text: `${device.last_event.kind} ${timeOf(device.last_event.time)}` }) : "—"),
        el("dt", { text: "Last heard" }), el("dd", { text: device.last_heard ? timeOf(device.last_heard) : "never" }),
        el("dt", { text: "Restarts" }), el("dd", { text: String(device.restarts) }),
        device.last_error ? [el("dt", { text: "Last error" }), el("dd", { text: device.last_error })] : null)));
  }
  const health = state.health;
  if (state.dicom.seen) {
    nodes.push(el("article", { class: "tile service", "data-service": "dicom" },
      el("h2", {}, el("span", { text: "DICOM receiver" })),
      el("dl", {},
        el("dt", { text: "Open associations" }), el("dd", { text: String(state.dicom.open) }),
        el("dt", { text: "Last study" }), el("dd", {}, state.dicom.lastStudy
          ? `${state.dicom.lastStudy.data.patient_id ?? "?"} · ${state.dicom.lastStudy.data.instances ?? "?"} instances · ${timeOf(state.dicom.lastStudy.time)}` : "—"))));
  }
  if (health?.shipper) {
    const sh = health.shipper;
    const s = sh.lagging || !sh.connected ? "stale" : "up";
    nodes.push(el("article", { class: `tile service ${s}`, "data-service": "shipper" },
      el("h2", {}, el("span", { text: "Shipper" }), el("span", { class: `state ${s}`, text: sh.lagging ? "LAGGING" : sh.connected ? "CONNECTED" : "NOT CONNECTED" })),
      el("dl", {},
        el("dt", { text: "Server" }), el("dd", { text: sh.server }),
        el("dt", { text: "Lag" }), el("dd", { text: `${sh.lag_events} events, ${sh.lag_s} s` }),
        sh.last_error ? [el("dt", { text: "Last error" }), el("dd", { text: sh.last_error })] : null)));
  }
  if (health?.qc) {
    const qc = health.qc;
    nodes.push(el("article", { class: "tile service", "data-service": "qc" },
      el("h2", {}, el("span", { text: "QC service" })),
      el("dl", {},
        el("dt", { text: "Judged through" }), el("dd", { text: `seq ${qc.judged_seq} (${qc.behind_events} behind)` }),
        el("dt", { text: "Findings" }), el("dd", { text: String(qc.findings) }),
        qc.last_error ? [el("dt", { text: "Last error" }), el("dd", { text: qc.last_error })] : null)));
  }
  if (health) {
    nodes.push(el("article", { class: `tile service ${health.status === "ok" ? "" : "down"}`, "data-service": "journal" },
      el("h2", {}, el("span", { text: "Journal" }), el("span", { class: `state ${health.status === "ok" ? "up" : "down"}`, text: health.status.toUpperCase() })),
      el("dl", {},
        el("dt", { text: "Last seq" }), el("dd", { text: String(health.journal.last_seq) }),
        el("dt", { text: "Up for" }), el("dd", { text: `${Math.round(health.uptime_s / 60)} min` }),
        health.journal.last_append_error ? [el("dt", { text: "Last error" }), el("dd", { text: health.journal.last_append_error })] : null)));
  }
  if (state.devices.length === 0) nodes.unshift(el("p", { class: "muted", text: "No devices are configured." }));
  tiles.replaceChildren(...nodes);
}

const LINK_KINDS = ["device.connected", "device.disconnected", "device.stale", "device.recovered"];

async function loadDevices() {
  const dicomQuery = api("/v1/events?last=1000&kind=dicom.association.*,dicom.study.stable,daemon.started");
  const [devices, health] = await Promise.all([api("/v1/devices"), api("/v1/health")]);
  state.devices = devices.devices;
  state.health = health;
  const select = document.getElementById("f-device");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "all" }), ...state.devices.map((d) => el("option", { value: d.id, text: d.id })));
  select.value = chosen;
  await Promise.all(state.devices.map(async (device) => {
    const id = encodeURIComponent(device.id);
    const [link, measured] = await Promise.all([
      api(`/v1/events?last=1&device=${id}&kind=${LINK_KINDS.join(",")}`),
      api(`/v1/events?last=1&device=${id}&kind=dosecal.measurement`),
    ]);
    if (link.events[0]) state.linkEvents[device.id] = link.events[0];
    if (measured.events[0]) state.measurements[device.id] = measured.events[0];
  }));
  const dicom = await dicomQuery;
  let open = 0;
  for (const event of dicom.events.slice().sort((a, b) => a.seq - b.seq)) {  // oldest first
    if (event.kind === "daemon.started") open = 0;
    else if (event.kind === "dicom.association.accepted") open += 1;
    else if (event.kind === "dicom.association.released" || event.kind === "dicom.association.aborted") open = Math.max(0, open - 1);
    else if (event.kind === "dicom.study.stable") state.dicom.lastStudy = event;
    if (event.kind.startsWith("dicom.")) state.dicom.seen = true;
  }
  state.dicom.open = open;
  renderDevices();
}

// A link change re-reads the device list (stale, restarts, errors); other events update
// the tiles from the stream itself, so that a busy journal costs the daemon nothing more.
const refreshDeviceList = debounce(async () => {
  try {
    state.devices = (await api("/v1/devices")).devices;
    renderDevicesSoon();
  } catch { /* the banner tells */ }
}, 200);
const renderDevicesSoon = debounce(() => { if (state.page === "devices") renderDevices(); }, 250);

// ---------- events page

function eventVisible(event) {
  const device = document.getElementById("f-device").value;
  const kind = document.getElementById("f-kind").value.trim();
  const severity = document.getElementById("f-severity").value;
  if (device && event.device !== device) return false;
  if (!kindMatches(kind, event.kind)) return false;
  return SEVERITIES.indexOf(event.severity) >= SEVERITIES.indexOf(severity);
}

function eventNode(event) {
  const details = el("details", { class: `event sev-${event.severity}`, "data-seq": event.seq, id: `seq-${event.seq}` },
    el("summary", {},
      el("span", { class: "num" }, el("a", { href: `#/event/${event.seq}`, text: `#${event.seq}`, title: "link to this event" })),
      el("span", { class: "c-time", text: timeOf(event.time) }),
      el("span", { class: "c-sev sev", text: event.severity }),
      el("span", { class: "c-device", text: event.device ?? "—" }),
      el("span", { class: "c-kind", text: event.kind }),
      el("span", { class: "c-text", text: summaryText(event) })));
  // The JSON and raw bytes are built when the event is opened (fetched whole if the
  // first screen had it cut short).
  details.addEventListener("toggle", async () => {
    if (!details.open || details.dataset.filled) return;
    details.dataset.filled = "true";
    let full = event;
    if (event.truncated) {
      try {
        const page = await api(`/v1/events?after=${event.seq - 1}&limit=1`);
        if (page.events[0]?.seq === event.seq) full = page.events[0];
      } catch { /* show what there is */ }
    }
    details.append(el("pre", { class: "json", text: JSON.stringify(full, null, 2) }));
    if (full.raw) details.append(el("h3", { text: `Raw bytes (${full.raw.length / 2})` }), el("pre", { class: "hex", text: hexDump(full.raw) }));
  });
  return details;
}

function renderEvents() {
  const list = document.getElementById("events");
  const visible = [];
  for (let i = state.events.length - 1; i >= 0 && visible.length < MAX_ROWS; i--) {
    if (eventVisible(state.events[i])) visible.push(eventNode(state.events[i]));
  }
  list.replaceChildren(...(visible.length ? visible : [el("p", { class: "muted", text: "No events match." })]));
}

function prependEvent(event) {
  if (state.paused) {
    state.pendingWhilePaused += 1;
    document.getElementById("paused-count").textContent = `${state.pendingWhilePaused} new while paused`;
    return;
  }
  // The list is rebuilt when the page is shown (route): no DOM work while it is hidden.
  if (state.page !== "events" || !eventVisible(event)) return;
  const list = document.getElementById("events");
  if (list.firstElementChild?.tagName === "P") list.replaceChildren();
  list.prepend(eventNode(event));
  while (list.childElementCount > MAX_ROWS) list.lastElementChild.remove();
}

async function loadEvents() {
  const page = await api("/ui/data/recent?last=200");
  state.events = page.events;
  state.lastSeq = page.last_seq;
  state.shownSeqs = state.events.map((e) => e.seq);
  renderEvents();
}

async function showOneEvent(seq) {
  const box = document.getElementById("event-one");
  box.replaceChildren(el("p", { class: "muted", text: `Loading event #${seq}…` }));
  const page = await api(`/v1/events?after=${Math.max(0, seq - 1)}&limit=1`);
  const event = page.events[0];
  if (!event || event.seq !== seq) {
    box.replaceChildren(el("p", { text: `Event #${seq} is not in the journal (oldest kept: #${page.oldest_seq ?? "none"}).` }));
    return;
  }
  const node = eventNode(event);
  node.open = true;
  box.replaceChildren(node);
}

// ---------- QC page

function findingTable(groups) {
  const rows = [el("tr", {}, ["Time", "Check", "Result", "Value", "Limit", "Detail"].map((h) => el("th", { scope: "col", text: h })))];
  for (const group of groups) {
    if (group.caption) rows.push(el("tr", { class: "group" }, el("th", { colspan: 6, text: group.caption })));
    for (const f of group.findings) {
      rows.push(el("tr", { class: f.outcome, "data-seq": f.seq, "data-kind": f.kind, "data-result": f.result, "data-value": f.value },
        el("td", { text: f.time_of_day }), el("td", { text: f.check }),
        el("td", {}, el("span", { class: `mark ${f.outcome}`, text: f.marker })),
        el("td", { class: "num", text: f.value_text }), el("td", { text: f.limit }),
        el("td", {}, el("a", { href: `#/event/${f.seq}`, text: `#${f.seq}` }), " ", f.detail)));
    }
  }
  return el("table", {}, el("tbody", {}, rows));
}

async function loadQC() {
  const box = document.getElementById("qc");
  const report = await api("/ui/data/qc?date=today");
  const nodes = [el("p", { class: "muted", text: `${report.day} · node ${report.node} · times in ${report.zone} · ${report.summary}` })];
  if (report.attention.length) {
    nodes.push(el("h2", { text: "Needs attention" }),
      el("ul", { class: "attention", id: "qc-attention" }, report.attention.map((a) => el("li", { class: a.level, text: a.text }))));
  } else {
    nodes.push(el("p", { class: "ok-line", id: "qc-attention", text: "Nothing missing, due or failed today." }));
  }
  if (report.calibrators.length) nodes.push(el("h2", { text: "Dose calibrators" }));
  for (const c of report.calibrators) {
    nodes.push(el("h3", { text: c.device }), el("p", { class: "muted", text: c.trend_summary }));
    if (c.has_chart) {
      nodes.push(el("img", { class: "chart", alt: `Constancy deviation of ${c.device}: ${c.trend_summary}`, width: 760, height: 290,
        src: `/ui/data/qc/chart.svg?date=${encodeURIComponent(report.day)}&device=${encodeURIComponent(c.device)}&v=${state.lastSeq}` }));
    }
    nodes.push(c.findings.length ? findingTable([{ findings: c.findings }]) : el("p", { class: "muted", text: `No findings on ${report.day}.` }));
  }
  if (report.cameras.length) nodes.push(el("h2", { text: "Gamma cameras" }));
  for (const camera of report.cameras) nodes.push(el("h3", { text: camera.camera }), findingTable([{ findings: camera.findings }]));
  if (report.studies.length) nodes.push(el("h2", { text: "Studies" }));
  for (const study of report.studies) {
    nodes.push(el("h3", { text: `Study ${study.study_uid ?? "(no study UID)"}` }),
      el("p", { text: `Patient ${study.patient_id ?? "?"} · accession ${study.accession_number ?? "?"}` }),
      findingTable(study.series.map((s) => ({ caption: s.heading, findings: s.findings }))));
  }
  if (!report.findings.length) nodes.push(el("p", { class: "muted", text: `No QC findings on ${report.day} yet.` }));
  box.replaceChildren(...nodes);
  box.dataset.findings = String(report.findings.length);
}

const refreshQC = debounce(() => { if (state.page === "qc") loadQC().catch(showError); }, 1000);

// ---------- studies page

async function loadStudies() {
  const box = document.getElementById("studies");
  const data = await api("/ui/data/studies?date=today");
  const nodes = [el("p", { class: "muted", text: `${data.day} · times in ${data.zone} · ${data.studies.length} stud${data.studies.length === 1 ? "y" : "ies"}` })];
  for (const study of data.studies) {
    const series = study.series.map((s) => {
      const rows = [el("tr", {}, el("th", { scope: "row", text: `${s.modality} ${s.description || "(no description)"}` }),
        el("td", { text: `${s.instances} instance${s.instances === 1 ? "" : "s"}` }), el("td", { text: `last ${timeOf(s.last)}` }),
        el("td", { class: "muted", text: s.series_uid }))];
      return [el("table", {}, el("tbody", {}, rows)),
        s.findings.length ? findingTable([{ findings: s.findings }]) : el("p", { class: "muted", text: "No QC findings for this series." })];
    });
    nodes.push(el("section", { class: "study", "data-study": study.study_uid },
      el("h2", { text: `${study.patient_id || "?"} ${study.patient_name ? "· " + study.patient_name : ""} · accession ${study.accession_number || "?"}` }),
      el("p", { class: "muted", text: `Study ${study.study_uid} · from ${study.calling_ae || "?"} · ${timeOf(study.first)}–${timeOf(study.last)} · ${study.stable ? "complete (stable)" : "receiving"}` }),
      series));
  }
  if (!data.studies.length) nodes.push(el("p", { class: "muted", text: "No studies received today yet." }));
  box.replaceChildren(...nodes);
}

const refreshStudies = debounce(() => { if (state.page === "studies") loadStudies().catch(showError); }, 1500);

// ---------- live stream

function setBanner() {
  const banner = document.getElementById("banner");
  if (state.disconnectedSince) {
    banner.textContent = `Disconnected from the daemon since ${timeOf(state.disconnectedSince.toISOString())} — reconnecting; what is shown may be out of date.`;
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
}

function announce(event) {
  const region = document.getElementById("alarms");
  const who = event.device ? `${event.device}: ` : "";
  region.textContent = `${event.severity} ${who}${event.kind} at ${timeOf(event.time)}`;
}

function receive(event) {
  // The stream's seqs only grow; anything at or below the last one shown was shown.
  if (event.seq <= state.lastSeq) return;
  state.lastSeq = event.seq;
  state.shownSeqs.push(event.seq);
  if (state.shownSeqs.length > MAX_EVENTS * 2) state.shownSeqs.splice(0, MAX_EVENTS);
  state.events.push(event);
  if (state.events.length > MAX_EVENTS) state.events.splice(0, state.events.length - MAX_EVENTS);
  prependEvent(event);
  if (LINK_KINDS.includes(event.kind) && event.device) state.linkEvents[event.device] = event;
  if (event.kind === "dosecal.measurement" && event.device) state.measurements[event.device] = event;
  if (event.kind.startsWith("dicom.") || event.kind === "daemon.started") {
    state.dicom.seen = state.dicom.seen || event.kind.startsWith("dicom.");
    if (event.kind === "daemon.started") state.dicom.open = 0;
    if (event.kind === "dicom.association.accepted") state.dicom.open += 1;
    if (event.kind === "dicom.association.released" || event.kind === "dicom.association.aborted") state.dicom.open = Math.max(0, state.dicom.open - 1);
    if (event.kind === "dicom.study.stable") state.dicom.lastStudy = event;
  }
  const device = event.device && state.devices.find((d) => d.id === event.device);
  if (device) {
    device.last_event = { seq: event.seq, kind: event.kind, time: event.time };
    device.last_heard = event.time;
  }
  if (event.kind.startsWith("device.") || event.kind.startsWith("driver.") || event.kind === "daemon.started") refreshDeviceList();
  else if (device || event.kind.startsWith("dicom.")) renderDevicesSoon();
  if (event.kind.startsWith("qc.")) refreshQC();
  if (event.kind.startsWith("dicom.") || event.kind.startsWith("qc.")) refreshStudies();
  if (SEVERITIES.indexOf(event.severity) >= SEVERITIES.indexOf("warning") || event.kind === "device.stale") announce(event);
}

function connect() {
  if (state.source) state.source.close();
  // `after` places the first connection; the browser's own reconnects send Last-Event-ID.
  const source = new EventSource(`/ui/data/stream?after=${state.lastSeq}`);
  state.source = source;
  source.onopen = () => {
    const wasDown = state.disconnectedSince !== null;
    state.disconnectedSince = null;
    setBanner();
    document.body.dataset.connected = "true";
    if (wasDown) loadDevices().catch(() => {});
  };
  source.onmessage = (message) => {
    try { receive(JSON.parse(message.data)); } catch (error) { console.error("unreadable event", error); }
  };
  const restart = (delay) => {
    source.close();
    setTimeout(() => { if (state.source === source) connect(); }, delay);
  };
  source.addEventListener("lagged", () => restart(100));
  source.addEventListener("error", async (event) => {
    if (event.data) {  // the daemon's `event: error` (cursor before retention): start over
      try { await loadEvents(); } catch { /* the next attempt will say */ }
      restart(100);
      return;
    }
    if (!state.disconnectedSince) state.disconnectedSince = new Date();
    document.body.dataset.connected = "false";
    setBanner();
    // CONNECTING: the browser retries by itself with Last-Event-ID. CLOSED: it gave up
    // (an HTTP error, e.g. while the daemon restarts); start again from the last seq.
    if (source.readyState === EventSource.CLOSED) {
      try { await api("/v1/health"); } catch { /* still down */ }
      restart(1000);
    }
  });
}

// ---------- navigation

const PAGES = ["devices", "events", "qc", "studies", "event"];

function route() {
  const hash = location.hash || "#/devices";
  const match = hash.match(/^#\/event\/(\d+)$/);
  const page = match ? "event" : hash.replace(/^#\//, "");
  state.page = PAGES.includes(page) ? page : "devices";
  for (const name of PAGES) document.getElementById(`page-${name}`).hidden = name !== state.page;
  for (const name of ["devices", "events", "qc", "studies"]) {
    const link = document.getElementById(`nav-${name}`);
    if (name === state.page) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (match) showOneEvent(Number(match[1])).catch(showError);
  if (state.page === "qc") loadQC().catch(showError);
  if (state.page === "studies") loadStudies().catch(showError);
  if (state.page === "events") renderEvents();
  if (state.page === "devices") renderDevices();
}

function showError(error) {
  const box = document.getElementById(`page-${state.page}`);
  box.append(el("p", { class: "error", role: "alert", text: `Could not load this page: ${error.message}` }));
}

async function start() {
  // Everything the first screen needs is asked for at once.
  const info = api("/ui/data/info");
  const events = loadEvents();
  const devices = loadDevices();
  state.info = await info;
  state.zone = state.info.zone;
  document.getElementById("node").textContent = `${state.info.node} · ${state.info.zone}`;
  document.getElementById("logout").hidden = !state.info.login;
  const clock = () => { document.getElementById("clock").textContent = timeOf(new Date().toISOString(), true); };
  clock();
  setInterval(clock, 1000);
  await events;
  connect();
  await devices;
  // Shipper lag and QC progress change without events: look again every few seconds.
  setInterval(() => { if (!state.disconnectedSince) api("/v1/health").then((h) => { state.health = h; renderDevices(); }).catch(() => {}); }, 5000);
  for (const id of ["f-device", "f-severity"]) document.getElementById(id).addEventListener("change", renderEvents);
  document.getElementById("f-kind").addEventListener("input", debounce(renderEvents, 200));
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
  const pause = document.getElementById("pause");
  pause.addEventListener("click", () => {
    state.paused = !state.paused;
    pause.textContent = state.paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(state.paused));
    if (!state.paused) {
      state.pendingWhilePaused = 0;
      document.getElementById("paused-count").textContent = "";
      renderEvents();
    }
  });
  window.addEventListener("hashchange", route);
  route();
  performance.mark("nmbridge-ready");
  document.body.dataset.ready = "true";
}

// The test peers read what the page has shown, in order (window.nmbridgeShownSeqs).
window.nmbridgeShownSeqs = () => state.shownSeqs.slice();
start().catch((error) => {
  document.getElementById("main").prepend(el("p", { class: "error", role: "alert", text: `The dashboard could not start: ${error.message}` }));
});
