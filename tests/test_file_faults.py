"""File faults: a damaged text-vector cache entry is recomputed, a damaged model file is
refused naming the file, a write that fails (no space, no permission, a file where a folder
should be) is one ``kgrec: error:`` line naming the path and leaves no half file, and a
damaged ``state.json`` reruns the stages."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import kgrec
from kgrec.cli import main
from kgrec.config import Config
from kgrec.errors import ModelError
from kgrec.files import atomic_write
from kgrec.gnn.result import TrainResult
from kgrec.kg.snapshot import snapshot_from_tables
from kgrec.run import Pipeline, read_state

TEXTS = ["red wool scarf for winter", "stainless steel electric kettle"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KGREC_CONFIG", raising=False)
    # The CLI stops kgrec records at its own handler; let caplog see them here.
    monkeypatch.setattr(logging.getLogger("kgrec"), "propagate", True)


def _one_error(capsys) -> str:
    """The one error line, last on stderr (training may log its epochs before it)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("kgrec: error: ")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n") and "Traceback" not in err, err
    return errors[0].removeprefix("kgrec: error: ")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00not an artefact\xff" * 20)


# ---- text-vector cache: damaged entries are recomputed -----------------------------------


@pytest.fixture(scope="module")
def fresh(text_encoder) -> torch.Tensor:
    return text_encoder.with_cache(None).encode(TEXTS)


def _rewrite(path: Path, change) -> None:
    with np.load(path) as data:
        keys, vectors = data["keys"], data["vectors"].copy()
    keys, vectors = change(keys, vectors)
    np.savez(path, keys=keys, vectors=vectors)


def _nan_row(keys, vectors):
    vectors[0] = np.nan
    return keys, vectors


CACHE_FAULTS = {
    "truncated": (_truncate, 2),
    "garbage bytes": (_garbage, 2),
    "wrong shape": (lambda p: _rewrite(p, lambda k, v: (k, v[:, :7])), 2),
    "NaN vector": (lambda p: _rewrite(p, _nan_row), 1),  # only the bad row is encoded again
}


@pytest.mark.parametrize("fault", CACHE_FAULTS)
def test_damaged_cache_entry_is_recomputed_and_repaired(fault, text_encoder, fresh, tmp_path,
                                                        caplog) -> None:
    damage, encoded_again = CACHE_FAULTS[fault]
    text_encoder.with_cache(tmp_path / "cache").encode(TEXTS)
    [part] = (tmp_path / "cache").rglob("part-*.npz")
    damage(part)
    again = text_encoder.with_cache(tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="kgrec.fusion.encoder"):
        vectors = again.encode(TEXTS)
    torch.testing.assert_close(vectors, fresh, rtol=0, atol=1e-5)
    assert again.encoded_count == encoded_again
    assert f"text-vector cache entry {part}" in caplog.text
    # Repaired on disk: a new reader finds every vector, warns of nothing, encodes nothing.
    caplog.clear()
    third = text_encoder.with_cache(tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="kgrec.fusion.encoder"):
        torch.testing.assert_close(third.encode(TEXTS), fresh, rtol=0, atol=1e-5)
    assert third.encoded_count == 0 and not caplog.text


def test_unwritable_cache_only_warns(text_encoder, fresh, tmp_path, caplog) -> None:
    (tmp_path / "file").write_text("not a folder")
    encoder = text_encoder.with_cache(tmp_path / "file" / "cache")
    with caplog.at_level(logging.WARNING, logger="kgrec.fusion.encoder"):
        torch.testing.assert_close(encoder.encode(TEXTS), fresh, rtol=0, atol=1e-5)
    assert f"cannot write text-vector cache {tmp_path / 'file'}" in caplog.text


# ---- model files: damaged ones are refused, naming the file ------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, themed_tables) -> Path:
    """A saved run (result, split, snapshot, profile fusion) and its snapshot folder."""
    root = tmp_path_factory.mktemp("faults")
    config = Config()
    config.fusion.cache_dir = str(root / "cache")
    config.fusion.text_side = "profile"
    snapshot = snapshot_from_tables(themed_tables)
    snapshot.save(root / "snapshot")
    rec = kgrec.Recommender.fit(snapshot, config, model="mf", progress=False, epochs=2, dim=8,
                                eval_every=100, device="cpu")
    rec.fuse(progress=False).save(root / "run")
    return root


@pytest.fixture
def run(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved / "run", tmp_path / "run"))


TRAIN, FUSE = "re-run `kgrec train`", "re-run `kgrec fuse`"
MODEL_FAULTS = [
    ("user_embeddings.pt", _truncate, "is corrupted (checksum mismatch)", TRAIN),
    ("checkpoint.pt", _flip, "is corrupted (checksum mismatch)", TRAIN),
    ("history.json", _flip, "is corrupted (checksum mismatch)", TRAIN),
    ("split_train.parquet", _truncate, "is corrupted (checksum mismatch)", TRAIN),
    ("snapshot/hetero.pt", _truncate, "is corrupted (checksum mismatch)", TRAIN),
    ("settings.json", _truncate, "is corrupted or unreadable", TRAIN),
    ("checksums.json", _garbage, "is corrupted or unreadable", TRAIN),
    ("fusion/text_confidence.pt", _flip, "is corrupted (checksum mismatch)", FUSE),
    ("fusion/raw_text_products.pt", _truncate, "is corrupted (checksum mismatch)", FUSE),
    ("fusion/fusion.json", _truncate, "is corrupted or unreadable", FUSE),
]


@pytest.mark.parametrize(("name", "damage", "problem", "fix"), MODEL_FAULTS,
                         ids=[f[0] for f in MODEL_FAULTS])
def test_damaged_model_file_is_refused(run, name, damage, problem, fix) -> None:
    damage(run / name)
    with pytest.raises(ModelError) as error:
        kgrec.Recommender.load(run)
    message = str(error.value)
    assert message.startswith(f"{run / name} {problem}") and message.endswith(fix)


def test_truncated_embeddings_of_a_run_without_checksums_are_refused(run) -> None:
    """Runs saved before checksums were kept: the reader's own error, named."""
    meta = json.loads((run / "settings.json").read_text())
    del meta["checksums"]
    (run / "settings.json").write_text(json.dumps(meta))
    _truncate(run / "user_embeddings.pt")
    with pytest.raises(ModelError, match=r"user_embeddings\.pt is corrupted or unreadable "
                       r"\(.*\); re-run `kgrec train`"):
        TrainResult.load(run)


def test_intact_run_loads(run) -> None:
    rec = kgrec.Recommender.load(run)
    assert rec.fusion is not None and len(rec.recommend(["u00"], k=3)) == 3


@pytest.mark.parametrize(("command", "name"), [("score", "product_embeddings.pt"),
                                               ("score", "fusion/text_users_profile.pt"),
                                               ("evaluate", "user_embeddings.pt")])
def test_cli_refuses_a_damaged_model_file_in_one_line(run, tmp_path, capsys, command,
                                                      name) -> None:
    _flip(run / name)
    args = (["score", "--run", str(run), "--out", str(tmp_path / "s.parquet")]
            if command == "score" else ["evaluate", str(run), "--out", str(tmp_path / "ev")])
    assert main([*args, "--device", "cpu", "--no-progress"]) == 1
    assert _one_error(capsys).startswith(f"{run / name} is corrupted (checksum mismatch); ")
    assert not (tmp_path / "s.parquet").exists()


# ---- artefacts changed within range, snapshots of other ids ------------------------------


def _set_every(value, key: str, new):
    """``value`` (parsed JSON) with every ``key`` set to ``new``; the count of them."""
    if isinstance(value, dict):
        out, n = {}, 0
        for k, v in value.items():
            if k == key:
                out[k], n = new, n + 1
            else:
                out[k], m = _set_every(v, key, new)
                n += m
        return out, n
    if isinstance(value, list):
        pairs = [_set_every(v, key, new) for v in value]
        return [p[0] for p in pairs], sum(p[1] for p in pairs)
    return value, 0


def test_fusion_json_edited_within_range_is_refused(run, tmp_path, capsys) -> None:
    """Every a_head set to 0 (a valid blend weight) is a changed file, not a new blend."""
    path = run / "fusion" / "fusion.json"
    meta, count = _set_every(json.loads(path.read_text()), "a_head", 0.0)
    assert count >= 1
    path.write_text(json.dumps(meta, indent=1))
    with pytest.raises(ModelError) as error:
        kgrec.Recommender.load(run)
    assert str(error.value) == (f"{path} is corrupted or was edited (checksum mismatch); "
                                "re-run `kgrec fuse`")
    assert _score(run, tmp_path / "s.parquet") == 1
    assert _one_error(capsys) == str(error.value)
    assert not (tmp_path / "s.parquet").exists()


def _flip_64(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))


def test_snapshot_with_flipped_bytes_is_refused_in_one_line(saved, tmp_path, capsys) -> None:
    snapshot = Path(shutil.copytree(saved / "snapshot", tmp_path / "snapshot"))
    _flip_64(snapshot / "hetero.pt")
    assert main(["train", "--snapshot", str(snapshot), "--model", "mf", "--epochs", "1",
                 "--dim", "8", "--device", "cpu", "--no-progress", "--out-dir",
                 str(tmp_path / "runs")]) == 1
    assert _one_error(capsys) == (f"{snapshot / 'hetero.pt'} is corrupted (checksum "
                                  "mismatch); export it again with `kgrec graph snapshot` "
                                  "(or rerun `kgrec run`)")


def _swapped(saved: Path, tmp_path: Path, *, resave: bool) -> Path:
    """The saved snapshot with two user ids swapped (same size, same edges): edited in
    place (``resave=False``), or saved whole, as a re-export of another graph would be."""
    from kgrec.ids import IdMap
    from kgrec.kg.snapshot import GraphSnapshot

    snapshot = Path(shutil.copytree(saved / "snapshot", tmp_path / "swapped"))
    ids = json.loads((snapshot / "ids_user.json").read_text())
    ids["ids"][0], ids["ids"][1] = ids["ids"][1], ids["ids"][0]
    if not resave:
        (snapshot / "ids_user.json").write_text(json.dumps(ids))
        return snapshot
    snap = GraphSnapshot.load(snapshot)
    snap.id_maps["user"] = IdMap("user", ids["ids"])
    snap.save(snapshot)
    return snapshot


def test_snapshot_with_two_user_ids_swapped_in_place_is_refused(saved, run) -> None:
    snapshot = _swapped(saved, run.parent, resave=False)
    with pytest.raises(ModelError) as error:
        kgrec.Recommender.load(run, snapshot=snapshot)
    assert str(error.value).startswith(f"{snapshot / 'ids_user.json'} is corrupted (checksum "
                                       "mismatch); export it again")


def test_run_refuses_a_snapshot_of_other_ids_in_one_line(saved, run, tmp_path,
                                                         capsys) -> None:
    snapshot = _swapped(saved, tmp_path, resave=True)
    with pytest.raises(ModelError, match=r"was trained on another snapshot: its node ids "
                                         r"differ \(id hash \w{12} at training, \w{12} now\)"):
        kgrec.Recommender.load(run, snapshot=snapshot)
    args = ["score", "--run", str(run), "--snapshot", str(snapshot), "--out",
            str(tmp_path / "s.parquet"), "--device", "cpu", "--no-progress"]
    assert main(args) == 1
    assert _one_error(capsys).startswith(f"{run} was trained on another snapshot")
    # The snapshot it was trained on still scores.
    assert kgrec.Recommender.load(run, snapshot=saved / "snapshot").recommend(["u00"], k=2
                                                                              ).shape[0] == 2


# ---- writes: one line naming the path, and never a half file -----------------------------


def _score(run: Path, out: Path | str) -> int:
    return main(["score", "--run", str(run), "--items", "all", "--top-k", "2", "--out",
                 str(out), "--device", "cpu", "--no-progress"])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_score_on_a_full_disk(run, capsys) -> None:
    assert _score(run, "/dev/full") == 1
    assert _one_error(capsys) == ("cannot write /dev/full: no space left on device; free some "
                                  "space or choose another folder")


def _half_write_then(code: int, strerror: str, named: bool = False):
    """A writer that leaves half a file, then fails as the OS does (a failed open names the
    file; a failed write, as on a full disk, does not)."""
    def write(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError(code, strerror, *([str(path)] if named else []))
    return write


def test_score_that_runs_out_of_space_leaves_no_half_file(run, tmp_path, capsys,
                                                           monkeypatch) -> None:
    monkeypatch.setattr(pd.DataFrame, "to_parquet",
                        _half_write_then(errno.ENOSPC, "No space left on device"))
    out = tmp_path / "out" / "scores.parquet"
    assert _score(run, out) == 1
    assert _one_error(capsys) == (f"cannot write {out}: no space left on device; free some "
                                  "space or choose another folder")
    assert list((tmp_path / "out").iterdir()) == []


def test_score_without_write_permission(run, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "out" / "scores.parquet"
    if os.geteuid() == 0:  # root writes anywhere: raise what a chmod 500 folder would
        monkeypatch.setattr(pd.DataFrame, "to_parquet",
                            _half_write_then(errno.EACCES, "Permission denied", named=True))
    out.parent.mkdir()
    out.parent.chmod(0o500)
    try:
        assert _score(run, out) == 1
    finally:
        out.parent.chmod(0o700)
    message = _one_error(capsys)
    assert message.startswith("permission denied: ") and str(out.parent) in message
    assert list(out.parent.iterdir()) == []


def test_score_out_under_a_file(run, tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    assert _score(run, tmp_path / "file" / "sub" / "s.parquet") == 1
    assert _one_error(capsys) == (f"cannot use {tmp_path / 'file' / 'sub'}: "
                                  f"{tmp_path / 'file'} is a file, not a folder")


def _train(saved: Path, out_dir: Path) -> int:
    return main(["train", "--snapshot", str(saved / "snapshot"), "--model", "mf", "--epochs",
                 "1", "--dim", "8", "--device", "cpu", "--no-progress", "--out-dir",
                 str(out_dir)])


def test_train_into_a_path_under_a_file(saved, tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    assert _train(saved, tmp_path / "file" / "runs") == 1
    message = _one_error(capsys)
    assert message.startswith(f"cannot use {tmp_path / 'file' / 'runs'}")
    assert message.endswith(f"{tmp_path / 'file'} is a file, not a folder")


def test_train_that_runs_out_of_space_leaves_no_half_file(saved, tmp_path, capsys,
                                                           monkeypatch) -> None:
    def full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    assert _train(saved, tmp_path / "runs") == 1
    message = _one_error(capsys)
    assert message.startswith(f"cannot write {tmp_path / 'runs' / 'mf'}/")
    assert message.endswith(".pt: no space left on device; free some space or choose another "
                            "folder")
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]


@pytest.fixture
def dump(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("item_id,title\na,Alpha\nb,Beta\n")
    (tmp_path / "events.csv").write_text("user,item_id,type,ts\nu1,a,purchase,1\n"
                                         "u2,b,view,2\nu3,x,view,3\n")


def _ingest(tmp_path: Path, store: Path, reports: Path) -> int:
    return main(["ingest", "--products", str(tmp_path / "items.csv"), "--events",
                 str(tmp_path / "events.csv"), "--map", "event.timestamp=ts", "--reports-dir",
                 str(reports), "--store-path", str(store), "--no-progress"])


@pytest.mark.parametrize("where", ["store", "reports"])
def test_ingest_into_a_path_under_a_file(dump, tmp_path, capsys, where) -> None:
    (tmp_path / "file").write_text("x")
    bad = tmp_path / "file" / where
    store, reports = (bad, tmp_path / "rep") if where == "store" else (tmp_path / "st", bad)
    assert _ingest(tmp_path, store, reports) == 1
    message = _one_error(capsys)
    assert message.startswith(f"cannot use {bad}")
    assert message.endswith(f"{tmp_path / 'file'} is a file, not a folder")


def test_ingest_report_on_a_full_disk(dump, tmp_path, capsys, monkeypatch) -> None:
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    assert _ingest(tmp_path, tmp_path / "st", tmp_path / "rep") == 1
    message = _one_error(capsys)
    assert message.startswith(f"cannot write {tmp_path / 'rep'}/ingest-")
    assert message.endswith(".json: no space left on device; free some space or choose "
                            "another folder")
    assert [p.name for p in (tmp_path / "rep").iterdir()] == [
        next((tmp_path / "rep").glob("rejects-*.csv")).name]  # the summary left no half file


def test_ingest_store_write_on_a_full_disk_names_the_file(dump, tmp_path, capsys,
                                                          monkeypatch) -> None:
    """pyarrow's ENOSPC names no file: the store's part file is named, none is left."""
    monkeypatch.setattr(pd.DataFrame, "to_parquet",
                        _half_write_then(errno.ENOSPC, "No space left on device"))
    assert _ingest(tmp_path, tmp_path / "st", tmp_path / "rep") == 1
    message = _one_error(capsys)
    assert message.startswith(f"cannot write {tmp_path / 'st'}/")
    assert message.endswith("/part-000000.parquet: no space left on device; free some space "
                            "or choose another folder")
    assert not [p for p in (tmp_path / "st").rglob("*") if p.is_file()]


def test_appending_rejects_on_a_full_disk_names_the_file(tmp_path, monkeypatch) -> None:
    from kgrec.kg.ingest import write_rejects
    from kgrec.kg.tables import GraphTables

    tables = GraphTables()
    tables.rejects = pd.DataFrame({"file": ["e.csv"], "line": [2], "field": ["user"],
                                   "reason": ["missing user"], "action": ["rejected"],
                                   "value": [None]})
    path = write_rejects(tables, tmp_path, stamp="s")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(OSError) as error:
        write_rejects(tables, tmp_path, stamp="s")  # a later part of a streamed ingest
    assert error.value.filename == str(path) and error.value.errno == errno.ENOSPC


def test_atomic_write_keeps_the_old_file_when_a_write_fails(tmp_path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left on device") as error:
        atomic_write(target, fail)
    assert error.value.filename == str(target)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


# ---- state.json: damaged means no state ---------------------------------------------------


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"train": {"key": 1}}', b"\xff"])
def test_damaged_state_reruns_the_stages(tmp_path, caplog, content) -> None:
    config = Config()
    config.run.workdir = str(tmp_path / "work")
    (tmp_path / "work").mkdir()
    state = tmp_path / "work" / "state.json"
    state.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="kgrec.run"):
        pipeline = Pipeline(config, echo=False)
    assert f"{state} is damaged" in caplog.text and "every stage runs again" in caplog.text
    ran = []
    pipeline._stage("", "ingest", [1], lambda: ran.append(1) or {})
    assert ran == [1] and set(read_state(state)) == {"ingest"}  # and the state is whole again
