"""MkDocs hook: the reference pages that must not drift from the code, generated at build time.

- reference/cli.md from the typer app's click command (every command, argument and option);
- reference/config.md from the settings dataclasses (keys, types, defaults of both presets, the
  comment beside each field) and the allowed values `config.validate` enforces;
- reference/http-api.md and reference/openapi.json from the FastAPI app's OpenAPI schema;
- benchmarks.md, benchmarks-history.md and changelog.md from BENCHMARKS.md,
  benchmarks/results/HISTORY.md and CHANGELOG.md.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import tempfile
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]


def on_files(files, config):
    from mkdocs.structure.files import File

    pages = {
        "reference/cli.md": cli_page(),
        "reference/config.md": config_page(),
        "reference/http-api.md": http_page(),
        "reference/openapi.json": json.dumps(openapi(), indent=2),
        "benchmarks.md": root_page("BENCHMARKS.md"),
        "benchmarks-history.md": root_page("benchmarks/results/HISTORY.md"),
        "changelog.md": root_page("CHANGELOG.md"),
    }
    for uri, text in pages.items():
        files.append(File.generated(config, uri, content=text))
    return files


# -- the command line ----------------------------------------------------------------------------
def cli_page() -> str:
    from coincast.cli import app

    root = typer.main.get_command(app)
    lines = ["# Command line", "",
             "Generated from the `coincast` command itself at build time; `coincast COMMAND --help` "
             "prints the same. Settings given by flags override a `--config` file, which overrides "
             "the preset ([Configuration](config.md)).", ""]
    lines += _command(root, "coincast", depth=0)
    return "\n".join(lines) + "\n"


def _command(cmd, path: str, depth: int, parent=None) -> list[str]:
    """A command's section: help, usage, a row per argument and option; then its subcommands.
    (Typer ships its own copy of click, so this walks the command through its own methods.)"""
    ctx = cmd.context_class(cmd, info_name=path, parent=parent)
    out = [] if depth == 0 else [f"{'#' * min(depth + 1, 4)} `{path}`", ""]
    if cmd.help and depth > 0:
        out += [inspect.cleandoc(cmd.help), ""]
    out += ["```", f"{path} {' '.join(cmd.collect_usage_pieces(ctx))}", "```", ""]
    rows = [_param_row(p, ctx) for p in cmd.get_params(ctx) if not p.hidden and "--help" not in p.opts]
    if rows:
        out += ["| argument / option | default | what |", "|---|---|---|", *rows, ""]
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            out += _command(cmd.get_command(ctx, name), f"{path} {name}", depth + 1, ctx)
    return out


def _param_row(p, ctx) -> str:
    """`--name <type>` | default | help, from the option's own help record."""
    record = p.get_help_record(ctx) or (p.name.upper(), "")
    names, what = record
    what, _, default = what.partition("  [default: ")
    if p.param_type_name == "argument" and p.required:
        default = "required"
    cell = (lambda t: t.replace("|", "\\|").replace("\n", " ").strip())
    shown = f"`{cell(default.rstrip(']'))}`" if default and default != "required" else default
    return f"| `{cell(names)}` | {shown} | {cell(what)} |"


# -- settings ------------------------------------------------------------------------------------
# What config.validate accepts, per key (tests/test_docs.py checks the bounds and choices against it).
ALLOWED = {
    "data.target": "a column name or 0-based index", "data.features": "columns and indicator names",
    "data.exog": "bundled series names or CSV paths", "data.exog_max_age": "> 0 days", "data.window": ">= 3",
    "data.test_fraction": "0 < x < 1", "data.val_fraction": "0 < x < 1", "data.val_split": "`chronological`, `random`",
    "data.calib_fraction": "0 <= x < 1", "data.skip_last_row": "true, false", "data.max_gap": '>= 1, or `"none"`',
    "data.test_start": "a date YYYY-MM-DD", "data.timestamps": "`open`, `close`",
    "model.hidden": "a non-empty list of units >= 1", "model.dropout": "0 <= x < 1", "model.cell": "`lstm`, `gru`",
    "model.bidirectional": "true, false", "model.target": "`change`, `window`", "model.scaling": "`revin`, `none`",
    "model.shrink": "true, false", "model.risk_head": "true, false",
    "train.epochs": ">= 1", "train.batch_size": ">= 1", "train.lr": "> 0", "train.loss": "`mse`, `huber`",
    "train.early_stopping": "true, false", "train.patience": ">= 1", "train.seed": "0 .. 2^32 - seeds",
    "train.seeds": ">= 1", "train.device": "`auto`, `cpu`, `cuda`, `mps`", "train.precision": "`auto`, `fp32`, `bf16`",
    "train.shards": ">= 1",
}


def config_page() -> str:
    from coincast.config import SECTIONS, preset

    default, tutorial = preset("default"), preset("tutorial")
    lines = [(ROOT / "docs/reference/config-intro.md").read_text().strip(), ""]
    for section, cls in SECTIONS.items():
        comments = _field_comments(cls)
        lines += [f"## `[{section}]`", "", "| key | type | default | tutorial | allowed | what |", "|---|---|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            if key not in ALLOWED:
                raise ValueError(f"docs_hooks/reference.py: ALLOWED has no entry for the setting {key}")
            a, b = getattr(getattr(default, section), f.name), getattr(getattr(tutorial, section), f.name)
            kind = str(f.type).replace("|", "or")
            lines.append(f"| `{f.name}` | {kind} | {_value(a)} | {_value(b) if b != a else ''} | {ALLOWED[key]} | "
                         f"{comments.get(f.name, '')} |")
        lines.append("")
    unknown = set(ALLOWED) - {f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)}
    if unknown:
        raise ValueError(f"docs_hooks/reference.py: ALLOWED names settings that do not exist: {sorted(unknown)}")
    return "\n".join(lines) + "\n"


def _value(v) -> str:
    return "none" if v is None else f"`{json.dumps(v)}`"


def _field_comments(cls) -> dict[str, str]:
    """Each field's comment in the dataclass source: the lines above it and the one beside it."""
    found, above = {}, []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# "))
            continue
        m = re.match(r"(\w+): [^=]+=[^#]*(?:#\s*(.*))?$", text)
        if m:
            found[m.group(1)] = " ".join([*above, m.group(2) or ""]).strip().replace("|", "\\|")
        above = []
    return found


# -- HTTP API ------------------------------------------------------------------------------------
def openapi() -> dict:
    """The schema of the app `coincast serve` runs, built over a service with no streams."""
    from coincast.api.app import create_app
    from coincast.live.clock import WallClock
    from coincast.live.config import LiveConfig
    from coincast.live.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        service = Service(LiveConfig([], Path(tmp) / "store.duckdb"), WallClock(), client_for=lambda _: None)
        return create_app(service).openapi()


def http_page() -> str:
    schema = openapi()
    lines = ["# HTTP API", "",
             f"{schema['info']['description']} Generated from the OpenAPI schema of the app `coincast serve` "
             "runs (a running server serves it at `/openapi.json`; [download it](openapi.json)). "
             "The [API and dashboard guide](../guides/api.md) shows it in use.", ""]
    components = schema.get("components", {}).get("schemas", {})
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            lines += [f"## `{method.upper()} {path}`", "", op.get("description") or op.get("summary", ""), ""]
            params = op.get("parameters", [])
            if params:
                lines += ["| parameter | in | type | required | what |", "|---|---|---|---|---|"]
                for p in params:
                    lines.append(f"| `{p['name']}` | {p['in']} | {_schema_type(p.get('schema', {}))} | "
                                 f"{'yes' if p.get('required') else ''} | {p.get('description', '')} |")
                lines.append("")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                model = components.get(body.get("$ref", "").rsplit("/", 1)[-1], body)
                fields = ", ".join(f"`{k}` ({_schema_type(v)}{', required' if k in model.get('required', []) else ''})"
                                   for k, v in model.get("properties", {}).items())
                lines += [f"JSON body: {fields}.", ""]
            answers = "; ".join(f"{code} {r.get('description', '')}" for code, r in op.get("responses", {}).items())
            lines += [f"Answers: {answers}.", ""]
    return "\n".join(lines) + "\n"


def _schema_type(s: dict) -> str:
    if "anyOf" in s:
        return " or ".join(_schema_type(x) for x in s["anyOf"] if x.get("type") != "null")
    kind = s.get("type", s.get("$ref", "").rsplit("/", 1)[-1] or "any")
    facts = [s["format"]] if "format" in s else []
    if "minimum" in s or "maximum" in s:
        facts.append(f"{s.get('minimum', '')}..{s.get('maximum', '')}")
    if s.get("default") is not None:
        facts.append(f"default {s['default']}")
    return f"{kind} ({', '.join(facts)})" if facts else kind


# -- pages kept at the repository root -----------------------------------------------------------
# repository files that are pages of the site
PAGES = {"BENCHMARKS.md": "benchmarks.md", "benchmarks/results/HISTORY.md": "benchmarks-history.md",
         "CHANGELOG.md": "changelog.md"}


def root_page(name: str) -> str:
    """A repository Markdown file as a page: links to other such files point at their pages,
    links to any other repository file become its path as text."""
    def link(m: re.Match) -> str:
        target = m.group(2)
        return f"[{m.group(1)}]({PAGES[target]})" if target in PAGES else f"{m.group(1)} (`{target}`)"

    return re.sub(r"\[([^\]]+)\]\((?!https?://|#)([^)]+)\)", link, (ROOT / name).read_text())
