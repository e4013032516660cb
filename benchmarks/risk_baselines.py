"""Risk benchmark: quantile forecasts of the next daily log return on every bundled coin.

Walks the network's distribution head (coincast.models.risk_network) and the four baselines of
coincast.models.risk_baselines (empirical 365 days, EWMA-t, GARCH(1,1)-t, HAR-t) forward over the
last 730 days of each bundled daily coin with weekly refits on past data, and scores them with
coincast.evaluation.risk: CRPS from the 99 quantiles 1..99% (percent log returns), its ratio to
the empirical baseline with the one-sided Diebold-Mariano p (and the network's to GARCH(1,1)-t's),
80/95% coverage, width and interval score, and the Kupiec and Christoffersen tests of the 5% and
1% VaR; then issue 16's targets, met or missed. Writes benchmarks/results/risk_baselines.json and
the risk section of BENCHMARKS.md (`make skill` runs it after the point table).

    .venv/bin/python benchmarks/risk_baselines.py [--coins btc-usd,eth-usd] [--days 730] [--retrain-every 7]
        [--end 2024-01-06 --section risk_tuning --out ...]   the same on data cut at --end
        [--network record=730,shrink=1.0]                     the network's settings (NetworkRisk's keywords;
                                                              pool=0: trained on the coin's own windows only)
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import time
from pathlib import Path

from doc_section import replace_section  # benchmarks/: run as scripts
import coincast
from coincast.data.datasets import daily_coins
from coincast.evaluation import risk
from coincast.flows.backtest_risk import candle_columns
from coincast.machine import cpu_model
from coincast.models.risk_baselines import all_baselines
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import pooled_returns, walk_forward_risk

COINS = ("btc-usd", "eth-usd", "ltc-usd", "xrp-usd", "ada-usd", "bnb-usd")
REFERENCE, GARCH = "empirical", "garch_t"
# What issue 16 quotes for the same protocol, to compare against.
ISSUE = {"garch_gain": (0.3, 1.9), "garch_dm_below_05": 4, "cov80": (0.79, 0.83), "cov95": (0.95, 0.96)}


def one(coin: str, days: int, retrain_every: int, end: str | None, network: dict) -> list[dict]:
    candles = candle_columns(coincast.load(coin))  # a user's CSV may say Open/High/Low/Close
    if end is not None:
        candles = candles.loc[:end]
    t0 = time.perf_counter()
    network = dict(network)
    pool = pooled_returns(candles, daily_coins(but=coin)) if network.pop("pool", 1) else {}  # as risk_part
    net = NetworkRisk(**network, pool=pool)
    coin = Path(coin).stem if Path(coin).suffix else coin  # a file: its name in the table
    enough = len(candles) - days - 1 >= net.min_history  # returns before the first day
    walk = walk_forward_risk(candles, start=candles.index[-days], retrain_every=retrain_every,
                             baselines=all_baselines() + ([net] if enough else []))
    seconds = time.perf_counter() - t0
    y = walk.actual.to_numpy()  # [N]
    rows = []
    for name in walk.names:
        s = risk.risk_scores(y, walk.q(name), walk.tau)
        dm = risk.crps_dm(y, walk.q(name), walk.q(REFERENCE), walk.tau)
        rows.append({
            "coin": coin, "baseline": name, "days": s["n"], "folds": walk.counts["folds"],
            "first": str(walk.actual.index[0].date()), "last": str(walk.actual.index[-1].date()),
            "crps": s["crps"], "crps_ratio": dm["ratio"], "dm_stat": dm["dm_stat"],
            "dm_p": None if name == REFERENCE else dm["dm_p"],
            "intervals": s["intervals"], "var": s["var"],
            "fits": walk.counts.get(name), "seconds_all_models": seconds,
        })
        if name == "network":
            g = risk.crps_dm(y, walk.q(name), walk.q(GARCH), walk.tau)
            rows[-1].update({"crps_ratio_garch": g["ratio"], "dm_p_garch": g["dm_p"], "epochs": net.epochs,
                             "windows": net.pooled})
    return rows


def targets(rows: list[dict]) -> list[str]:
    """Issue 16's targets for the network's risk forecast, each met or missed, with by how much."""
    n = [r for r in rows if r["baseline"] == "network"]
    if not n:
        return []
    off80 = max(abs(r["intervals"]["80"]["coverage"] - 0.80) for r in n)
    off95 = max(abs(r["intervals"]["95"]["coverage"] - 0.95) for r in n)
    below = sum(r["crps_ratio"] < 1 for r in n)
    sig = sum(r["crps_ratio"] < 1 and r["dm_p"] < 0.05 for r in n)
    garch = sum(r["crps_ratio_garch"] <= 1 for r in n)
    var = sum(r["var"]["0.05"]["kupiec_p"] > 0.05 and r["var"]["0.05"]["christoffersen_p"] > 0.05 for r in n)
    ok = lambda cond: "**met**" if cond else "**missed**"  # noqa: E731
    k = len(n)
    return [
        f"- 80% and 95% coverage within 2.5 points of nominal on every coin: farthest {100 * off80:.1f} / "
        f"{100 * off95:.1f} points: {ok(off80 <= 0.025 and off95 <= 0.025)}.",
        f"- CRPS below the empirical random walk's on all {k}: {below} of {k}: {ok(below == k)}; "
        f"DM p < 0.05 on at least three: {sig}: {ok(sig >= 3)}.",
        f"- CRPS at or below GARCH(1,1)-t's on at least four: {garch} of {k} "
        f"(ratios {', '.join(format(r['crps_ratio_garch'], '.4f') for r in n)}): {ok(garch >= 4)}.",
        f"- 5% VaR passes Kupiec and Christoffersen (p > 0.05) on at least five: {var} of {k}: {ok(var >= 5)}.",
    ]


def summary(rows: list[dict]) -> list[str]:
    """Sentences comparing the measured figures with the issue's."""
    g = [r for r in rows if r["baseline"] == "garch_t"]
    gain = [100 * (1 - r["crps_ratio"]) for r in g]
    better = sum(x > 0 for x in gain)
    sig = sum(r["dm_p"] < 0.05 for r in g)
    c80 = [r["intervals"]["80"]["coverage"] for r in g]
    c95 = [r["intervals"]["95"]["coverage"] for r in g]
    e = {r["coin"]: r["crps_ratio"] for r in rows if r["baseline"] == "ewma_t"}
    between = sum(min(1.0, r["crps_ratio"]) <= e[r["coin"]] <= max(1.0, r["crps_ratio"]) for r in g)
    lo, hi = ISSUE["garch_gain"]
    return [
        f"- GARCH(1,1)-t against the empirical baseline: CRPS {min(gain):+.2f}% to {max(gain):+.2f}% better "
        f"(better on {better} of {len(g)} coins; issue: {lo}-{hi}% on every coin), one-sided DM p < 0.05 on "
        f"{sig} of {len(g)} (issue: {ISSUE['garch_dm_below_05']}).",
        f"- GARCH(1,1)-t coverage: 80% {min(c80):.3f}-{max(c80):.3f} (issue: {ISSUE['cov80'][0]}-{ISSUE['cov80'][1]}), "
        f"95% {min(c95):.3f}-{max(c95):.3f} (issue: {ISSUE['cov95'][0]}-{ISSUE['cov95'][1]}).",
        f"- EWMA-t's CRPS lies between the empirical baseline's and GARCH-t's on {between} of {len(g)} coins "
        "(issue: between them).",
    ]


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def section(rows: list[dict], meta: dict, name: str) -> str:
    f = lambda v, s="{:.3f}": "–" if v is None else s.format(v)  # noqa: E731
    begin, end = markers(name)
    cut = f", data cut at {meta['end']}" if meta.get("end") else ""
    lines = [begin, "", "## Risk forecasts: quantiles of the next daily log return (`benchmarks/risk_baselines.py`)", "",
             f"Generated by `benchmarks/risk_baselines.py` on {meta['date']}. Protocol: each bundled daily coin's last "
             f"{meta['days']} days ({meta['first']} .. {meta['last']}{cut}), every model refitted every "
             f"{meta['retrain_every']} days on the returns before the fold and forecasting each day from the data "
             "through the day before (`coincast.models.risk_walk`). Baselines (`coincast.models.risk_baselines`): "
             "`empirical` = quantiles of the last 365 returns; `ewma_t` = RiskMetrics lambda 0.94 with a unit-variance "
             "Student t whose degrees of freedom are fitted by ML on the training returns; `garch_t` = GARCH(1,1) with "
             "Student-t innovations (arch, percent returns, warm-started); `har_t` = HAR regression of the "
             "Garman-Klass variance on its 1/7/30-day averages with a fitted Student t; `network` = the network's "
             "distribution head (`coincast.models.risk_network`: a BiLSTM reshaping the mean of GARCH(1,1)-t's and HAR-t's "
             "quantiles, trained once before the first fold on its own coin's windows and the other bundled daily coins' of "
             "the same dates, then GARCH and HAR refitted and the conformal calibration "
             "(half of each level's shift) redone every fold; "
             f"settings {meta['network'] or 'default'}). Scores "
             "(`coincast.evaluation.risk`): CRPS of the percent log return from the 99 quantiles 1..99% "
             "((2/K) sum of pinball losses, +1.0% against the exact CRPS of a normal, the same factor for all), "
             "its ratio to `empirical` and the one-sided DM p that the baseline is better (HLN); "
             "cov./width/IS = coverage, mean width (percent) and interval score of the central 80% and 95% "
             "intervals; Kupiec (K) and Christoffersen independence (C) p-values of the 5% and 1% VaR "
             "(breaches: return below the quantile). For `network`, `/ GARCH` and `p vs GARCH` are its CRPS ratio to "
             "`garch_t` and the one-sided DM p that it is better; `ep.` the best epoch of its training (0: the "
             "base quantiles kept).", "",
             f"Machine: {meta['cpu']}, {meta['cores']} cores; Python {meta['python']}, " +
             ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) +
             f". GARCH fits: {meta['garch_fits']}, not converged (previous parameters kept): {meta['garch_nonconverged']}, "
             f"warm starts arch ignored: {meta['garch_warm_ignored']}. Time: {meta['seconds']:.0f} s for all coins "
             f"(at nice {meta['nice']}; the load average was {meta['load']} when it ended).", "",
             "| coin | model | CRPS | / empirical | DM p | / GARCH | p vs GARCH | ep. | cov. 80 | width 80 | IS 80 | cov. 95 "
             "| width 95 | IS 95 | 5% breaches | 5% K p | 5% C p | 1% breaches | 1% K p | 1% C p |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        i80, i95, v5, v1 = r["intervals"]["80"], r["intervals"]["95"], r["var"]["0.05"], r["var"]["0.01"]
        lines.append(
            f"| {r['coin']} | {r['baseline']} | {r['crps']:.4f} | {r['crps_ratio']:.4f} | {f(r['dm_p'], '{:.3g}')} | "
            f"{f(r.get('crps_ratio_garch'), '{:.4f}')} | {f(r.get('dm_p_garch'), '{:.3g}')} | {r.get('epochs', '–')} | "
            f"{i80['coverage']:.3f} | {i80['width']:.2f} | {i80['interval_score']:.2f} | "
            f"{i95['coverage']:.3f} | {i95['width']:.2f} | {i95['interval_score']:.2f} | "
            f"{v5['breaches']} | {v5['kupiec_p']:.3g} | {v5['christoffersen_p']:.3g} | "
            f"{v1['breaches']} | {v1['kupiec_p']:.3g} | {v1['christoffersen_p']:.3g} |")
    lines += ["", "The baselines against the figures issue 16 quotes for the same protocol:", "", *summary(rows), "",
              "The network against issue 16's targets:", "", *targets(rows), "", end]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coins", default=",".join(COINS))
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--retrain-every", type=int, default=7)
    p.add_argument("--out", default="benchmarks/results/risk_baselines.json")
    p.add_argument("--doc", default="BENCHMARKS.md")
    p.add_argument("--end", default=None, help="cut the data after this date (a tuning period)")
    p.add_argument("--section", default="risk", help="the marked section of --doc to write")
    p.add_argument("--network", default="", help="NetworkRisk keywords, e.g. record=730,min_record=50")
    a = p.parse_args()
    network = {k: float(v) if "." in v else int(v) for k, v in (kv.split("=") for kv in a.network.split(",") if kv)}
    t0 = time.perf_counter()
    rows = []
    for coin in a.coins.split(","):
        rows += one(coin, a.days, a.retrain_every, a.end, network)
        g = next(r for r in rows[::-1] if r["baseline"] == "garch_t")  # this coin's
        print(f"{coin}: GARCH-t CRPS / empirical {g['crps_ratio']:.4f}, DM p {g['dm_p']:.3g}", flush=True)
    g = [r["fits"] for r in rows if r["baseline"] == "garch_t"]
    meta = {"date": time.strftime("%Y-%m-%d"), "days": a.days, "retrain_every": a.retrain_every, "end": a.end,
            "network": a.network,
            "first": min(r["first"] for r in rows), "last": max(r["last"] for r in rows),
            "cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "versions": {k: md.version(k) for k in ("numpy", "scipy", "pandas", "arch", "torch")},
            "garch_fits": sum(x["fits"] for x in g), "garch_nonconverged": sum(x["nonconverged"] for x in g),
            "garch_warm_ignored": sum(x["warm_start_ignored"] for x in g), "seconds": time.perf_counter() - t0,
            "nice": os.nice(0), "load": f"{os.getloadavg()[0]:.1f}"}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    replace_section(a.doc, *markers(a.section), section(rows, meta, a.section))


if __name__ == "__main__":
    main()
