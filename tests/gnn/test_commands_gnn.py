"""``kgrec train`` and ``kgrec evaluate`` end to end on a saved MovieLens-100K snapshot."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kgrec.cli import build_parser, main
from kgrec.gnn.split import Split


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory, ml100k_snapshot):
    folder = tmp_path_factory.mktemp("snapshot")
    ml100k_snapshot.save(folder)
    return folder


@pytest.mark.slow
def test_train_then_evaluate(tmp_path, snapshot_dir, capsys):
    runs = tmp_path / "runs"
    code = main(["train", "--model", "mf", "--snapshot", str(snapshot_dir), "--split", "random",
                 "--epochs", "2", "--eval-every", "1", "--batch-size", "8192", "--lr", "0.01",
                 "--out-dir", str(runs), "--run-name", "mf-small", "--no-progress"])
    assert code == 0
    run = runs / "mf-small"
    settings = json.loads((run / "settings.json").read_text())["settings"]
    assert (settings["model"], settings["epochs"], settings["lr"]) == ("mf", 2, 0.01)
    assert len(json.loads((run / "history.json").read_text())) == 2
    split = Split.load(run)
    assert (split.kind, len(split.test)) == ("random", 9_596)
    inter = pd.read_csv(run / "recbole" / "kgrec.test.inter", sep="\t")
    assert len(inter) == 9_596
    capsys.readouterr()
    out_dir = tmp_path / "eval"
    assert main(["evaluate", str(run), "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "tail_candidates" in printed and "long_tail" in printed
    table = pd.read_csv(out_dir / "results.csv")
    assert table["slice"].tolist() == ["overall", "long_tail", "cold_start", "tail_candidates"]
    assert table.loc[0, "users"] == 943
    assert 0.05 < table.loc[0, "recall@20"] < 0.5
    assert (out_dir / "results.png").stat().st_size > 10_000
    assert main(["train", "--model", "mf", "--snapshot", str(snapshot_dir), "--split", "random",
                 "--epochs", "1", "--out-dir", str(runs), "--run-name", "mf-warm",
                 "--warm-start", str(run), "--no-progress"]) == 0
    applied = json.loads((runs / "mf-warm" / "settings.json").read_text())["applied"]
    assert applied["warm_start"]["matched"] == {"user.weight": [943, 943],
                                                "item.weight": [1682, 1682]}


def test_help_explains_every_option(capsys):
    parser = build_parser()
    for command in ("train", "evaluate"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = capsys.readouterr().out
        for option in ("--snapshot", "--split", "--epochs", "--lr", "--reg", "--device"):
            assert option in text
    assert main(["evaluate"]) == 1  # neither runs nor --model: a clear error, exit 1
    assert "give RUN_DIRs or --model" in capsys.readouterr().err
