"""Text-encoder speed on real Amazon 2018 product texts: kgrec (at its default precision and
in float32) vs a naive loop, and the cached second run.

kgrec's encoder sorts texts by token length (each batch pads to its own longest text), runs
under ``torch.inference_mode``, under bfloat16 autocast where the CPU computes it natively
(``fusion.text_precision = "auto"``) and caches vectors on disk. The naive loop encodes the
same texts in float32, in their file order, padding every batch to the model's maximum
length. The three are timed alternately; the table gives each one's best run and how far the
default precision's vectors are from float32 ones. Writes
``benchmarks/results/encode_speed.json``.

    .venv/bin/python benchmarks/encode_speed.py [--limit 1024] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import RESULTS, SHARED_DATA, command, machine, now  # noqa: E402
from kgrec.fusion.encoder import TextEncoder  # noqa: E402
from kgrec.fusion.text import product_text  # noqa: E402
from kgrec.kg.extract.amazon import read_amazon  # noqa: E402

FILES = ("meta_Gift_Cards.json.gz", "meta_Magazine_Subscriptions.json.gz")


def amazon_texts(limit: int | None) -> list[str]:
    texts: list[str] = []
    for name in FILES:
        products = read_amazon(SHARED_DATA / "amazon-2018" / name).node("Product")
        texts += product_text(products)
    texts = list(dict.fromkeys(t for t in texts if t))  # distinct, file order kept
    if limit and limit < len(texts):
        keep = np.sort(np.random.default_rng(0).choice(len(texts), limit, replace=False))
        texts = [texts[i] for i in keep]
    return texts


def naive(encoder: TextEncoder, texts: list[str], batch_size: int) -> np.ndarray:
    """File order, every batch padded to the maximum length."""
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = encoder.tokenizer(texts[start : start + batch_size], padding="max_length",
                                      truncation=True, max_length=encoder.max_length,
                                      return_tensors="pt").to(encoder.device)
            out.append(encoder._forward(batch["input_ids"], batch["attention_mask"]).cpu())
    return torch.cat(out).numpy()


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each text's k nearest other texts that ``a`` and ``b`` agree on."""
    def nearest(v: np.ndarray) -> np.ndarray:
        sim = v @ v.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    na, nb = nearest(a), nearest(b)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb, strict=True)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=512,
                        help="texts sampled (seed 0) from both catalogues (512; 0 = all)")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per batch (64)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="alternating timed runs of each encoder, best kept (2)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="auto",
                        help="kgrec's precision: auto (the default), float32 or bfloat16")
    parser.add_argument("--out", default=str(RESULTS / "encode_speed.json"), help="results JSON")
    args = parser.parse_args()
    texts = amazon_texts(args.limit or None)
    with tempfile.TemporaryDirectory() as cache:
        encoder = TextEncoder(device=args.device, batch_size=args.batch_size, cache_dir=cache,
                              precision=args.precision)
        exact = TextEncoder(device=args.device, batch_size=args.batch_size, precision="float32")
        lengths = [len(x) for x in encoder.tokenizer(texts, truncation=True,
                                                     max_length=encoder.max_length)["input_ids"]]
        # Alternate the three (best of --repeats each): the machine's load drifts.
        kgrec_times, float32_times, naive_times = [], [], []
        for _ in range(args.repeats):
            fresh = encoder.with_cache(None)
            t0 = time.perf_counter()
            ours = fresh.encode(texts, progress=True).numpy()
            kgrec_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ours32 = exact.encode(texts, progress=True).numpy()
            float32_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ref = naive(exact, texts, args.batch_size)
            naive_times.append(time.perf_counter() - t0)
        kgrec_s, float32_s, naive_s = min(kgrec_times), min(float32_times), min(naive_times)
        encoder.encode(texts)  # fill the cache
        rerun = encoder.with_cache(cache)  # a fresh cache object: what a second run sees
        t0 = time.perf_counter()
        again = rerun.encode(texts).numpy()
        cached_s = time.perf_counter() - t0
        assert rerun.encoded_count == 0
    record = {
        "texts": len(texts),
        "kgrec_texts_per_s": len(texts) / kgrec_s,
        "naive_texts_per_s": len(texts) / naive_s,
        "float32_texts_per_s": len(texts) / float32_s,
        "speedup": naive_s / kgrec_s,
        "precision_speedup": float32_s / kgrec_s,
        "kgrec_s": kgrec_s,
        "float32_s": float32_s,
        "naive_s": naive_s,
        "kgrec_runs_s": kgrec_times,
        "float32_runs_s": float32_times,
        "naive_runs_s": naive_times,
        "precision": encoder.precision,
        "min_cosine_vs_float32": float((ours * ours32).sum(1).min()),
        "max_abs_diff_vs_float32": float(np.abs(ours - ours32).max()),
        "top10_neighbours_shared_with_float32": neighbour_overlap(ours, ours32),
        "cached_rerun_s": cached_s,
        "cached_rerun_encoded": rerun.encoded_count,
        "max_abs_diff_float32_vs_naive": float(np.abs(ours32 - ref).max()),
        "max_abs_diff_cached": float(np.abs(ours - again).max()),
        "tokens": {"mean": float(np.mean(lengths)), "median": float(np.median(lengths)),
                   "max": int(np.max(lengths)), "limit": encoder.max_length},
        "model": encoder.model_id,
        "batch_size": args.batch_size,
        "device": str(encoder.device),
        "data": [f"amazon-2018/{f}" for f in FILES],
        "command": command(), "machine": machine(), "date": now(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"{'encoder':<22} {'texts/s':>9} {'seconds':>9}")
    print(f"{'kgrec (' + encoder.precision + ')':<22} {record['kgrec_texts_per_s']:>9.1f} "
          f"{kgrec_s:>9.2f}")
    print(f"{'kgrec (float32)':<22} {record['float32_texts_per_s']:>9.1f} {float32_s:>9.2f}")
    print(f"{'naive (float32, pad)':<22} {record['naive_texts_per_s']:>9.1f} {naive_s:>9.2f}")
    print(f"{'kgrec cached':<22} {len(texts) / cached_s:>9.0f} {cached_s:>9.3f}")
    print(f"Encoded {len(texts):,} Amazon product texts (mean {record['tokens']['mean']:.0f} "
          f"tokens, limit {encoder.max_length}) on {encoder.device}: kgrec "
          f"{record['kgrec_texts_per_s']:.1f} texts/s in {encoder.precision} "
          f"({record['precision_speedup']:.2f}x its float32, min cosine to float32 "
          f"{record['min_cosine_vs_float32']:.6f}, "
          f"{record['top10_neighbours_shared_with_float32']:.1%} of each text's 10 nearest "
          f"shared) vs naive {record['naive_texts_per_s']:.1f} "
          f"({record['speedup']:.1f}x); cached rerun {cached_s:.3f}s encoding nothing; float32 "
          f"vectors agree with the naive loop's to {record['max_abs_diff_float32_vs_naive']:.1e}. "
          f"Written to {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
