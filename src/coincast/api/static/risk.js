// The dashboard's risk panel: the served distribution of the next close as a fan chart (its 80% and
// 95% ranges over the last 60 candles, with the realised closes) and the live record of the served
// risk model (coverage of the ranges, 5% VaR breaches, CRPS), from /v1/streams/{name}/risk. It
// polls through dashboard.js's `poll` (its own loop, the same interval, stream and token) and
// uses its `api`, `chosen`, `fmt` and `pct`. Test hooks: window.coincastRisk.{updates, chart, points}.
"use strict";

(() => {
  const hook = { updates: 0, chart: null, points: 0 };
  window.coincastRisk = hook;

  function fanChart() {
    const box = document.getElementById("risk-chart");
    const size = () => ({ width: Math.max(200, box.clientWidth), height: box.clientWidth < 500 ? 220 : 300 });
    const edge = (stroke) => ({ stroke, width: 1, points: { show: false } });
    const series = [{}, { label: "close", stroke: "#1d2330", width: 1.5, points: { show: true, size: 4 } },
      { label: "80% low", ...edge("#7ea6e8") }, { label: "80% high", ...edge("#7ea6e8") },
      { label: "95% low", ...edge("#c3d4f3") }, { label: "95% high", ...edge("#c3d4f3") }];
    const bands = [{ series: [3, 2], fill: "rgba(46,111,216,0.22)" }, { series: [5, 4], fill: "rgba(46,111,216,0.10)" }];
    const u = new uPlot({ ...size(), series, bands, scales: { x: { time: true } }, legend: { live: false },
                          axes: [{}, { size: 70 }] }, series.map(() => []), box);
    new ResizeObserver(() => u.setSize(size())).observe(box);
    return u;
  }

  function render(body) {
    const record = document.getElementById("risk-record"), latest = body.latest;
    if (!latest) {
      record.textContent = "No distribution for this stream yet (daily streams forecast one once their first model is trained).";
      hook.chart.setData([[], [], [], [], [], []]);
      hook.points = 0;
      return;
    }
    const h = body.history, t = h.map((r) => Date.parse(r.target_time) / 1000);
    hook.chart.setData([t, h.map((r) => r.close), h.map((r) => r.lo80), h.map((r) => r.hi80),
                        h.map((r) => r.lo95), h.map((r) => r.hi95)]);
    hook.points = h.length;
    const live = body.live.find((r) => r.model === latest.model && r.risk === latest.risk) || { n: 0 };
    const fallback = body.fallback ? " (the risk guard serves GARCH-t's: the served model has no skill over it)" : "";
    const dl = document.createElement("dl");
    [["next close, 80%", `${fmt(latest.lo80)} – ${fmt(latest.hi80)}`],
     ["next close, 95%", `${fmt(latest.lo95)} – ${fmt(latest.hi95)}`],
     ["5% VaR", `${latest.var5.toFixed(2)}%`],
     ["model", `${latest.risk} of ${latest.model}${fallback}`],
     ["live coverage", live.n ? `80%: ${pct(live.coverage_80)} · 95%: ${pct(live.coverage_95)} of ${live.n}` : "none scored yet"],
     ["VaR breaches", live.n ? `${live.var5_breaches} of ${live.n} (5% expected)` : "–"],
     ["mean CRPS", live.n ? `${live.crps.toFixed(3)} (percent)` : "–"]].forEach(([k, v]) => {
      dl.appendChild(Object.assign(document.createElement("dt"), { textContent: k }));
      dl.appendChild(Object.assign(document.createElement("dd"), { textContent: v }));
    });
    record.replaceChildren(dl);
  }

  async function refresh() {
    const name = chosen((await api("/v1/streams")).streams);
    hook.chart = hook.chart || fanChart();
    render(await api(`/v1/streams/${encodeURIComponent(name)}/risk?limit=60`));
  }

  poll(refresh, hook, "risk-record");
})();
