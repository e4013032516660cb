"""Risk benchmark: quantile forecasts of the next daily log return on every bundled coin.

Walks the network's distribution head (coincast.models.risk_network) and the baselines of
coincast.models.risk_baselines (empirical 365 days, EWMA-t, GARCH(1,1)-t, HAR-t; with --intraday
also HAR-RV and HARQ on the realized measures of each coin's hourly candles, and the forecast
combinations of coincast.models.risk_walk.COMBINATIONS) forward over the last 730 days of each
bundled daily coin with weekly refits on past data, and scores them as `coincast backtest` does
(coincast.flows.backtest_risk.scores): CRPS from the 99 quantiles 1..99% (percent log returns), its
ratio to the empirical baseline and to GARCH(1,1)-t with the one-sided Diebold-Mariano p, 80/95%
coverage, width and interval score, the Kupiec and Christoffersen tests of the 5% and 1% VaR, and
(with --intraday) the variance forecasts' QLIKE and MSE against the realized variance and each
coin's 90% Model Confidence Set on CRPS; then issue 16's targets, and with --served issue 28's
for that model, met or missed. Writes the JSON (--out) and a marked section of --doc.

    .venv/bin/python benchmarks/risk_baselines.py [--coins btc-usd,eth-usd] [--days 730] [--retrain-every 7]
        [--end 2024-01-06 --section risk_tuning --out ...]   the same on data cut at --end
        [--network record=730,shrink=1.0]                     the network's settings (NetworkRisk's keywords;
                                                              pool=0: trained on the coin's own windows only)
        [--intraday bundled|none|FOLDER]                      hourly candles (default: the bundled <coin>-1h
                                                              series; a folder of <COIN>USDT_1h.csv): the intraday models
        [--served network_har]                                issue 28's targets for this model (default: the
                                                              first of SERVED_MODELS, the model coincast serves)
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from doc_section import replace_section  # benchmarks/: run as scripts
import coincast
from coincast.data.datasets import daily_coins
from coincast.evaluation import risk
from coincast.evaluation.metrics import diebold_mariano
from coincast.flows.backtest_risk import SERVED_MODELS, candle_columns, confidence_set, scores
from coincast.machine import cpu_model
from coincast.models.risk_baselines import all_baselines
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import pooled_returns, walk_forward_risk

COINS = ("btc-usd", "eth-usd", "ltc-usd", "xrp-usd", "ada-usd", "bnb-usd")
REFERENCE, GARCH = "empirical", "garch_t"
# What issue 16 quotes for the same protocol, to compare against.
ISSUE = {"garch_gain": (0.3, 1.9), "garch_dm_below_05": 4, "cov80": (0.79, 0.83), "cov95": (0.95, 0.96)}


def hourly(source: str | None, coin: str, end: str | None) -> pd.DataFrame | None:
    """The coin's hourly candles, cut after `end`: "bundled" (the dataset `<coin>-1h`), "none"/None
    (no intraday models), or a folder of <COIN>USDT_1h.csv files (UTC open times)."""
    if source in (None, "none"):
        return None
    if source == "bundled":
        frame = candle_columns(coincast.load(f"{coin}-1h"))
    else:
        frame = pd.read_csv(Path(source) / f"{coin.split('-')[0].upper()}USDT_1h.csv", index_col="timestamp",
                            parse_dates=True)
        frame.index = frame.index.tz_localize("UTC")
    return frame if end is None else frame.loc[: f"{end} 23:00"]


def one(coin: str, days: int, retrain_every: int, end: str | None, network: dict,
        intraday: str | None = None) -> tuple[list[dict], dict]:
    """(one row per model of the coin, {model: [N] daily CRPS} with the days and the MCS)."""
    candles = candle_columns(coincast.load(coin))  # a user's CSV may say Open/High/Low/Close
    if end is not None:
        candles = candles.loc[:end]
    hours = hourly(intraday, coin, end)
    t0 = time.perf_counter()
    network = dict(network)
    others = daily_coins(but=coin)
    pool_hourly = {c: hourly(intraday, c, end) for c in others} if network.get("realized") else None
    pool = pooled_returns(candles, others, pool_hourly) if network.pop("pool", 1) else {}  # as risk_part
    net = NetworkRisk(**network, pool=pool)
    coin = Path(coin).stem if Path(coin).suffix else coin  # a file: its name in the table
    enough = len(candles) - days - 1 >= net.min_history  # returns before the first day
    walk = walk_forward_risk(candles, start=candles.index[-days], retrain_every=retrain_every,
                             baselines=all_baselines(intraday=hours is not None) + ([net] if enough else []),
                             intraday=hours)
    seconds = time.perf_counter() - t0
    y = walk.actual.to_numpy()  # [N]
    flat = scores(walk)  # as `coincast backtest` scores them
    mcs = confidence_set(walk)
    daily = {"days": [str(d.date()) for d in walk.actual.index], "mcs": mcs, "realized": walk.counts.get("realized"),
             "crps": {name: risk.crps(y, walk.q(name), walk.tau).tolist() for name in walk.names}}
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
            **{k: v for k, v in flat[name].items() if "garch" in k or k in ("qlike", "mse")},
            "in_mcs": None if mcs is None else name in mcs["included"],
        })
        if name == "network":
            rows[-1].update({"epochs": net.epochs_, "windows": net.pooled_})
    return rows, daily


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
             "| coin | model | CRPS | / empirical | DM p | / GARCH | p vs GARCH | QLIKE / GARCH | QLIKE p | MCS | ep. "
             "| cov. 80 | width 80 | IS 80 | cov. 95 | width 95 | IS 95 | 5% breaches | 5% K p | 5% C p | 1% breaches "
             "| 1% K p | 1% C p |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        i80, i95, v5, v1 = r["intervals"]["80"], r["intervals"]["95"], r["var"]["0.05"], r["var"]["0.01"]
        lines.append(
            f"| {r['coin']} | {r['baseline']} | {r['crps']:.4f} | {r['crps_ratio']:.4f} | {f(r['dm_p'], '{:.3g}')} | "
            f"{f(r.get('crps_ratio_garch'), '{:.4f}')} | {f(r.get('dm_p_garch'), '{:.3g}')} | "
            f"{f(r.get('qlike_ratio_garch'), '{:.4f}')} | {f(r.get('qlike_dm_p_garch'), '{:.3g}')} | "
            f"{'–' if r.get('in_mcs') is None else 'in' if r['in_mcs'] else 'out'} | {r.get('epochs', '–')} | "
            f"{i80['coverage']:.3f} | {i80['width']:.2f} | {i80['interval_score']:.2f} | "
            f"{i95['coverage']:.3f} | {i95['width']:.2f} | {i95['interval_score']:.2f} | "
            f"{v5['breaches']} | {v5['kupiec_p']:.3g} | {v5['christoffersen_p']:.3g} | "
            f"{v1['breaches']} | {v1['kupiec_p']:.3g} | {v1['christoffersen_p']:.3g} |")
    if meta.get("intraday"):
        lines += ["", f"Intraday models: hourly candles from `{meta['intraday']}` (realized measures of each UTC day, "
                  "`coincast.prep.realized`); `har_rv` = log HAR-RV (arch HARX on ln RV, 1/7/30-day averages) with the "
                  "empirical quantiles of the standardised training returns; `harq` = level HARQ (the day-before "
                  "coefficient moving with sqrt(RQ)) likewise; `garch_har` = the level-by-level mean of `garch_t`'s and "
                  "`har_rv`'s quantiles; `network_har` = the same of `network`'s and `har_rv`'s. QLIKE / GARCH: the "
                  "variance forecast's mean QLIKE against the day's realized variance over GARCH-t's, with the "
                  "one-sided DM p; MCS: in or out of the coin's 90% Model Confidence Set on daily CRPS (arch, "
                  f"1000 stationary-bootstrap draws). Days whose realized measures were filled from the daily "
                  f"Garman-Klass variance (too few hours): {meta['filled']}."]
    lines += ["", "The baselines against the figures issue 16 quotes for the same protocol:", "", *summary(rows), "",
              "The network against issue 16's targets:", "", *targets(rows)]
    if meta.get("served"):
        lines += ["", f"The served model (`{meta['served']}`) against issue 28's targets:", "", *meta["served_targets"]]
    lines += ["", end]
    return "\n".join(lines)


def panel(daily: dict[str, dict], a: str, b: str) -> dict:
    """Model a against b over every coin's days pooled: the ratio of summed CRPS and the one-sided
    DM p on the daily cross-coin mean of the CRPS differences (dates any coin has)."""
    both = pd.concat([pd.DataFrame({"a": d["crps"][a], "b": d["crps"][b]}, index=d["days"]) for d in daily.values()])
    mean = both.groupby(level=0).mean().sort_index()  # [D, 2] each date's mean over the coins that have it
    _, p = diebold_mariano(mean["a"].to_numpy(), mean["b"].to_numpy())
    return {"ratio": float(both["a"].sum() / both["b"].sum()), "dm_p": p, "days": len(both)}


def served_targets(rows: list[dict], daily: dict[str, dict], served: str) -> tuple[list[str], dict]:
    """Issue 28's targets for the served model, each met or missed, and the numbers behind them."""
    n = [r for r in rows if r["baseline"] == served]
    k = len(n)
    below = sum(r["crps_ratio_garch"] < 1 for r in n)
    sig = sum(r["crps_ratio_garch"] < 1 and r["dm_p_garch"] < 0.05 for r in n)
    pooled = panel(daily, served, "garch_t")
    combo = {c: risk_dm(daily[c], served, "garch_har") for c in daily if "garch_har" in daily[c]["crps"]}
    below_combo = sum(v["ratio"] < 1 for v in combo.values())
    qlike = [r.get("qlike_ratio_garch") for r in n]
    qbelow = sum(q is not None and q < 1 for q in qlike)
    off80 = max(abs(r["intervals"]["80"]["coverage"] - 0.80) for r in n)
    off95 = max(abs(r["intervals"]["95"]["coverage"] - 0.95) for r in n)
    var = sum(r["var"]["0.05"]["kupiec_p"] > 0.05 and r["var"]["0.05"]["christoffersen_p"] > 0.05 for r in n)
    ok = lambda cond: "**met**" if cond else "**missed**"  # noqa: E731
    fmt = lambda xs: ", ".join("–" if x is None else format(x, ".4f") for x in xs)  # noqa: E731
    mcs = {c: d["mcs"]["included"] for c, d in daily.items() if d["mcs"]}
    lines = [
        f"- CRPS below GARCH(1,1)-t's on {k} of {k}: {below} (ratios {fmt(r['crps_ratio_garch'] for r in n)}; one-sided "
        f"DM p {', '.join(format(r['dm_p_garch'], '.3g') for r in n)}): {ok(below == k)}; significantly (p < 0.05) on "
        f"at least 4: {sig}: {ok(sig >= 4)}.",
        f"- Pooled panel of all {k} coins' {pooled['days']} coin-days: CRPS {pooled['ratio']:.4f}x GARCH-t's (DM p on the "
        f"daily cross-coin mean difference {pooled['dm_p']:.3g}); at most 0.995x: {ok(pooled['ratio'] <= 0.995)}.",
        f"- Below the GARCH-t + HAR-RV average on at least 4 of {k}: {below_combo} (ratios "
        f"{fmt(v['ratio'] for v in combo.values())}; p {', '.join(format(v['dm_p'], '.3g') for v in combo.values())}): "
        f"{ok(below_combo >= 4)}.",
        f"- Variance QLIKE below GARCH-t's on {k} of {k}: {qbelow} (ratios {fmt(qlike)}): {ok(qbelow == k)}.",
        f"- 80% and 95% coverage within 2.5 points of nominal on each coin: farthest {100 * off80:.1f} / {100 * off95:.1f} "
        f"points: {ok(off80 <= 0.025 and off95 <= 0.025)}.",
        f"- 5% VaR passes Kupiec and Christoffersen (p > 0.05) on at least 5 of {k}: {var}: {ok(var >= 5)}.",
        "- 90% Model Confidence Set on CRPS per coin: " + "; ".join(f"{c}: {', '.join(m)}" for c, m in mcs.items()) + ".",
    ]
    numbers = {"below_garch": below, "significant": sig, "panel": pooled, "vs_garch_har": combo,
               "qlike_below": qbelow, "coverage_off": [off80, off95], "var_pass": var, "mcs": mcs}
    return lines, numbers


def risk_dm(d: dict, a: str, b: str) -> dict:
    """One coin's CRPS of model a against b from its daily CRPS: the ratio and the one-sided DM p."""
    x, y = np.asarray(d["crps"][a]), np.asarray(d["crps"][b])
    _, p = diebold_mariano(x, y)
    return {"ratio": float(x.mean() / y.mean()), "dm_p": p}


def rank(paths: list[str], candidates: list[str]) -> list[dict]:
    """The served-model rule on tuning results (JSON of this script): for each candidate, the
    coin-periods with CRPS below GARCH-t's and the mean ratio over them; ranked by the most below,
    then the lower mean ratio."""
    rows = [r for p in paths for r in json.loads(Path(p).read_text())["rows"]]
    out = []
    for c in candidates:
        ratios = [r["crps_ratio_garch"] for r in rows if r["baseline"] == c]
        out.append({"model": c, "periods": len(ratios), "below": sum(x < 1 for x in ratios),
                    "mean_ratio": float(np.mean(ratios)), "ratios": ratios})
    return sorted(out, key=lambda x: (-x["below"], x["mean_ratio"]))


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
    p.add_argument("--intraday", default="bundled",
                   help="hourly candles: bundled (each coin's <coin>-1h dataset), none, or a folder of <COIN>USDT_1h.csv")
    p.add_argument("--served", default=None,
                   help="the served model scored against issue 28's targets (default: SERVED_MODELS' first, with hourly candles)")
    p.add_argument("--rank", default=None, help="tuning JSONs (comma-separated): rank --candidates by the rule, print, exit")
    p.add_argument("--candidates", default="garch_har,har_rv,harq,network,network_har")
    a = p.parse_args()
    if a.served is None and a.intraday != "none":
        a.served = SERVED_MODELS[0]
    if a.rank:
        print(json.dumps(rank(a.rank.split(","), a.candidates.split(",")), indent=2))
        return
    network = {k: float(v) if "." in v else int(v) for k, v in (kv.split("=") for kv in a.network.split(",") if kv)}
    commit = os.popen("git rev-parse --short HEAD").read().strip()  # the code the run starts with
    t0 = time.perf_counter()
    rows, daily = [], {}
    for coin in a.coins.split(","):
        part, daily[coin] = one(coin, a.days, a.retrain_every, a.end, network, a.intraday)
        rows += part
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
            "nice": os.nice(0), "load": f"{os.getloadavg()[0]:.1f}", "intraday": a.intraday, "served": a.served,
            "commit": commit,
            "filled": {c: d["realized"] for c, d in daily.items()}}
    result = {"meta": meta, "rows": rows, "daily": daily}
    if a.served:
        meta["served_targets"], result["served"] = served_targets(rows, daily, a.served)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, separators=(",", ":")) + "\n")  # compact: the daily CRPS lists are long
    replace_section(a.doc, *markers(a.section), section(rows, meta, a.section))


if __name__ == "__main__":
    main()
