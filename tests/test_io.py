"""Run-folder files: standard JSON, written atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coincast import io


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_undefined_numbers_are_written_as_null(tmp_path):
    path = tmp_path / "metrics.json"
    io.write_json(path, {"width": float("inf"), "p": np.float64("nan"), "folds": [np.float32(1.5), -np.inf], "n": np.int64(3)})
    assert _strict(path.read_text()) == {"width": None, "p": None, "folds": [1.5, None], "n": 3}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "config.json"
    io.write_json(path, {"ok": 1})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        io.write_json(path, {"bad": object()})
    assert _strict(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
