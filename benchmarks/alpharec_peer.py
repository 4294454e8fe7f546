"""AlphaRec's reference code (Sheng et al., ICLR 2025; github.com/LehengTHU/AlphaRec) as a
text-aware peer, trained on kgrec's own split with the MiniLM product vectors kgrec uses.

For each dataset the script makes kgrec's default split, writes it in AlphaRec's format
(``cf_data/{train,valid,test}.txt``: a user and their items per line, users and items
renumbered to the ones that occur, as its loader requires) with the products' MiniLM
vectors as its ``item_info`` language embeddings, runs AlphaRec's own training loop in a
venv of its own, then maps the best model's cosine embeddings back to kgrec's ids and
scores them with kgrec's evaluator (``gnn.metrics.evaluate_ranking``: full ranking,
training and, at test, validation items excluded), beside AlphaRec's own test figure.

    .venv/bin/python benchmarks/alpharec_peer.py --source PATH/TO/AlphaRec
    .venv/bin/python benchmarks/alpharec_peer.py --source ... --datasets scientific

``--source`` is a checkout of the reference repository (this machine cannot reach GitHub;
any copy of it works). Adapted, and nothing else (see ``PATCHES``): it runs on the CPU
(``.cuda(device)`` -> ``.to(device)``), without wandb (a stub; ``--no_wandb`` anyway),
with ``reckit.randint_choice`` taken from its own ``util.tool``, its Cython evaluator
built in place; MiniLM's 384-dimensional vectors take the ``v3`` slot, so the MLP has
384 / 2 = 192 hidden units (its rule for keeping the parameter count). Its README's
command for the Amazon sets, kept: 2 layers, tau 0.15, 256 sampled negatives per pair,
``--train_norm --pred_norm``, InfoNCE, MLP, lr 5e-4, batch 4096, evaluation every 5 epochs;
changed: ``--patience 4`` evaluations (its 20 means 100 epochs past the best, hours on
2 CPU cores), and ``--num_workers 0``. Products that occur in no split have no AlphaRec
embedding and score 0.

Results: ``benchmarks/results/alpharec_peer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    DATASETS,
    RESULTS,
    command,
    load_dataset,
    machine,
    now,
    text_vectors,
    write_json,
)
from kgrec.gnn.metrics import evaluate_ranking  # noqa: E402
from kgrec.gnn.split import make_split  # noqa: E402

WORK = ROOT / ".kgrec" / "alpharec"
VENV = ROOT / ".kgrec" / "alpharec-venv"
VENV_REQUIREMENTS = ["numpy<2", "pandas<3", "scipy", "cython", "setuptools<70", "matplotlib",
                     "tqdm"]
PATCHES = [
    ".cuda(self.device) -> .to(self.device); torch.device(args.cuda) -> cpu",
    "wandb: an empty stub module (runs pass --no_wandb)",
    "reckit: randint_choice from AlphaRec's own models/General/base/util/tool.py",
    "Cython evaluator and tools built in place (python setup.py build_ext --inplace)",
    "the venv reuses the project's torch through a .pth file (no second wheel)",
]
ARGS = ["--rs_type", "General", "--model_name", "AlphaRec", "--n_layers", "2",
        "--patience", "4", "--no_wandb", "--train_norm", "--pred_norm", "--neg_sample", "256",
        "--lm_model", "v3", "--model_version", "mlp", "--tau", "0.15", "--infonce", "1",
        "--num_workers", "0", "--seed", "2020", "--clear_checkpoints"]
#: Runs inside AlphaRec's folder: its own main.py, then the best model's embeddings.
DRIVER = """
import sys, numpy as np, torch
from parse import parse_args
from utils import fix_seeds
args, special_args = parse_args()
fix_seeds(args.seed)
from models.General.AlphaRec import AlphaRec_RS
rs = AlphaRec_RS(args, special_args)
rs.execute()
rs.model.eval()
with torch.no_grad():
    users, items = rs.model.compute()
"""


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *VENV_REQUIREMENTS],
                       check=True)
        site = next((VENV / "lib").glob("python3*/site-packages"))
        (site / "zz_kgrec_project_torch.pth").write_text(
            f"{Path(torch.__file__).resolve().parents[1]}\n")
    return python


def prepare_source(source: Path, python: Path) -> Path:
    """A patched, built copy of the reference code in ``WORK / "code"``."""
    code = WORK / "code"
    if (code / ".kgrec-ready").exists():
        return code
    shutil.rmtree(code, ignore_errors=True)
    shutil.copytree(source, code, ignore=shutil.ignore_patterns(".git", "assets"))
    for path in code.rglob("*.py"):
        text = path.read_text()
        new = text.replace(".cuda(self.device)", ".to(self.device)")
        new = re.sub(r"torch\.device\(args\.cuda\)", "torch.device('cpu')", new)
        if new != text:
            path.write_text(new)
    (code / "wandb.py").write_text('"""Stub: AlphaRec imports wandb; runs use --no_wandb."""\n')
    (code / "reckit.py").write_text(
        '"""Stub: randint_choice from AlphaRec\'s own util.tool."""\n'
        "from models.General.base.util.tool import randint_choice  # noqa: F401\n")
    subprocess.run([str(python), "setup.py", "build_ext", "--inplace"], check=True,
                   cwd=code / "models" / "General" / "base", capture_output=True)
    (code / ".kgrec-ready").write_text("built\n")
    return code


def export(split, text: torch.Tensor, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """kgrec's split in AlphaRec's format; returns the kgrec rows of its users and items."""
    frames = {stage: split.frame(stage) for stage in ("train", "valid", "test")}
    users = np.unique(frames["train"]["user"].to_numpy())
    items = np.unique(np.concatenate([f["product"].to_numpy() for f in frames.values()]))
    user_id = {int(u): i for i, u in enumerate(users)}
    item_id = {int(p): i for i, p in enumerate(items)}
    (folder / "cf_data").mkdir(parents=True, exist_ok=True)
    (folder / "item_info").mkdir(parents=True, exist_ok=True)
    for stage, frame in frames.items():
        frame = frame[frame["user"].isin(users)]
        lines = [" ".join([str(user_id[int(u)]), *(str(item_id[int(p)]) for p in group)])
                 for u, group in frame.groupby("user")["product"]]
        (folder / "cf_data" / f"{stage}.txt").write_text("\n".join(lines) + "\n")
    np.save(folder / "item_info" / "item_cf_embeds_large3_array.npy",
            text[torch.as_tensor(items)].numpy().astype(np.float32))
    return users, items


def _saved_id(code: Path, name: str) -> list[str]:
    """``--saveID`` that makes a --test_only run read the training run's folder (training
    prefixes the folder with its date, a test-only run does not)."""
    found = sorted((code / "weights" / "General" / name).glob(
        "*/*_Saved_*/epoch=*.checkpoint.pth.tar"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no saved AlphaRec checkpoint for {name} under {code / 'weights'}")
    return ["--saveID", found[-1].parent.name.split("_Saved_")[0] + "_Saved"]


def run_dataset(dataset: str, code: Path, python: Path, saved: bool = False) -> dict[str, Any]:
    snapshot = load_dataset(dataset)
    split = make_split(snapshot)
    name = f"kgrec_{dataset.replace('-', '_')}"
    data_path = WORK / "data"
    users, items = export(split, text_vectors(snapshot), data_path / name)
    out = WORK / f"{name}_embeddings.pt"
    driver = DRIVER + f"torch.save({{'users': users, 'items': items}}, {str(out)!r})\n"
    load, start = os.getloadavg()[0], time.perf_counter()
    # --saved: the best checkpoint of an earlier, interrupted run, without training on.
    args = [a for a in ARGS if a != "--clear_checkpoints"] + ["--test_only",
                                                              *_saved_id(code, name)] \
        if saved else ARGS
    done = subprocess.run([str(python), "-c", driver, *args, "--dataset", name,
                           "--data_path", f"{data_path}/"], cwd=code, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    seconds = time.perf_counter() - start
    (WORK / f"{name}.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"AlphaRec failed on {dataset}; {WORK / f'{name}.log'}:\n"
                         f"{done.stderr[-3000:]}")
    emb = torch.load(out)
    user_emb = torch.zeros(split.num_users, emb["users"].shape[1])
    item_emb = torch.zeros(split.num_items, emb["items"].shape[1])
    user_emb[torch.as_tensor(users)] = emb["users"].float()
    item_emb[torch.as_tensor(items)] = emb["items"].float()
    user_emb = torch.nn.functional.normalize(user_emb, dim=1)  # its --pred_norm
    item_emb = torch.nn.functional.normalize(item_emb, dim=1)

    def score(rows: torch.Tensor) -> torch.Tensor:
        return user_emb[rows] @ item_emb.t()

    metrics = {stage: evaluate_ranking(score, split, stage=stage, k=20,
                                       slices=("overall",))["overall"]
               for stage in ("valid", "test")}
    own = [line for line in done.stdout.splitlines() if "test" in line.lower()][-3:]
    return {"dataset": dataset, "valid_ndcg@20": metrics["valid"]["ndcg@20"],
            "test_ndcg@20": metrics["test"]["ndcg@20"],
            "test_recall@20": metrics["test"]["recall@20"],
            "alpharec_own_output": own, "users": len(users), "items": len(items),
            "products_without_embedding": split.num_items - len(items),
            "converged": None if saved else True, "from_saved_checkpoint": saved,
            "seconds": seconds,
            "threads": 2, "load_avg_1m_before": load}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True,
                   help="a checkout of github.com/LehengTHU/AlphaRec")
    p.add_argument("--datasets", choices=DATASETS, nargs="+", default=list(DATASETS))
    p.add_argument("--out", type=Path, default=RESULTS / "alpharec_peer.json")
    p.add_argument("--saved", action="store_true",
                   help="evaluate the best checkpoint an interrupted run left (its own "
                        "--test_only), without training on; the row says so")
    args = p.parse_args(argv)
    python = ensure_venv()
    code = prepare_source(args.source, python)
    payload: dict[str, Any] = {"benchmark": "alpharec_peer", "command": command(),
                               "machine": machine(), "date": now(), "args": ARGS,
                               "patches": PATCHES, "rows": []}
    for dataset in args.datasets:
        row = run_dataset(dataset, code, python, args.saved)
        payload["rows"].append(row)
        print(json.dumps(row), flush=True)
        write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
