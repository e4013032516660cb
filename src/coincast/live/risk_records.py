"""The registry's risk forecasts: the `risk_forecasts` table's queries (live/registry.py's schema).

`RiskRecords` is a part of `Registry` (its base class): it appends each point model's risk
forecasts, scores them once their candle is stored (CRPS, 80%/95% hits, the 5% VaR breach) and
reads their live records, through the registry's connection (`con`, `_run`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coincast.evaluation import risk


def naive(t: pd.Timestamp | None):
    """UTC timestamps are stored naive (as the candle table does)."""
    return None if t is None else pd.Timestamp(t).tz_convert("UTC").tz_localize(None)


RISK_ISSUED = ["stream", "model", "risk", "target_time", "issued_at", "data_through", "served", "previous",
               "quantiles", "lo80", "hi80", "lo95", "hi95", "var5"]


def risk_record(rows: pd.DataFrame) -> dict:
    """A risk model's live record from scored rows: mean CRPS, 80%/95% coverage, 5% VaR breaches."""
    n = len(rows)
    if n == 0:
        return {"n": 0}
    return {"n": n, "crps": float(rows["crps"].mean()), "coverage_80": float(rows["hit80"].mean()),
            "coverage_95": float(rows["hit95"].mean()), "var5_breaches": int(rows["var5_breach"].sum()),
            "var5_rate": float(rows["var5_breach"].mean()), "through": rows["target_time"].iloc[-1].isoformat()}


class RiskRecords:
    """The registry's `risk_forecasts` queries (mixed into `Registry`, which owns `con` and `_run`)."""

    def issue_risk(self, rows: list[dict]) -> None:
        """Append risk forecasts (a row already issued is kept as it was)."""
        for r in rows:
            self._run(f"INSERT INTO risk_forecasts ({', '.join(RISK_ISSUED)}) VALUES ({', '.join('?' * len(RISK_ISSUED))}) "
                      "ON CONFLICT DO NOTHING",
                      [naive(r[k]) if k in ("target_time", "issued_at", "data_through") else r[k] for k in RISK_ISSUED])

    def realise_risk(self, stream: str, exchange: str, symbol: str, timeframe: str, at: pd.Timestamp) -> int:
        """Score the stream's risk forecasts whose candle is now stored: the percent log return,
        its CRPS from the quantiles (as evaluation/risk.py does), the 80%/95% hits and the 5% VaR breach."""
        rows = self._run(
            "SELECT f.model, f.risk, f.target_time, f.quantiles, 100 * ln(c.close / f.previous) FROM risk_forecasts f, candles c "
            "WHERE f.stream = ? AND f.actual IS NULL AND c.exchange = ? AND c.symbol = ? AND c.timeframe = ? "
            "AND c.open_time = f.target_time", [stream, exchange.lower(), symbol.upper(), timeframe])
        for model, name, target, q, y in rows:
            q = np.asarray(q, float)[None, :]  # [1, K]
            hits = {k: risk.interval([y], q, risk.LEVELS, k)["coverage"] == 1.0 for k in ("80", "95")}
            breach = bool(y < q[0, risk.level_index(risk.LEVELS, 0.05)])
            self._run("UPDATE risk_forecasts SET actual = ?, crps = ?, hit80 = ?, hit95 = ?, var5_breach = ?, realised_at = ? "
                      "WHERE stream = ? AND model = ? AND risk = ? AND target_time = ?",
                      [float(y), float(risk.crps([y], q, risk.LEVELS)[0]), hits["80"], hits["95"], breach, naive(at),
                       stream, model, name, target])
        return len(rows)

    def risk_scored(self, stream: str, model: str, name: str, last: int | None = None) -> pd.DataFrame:
        """The point model's scored forecasts by its risk model `name`, oldest first (the last `last`)."""
        limit = f"LIMIT {int(last)}" if last else ""
        rows = self.con.execute(
            f"SELECT * FROM (SELECT target_time, risk, actual, crps, hit80, hit95, var5_breach FROM risk_forecasts "
            f"WHERE stream = ? AND model = ? AND risk = ? AND actual IS NOT NULL ORDER BY target_time DESC {limit}) "
            "ORDER BY target_time", [stream, model, name]).df()
        rows["target_time"] = pd.to_datetime(rows["target_time"]).dt.tz_localize("UTC")
        return rows

    def risk_names(self, stream: str, model: str) -> list[str]:
        """The risk models the point model has forecasts of (the served one first, GARCH-t last)."""
        return [n for (n,) in self._run("SELECT risk FROM risk_forecasts WHERE stream = ? AND model = ? GROUP BY risk "
                                        "ORDER BY risk = 'garch_t', risk", [stream, model])]

    def risk_record(self, stream: str, model: str, name: str, last: int | None = None) -> dict:
        """The live record of the model's risk model `name` over its last `last` scored forecasts."""
        return risk_record(self.risk_scored(stream, model, name, last))

