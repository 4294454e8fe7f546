"""RecBole 1.2.1 as a peer of kgrec: BPR, LightGCN, KGIN and EASE trained on kgrec's own split.

For each dataset (``ml-100k``: MovieLens-100K + its Freebase KG; ``scientific``: Amazon
Industrial & Scientific), the script builds kgrec's snapshot, makes kgrec's default split
(``kgrec.gnn.split.make_split``), exports it with ``kgrec.gnn.export.export_recbole_dataset`` as a
RecBole ``benchmark_filename`` dataset (``NAME.{train,valid,test}.inter`` + ``NAME.kg`` +
``NAME.link``) and trains RecBole's models on exactly those pairs: full ranking over all
items, training items (and validation items at test) excluded, Recall@20 and NDCG@20,
early stopping on validation NDCG@20, the test split read once at the end. Then every
trained model's full score matrix is mapped to kgrec's id order and re-scored with
kgrec's evaluator (``kgrec.gnn.metrics.evaluate_ranking``), as a check of both evaluators.

    .venv/bin/python benchmarks/recbole_peer.py                       # everything
    .venv/bin/python benchmarks/recbole_peer.py --datasets ml-100k --models BPR,LightGCN \\
        --settings matched
    .venv/bin/python benchmarks/recbole_peer.py --datasets ml-100k --models LightGCN \\
        --settings matched --set stopping_step=100     # stored as "matched+stopping_step=100"

Results: ``benchmarks/results/recbole_peer.json``, merged run by run (under a lock, so one
invocation per dataset may run at once): ``datasets -> NAME -> {split, export, recbole ->
MODEL -> SETTING -> {recall@20, ndcg@20, epochs, best_epoch, seconds, kgrec_rescored:
{recall@20, ndcg@20}, valid_curve, command, ...}}`` plus the venv, its versions and the
patches. Work files (exported datasets, RecBole logs) go to ``.kgrec/recbole-peer/``.

Settings (``--settings``):

- ``defaults``: RecBole's defaults for each model (``overall.yaml`` + the model's yaml:
  epochs 300, learning_rate 0.001, train_batch_size 2048, eval_step 1, stopping_step 10,
  embedding 64; LightGCN 2 layers, reg_weight 1e-5; KGIN 2 hops, 4 intents, node dropout
  0.5, reg_weight 1e-5; BPR has no regulariser); only the metrics (Recall/NDCG@20,
  valid_metric NDCG@20), the split, the seed (2020) and the CPU device are set.
- ``matched``: kgrec's benchmark settings (``benchmarks/quality.py``, the ``TrainSettings``
  defaults): embedding 64, learning_rate 0.005, train_batch_size 4096, eval_step 2,
  stopping_step 4, epochs 100,
  LightGCN 3 layers, reg 1e-4 on the batch's layer-0 embeddings as kgrec's
  ``weight_decay * (|u|^2 + |i+|^2 + |i-|^2) / (2 B)`` (RecBole's EmbLoss with
  ``require_pow=True``). RecBole's BPR has no regulariser, so ``matched`` BPR is RecBole's
  BPR plus exactly that term (a 10-line subclass, ``BPRReg`` below). KGIN keeps its own
  regulariser (plain norms of the propagated embeddings) with reg_weight 1e-4 and its
  other defaults. Not matched: initialisation (RecBole: xavier; kgrec: normal(0.1)),
  negatives (RecBole: any item the user has not trained on; kgrec: products seen in
  training), and RecBole stops after ``stopping_step + 1`` evaluations without gain
  (kgrec after ``patience``).
- EASE (Steck, WWW 2019) is a closed form with one setting, its L2 weight ``reg_weight``
  (RecBole's default 250.0): ``matched`` is the same as ``defaults``; other weights run as
  ``--set reg_weight=...`` (the best on validation is the one to compare).

KGIN: RecBole's KGIN samples half of the KG edges (``node_dropout_rate``) in every forward
pass, evaluation included, so its test scores vary run to run (and the test figure of
``trainer.evaluate`` reuses the sample cached at the best validation). The reported KGIN
figures are re-scored with the dropout off (``model.gcn.node_dropout_rate = 0``, all
edges; in RecBole's evaluator and in kgrec's); ``recbole_cached_dropout`` keeps RecBole's
own figure and ``dropout_resamples`` the spread of five evaluations with fresh samples.

RecBole runs in its own virtual environment, ``.kgrec/recbole-venv`` (created on the first
run, reused after; never the project's ``.venv``): recbole 1.2.1 (no dependencies) +
numpy<2, pandas<3, scipy, scikit-learn, pyyaml, tqdm, colorlog 4.7.2, colorama 0.4.4,
tensorboard, tabulate, texttable, psutil, thop (no dependencies). It does not install
torch: a ``.pth`` file appends the project's site-packages AFTER the venv's own, so the
project's torch is imported while the venv's numpy<2 and pandas<3 win (checked at set-up:
torch imports and round-trips arrays with numpy<2). Each model runs in a subprocess of that
venv (``--worker``), one torch thread, OMP_NUM_THREADS=1.

Patches applied to the copy of recbole installed in that venv (never the project's):

1. ``ray`` stub module (``tune = None``): ``recbole/quick_start/quick_start.py`` imports
   ``from ray import tune`` at import time; ray (<=2.6.3) is not installed.
2. ``torch_scatter`` stub module: ``scatter_mean``, ``scatter_sum``/``scatter_add`` and
   ``scatter_softmax`` on ``torch.Tensor.scatter_reduce`` (KGIN imports ``scatter_mean``).
3. ``torch.load(..., weights_only=False)`` in ``recbole/trainer/trainer.py`` and
   ``recbole/quick_start/quick_start.py``: torch >= 2.6 defaults to ``weights_only=True``
   and refuses RecBole's checkpoints (they pickle the Config).
4. ``dok_matrix._update`` -> COO: ``get_norm_adj_mat`` of LightGCN and NGCF and
   ``get_norm_inter_matrix`` of KGIN build the (users + items) adjacency from COO
   (duplicates collapse to 1, as in the dok dict); ``_update`` is gone from current scipy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".kgrec" / "recbole-venv"
WORK = ROOT / ".kgrec" / "recbole-peer"
RESULTS_FILE = ROOT / "benchmarks" / "results" / "recbole_peer.json"
RECBOLE_VERSION = "1.2.1"
#: Bump when the set-up or a patch changes: an older venv is patched again.
SETUP_VERSION = 3
DATASETS = ("ml-100k", "scientific")
MODELS = ("BPR", "LightGCN", "KGIN", "EASE")
SETTINGS = ("defaults", "matched")
K = 20
KGIN_RESAMPLES = 5
VENV_REQUIREMENTS = [
    "numpy<2", "pandas<3", "scipy", "scikit-learn", "pyyaml", "tqdm", "colorlog==4.7.2",
    "colorama==0.4.4", "tensorboard", "tabulate", "texttable", "psutil",
]  # fmt: skip

PATCHES = [
    {"name": "ray stub", "file": "site-packages/ray/__init__.py",
     "why": "quick_start.py imports `from ray import tune`; ray<=2.6.3 is not installed"},
    {"name": "torch_scatter stub", "file": "site-packages/torch_scatter/__init__.py",
     "why": "KGIN imports torch_scatter.scatter_mean; implemented on Tensor.scatter_reduce"},
    {"name": "torch.load weights_only=False",
     "file": "recbole/trainer/trainer.py, recbole/quick_start/quick_start.py",
     "why": "torch>=2.6 loads weights_only=True by default and refuses RecBole checkpoints"},
    {"name": "dok_matrix._update -> COO",
     "file": "recbole/model/general_recommender/{lightgcn,ngcf}.py, "
             "recbole/model/knowledge_aware_recommender/kgin.py",
     "why": "scipy's dok_matrix has no _update any more; the adjacency is built from COO"},
    {"name": "project torch via .pth", "file": "site-packages/zz_kgrec_project_torch.pth",
     "why": "reuse the project's torch (no second multi-GB wheel); appended after the venv's "
            "own site-packages so numpy<2 / pandas<3 win"},
]  # fmt: skip

RAY_STUB = '''"""Stub of ray for recbole (kgrec's recbole_peer): `from ray import tune` only."""
tune = None
'''

TORCH_SCATTER_STUB = '''"""torch_scatter stub (kgrec recbole_peer) on Tensor.scatter_reduce."""
import torch


def _expand(index, src, dim):
    dim = dim % src.dim()
    shape = [1] * src.dim()
    shape[dim] = -1
    return index.view(shape).expand_as(src) if index.dim() == 1 else index.expand_as(src), dim


def _out(src, index, dim, dim_size):
    size = list(src.shape)
    size[dim] = int(index.max()) + 1 if dim_size is None else dim_size
    return src.new_zeros(size)


def scatter_sum(src, index, dim=-1, out=None, dim_size=None):
    index, dim = _expand(index, src, dim)
    base = _out(src, index, dim, dim_size) if out is None else out
    return base.scatter_add(dim, index, src)


scatter_add = scatter_sum


def scatter_mean(src, index, dim=-1, out=None, dim_size=None):
    index, dim = _expand(index, src, dim)
    base = _out(src, index, dim, dim_size) if out is None else out
    return base.scatter_reduce(dim, index, src, reduce="mean", include_self=False)


def scatter_max(src, index, dim=-1, out=None, dim_size=None):
    index, dim = _expand(index, src, dim)
    base = _out(src, index, dim, dim_size) if out is None else out
    return base.scatter_reduce(dim, index, src, reduce="amax", include_self=False), None


def scatter_softmax(src, index, dim=-1, dim_size=None):
    index, dim = _expand(index, src, dim)
    top = _out(src, index, dim, dim_size).scatter_reduce(
        dim, index, src, reduce="amax", include_self=False)
    exp = (src - top.gather(dim, index)).exp()
    total = _out(src, index, dim, dim_size).scatter_add(dim, index, exp)
    return exp / total.gather(dim, index).clamp(min=1e-16)
'''

_DOK_BLOCK = re.compile(
    r"(?P<indent>[ \t]*)A = sp\.dok_matrix\(\s*\(\s*(?P<size>self\.n_users \+ self\.n_\w+)\s*,"
    r"[^)]*\)\s*,\s*dtype=np\.float32,?\s*\)\s*\n"
    r"\s*inter_M = self\.(?P<mat>\w+)\s*\n.*?A\._update\(data_dict\)\n",
    re.S,
)


def _dok_to_coo(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        i = m["indent"]
        return (
            f"{i}# kgrec patch: COO instead of dok_matrix._update (gone from current scipy)\n"
            f"{i}inter_M = self.{m['mat']}\n"
            f"{i}_n = {m['size']}\n"
            f"{i}_rows = np.concatenate([inter_M.row, inter_M.col + self.n_users])\n"
            f"{i}_cols = np.concatenate([inter_M.col + self.n_users, inter_M.row])\n"
            f"{i}A = sp.coo_matrix((np.ones(len(_rows), dtype=np.float32), (_rows, _cols)),\n"
            f"{i}                  shape=(_n, _n)).tocsr()\n"
            f"{i}A.data[:] = 1.0  # duplicates count once, as in the dok dict\n"
        )

    out, n = _DOK_BLOCK.subn(repl, text)
    if n != 1:
        raise RuntimeError(f"dok_matrix block found {n} times (expected once)")
    return out


_TORCH_LOAD = re.compile(r"torch\.load\(((?:[^()]|\([^()]*\))*)\)")


def _weights_only(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        args = m[1]
        return m[0] if "weights_only" in args else f"torch.load({args}, weights_only=False)"

    out, n = _TORCH_LOAD.subn(repl, text)
    if n == 0:
        raise RuntimeError("no torch.load call found")
    return out


def _patch_file(path: Path, fn: Any, marker: str) -> None:
    text = path.read_text()
    if marker in text:
        return
    path.write_text(fn(text))


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise RuntimeError(f"{venv} has no site-packages")
    return found[0]


def ensure_venv(venv: Path = VENV) -> dict[str, Any]:
    """Create and patch the RecBole venv once; return its package versions."""
    stamp = venv / "kgrec-setup.json"
    if stamp.exists():
        info = json.loads(stamp.read_text())
        if info.get("setup_version") == SETUP_VERSION:
            return info
    t0 = time.perf_counter()
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    site = _site_packages(venv)
    pth = site / "zz_kgrec_project_torch.pth"
    pth.unlink(missing_ok=True)  # pip must not see the project's packages while resolving
    print("installing recbole and its dependencies (numpy<2, pandas<3) ...", flush=True)
    subprocess.run([*pip, *VENV_REQUIREMENTS], check=True)
    from kgrec.kg.extract.recbole import fetch_ml100k  # the sha-checked, cached wheel

    subprocess.run([*pip, "--no-deps", str(fetch_ml100k()), "thop"], check=True)
    import torch

    project_site = Path(torch.__file__).resolve().parents[1]
    # Patches 1-2: stubs; 3-4: recbole sources.
    for name, text in (("ray", RAY_STUB), ("torch_scatter", TORCH_SCATTER_STUB)):
        (site / name).mkdir(exist_ok=True)
        (site / name / "__init__.py").write_text(text)
    rb = site / "recbole"
    for rel in ("trainer/trainer.py", "quick_start/quick_start.py"):
        _patch_file(rb / rel, _weights_only, "weights_only=False")
    for rel in ("model/general_recommender/lightgcn.py", "model/general_recommender/ngcf.py",
                "model/knowledge_aware_recommender/kgin.py"):
        _patch_file(rb / rel, _dok_to_coo, "kgrec patch: COO")
    # Patch 5: the project's torch, after the venv's own packages.
    pth.write_text(f"{project_site}\n")
    check = (
        "import numpy, pandas, scipy, torch, recbole, sklearn\n"
        "assert numpy.__version__ < '2', numpy.__version__\n"
        "a = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)\n"
        "t = torch.from_numpy(a) * 2\n"
        "assert (t.numpy() == a * 2).all() and torch.tensor(a).sum().item() == 15\n"
        "from torch_scatter import scatter_mean\n"
        "m = scatter_mean(torch.tensor([[1.], [3.], [5.]]), torch.tensor([0, 0, 2]), 0, "
        "dim_size=3)\n"
        "assert m.flatten().tolist() == [2.0, 0.0, 5.0], m\n"
        "import recbole.quick_start, recbole.model.knowledge_aware_recommender.kgin\n"
        "import json; print(json.dumps({'numpy': numpy.__version__, 'pandas': pandas.__version__,"
        " 'scipy': scipy.__version__, 'torch': torch.__version__, 'scikit-learn': "
        "sklearn.__version__, 'recbole': recbole.__version__, 'torch_from': torch.__file__}))\n"
    )
    done = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the RecBole venv does not work:\n{done.stderr[-3000:]}")
    info = {"setup_version": SETUP_VERSION, "venv": str(venv.relative_to(ROOT)),
            "python": sys.version.split()[0], "versions": json.loads(done.stdout.splitlines()[-1]),
            "setup_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    stamp.write_text(json.dumps(info, indent=2))
    print(f"RecBole venv ready in {info['setup_seconds']}s: {info['versions']}", flush=True)
    return info


# --------------------------------------------------------------------------------------------
# RecBole configuration


def recbole_config(model: str, setting: str, data_path: Path, run_dir: Path) -> dict[str, Any]:
    """RecBole ``config_dict`` of one run (see the module docstring for the two settings)."""
    cfg: dict[str, Any] = {
        "data_path": str(data_path),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "NDCG"], "topk": [K], "valid_metric": f"NDCG@{K}",
        "metric_decimal_place": 6,
        "use_gpu": False, "seed": 2020, "reproducibility": True, "show_progress": False,
        "checkpoint_dir": str(run_dir / "saved"), "state": "INFO", "worker": 0,
    }  # fmt: skip
    if model == "KGIN":
        cfg["load_col"].update(kg=["head_id", "relation_id", "tail_id"],
                               link=["item_id", "entity_id"])
    if model == "EASE":  # closed form: no embeddings, epochs or learning rate to match
        return cfg
    if setting == "matched":
        cfg.update({"embedding_size": 64, "learning_rate": 0.005, "train_batch_size": 4096,
                    "eval_step": 2, "stopping_step": 4, "epochs": 100, "reg_weight": 1e-4,
                    "require_pow": True})  # fmt: skip
        if model == "LightGCN":
            cfg["n_layers"] = 3
    elif setting != "defaults":
        raise ValueError(f"unknown setting {setting!r}; expected one of {SETTINGS}")
    return cfg


# --------------------------------------------------------------------------------------------
# Worker: runs inside the RecBole venv (imports recbole, never kg / gnn / fusion)


class _TimeUp(Exception):
    pass


def _bpr_reg() -> Any:
    """``BPRReg``: RecBole's BPR + kgrec's regulariser ``reg_weight * sum |e|^2 / (2 B)`` on
    the batch's user, positive and negative embeddings. Built on first use (recbole exists
    only in the worker's venv) and bound at module level, since checkpoints pickle it."""
    if "BPRReg" in globals():
        return globals()["BPRReg"]
    from recbole.model.general_recommender.bpr import BPR
    from recbole.model.loss import EmbLoss

    class BPRReg(BPR):
        def __init__(self, config: Any, dataset: Any) -> None:
            super().__init__(config, dataset)
            self.reg_weight = config["reg_weight"]
            self.reg_loss = EmbLoss()

        def calculate_loss(self, interaction: Any) -> Any:
            loss = super().calculate_loss(interaction)
            u = self.user_embedding(interaction[self.USER_ID])
            p = self.item_embedding(interaction[self.ITEM_ID])
            n = self.item_embedding(interaction[self.NEG_ITEM_ID])
            return loss + self.reg_weight * self.reg_loss(u, p, n, require_pow=True)

    BPRReg.__qualname__ = "BPRReg"
    BPRReg.__module__ = __name__
    globals()["BPRReg"] = BPRReg
    return BPRReg


def worker(spec_path: Path) -> int:
    """Train one model, evaluate it on the test split and dump its full score matrix."""
    spec = json.loads(spec_path.read_text())
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.interaction import Interaction
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    sys.argv = sys.argv[:1]  # RecBole's Config parses the command line
    name, setting = spec["model"], spec["setting"]
    model_cls = _bpr_reg() if (name == "BPR" and setting == "matched") else get_model(name)
    config = Config(model=model_cls, dataset=spec["dataset"], config_dict=spec["config"])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    t_data = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t_data = time.perf_counter() - t_data
    init_seed(config["seed"], config["reproducibility"])
    model = model_cls(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    curve: list[list[float]] = []
    cap = spec.get("max_seconds")
    t0 = time.perf_counter()
    capped = False

    def callback(epoch_idx: int, valid_score: float) -> None:
        curve.append([epoch_idx + 1, round(float(valid_score), 6),
                      round(time.perf_counter() - t0, 1)])
        if cap is not None and time.perf_counter() - t0 > cap:
            raise _TimeUp

    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=callback)
    except _TimeUp:
        capped = True
    seconds = time.perf_counter() - t0
    checkpoint = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    out: dict[str, Any] = {
        "config_class": model_cls.__name__,
        "epochs": len(trainer.train_loss_dict), "best_epoch": int(checkpoint["epoch"]) + 1,
        "seconds": round(seconds, 1), "data_seconds": round(t_data, 1),
        "stopped_by_time_cap": capped, "valid_curve": curve,
        "best_valid": {k: float(v) for k, v in (trainer.best_valid_result or {}).items()},
        "recbole_test": {k: float(v) for k, v in test.items()},
        "final_loss": float(trainer.train_loss_dict[max(trainer.train_loss_dict)]),
        "dataset": {
            "users": dataset.user_num - 1, "items": dataset.item_num - 1,
            "train": len(train_data._dataset.inter_feat),
            "valid": len(valid_data._dataset.inter_feat),
            "test": len(test_data._dataset.inter_feat),
        },
        "config": {k: config[k] for k in (
            "embedding_size", "learning_rate", "train_batch_size", "epochs", "eval_step",
            "stopping_step", "reg_weight", "require_pow", "n_layers", "context_hops",
            "n_factors", "node_dropout_rate", "mess_dropout_rate", "sim_regularity",
            "weight_decay", "seed") if k in config.final_config_dict},
    }  # fmt: skip
    if name == "KGIN":
        out["dataset"].update(entities=dataset.entity_num - 1,
                              relations=dataset.relation_num - 1, triples=len(dataset.kg_feat))
        out["recbole_cached_dropout"] = out["recbole_test"]
        samples = []
        for _ in range(KGIN_RESAMPLES):
            model.restore_user_e = model.restore_entity_e = None  # a fresh edge sample
            samples.append(trainer.evaluate(test_data, load_best_model=False,
                                            show_progress=False))
        out["dropout_resamples"] = {
            key: {"values": [float(s[key]) for s in samples],
                  "mean": float(np.mean([s[key] for s in samples])),
                  "std": float(np.std([s[key] for s in samples])),
                  "min": float(min(s[key] for s in samples)),
                  "max": float(max(s[key] for s in samples))}
            for key in samples[0]
        }  # fmt: skip
        model.gcn.node_dropout_rate = 0.0  # every KG edge, deterministic
        model.restore_user_e = model.restore_entity_e = None
        out["recbole_test"] = {k: float(v) for k, v in trainer.evaluate(
            test_data, load_best_model=False, show_progress=False).items()}
    # The full score matrix (the same state as the test figure), RecBole's internal order.
    model.eval()
    uid, iid = dataset.uid_field, dataset.iid_field
    n_users = dataset.user_num
    rows = []
    with torch.no_grad():
        for start in range(1, n_users, 512):
            users = torch.arange(start, min(start + 512, n_users))
            scores = model.full_sort_predict(Interaction({uid: users})).view(len(users), -1)
            rows.append(scores[:, 1:].float().cpu().numpy())
    np.save(Path(spec["out_dir"]) / "scores.npy", np.concatenate(rows))
    (Path(spec["out_dir"]) / "tokens.json").write_text(json.dumps({
        "users": dataset.field2id_token[uid][1:].tolist(),
        "items": dataset.field2id_token[iid][1:].tolist(),
    }))  # fmt: skip
    out["recbole_test"] = {k.lower(): v for k, v in out["recbole_test"].items()}
    (Path(spec["out_dir"]) / "result.json").write_text(json.dumps(out, indent=1))
    os.remove(trainer.saved_model_file)
    return 0


# --------------------------------------------------------------------------------------------
# Driver: runs in the project's .venv


def load_dataset(name: str) -> Any:
    """kgrec's snapshot of ``name``."""
    from kgrec.kg.snapshot import snapshot_from_tables

    if name == "ml-100k":
        from kgrec.kg.extract.recbole import read_recbole_ml100k

        return snapshot_from_tables(read_recbole_ml100k())
    if name == "scientific":
        from benchmarks._common import SHARED_DATA
        from kgrec.kg.extract.scientific import read_scientific

        tables = read_scientific(SHARED_DATA / "amazon-scientific")
        return snapshot_from_tables(tables)
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def recbole_name(dataset: str) -> str:
    """RecBole's name of the exported dataset: never ``ml-100k``, which RecBole maps to its
    own bundled copy (and its own ``properties/dataset/ml-100k.yaml``)."""
    return f"kgrec-{dataset}"


def split_summary(split: Any) -> dict[str, Any]:
    users = {s: int(split.frame(s)["user"].nunique()) for s in ("train", "valid", "test")}
    return {"summary": split.summary(), "kind": split.kind, "seed": split.seed,
            "pairs": {s: len(split.frame(s)) for s in ("train", "valid", "test")},
            "users_with_pairs": users, "num_users": split.num_users,
            "num_items": split.num_items}  # fmt: skip


def rescore(run_dir: Path, snapshot: Any, split: Any) -> dict[str, Any]:
    """kgrec's evaluator on the RecBole model's score matrix, mapped to kgrec's id order."""
    import numpy as np
    import torch

    from kgrec.gnn.metrics import evaluate_ranking

    scores = np.load(run_dir / "scores.npy")
    tokens = json.loads((run_dir / "tokens.json").read_text())
    users = snapshot.id_maps["user"].index_of(tokens["users"])
    items = snapshot.id_maps["product"].index_of(tokens["items"])
    full = np.full((split.num_users, split.num_items), -np.inf, dtype=np.float32)
    full[np.ix_(users, items)] = scores
    matrix = torch.from_numpy(full)

    def score_fn(user_idx: torch.Tensor) -> torch.Tensor:
        return matrix[user_idx]

    res = evaluate_ranking(score_fn, split, stage="test", k=K, slices=("overall",),
                           auc=False)["overall"]
    (run_dir / "scores.npy").unlink()
    return {f"recall@{K}": res[f"recall@{K}"], f"ndcg@{K}": res[f"ndcg@{K}"],
            "users": int(res["users"]), "recbole_users": len(users),
            "recbole_items": len(items)}  # fmt: skip


def setting_label(setting: str, overrides: dict[str, Any]) -> str:
    """Name a run is stored under: the setting, plus ``+key=value`` per ``--set`` override."""
    return setting + "".join(f"+{k}={json.dumps(v)}" for k, v in sorted(overrides.items()))


def run_one(dataset: str, model: str, setting: str, data_root: Path, max_minutes: float | None,
            snapshot: Any, split: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    overrides = overrides or {}
    run_dir = WORK / "runs" / dataset / f"{model}-{setting_label(setting, overrides)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in ("result.json", "scores.npy", "tokens.json"):
        (run_dir / old).unlink(missing_ok=True)
    spec = {"dataset": recbole_name(dataset), "model": model, "setting": setting,
            "out_dir": str(run_dir),
            "config": {**recbole_config(model, setting, data_root, run_dir), **overrides},
            "max_seconds": None if max_minutes is None else 60 * max_minutes}  # fmt: skip
    spec_path = run_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": "", "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    t0 = time.perf_counter()
    with (run_dir / "worker.log").open("w") as log:
        done = subprocess.run(
            [str(VENV / "bin" / "python"), str(Path(__file__).resolve()), "--worker",
             str(spec_path)],
            cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = (run_dir / "worker.log").read_text()[-2500:]
        raise RuntimeError(f"{dataset} {model} {setting}: worker failed ({done.returncode}):"
                           f"\n{tail}")
    out = json.loads((run_dir / "result.json").read_text())
    test = out["recbole_test"]
    entry: dict[str, Any] = {
        f"recall@{K}": test[f"recall@{K}"], f"ndcg@{K}": test[f"ndcg@{K}"],
        "epochs": out["epochs"], "best_epoch": out["best_epoch"], "seconds": out["seconds"],
        "wall_seconds": round(wall, 1), "kgrec_rescored": rescore(run_dir, snapshot, split),
    }  # fmt: skip
    if overrides:
        entry["overrides"] = overrides
    entry.update({k: v for k, v in out.items() if k not in entry and k != "recbole_test"})
    pairs = {s: len(split.frame(s)) for s in ("train", "valid", "test")}
    got = {s: out["dataset"][s] for s in pairs}
    entry["split_intact"] = got == pairs
    if model == "KGIN":
        entry["kgin_evaluation"] = ("dropout off: node_dropout_rate=0 at test (every KG edge); "
                                    "recbole_cached_dropout = RecBole's own figure")
    return entry


def update_results(path: Path, header: dict[str, Any], dataset: str | None = None,
                   fields: dict[str, Any] | None = None,
                   entry: tuple[str, str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Read-modify-write ``path`` under a lock: the header, a dataset's fields and one
    ``recbole -> model -> setting`` entry; everything else in the file is kept."""
    import fcntl

    from benchmarks._common import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(header)
        if dataset is not None:
            block = data.setdefault("datasets", {}).setdefault(dataset, {})
            block.update(fields or {})
            if entry is not None:
                model, setting, values = entry
                block.setdefault("recbole", {}).setdefault(model, {})[setting] = values
        write_json(path, data)
    return data


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def table(results: dict[str, Any]) -> str:
    """One line per dataset x model x setting: RecBole's figures and kgrec's re-scoring."""
    rows = [(ds, model, setting, e) for ds, block in results.items()
            for model, by_setting in block.get("recbole", {}).items()
            for setting, e in by_setting.items()]  # fmt: skip
    w = max([9, *(len(r[2]) for r in rows)])
    head = (f"{'dataset':<11} {'model':<9} {'setting':<{w}} {'Recall@20':>9} {'NDCG@20':>8} "
            f"{'epochs':>6} {'best':>5} {'seconds':>8} {'kgrec R@20':>10} {'kgrec N@20':>10}")
    lines = [head, "-" * len(head)]
    for ds, model, setting, e in rows:
        rs = e.get("kgrec_rescored", {})
        lines.append(
            f"{ds:<11} {model:<9} {setting:<{w}} {_fmt(e[f'recall@{K}']):>9} "
            f"{_fmt(e[f'ndcg@{K}']):>8} {e['epochs']:>6} {e['best_epoch']:>5} "
            f"{e['seconds']:>8.1f} {_fmt(rs.get(f'recall@{K}')):>10} "
            f"{_fmt(rs.get(f'ndcg@{K}')):>10}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Settings and patches: see the module docstring.")
    p.add_argument("--datasets", default=",".join(DATASETS),
                   help=f"comma-separated of {', '.join(DATASETS)} (default: both)")
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated of {', '.join(MODELS)} (default: all)")
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help="comma-separated of defaults (RecBole's own), matched (kgrec's "
                        "benchmark settings) (default: both)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="safety net only: a wall-time cap per training run; the best "
                        "checkpoint so far is evaluated (default 0 = none: training ends by "
                        "RecBole's early stopping)")
    p.add_argument("--out", type=Path, default=RESULTS_FILE,
                   help="results JSON, merged per dataset/model/setting "
                        "(benchmarks/results/recbole_peer.json)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a RecBole config key in every run (VALUE read as JSON, "
                        "else a string), e.g. --set stopping_step=100; such runs are stored "
                        "under the setting name SETTING+KEY=VALUE")
    p.add_argument("--setup-only", action="store_true", help="create the RecBole venv and stop")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for field, known in (("datasets", DATASETS), ("models", MODELS), ("settings", SETTINGS)):
        values = [v.strip() for v in getattr(args, field).split(",") if v.strip()]
        bad = [v for v in values if v not in known]
        if bad:
            p.error(f"unknown {field} {bad}; expected some of {list(known)}")
        setattr(args, field, values)
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            p.error(f"--set wants KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    args.set = overrides
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)
    sys.path.insert(0, str(ROOT))
    import torch

    from benchmarks._common import command, machine, now
    from kgrec.gnn.export import export_recbole_dataset
    from kgrec.gnn.split import make_split

    torch.set_num_threads(1)
    started, host, t_all = now(), machine(), time.perf_counter()
    venv = ensure_venv()
    if args.setup_only:
        return 0
    header = {
        "command": command(), "machine": host, "date": started,
        "recbole": {"version": RECBOLE_VERSION, "venv": venv, "patches": PATCHES},
        "protocol": (
            "kgrec's default split (gnn.split.make_split) exported as a RecBole benchmark_filename "
            "dataset (gnn.export.export_recbole_dataset); full ranking over all items, training "
            "items (and validation items at test) excluded; early stopping on validation "
            "NDCG@20; test read once. recall@20/ndcg@20 = RecBole's evaluator; kgrec_rescored = "
            "gnn.metrics.evaluate_ranking on the same model's score matrix. KGIN: dropout off "
            "at test (see kgin_evaluation)."),
        "settings": {
            "defaults": "RecBole 1.2.1's defaults per model (overall.yaml + model yaml)",
            "matched": "kgrec's benchmark settings: embedding 64, lr 0.005, batch 4096, "
                       "eval_step 2, stopping_step 4, epochs 100, LightGCN 3 layers, reg 1e-4 "
                       "on the batch's layer-0 embeddings (BPR: RecBole's BPR + that term)"},
    }  # fmt: skip
    update_results(args.out, header)
    max_minutes = args.max_minutes or None
    for ds in args.datasets:
        t_ds = time.perf_counter()
        snapshot = load_dataset(ds)
        split = make_split(snapshot)
        data_root = WORK / "data"
        export = export_recbole_dataset(split, snapshot, data_root / recbole_name(ds),
                                        recbole_name(ds))
        print(f"{ds}: {split.summary()}; KG {export.triples:,} triples, "
              f"{len(export.relations)} relations ({time.perf_counter() - t_ds:.0f}s)", flush=True)
        update_results(args.out, header, ds, {
            "command": command(), "date": started, "load_average_1m_at_start": round(
                os.getloadavg()[0], 2), "recbole_name": recbole_name(ds),
            "split": split_summary(split), "export": export.summary()})
        for model in args.models:
            for base in args.settings:
                t0 = time.perf_counter()
                setting = setting_label(base, args.set)
                print(f"  {model} / {setting} ...", flush=True)
                entry = run_one(ds, model, base, data_root, max_minutes, snapshot, split,
                                args.set)
                entry.update(command=command(), date=now())
                # Written after every run (a long run is never lost), merged under a lock
                # (several invocations may run at once, e.g. one per dataset).
                update_results(args.out, header, ds, entry=(model, setting, entry))
                rs = entry["kgrec_rescored"]
                print(f"  {model} / {setting}: Recall@20 {entry[f'recall@{K}']:.4f} NDCG@20 "
                      f"{entry[f'ndcg@{K}']:.4f} (kgrec: {rs[f'recall@{K}']:.4f} / "
                      f"{rs[f'ndcg@{K}']:.4f}), {entry['epochs']} epochs (best "
                      f"{entry['best_epoch']}), {time.perf_counter() - t0:.0f}s", flush=True)
    seconds = round(time.perf_counter() - t_all, 1)
    data = update_results(args.out, header)
    done = data.get("datasets", {})
    print(table({ds: done[ds] for ds in args.datasets if ds in done}))
    print(f"RecBole peer runs ({', '.join(args.datasets)}) in {seconds:.0f}s; merged into "
          f"{args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
