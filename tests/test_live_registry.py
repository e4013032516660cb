"""The registry deletes only what it wrote: model files live in a folder that belongs to the
store alone (`<store file>.models/`, with a marker file), and discarding an unfinished training
removes only folders the registry itself made there. A user's own `models/` folder beside the
store is left byte for byte as it was; a store made when models lived in `models/<id>/` has its
models moved into its own folder and the rest of `models/` left alone."""

import shutil

import pandas as pd

from coincast.data.store import Store
from coincast.live.registry import MARKER, Registry, models_dir

NOW = pd.Timestamp("2025-06-01 00:01", tz="UTC")


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def tree(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_restart_that_discards_a_training_leaves_the_users_files_alone(tmp_path):
    store = tmp_path / "store.duckdb"
    mine = tmp_path / "models"  # the user's, beside the store; one folder even has a model's name
    write(mine / "x" / "file", "my notes\n")
    write(mine / "btc-1d-m2" / "weights.bin", "not the registry's")
    write(tmp_path / "other" / "models" / "y", "elsewhere")
    before = tree(tmp_path / "models")

    with Store(store) as db:
        reg = Registry(db)
        done = reg.new_model("btc-1d", NOW, NOW, {})
        write(reg.staging(done) / "model.json", "{}")
        reg.finish_model(done, {}, "champion")
        unfinished = reg.new_model("btc-1d", NOW, NOW, {})  # the service stopped while it trained
        write(reg.staging(unfinished) / "model.json", "{}")
    assert (models_dir(store) / MARKER).is_file() and models_dir(store) == tmp_path / "store.duckdb.models"

    with Store(store) as db:  # the restart
        reg = Registry(db)
        assert reg.discard_unfinished(NOW) == [unfinished]
        assert reg.model_row(unfinished)["status"] == "discarded"
    assert tree(tmp_path / "models") == before  # byte-identical, nothing added or removed
    assert (tmp_path / "other" / "models" / "y").read_text() == "elsewhere"
    assert sorted(p.name for p in models_dir(store).iterdir()) == sorted([MARKER, done])


def test_an_old_store_keeps_its_models_and_the_rest_of_models_is_left_alone(tmp_path):
    store = tmp_path / "live.duckdb"
    with Store(store) as db:
        reg = Registry(db)
        old = reg.new_model("eth-1d", NOW, NOW, {})
        reg.set_status(old, "champion")
        unfinished = reg.new_model("eth-1d", NOW, NOW, {})
    shutil.rmtree(models_dir(store))  # as an older version left it: no folder of the store's own
    # the old layout: the model's files in models/<id>/ beside the store, with a user's folder
    write(tmp_path / "models" / old / "model.json", "{}")
    write(tmp_path / "models" / f".tmp-{unfinished}" / "model.json", "{}")  # a training it was stopped during
    write(tmp_path / "models" / "mine" / "notes.txt", "keep me")
    with Store(store, read_only=True) as db:  # listing an old store finds its files where they are
        assert Registry(db, create=False).folder(old) == tmp_path / "models" / old
    with Store(store) as db:  # the service opens it: its models move into the store's own folder
        reg = Registry(db)
        assert reg.folder(old) == models_dir(store) / old and (reg.folder(old) / "model.json").read_text() == "{}"
        assert reg.discard_unfinished(NOW) == [unfinished]
    assert tree(tmp_path / "models") == {"mine/notes.txt": b"keep me"}
    assert sorted(p.name for p in models_dir(store).iterdir()) == sorted([MARKER, old])


def test_an_older_store_gains_the_node_column_its_rows_none(tmp_path):
    """`models.node` (the Ray node a training ran on) is added to a store made before it."""
    store = tmp_path / "live.duckdb"
    with Store(store) as db:
        reg = Registry(db)
        old, new = (reg.new_model("btc-1d", NOW, NOW, {}) for _ in range(2))
        reg.con.execute("ALTER TABLE models DROP COLUMN node")  # as a store from before the column
    with Store(store) as db:
        reg = Registry(db)
        reg.staging(new).mkdir()
        reg.finish_model(new, {}, "champion", node="a1b2")
        assert reg.model_row(old)["node"] is None and reg.model_row(new)["node"] == "a1b2"
