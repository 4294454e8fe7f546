"""kgrec demo: the steps are real kgrec commands, run in order, stopping at a failure."""

from __future__ import annotations

import argparse

import pytest
from kgrec.kg.errors import KgrecError

from kgrec.cli import build_parser
from kgrec.pipeline import demo_steps, run_demo


def _args(tmp_path, **kw) -> argparse.Namespace:
    argv = ["demo", "--workdir", str(tmp_path), "--no-progress"]
    for key, value in kw.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return build_parser().parse_args(argv)


def test_demo_steps_parse_as_kgrec_commands(tmp_path):
    args = _args(tmp_path, model="gcn", epochs=7)
    steps = demo_steps(args)
    assert [argv[0] for _, argv in steps] == [
        "ingest", "graph", "graph", "train", "evaluate", "fuse", "score"
    ]
    parser = build_parser()
    for _, argv in steps:
        parsed = parser.parse_args(argv)  # exits on an unknown option
        assert callable(parsed.func)
    train = parser.parse_args(steps[3][1])
    assert (train.model, train.epochs, train.max_minutes) == ("gcn", 7, 5.0)
    assert (train.batch_size, train.lr) == (None, None)  # the [train] defaults apply
    score = parser.parse_args(steps[6][1])
    assert score.items == "long-tail" and score.write_back and score.top_k == 20
    assert score.run == str(tmp_path / "runs" / "gcn")


def test_demo_stops_at_the_first_failing_step(tmp_path):
    calls: list[list[str]] = []

    def main(argv):
        calls.append(list(argv))
        return 1 if argv[0] == "train" else 0

    with pytest.raises(KgrecError, match=r"step 4 \(train gat\) failed"):
        run_demo(_args(tmp_path), main=main)
    assert [c[0] for c in calls] == ["ingest", "graph", "graph", "train"]
