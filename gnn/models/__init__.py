"""The models, one per file, and the registry that names them.

``train.model`` picks a :class:`ModelSpec` of :data:`MODELS`: its ``build`` makes the model
over a split's training graph and ``reads`` names the settings it takes (the rest of
:class:`~kgrec.settings.TrainSettings` belongs to the training loop). The names are also
:data:`kgrec.settings.MODEL_NAMES`, torch-free, for the command line and the config rules;
``tests/gnn/test_models.py`` holds the two equal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from kgrec.errors import UsageError
from kgrec.gnn.models import kgat, lightgcn, mf, pop
from kgrec.gnn.models.base import EmbeddingModel, FrozenEmbeddings, ModelInputs
from kgrec.gnn.split import Split
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.settings import TrainSettings

__all__ = ["MODELS", "EmbeddingModel", "FrozenEmbeddings", "ModelSpec", "build_model"]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model and which :class:`~kgrec.settings.TrainSettings` it reads."""

    build: Callable[[ModelInputs], EmbeddingModel]
    reads: tuple[str, ...]

    @property
    def takes_text(self) -> bool:
        """Whether the model takes the products' text vectors as inputs."""
        return "text_features" in self.reads


_KGAT_READS = ("dim", "layers", "init_std", "kg_hops", "kg_dropout", "kg_every",
               "text_features", "id_dropout", "cl_weight", "cl_eps", "cl_temperature",
               "item_input", "user_input", "text_hidden", "history_half_life")
#: Every model by its ``train.model`` name, in the order of :data:`kgrec.settings.MODEL_NAMES`.
MODELS: dict[str, ModelSpec] = {
    "pop": ModelSpec(pop.build, ()),
    "mf": ModelSpec(mf.build, ("dim", "init_std")),
    "lightgcn": ModelSpec(lightgcn.build, ("dim", "layers", "init_std")),
    "gcn": ModelSpec(kgat.build_gcn, _KGAT_READS),
    "gat": ModelSpec(kgat.build, _KGAT_READS),
}
#: Settings whose value other than this default only some models act on: set for a model
#: that does not read it, it would be silently ignored, so it is refused.
ONLY_WHERE_READ = {"cl_weight": 0.0, "item_input": "id", "user_input": "id"}


def build_model(
    snapshot: GraphSnapshot,
    split: Split,
    settings: TrainSettings,
    *,
    product_features: Tensor | None = None,
    train_weight: Tensor | None = None,
) -> EmbeddingModel:
    """The model named by ``settings.model`` over the training graph of ``split``."""
    name = settings.model  # a known name: TrainSettings checks it
    spec = MODELS[name]
    for key, default in ONLY_WHERE_READ.items():
        value = getattr(settings, key)
        if value != default and key not in spec.reads:
            readers = ", ".join(n for n, s in MODELS.items() if key in s.reads)
            raise UsageError(f"{key} = {value!r} needs a model that reads it ({readers}), "
                             f"not {name!r}")
    model = spec.build(ModelInputs(snapshot, split, settings, product_features, train_weight))
    # Popularity is not trained by any loss: unit-length [N, 1] vectors would tie every product.
    model.cosine = settings.loss == "softmax" and model.trainable
    return model
