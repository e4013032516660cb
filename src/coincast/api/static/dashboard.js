// The coincast dashboard: reads this server's JSON API and redraws every `poll` ms (default 2000,
// `?poll=500` in the page's address changes it). `#eth-1d` picks the stream. With a read token set
// on the server, open the page once as `/?token=...`: the token is kept for this tab only and
// removed from the address. Test hooks: window.coincast.{updates, charts, forecastPoints}.
// risk.js, loaded after this file, polls its panel through `poll` and reads through `api`.
"use strict";

const params = new URLSearchParams(location.search);
if (params.get("token")) {
  sessionStorage.setItem("coincastToken", params.get("token"));
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : "") + location.hash);
}
const POLL_MS = Math.max(200, Number(params.get("poll")) || 2000);
const state = { stream: null, charts: {}, updates: 0, forecastPoints: 0 };
window.coincast = state;

async function api(path) {
  const token = sessionStorage.getItem("coincastToken");
  const answer = await fetch(path, { headers: token ? { Authorization: "Bearer " + token } : {} });
  const body = await answer.json();
  if (!answer.ok) throw new Error(`${path}: ${answer.status} ${body.detail || ""}`);
  return body;
}

async function allPages(path, key) {
  let rows = [], cursor = null;
  do {
    const page = await api(path + (path.includes("?") ? "&" : "?") + "limit=1000" + (cursor ? "&cursor=" + cursor : ""));
    rows = rows.concat(page[key]);
    cursor = page.next_cursor;
  } while (cursor);
  return rows;
}

const secs = (iso) => Date.parse(iso) / 1000;
const fmt = (x, digits = 2) => x == null ? "–" : Number(x).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const pct = (x) => x == null ? "–" : (100 * x).toFixed(0) + "%";
const day = (iso) => iso ? iso.replace("T", " ").replace(/:00Z$/, "").replace(/ 00:00$/, "") : "–";
const ago = (s) => s == null ? "–" : s < 5400 ? `${Math.round(s / 60)} min` : s < 172800 ? `${(s / 3600).toFixed(1)} h` : `${(s / 86400).toFixed(1)} days`;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text != null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function fillTable(table, head, rows) {
  table.replaceChildren();
  const tr = el("tr");
  head.forEach((h) => tr.appendChild(el("th", h)));
  table.appendChild(el("thead")).appendChild(tr);
  const body = table.appendChild(el("tbody"));
  rows.forEach((cells) => {
    const row = body.appendChild(el("tr"));
    cells.forEach(([text, cls]) => row.appendChild(el("td", text, cls)));
  });
}

function definitions(target, pairs) {
  const dl = el("dl");
  pairs.forEach(([k, v, cls]) => { dl.appendChild(el("dt", k)); dl.appendChild(el("dd", v, cls)); });
  target.replaceChildren(dl);
}

// -- charts -------------------------------------------------------------------------------------
function chart(id, series, bands) {
  const box = document.getElementById(id);
  const size = () => ({ width: Math.max(200, box.clientWidth), height: box.clientWidth < 500 ? 220 : 320 });
  const opts = { ...size(), series, bands, scales: { x: { time: true } }, legend: { live: false },
                 axes: [{}, { size: 70 }], cursor: { drag: { x: true, y: false } } };
  const u = new uPlot(opts, series.map(() => []), box);
  new ResizeObserver(() => u.setSize(size())).observe(box);
  return u;
}

function priceData(candles, forecasts) {
  const rows = new Map();
  const at = (t) => { if (!rows.has(t)) rows.set(t, [t, null, null, null, null, null, null]); return rows.get(t); };
  candles.forEach((c) => { at(secs(c.open_time))[1] = c.close; });
  forecasts.forEach((f) => {
    const r = at(secs(f.target_time));
    [r[2], r[3], r[4], r[5], r[6]] = [f.point, f.lo80, f.hi80, f.lo95, f.hi95];
  });
  const sorted = [...rows.values()].sort((a, b) => a[0] - b[0]);
  return [0, 1, 2, 3, 4, 5, 6].map((k) => sorted.map((r) => r[k]));
}

function errorData(forecasts) {
  const done = forecasts.filter((f) => f.actual != null);
  return [done.map((f) => secs(f.target_time)), done.map((f) => f.error), done.map((f) => f.persistence_error)];
}

function ensureCharts() {
  if (state.charts.price) return;
  const band = (stroke) => ({ stroke, width: 1, dash: [4, 4], points: { show: false } });
  state.charts.price = chart("price-chart", [
    {}, { label: "close", stroke: "#1d2330", width: 1.5 },
    { label: "forecast", stroke: "#2e6fd8", width: 0, points: { show: true, size: 6, fill: "#2e6fd8" } },
    { label: "80% low", ...band("#7ea6e8") }, { label: "80% high", ...band("#7ea6e8") },
    { label: "95% low", ...band("#c3d4f3") }, { label: "95% high", ...band("#c3d4f3") },
  ], [{ series: [4, 3], fill: "rgba(46,111,216,0.18)" }, { series: [6, 5], fill: "rgba(46,111,216,0.08)" }]);
  state.charts.errors = chart("error-chart", [
    {}, { label: "model", stroke: "#2e6fd8", width: 1.5, points: { show: true, size: 4 } },
    { label: "persistence", stroke: "#98a2b3", width: 1.5, points: { show: true, size: 4 } },
  ]);
}

// -- panels -------------------------------------------------------------------------------------
function renderNav(streams) {
  const nav = document.getElementById("streams");
  nav.replaceChildren(...streams.map((s) => {
    const a = el("a", s.name, s.name === state.stream ? "active" : "");
    a.href = "#" + s.name;
    return a;
  }));
}

function renderNext(latest) {
  const next = document.getElementById("next"), detail = document.getElementById("next-detail");
  if (!latest) { next.textContent = "–"; detail.textContent = "no forecast yet: the first model is training"; return; }
  next.textContent = fmt(latest.point);
  detail.textContent = `close of the ${day(latest.target_time)} candle · 80% ${fmt(latest.lo80)}..${fmt(latest.hi80)} · ` +
    `95% ${fmt(latest.lo95)}..${fmt(latest.hi95)} · persistence ${fmt(latest.persistence)} · ` +
    `${latest.fallback ? "FALLBACK to persistence" : "by " + latest.model} · issued ${day(latest.issued_at)}`;
}

function renderRecord(stream, models) {
  const champion = models.find((m) => m.id === stream.champion);
  const rec = champion ? champion.live : { n: 0 };
  const better = rec.rmse_ratio != null && rec.rmse_ratio < 1;
  definitions(document.getElementById("record"), [
    ["champion", champion ? champion.id : "none yet"],
    ["RMSE ratio", rec.rmse_ratio == null ? "–" : rec.rmse_ratio.toFixed(3) + "x persistence", rec.n ? (better ? "good" : "bad") : ""],
    ["DM p (beats persistence)", rec.dm_p_better == null ? "–" : rec.dm_p_better.toPrecision(2)],
    ["direction accuracy", pct(rec.direction_accuracy)],
    ["over", `last ${rec.n || 0} of the ${stream.guard}-forecast guard window`],
    ["serving", stream.fallback ? "persistence (guard fallback)" : "the champion", stream.fallback ? "bad" : ""],
  ]);
}

function renderFresh(stream) {
  definitions(document.getElementById("fresh"), [
    ["market", `${stream.exchange} ${stream.symbol} ${stream.timeframe}`],
    ["newest candle", day(stream.newest_candle)],
    ["data age", ago(stream.data_age_s) + " since it closed", stream.stale ? "bad" : ""],
    ["next retrain", stream.next_retrain_after ? `after the ${day(stream.next_retrain_after)} candle closes` : "–"],
    ["shadow", stream.shadow_model || stream.training || "–"],
    ["last error", stream.last_error || "none", stream.last_error ? "bad" : ""],
  ]);
}

function renderModels(models, decisions) {
  const last = new Map();
  decisions.slice().reverse().forEach((d) => { if (d.model) last.set(d.model, d); });
  fillTable(document.getElementById("models"), ["model", "status", "trained through", "train s", "epochs", "live n", "RMSE x pers", "DM p", "direction", "last decision"],
    models.slice().reverse().map((m) => {
      const f = m.figures, l = m.live, d = last.get(m.id);
      return [[m.id], [m.status, m.status === "champion" ? "good" : m.status === "failed" ? "bad" : ""], [day(m.trained_through)],
        [f.seconds == null ? "–" : f.seconds.toFixed(1)], [f.epochs_run ?? "–"], [String(l.n || 0)],
        [l.rmse_ratio == null ? "–" : l.rmse_ratio.toFixed(3)], [l.dm_p_better == null ? "–" : l.dm_p_better.toPrecision(2)],
        [pct(l.direction_accuracy)], [d ? `${d.kind}: ${d.reason}` : "–", "reason"]];
    }));
}

function renderDecisions(decisions) {
  fillTable(document.getElementById("decisions"), ["when", "kind", "model", "reason"],
    decisions.map((d) => [[day(d.decided_at)], [d.kind, /fallback|failure|stale|missed/.test(d.kind) ? "bad" : ""],
      [d.model || "–"], [d.reason, "reason"]]));
}

// -- the loop -----------------------------------------------------------------------------------
// The stream the address's #hash names, else the first.
function chosen(streams) {
  const wanted = decodeURIComponent(location.hash.slice(1));
  return streams.some((s) => s.name === wanted) ? wanted : streams[0].name;
}

async function refresh() {
  const streams = (await api("/v1/streams")).streams;
  state.stream = chosen(streams);
  const stream = streams.find((s) => s.name === state.stream), name = encodeURIComponent(stream.name);
  const forecasts = await allPages(`/v1/streams/${name}/forecasts`, "forecasts");
  const since = forecasts.length ? new Date(Date.parse(forecasts[0].target_time) - 30 * 86400e3).toISOString() : null;
  const candles = await allPages(`/v1/streams/${name}/candles` + (since ? "?start=" + since : ""), "candles");
  const models = await allPages(`/v1/models?stream=${name}`, "models");
  const decisions = (await api(`/v1/streams/${name}/decisions?limit=40`)).decisions;
  renderNav(streams);
  renderNext(forecasts[forecasts.length - 1]);
  renderRecord(stream, models);
  renderFresh(stream);
  renderModels(models, decisions);
  renderDecisions(decisions);
  ensureCharts();
  state.charts.price.setData(priceData(candles, forecasts));
  state.charts.errors.setData(errorData(forecasts));
  state.forecastPoints = forecasts.length;
  document.getElementById("status").textContent = `updated ${new Date().toLocaleTimeString()} · service time ${day(stream.now)}`;
}

// `refresh` now, then every POLL_MS ms after each one ends, and at once when the #hash changes:
// each success counts in `hook.updates`, a failure is shown in the element `statusId`.
function poll(refresh, hook, statusId) {
  async function loop() {
    try {
      await refresh();
      hook.updates += 1;
    } catch (err) {
      document.getElementById(statusId).textContent = "cannot update: " + err.message;
    }
    setTimeout(loop, POLL_MS);
  }
  window.addEventListener("hashchange", () => refresh().catch(() => {}));
  loop();
}

poll(refresh, state, "status");
