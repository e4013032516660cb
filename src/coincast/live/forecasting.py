"""Phase 4 of a stream's step: forecast the candle now open.

The champion's forecast is served (persistence's while the guard holds, the champion's then kept
unserved so its record goes on) and the challenger in shadow forecasts beside it, both shrunk
towards persistence with the a of the stream's live record when `model.shrink` is on
(`live/skill.py`), with the conformal band of the model's calibration around the point. A
stream whose newest candle is more than two bars old is stale: no forecast, recorded once per
candle. Candles that closed while the service was down are recorded as missed, never forecast
after the fact.

A daily stream's models also forecast the distribution of the candle's log return
(`live/risk.py`; a model's network risk head is read from its folder, `live/head.py`): the served
risk model's quantiles and GARCH-t's, stored in `risk_forecasts`;
the champion's served risk model's are served, GARCH-t's while the risk guard holds
(`live/scoring.py`). Its hourly candles come from an hourly stream of the same market where the
config has one (`intraday`), stepped before the daily stream in each pass. A model whose
distribution cannot be forecast (too little history) is recorded once (`no_risk_forecast`: its
fit failed) and its point forecasts stand.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from coincast.errors import DataError, ModelFileError
from coincast.live import head, risk, skill
from coincast.live.registry import utc

if TYPE_CHECKING:
    from coincast.live.service import Service, StreamState


def forecast(service: Service, st: StreamState, last: pd.Timestamp) -> None:
    s, now, reg = st.stream, service.clock.now(), service.reg
    name, target = s.name, now.floor(s.bar)
    if st.forecast is not None and st.forecast >= target:
        return  # this candle already has its forecast
    champion = reg.with_status(name, "champion")
    if champion is None:
        if not st.waiting_logged:
            service.log(st, "no model yet: forecasts start once the first training is done")
            st.waiting_logged = True
        return
    _record_missed(service, st, target)
    st.stale = now - last > 2 * s.bar
    if st.stale and st.issued is not None and st.issued >= target:
        return  # recorded as stale already; checked again soon
    if st.stale:
        reg.decide(name, now, "stale", champion["id"], target_time=target,
                   reason=f"newest candle opens {last:%Y-%m-%d %H:%M}, {now - last} ago: more than two bars")
        service.log(st, f"STALE: newest candle opens {last:%Y-%m-%d %H:%M}; no forecast for {target:%Y-%m-%d %H:%M}",
                    logging.WARNING)
        st.issued = target
        return
    candles = service.store.candles(*s.market)
    rows, shadow = [], reg.with_status(name, "shadow")
    record = skill.record_a(reg, name, target)  # (a, forecasts it is fitted on): targets before this one
    for served, m in ((not st.fallback, champion), (False, shadow)):
        if m is None:
            continue
        try:
            rows.append(_row(service, st, m, candles, target, record, served=served))
        except DataError as exc:
            st.last_error = f"no forecast from {m['id']}: {exc}"
            reg.decide(name, now, "no_forecast", m["id"], target_time=target, reason=str(exc))
            service.log(st, f"no forecast from {m['id']}: {exc}", logging.WARNING)
    if st.fallback:
        close = float(candles["close"].iloc[-1])
        rows.append({"model": "persistence", "role": "fallback", "served": True, "point": close,
                     **{k: None for k in ("lo80", "hi80", "lo95", "hi95", "network", "shrink")},
                     **_common(service, st, target, last, close)})
    if shadow is not None and pd.isna(shadow["shadow_from"]):
        reg.set_status(shadow["id"], "shadow", shadow_from=target)
    reg.issue(rows)
    if s.bar == risk.DAY:
        distributions(service, st, [(champion, True), (shadow, False)], candles, target)
    st.issued = st.forecast = target
    for r in rows:
        what = "serves" if r["served"] else "shadow"
        band = f" (80% {r['lo80']:,.2f}..{r['hi80']:,.2f})" if r["lo80"] is not None else ""
        a = f"; shrunk a {r['shrink']:.3f} (live record of {r['record_n']})" if r.get("record_n") is not None else ""
        service.log(st, f"forecast for the {target:%Y-%m-%d %H:%M} candle's close: {r['point']:,.2f}{band} by {r['model']} "
                        f"[{what}]; persistence {r['persistence']:,.2f}{a}")


def _common(service: Service, st: StreamState, target, last, close) -> dict:
    return {"stream": st.stream.name, "target_time": target, "issued_at": service.clock.now(),
            "data_through": last, "persistence": close}


def _row(service: Service, st: StreamState, m: dict, candles: pd.DataFrame, target, record: tuple[float, int],
         served: bool) -> dict:
    """The model's forecast row: its network's price shrunk with the record's a (`model.shrink`
    on) or as it is (a = 1), the conformal band around that point."""
    f = service.model(m["id"])
    fc = f.forecast_next(candles, network=True)
    if pd.Timestamp(fc["date"]) != target:
        raise DataError(f"the model forecasts {fc['date']}, not the open candle {target}")
    shrinks = f.settings.model.shrink
    a = record[0] if shrinks else 1.0
    close = fc["last_price"]
    return {"model": m["id"], "role": m["status"], "served": served,
            **skill.served(fc["network_price"], close, a, json.loads(m["figures"] or "{}")),
            "record_n": record[1] if shrinks else None, **_common(service, st, target, candles.index[-1], close)}


def _record_missed(service: Service, st: StreamState, target: pd.Timestamp) -> None:
    """Candles between the newest forecast target and this one closed unforecast: missed."""
    if st.issued is None:
        return
    t = st.issued + st.stream.bar
    while t < target:
        service.reg.decide(st.stream.name, service.clock.now(), "missed", target_time=t,
                           reason="the candle closed while the service was down or behind; never forecast after the fact")
        service.log(st, f"missed {t:%Y-%m-%d %H:%M} (closed while the service was not running)", logging.WARNING)
        t += st.stream.bar


def intraday(service: Service, st: StreamState, before: pd.Timestamp) -> pd.DataFrame | None:
    """The stored hourly candles of the stream's market that open before `before`, where the config
    has a 1h stream of the same exchange and symbol (None: the daily-only path)."""
    exchange, symbol, _ = st.stream.market
    if not service.companions[st.stream.name]:
        return None
    if service.store.last_open_time(exchange, symbol, "1h") is None:
        return None
    hours = service.store.candles(exchange, symbol, "1h")
    return hours[hours.index < before]


def distributions(service: Service, st: StreamState, models: list[tuple[dict | None, bool]], candles: pd.DataFrame,
                  target: pd.Timestamp) -> None:
    """Each model's risk forecasts of the `target` candle (its served risk model's and GARCH-t's)."""
    name, now, reg = st.stream.name, service.clock.now(), service.reg
    hours = intraday(service, st, target)
    previous = float(candles["close"].iloc[-1])
    rows = []
    for m, champion in models:
        if m is None:
            continue
        fitted = service.risk_fits.get(m["id"])
        try:
            if fitted is None:
                fitted = service.risk_fits[m["id"]] = risk.fit(candles, utc(m["trained_through"]), hours,
                                                                head.load(reg.folder(m["id"])))
            elif isinstance(fitted, str):
                continue  # its fit failed (recorded then); the next model's fit is tried afresh
            quantiles = risk.forecast(fitted, candles, hours)
        except (DataError, ModelFileError, ValueError, RuntimeError, np.linalg.LinAlgError) as exc:  # too little history, a failed fit
            if fitted is None:
                service.risk_fits[m["id"]] = str(exc)
                reg.decide(name, now, "no_risk_forecast", m["id"], target_time=target, reason=str(exc))
            service.log(st, f"no risk forecast from {m['id']}: {exc}", logging.WARNING)
            continue
        shown = risk.GARCH if st.risk_fallback else fitted.served
        for kind, q in quantiles.items():
            rows.append({"stream": name, "model": m["id"], "risk": kind, "target_time": target, "issued_at": now,
                         "data_through": candles.index[-1], "served": champion and kind == shown, "previous": previous,
                         "quantiles": [float(v) for v in q], **risk.summary(q, previous)})
    reg.issue_risk(rows)
    for r in rows:
        if r["served"]:
            service.log(st, f"risk forecast for the {target:%Y-%m-%d %H:%M} candle by {r['model']}'s {r['risk']}: "
                            f"80% {r['lo80']:,.2f}..{r['hi80']:,.2f}, 95% {r['lo95']:,.2f}..{r['hi95']:,.2f}, "
                            f"5% VaR {r['var5']:.2f}%")
