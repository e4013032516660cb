"""The HTML reports of a real tiny run, backtest and tune: escaped values, expected sections, every
table in its own scrolling box, and no page-level horizontal scroll in a real headless browser.
"""

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import markupsafe
import pytest

from coincast import load, run
from coincast.backtest.engine import BacktestSettings
from coincast.backtest.trading import TradingSettings
from coincast.config import Settings
from coincast.flows.backtest import run_backtest
from coincast.flows.tune import TuneSettings, run_tune
from coincast.report.html import render
from tests.conftest import TINY_EPOCHS, TINY_HIDDEN, one_torch_thread, tiny

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

NASTY = "btc<script>&\"co'"  # a dataset file name with HTML special characters (no slash)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / f"{NASTY}.csv"
    load("btc-usd").to_csv(path)
    return path


@pytest.fixture(scope="module")
def run_html(data_path, tmp_path_factory):
    r = run(data_path, tiny(window=20), runs_dir=tmp_path_factory.mktemp("runs"))
    return r.folder / "report.html"


@pytest.fixture(scope="module")
def backtest_html(data_path, tmp_path_factory):
    s = Settings()
    s.data.window, s.model.hidden, s.train.epochs, s.data.target = 12, [4], 1, "close"
    bt = BacktestSettings(start="2025-12-16", refit="warm", warm_epochs=1)
    r = run_backtest(data_path, s, bt, TradingSettings(stop_loss_pct=5), runs_dir=tmp_path_factory.mktemp("bt"), n_boot=50)
    return r.folder / "report.html"


@pytest.fixture(scope="module")
def tune_html(data_path, tmp_path_factory):
    ts = TuneSettings("2025-12-22", trials=2, days=14,
                      overrides={"train": {"epochs": TINY_EPOCHS}, "model": {"hidden": list(TINY_HIDDEN)}})
    return run_tune(str(data_path), ts, runs_dir=tmp_path_factory.mktemp("tune")).folder / "report.html"


class Outline(HTMLParser):
    """The h2 headings, and for every <table> whether an ancestor has the class table-wrap."""

    VOID = {"img", "meta", "br", "hr", "link", "input", "col", "wbr", "source"}

    def __init__(self, text: str):
        super().__init__()
        self.stack: list[set[str]] = []
        self.headings: list[str] = []
        self.tables_wrapped: list[bool] = []
        self._h2: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        classes = set((dict(attrs).get("class") or "").split())
        if tag == "table":
            self.tables_wrapped.append(any("table-wrap" in c for c in self.stack))
        if tag == "h2":
            self._h2 = []
        if tag not in self.VOID:
            self.stack.append(classes)

    def handle_endtag(self, tag):
        if tag == "h2" and self._h2 is not None:
            self.headings.append("".join(self._h2).strip())
            self._h2 = None
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self._h2 is not None:
            self._h2.append(data)


def test_special_characters_are_escaped_in_every_report(run_html, backtest_html, tune_html):
    for path in (run_html, backtest_html, tune_html):
        text = path.read_text()
        assert "<script>" not in text and '&"co' not in text, path.parent.name
        assert text.count(str(markupsafe.escape(NASTY))) >= 3  # the title, the heading and the run table


def test_comparison_and_per_asset_sections_escape_names():
    m = {"rmse": 1234.5, "mae": None, "accuracy": float("nan"), "rmse_ratio": 0.98765}
    text = render(
        "run_report.html", title="t", verdict="v & w", metrics={"model": m, "price_only": m, "persistence": m},
        rules={"<b>col</b>": "ratio"}, summary={"inputs": "close,<script>x</script>"}, images={"a&b.png": b"png"},
        comparison={"sentence": "s", "dm_stat": -0.5, "dm_p_extras_better": 0.25, "dm_p_two_sided": 0.5,
                    "extra_inputs": ["rsi<14>"], "price_only_inputs": ["close&co"]},
        per_asset={"<i>coin</i>": {"model": m}}, asset_models=["model"],
        risk={"skipped": "the <b>risk</b> part"}, fan={},
    )
    assert "<script>" not in text and "<b>col" not in text and "<i>coin" not in text and "<b>risk" not in text
    for escaped in ["v &amp; w", "with rsi&lt;14&gt;", "price only (close&amp;co)", "&lt;i&gt;coin&lt;/i&gt;",
                    "&lt;b&gt;col&lt;/b&gt;", 'alt="a&amp;b.png"', "close,&lt;script&gt;x&lt;/script&gt;"]:
        assert escaped in text, escaped
    assert "<td>1,234</td>" in text and "<td>0.988</td>" in text and "<td>–</td>" in text  # formats kept
    page = Outline(text)
    assert page.headings[1:3] == ["Extra inputs vs price-only model", "Per asset"] and all(page.tables_wrapped)


def test_run_report_sections_and_wrapped_tables(run_html):
    text = run_html.read_text()
    page = Outline(text)
    assert page.headings == ["Model vs baselines (test period)", "Risk: ranges of the next day's return", "Run",
                             "Column normalisation", "Plots"]
    assert len(page.tables_wrapped) == 4 and all(page.tables_wrapped)
    assert text.count("data:image/png;base64,") == 5  # the four plots and the risk fan chart
    assert "ratio: x / x<sub>0</sub> - 1" in text and '<p class="verdict">' in text


def test_backtest_report_sections_and_wrapped_tables(backtest_html):
    text = backtest_html.read_text()
    page = Outline(text)
    starts = ["Forecasts vs baselines", "Direction: binomial tests", "Moving-block bootstrap", "Prediction intervals",
              "Risk baselines: ranges", "Trading simulation (after", "Per calendar year", "Run", "Plots", "Folds"]
    assert len(page.headings) == len(starts)
    assert all(h.startswith(s) for h, s in zip(page.headings, starts)), page.headings
    assert len(page.tables_wrapped) == 9 and all(page.tables_wrapped)
    assert text.count("data:image/png;base64,") == 5  # the four plots and the risk fan chart
    m = json.loads((backtest_html.parent / "metrics.json").read_text())
    assert str(markupsafe.escape(m["verdict"][0])) in text and str(markupsafe.escape(m["risk"]["verdict"])) in text
    plain = text.replace("<wbr>", "")  # long column names may wrap after an underscore
    assert "<th>rmse_ratio_moving_average</th>" in plain and "<th>train_seconds</th>" in plain


# -- layout in a real browser ------------------------------------------------------------------
PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "layout-probe";
  out.textContent = JSON.stringify({scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth});
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        why = "chromium is not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the layout check; .ci/run installs it")
        pytest.skip(why)
    return exe


def _layout(report, tmp_path, width: int = 1280, height: int = 800) -> dict:
    """The page's scroll width and the window's inner width, measured by headless chromium."""
    page = tmp_path / "probe.html"
    page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", f"--window-size={width},{height}",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    start = dom.index('<pre id="layout-probe">') + len('<pre id="layout-probe">')
    return json.loads(dom[start:dom.index("</pre>", start)])


def test_tune_report_sections_and_wrapped_tables(tune_html):
    text = tune_html.read_text()
    page = Outline(text)
    assert page.headings == ["After 2025-12-22: the honest test", "Best settings", "Run"]
    assert len(page.tables_wrapped) == 3 and all(page.tables_wrapped)
    assert text.count("data:image/png;base64,") == 2 and '<p class="verdict">' in text


SHOTS = {"run_html": "run-report", "backtest_html": "backtest-report"}  # the docs' pictures


def _screenshot(report, data_path, name: str, tmp_path, width: int = 1280, height: int = 960) -> None:
    """With COINCAST_SCREENSHOTS=DIR, the top of the report as DIR/NAME.png (verdicts and first
    tables); the temporary file the tests give the data is shown as the dataset it holds."""
    folder = os.environ.get("COINCAST_SCREENSHOTS")
    if not folder:
        return
    page = tmp_path / "shot.html"
    page.write_text(report.read_text().replace(str(markupsafe.escape(str(data_path))), "btc-usd"))
    os.makedirs(folder, exist_ok=True)
    subprocess.run([_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--user-data-dir={tmp_path / 'shot-profile'}",
                    f"--screenshot={os.path.join(folder, name + '.png')}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)


@pytest.mark.parametrize("which", ["backtest_html", "run_html", "tune_html"])
def test_reports_do_not_scroll_sideways_at_1280_pixels(which, request, tmp_path):
    size = _layout(request.getfixturevalue(which), tmp_path)
    assert size["innerWidth"] == 1280
    assert size["scrollWidth"] <= size["innerWidth"], size
    if which in SHOTS:
        _screenshot(request.getfixturevalue(which), request.getfixturevalue("data_path"), SHOTS[which], tmp_path)
