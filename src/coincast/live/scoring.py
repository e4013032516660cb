"""Phase 2 of a stream's step: score, guard, and decide a challenger whose shadow period is over.

The realised fields of forecasts whose candle is now stored are filled in (`Registry.realise`),
a candle revised after its forecasts were scored is recorded beside them (`Registry.revise`:
the first value stays, the final one is scored), each model's rolling live record is updated, the guard sets the champion aside for persistence
while its record is significantly worse (and lifts it when it beats persistence again), and a
challenger with `shadow` realised forecasts is promoted only when it is no worse than the
champion on the same candles by RMSE and (daily streams) the served risk model's CRPS, and
better on one (`live.judge`); a tie keeps the champion. The risk forecasts are scored beside the
points (CRPS, 80%/95% hits, 5% VaR breach), and the risk guard serves GARCH-t's distribution
while the served risk model's live CRPS is not below GARCH-t's (`judge.risk_verdict`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd

from coincast.live import judge

if TYPE_CHECKING:
    from coincast.live.service import Service, StreamState


def score(service: Service, st: StreamState, last: pd.Timestamp) -> None:
    s, now, reg = st.stream, service.clock.now(), service.reg
    realised = reg.realise(s.name, *s.market, now)
    realised += reg.realise_risk(s.name, *s.market, now)
    revised = reg.revise(s.name, *s.market, now)
    for target, was, close in revised:
        reg.decide(s.name, now, "revision", target_time=target, figures={"close_before": was, "close_now": close},
                   reason=f"the {target:%Y-%m-%d %H:%M} candle's close was revised from {was:,.2f} to {close:,.2f} after "
                          "its forecasts were scored: they keep the first value (actual) and record the final one "
                          "(final_actual); live records use the final one")
        service.log(st, f"the {target:%Y-%m-%d %H:%M} candle was revised after it was scored: close {was:,.2f} -> "
                        f"{close:,.2f}; live records use the final value", logging.WARNING)
    if not realised and not revised:
        return
    champion = reg.with_status(s.name, "champion")
    if champion is not None:
        rec = reg.live_record(s.name, champion["id"], s.guard)
        if rec["n"]:  # (a champion promoted by hand may have no realised forecast yet)
            service.log(st, f"scored through {last:%Y-%m-%d %H:%M}: champion {champion['id']} live RMSE "
                            f"{_ratio(rec)} persistence's over its last {rec['n']} (DM p {_p(rec.get('dm_p_better'))}), "
                            f"direction {rec['direction_accuracy']:.0%}")
        _guard(service, st, champion["id"], rec)
        _risk_guard(service, st, champion["id"])
    shadow = reg.with_status(s.name, "shadow")
    if shadow is not None:
        reg.live_record(s.name, shadow["id"], s.guard)
        if champion is not None:
            _judge_shadow(service, st, shadow["id"], champion["id"])


def _guard(service: Service, st: StreamState, champion: str, rec: dict) -> None:
    s, now, reg = st.stream, service.clock.now(), service.reg
    if not st.fallback and judge.guard_trips(rec, s.guard):
        st.fallback = True
        reg.decide(s.name, now, "fallback", champion, figures=rec,
                   reason=f"live RMSE {rec['rmse_ratio']:.3f}x persistence over {rec['n']} forecasts, "
                          f"DM p {rec['dm_p_worse']:.3g} < {judge.ALPHA}: serving persistence")
        service.log(st, f"GUARD: {champion} is significantly worse than persistence; serving persistence (fallback)",
                    logging.WARNING)
    elif st.fallback and judge.guard_clears(rec, s.guard):
        st.fallback = False
        reg.decide(s.name, now, "fallback_end", champion, figures=rec, reason="the champion beats persistence again")
        service.log(st, f"guard lifted: {champion} beats persistence again")


def _risk_guard(service: Service, st: StreamState, champion: str) -> None:
    """Serve GARCH-t's distribution while the served risk model's live CRPS is not below GARCH-t's
    (`judge.risk_verdict`); the served model's again once it is."""
    s, now, reg = st.stream, service.clock.now(), service.reg
    names = reg.risk_names(s.name, champion)
    if len(names) < 2:  # GARCH-t is the served model itself, or no distribution yet
        return
    verdict = judge.risk_verdict(reg.risk_scored(s.name, champion, names[0]), reg.risk_scored(s.name, champion, judge.GARCH),
                                 s.guard)
    if verdict is None:
        return
    both = (f"live CRPS of {names[0]} {verdict['ratio']:.4f}x GARCH-t's over the last {verdict['n']} candles "
            f"(DM p {_p(verdict['dm_p'])})")
    if not st.risk_fallback and not verdict["skill"]:
        st.risk_fallback = True
        reg.decide(s.name, now, "risk_fallback", champion, figures=verdict, reason=f"{both}: no skill, serving GARCH-t's distribution")
        service.log(st, f"RISK GUARD: {both}; serving GARCH-t's distribution", logging.WARNING)
    elif st.risk_fallback and verdict["skill"]:
        st.risk_fallback = False
        reg.decide(s.name, now, "risk_fallback_end", champion, figures=verdict, reason=f"{both}: serving {names[0]} again")
        service.log(st, f"risk guard lifted: {both}; serving {names[0]} again")


def _judge_shadow(service: Service, st: StreamState, challenger: str, champion: str) -> None:
    s, now, reg = st.stream, service.clock.now(), service.reg
    risks = [reg.risk_names(s.name, m) for m in (challenger, champion)]
    served = [reg.risk_scored(s.name, m, names[0]) if names else None for m, names in zip((challenger, champion), risks)]
    verdict = judge.shadow_verdict(reg.scored(s.name, challenger), reg.scored(s.name, champion), s.shadow, *served)
    if verdict is None:
        return
    both = (f"shadow RMSE {verdict['challenger_rmse']:,.2f} vs champion {verdict['champion_rmse']:,.2f} "
            f"on the same {verdict['n']} candles (persistence {verdict['persistence_rmse']:,.2f}, DM p {_p(verdict['dm_p'])})")
    if "challenger_crps" in verdict:
        both += f", CRPS {verdict['challenger_crps']:.4f} vs {verdict['champion_crps']:.4f}"
    if verdict["promote"]:
        lifted = st.fallback and verdict["challenger_rmse"] < verdict["persistence_rmse"]
        with reg.transaction():  # a kill never leaves a stream with no champion, or two
            reg.set_status(champion, "retired")
            reg.set_status(challenger, "champion")
            reg.decide(s.name, now, "promotion", challenger, champion, figures=verdict, reason=both)
            if lifted:
                reg.decide(s.name, now, "fallback_end", challenger, figures=verdict,
                           reason="the promoted model's shadow record beats persistence")
        service.loaded.pop(champion, None)
        service.risk_fits.pop(champion, None)
        st.fallback = st.fallback and not lifted
        service.log(st, f"DECISION: promoted {challenger} over {champion}: {both}")
    else:
        why = "tie" if verdict["tie"] else "challenger worse on a score" if "challenger_crps" in verdict else "challenger worse"
        with reg.transaction():
            reg.set_status(challenger, "retired")
            reg.decide(s.name, now, "rejection", challenger, champion, figures=verdict, reason=f"kept: {why}: {both}")
        service.loaded.pop(challenger, None)
        service.risk_fits.pop(challenger, None)
        service.log(st, f"DECISION: kept {champion} ({why}), retired {challenger}: {both}")


def _ratio(rec: dict) -> str:
    return f"{rec['rmse_ratio']:.3f}x" if rec.get("rmse_ratio") is not None else "n/a x"


def _p(p) -> str:
    return "n/a" if p is None or p != p else f"{p:.3g}"
