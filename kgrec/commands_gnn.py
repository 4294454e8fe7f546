"""``kgrec train`` and ``kgrec evaluate``: GNN / baseline training and the evaluation table."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kgrec.config import Config, cli_config, default_help
from kgrec.errors import InputError
from kgrec.settings import BACKENDS, MODEL_NAMES, SPLITS

MODELS = tuple(sorted(MODEL_NAMES))
#: Options of train / evaluate that override [train] settings (argparse dest -> key); left
#: at None they keep the configured value.
TRAIN_OPTIONS = {name: f"train.{name}" for name in (
    "epochs", "dim", "layers", "batch_size", "lr", "patience", "eval_every", "k", "seed",
    "device", "max_minutes", "kg_hops", "kg_dropout", "kg_every", "init_std", "text_features",
    "split", "out_dir", "nproc", "max_steps_per_epoch", "threads",
)} | {"reg": "train.weight_decay"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``evaluate`` sub-commands."""
    t = sub.add_parser(
        "train",
        help="train a GNN (gat, gcn) or a baseline (lightgcn, mf, pop)",
        description=(
            "Split the interactions (per-user temporal when timestamps exist, else random; "
            "or item cold-start), train with weighted BPR and early stopping on validation "
            "NDCG@K, and write checkpoint, embeddings (joined by ids), id maps, history and "
            "the split (also as RecBole atomic files) to OUT_DIR/RUN_NAME."
        ),
    )
    _data_options(t)
    _train_options(t)
    t.add_argument("--run-name", help="run folder name (default: the model name)")
    t.add_argument("--out-dir", help=f"parent folder of runs {default_help('train.out_dir')}")
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from RUN/checkpoints/last.pt (written "
                   "after every epoch): the same result as an uninterrupted run")
    t.add_argument("--warm-start", metavar="RUN",
                   help="start from the parameters of an earlier run folder (e.g. trained "
                   "before events were appended), matched on user, product and entity ids; "
                   "new ones start fresh")
    t.add_argument("--nproc", type=int, help="data-parallel training processes on this "
                   "machine (or launch `torchrun --nproc-per-node N -m kgrec.cli train ...`) "
                   + default_help("train.nproc"))
    t.set_defaults(func=run_train)

    e = sub.add_parser(
        "evaluate",
        help="evaluate training runs: overall / long-tail / cold-start table, CSV and plot",
        description=(
            "Full ranking over all products, training (and validation) items excluded: "
            "Recall/NDCG/Hit@K, MRR@K, AUC and coverage@K on the overall, long-tail and "
            "cold-start slices, plus tail_candidates (ranking restricted to long-tail "
            "products). Give RUN_DIRs of `kgrec train`, or --model to train first."
        ),
    )
    e.add_argument("runs", nargs="*", metavar="RUN_DIR", help="folders written by `kgrec train`")
    e.add_argument("--model", action="append", choices=MODELS,
                   help="train this model first (repeatable) and evaluate it too")
    _data_options(e)
    _train_options(e, with_model=False)
    e.add_argument("--stage", choices=("test", "valid"), default="test",
                   help="split part to evaluate (default test)")
    e.add_argument("--no-fusion", action="store_true",
                   help="leave out the rows of a run's fusion (RUN/fusion from `kgrec fuse`: "
                   "the fused ranking and each text side alone), shown by default")
    e.add_argument("--out", help="folder of results.csv and results.png "
                   "(default: the first RUN_DIR, or train.out_dir/evaluation)")
    e.set_defaults(func=run_evaluate)


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--snapshot", help="GraphSnapshot folder from `kgrec graph snapshot` "
                   "(default: export the configured store)")
    g.add_argument("--store", choices=BACKENDS, help="graph store when no --snapshot is given "
                   + default_help("store.backend"))
    g.add_argument("--store-path",
                   help=f"folder of the local store {default_help('store.path')}")
    g.add_argument("--split", choices=SPLITS,
                   help="auto (temporal when every event has a time, else random), "
                   "temporal (per user latest 10%% to test, the 10%% before to valid, at least "
                   "1 each for users with >= 3 pairs), temporal_ratio (RecBole's floor(10%%): "
                   "users under 10 pairs get none), leave_one_out (last pair to test, the one "
                   "before to valid), random (per user 8:1:1, at least 1 each), "
                   "item_cold_start (10%% of products held out with all their interactions) "
                   "or given (a lists source's <behaviour>_test.txt pairs are the test, one "
                   "target pair per user the validation); with a target behaviour "
                   "(train.target, purchase by default beside views or carts) valid and test "
                   "hold its pairs only and every behaviour trains "
                   + default_help("train.split"))
    g.add_argument("--no-progress", action="store_true",
                   help="hide progress bars; training logs one line per evaluation instead")
    g.add_argument("--quiet", action="store_true",
                   help="hide progress bars and the per-evaluation lines")


def _train_options(p: argparse.ArgumentParser, with_model: bool = True) -> None:
    g = p.add_argument_group("training (defaults from the [train] config section)")
    if with_model:
        g.add_argument("--model", choices=MODELS, help=f"model {default_help('train.model')}")
    g.add_argument("--epochs", type=int, help=f"maximum epochs {default_help('train.epochs')}")
    g.add_argument("--dim", type=int, help=f"embedding size {default_help('train.dim')}")
    g.add_argument("--layers", type=int,
                   help=f"propagation layers {default_help('train.layers')}")
    g.add_argument("--batch-size", type=int,
                   help=f"pairs per step {default_help('train.batch_size')}")
    g.add_argument("--lr", type=float, help=f"Adam learning rate {default_help('train.lr')}")
    g.add_argument("--max-steps-per-epoch", type=int,
                   help="steps per epoch at most: on larger data the batch grows to fill "
                   "them and the learning rate with its square root, so an epoch's cost "
                   f"grows linearly with the events {default_help('train.max_steps_per_epoch')}")
    g.add_argument("--threads", type=int, help="torch CPU threads "
                   + default_help("train.threads", "the CPUs this process may use"))
    g.add_argument("--reg", type=float,
                   help=f"L2 on the batch's embeddings {default_help('train.weight_decay')}")
    g.add_argument("--patience", type=int, help="evaluations without improvement before "
                   f"stopping {default_help('train.patience')}")
    g.add_argument("--eval-every", type=int,
                   help=f"epochs between validations {default_help('train.eval_every')}")
    g.add_argument("--k", type=int, help=f"metric cut-off K {default_help('train.k')}")
    g.add_argument("--seed", type=int,
                   help=f"seed of split, init and negatives {default_help('train.seed')}")
    g.add_argument("--device", help="auto (CUDA when present, with bf16 autocast), cpu, cuda "
                   f"or cuda:N {default_help('train.device')}")
    g.add_argument("--max-minutes", type=float, help="safety net only: a wall-time limit, "
                   "checked after every batch; the best checkpoint is kept and the run is "
                   "marked not converged (its result then depends on the machine's load) "
                   f"{default_help('train.max_minutes', 'no limit')}")
    g.add_argument("--kg-hops", type=int, help="gat/gcn: attention rounds over the knowledge "
                   f"graph; 0 leaves it out {default_help('train.kg_hops')}")
    g.add_argument("--kg-dropout", type=float, help="gat/gcn: dropout on attention "
                   f"coefficients {default_help('train.kg_dropout')}")
    g.add_argument("--kg-every", type=int, help="gat/gcn: training steps between "
                   "recomputations of the knowledge-graph summaries (1: every step) "
                   f"{default_help('train.kg_every')}")
    g.add_argument("--init-std", type=float, help="std of the normal initialisation of id "
                   "embeddings "
                   + default_help("train.init_std", "each model's own: 0.1, xavier for mf"))
    g.add_argument("--text-features", action=argparse.BooleanOptionalAction, default=None,
                   help="gat/gcn: product text vectors (fusion.text_fields, encoded with "
                   f"fusion.text_model) as product inputs {default_help('train.text_features')}")


def _config(args: argparse.Namespace) -> Config:
    # evaluate's --model is a list of models to train, not the train.model setting.
    model = {"model": "train.model"} if isinstance(getattr(args, "model", None), str) else {}
    return cli_config(args, TRAIN_OPTIONS | model)


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars on, unless --no-progress or --quiet."""
    return not (args.no_progress or args.quiet)


@contextmanager
def _evaluation_lines(args: argparse.Namespace) -> Iterator[None]:
    """With --no-progress (not --quiet), training's INFO line per evaluation reaches the
    CLI's stderr handler; only for this command (in-process callers run several)."""
    logger = logging.getLogger("kgrec.gnn.train")
    before = logger.level
    if args.no_progress and not args.quiet:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(before)


def _snapshot(args: argparse.Namespace, config: Config):
    from kgrec.runfolder import load_snapshot

    return load_snapshot(config, args.snapshot, progress=_progress(args))


def _train(snapshot, split, config: Config, model: str, run_dir: Path, progress: bool,
           resume: bool = False, warm_start: str | None = None) -> Path:
    from kgrec.api import Recommender
    from kgrec.gnn import replica
    from kgrec.gnn.export import export_recbole

    rec = Recommender.fit(snapshot, config, model=model, split=split, progress=progress,
                          checkpoint_dir=run_dir / "checkpoints", resume=resume,
                          warm_start=warm_start)
    if not replica.is_main_rank():
        return run_dir  # a torchrun rank other than 0: rank 0 writes the run
    rec.save(run_dir)
    export_recbole(split, snapshot, run_dir / "recbole", "kgrec")
    if not progress:  # training printed it already otherwise
        print(rec.result.summary())
    print(f"Run written to {run_dir} ({split.summary()}).")
    return run_dir


def run_train(args: argparse.Namespace) -> int:
    from kgrec.gnn import replica
    from kgrec.training import make_run_split

    config = _config(args)
    if replica.launched():  # one rank of torchrun: every rank runs this command
        if config.train.nproc > 1:
            raise InputError("--nproc starts processes itself: not under torchrun")
        replica.init_from_env(config.train.device)
        config.train.device = replica.rank_device(config.train.device)
    snapshot = _snapshot(args, config)
    split = make_run_split(snapshot, config.train.split, config)
    model = config.train.model
    run_dir = Path(config.train.out_dir) / (args.run_name or model)
    with _evaluation_lines(args):
        _train(snapshot, split, config, model, run_dir, _progress(args), resume=args.resume,
               warm_start=args.warm_start)
    return 0


def _plot(results: dict[str, dict[str, dict[str, float]]], k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    slices = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(results)
    for ax, metric in zip(axes, (f"recall@{k}", f"ndcg@{k}"), strict=True):
        for i, (name, by_slice) in enumerate(results.items()):
            values = [by_slice[s][metric] for s in slices]
            ax.bar(np.arange(len(slices)) + i * width, values, width, label=name)
        ax.set_xticks(np.arange(len(slices)) + 0.4 - width / 2, slices)
        ax.set_title(metric)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from kgrec.api import Recommender
    from kgrec.gnn.metrics import format_table
    from kgrec.training import make_run_split

    config = _config(args)
    runs = [Path(r) for r in args.runs]
    snapshot = _snapshot(args, config) if args.snapshot or args.model else None
    if args.model:
        split = make_run_split(snapshot, config.train.split, config)
        for model in args.model:
            run_dir = Path(config.train.out_dir) / model
            with _evaluation_lines(args):
                runs.append(_train(snapshot, split, config, model, run_dir, _progress(args)))
    if not runs:
        raise InputError("give RUN_DIRs or --model")
    k = config.train.k
    results: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        rec = Recommender.load(run, snapshot=snapshot, config=config)
        if args.no_fusion:
            rec.fusion = None
        for name, table in rec.evaluate(args.stage, k).items():
            results[name if name not in results else f"{name} ({run})"] = table
    out = Path(args.out) if args.out else runs[0] if len(runs) == 1 else (
        Path(config.train.out_dir) / "evaluation"
    )
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"model": m, "slice": s, **v} for m, by in results.items() for s, v in by.items()]
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    _plot(results, k, out / "results.png")
    print(format_table(results, k))
    print(f"Evaluated {len(runs)} run(s) on the {args.stage} split; table in "
          f"{out / 'results.csv'}, plot in {out / 'results.png'}.")
    return 0
