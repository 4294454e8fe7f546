"""All kgrec settings in one place.

Layers, later ones winning: the default documented on each field, a TOML file (``kgrec.toml``
in the working folder, ``$KGREC_CONFIG`` or ``--config PATH``), environment variables
``KGREC_<SECTION>_<KEY>`` (e.g. ``KGREC_NEO4J_URI``), ``--set section.key=value`` and last a
command's own options (``--epochs`` ...). Every value is converted to its field's type and
checked against :data:`RULES`; unknown sections and keys are errors, not silently ignored.
:attr:`Config.provenance` records where each effective value came from (``kgrec config show``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, NamedTuple, Union, get_args, get_origin, get_type_hints

from kgrec.errors import ConfigError, KgrecError
from kgrec.kg import schema
from kgrec.settings import (
    BACKENDS,
    ITEM_INPUTS,
    LOSSES,
    MODEL_NAMES,
    SOURCE_KINDS,
    SPLITS,
    TEXT_FIELDS,
    TEXT_PRECISIONS,
    USER_INPUTS,
    DataConfig,
    FusionConfig,
    Neo4jConfig,
    RunConfig,
    ScoreConfig,
    SourceSpec,
    StoreConfig,
    TrainConfig,
)

DEFAULT_CONFIG_FILE = "kgrec.toml"
#: Settings never printed in clear.
SECRETS = frozenset({"neo4j.password"})

log = logging.getLogger(__name__)


class Rule(NamedTuple):
    """What a setting allows: ``test`` (None passes: "not set"); ``text`` ends "must be ..."."""

    test: Callable[[Any], bool]
    text: str


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(choices))


def at_least(low: int) -> Rule:
    return Rule(lambda v: v >= low, f"an integer >= {low}")


def above(low: float) -> Rule:
    return Rule(lambda v: v > low, f"> {low}")


def between(low: float, high: float, *, open_high: bool = False) -> Rule:
    return Rule(lambda v: low <= v < high if open_high else low <= v <= high,
                f"in [{low}, {high}{')' if open_high else ']'}")


def each(rule: Rule) -> Rule:
    return Rule(lambda v: bool(v) and all(rule.test(x) for x in v),
                f"a non-empty list, each {rule.text}")


def matching(pattern: str, text: str) -> Rule:
    return Rule(lambda v: re.fullmatch(pattern, v) is not None, text)


def _event_word(word: str) -> bool:
    return _event_weights_ok({word: 0.0})


def _event_weights_ok(weights: Mapping[str, float]) -> bool:
    try:
        return all(schema.event_type(name) and w >= 0 for name, w in weights.items())
    except KgrecError:  # an unknown event word
        return False


POSITIVE = at_least(1)
NON_NEGATIVE = Rule(lambda v: v >= 0, ">= 0")
#: The legal values of every checked setting, one place (keys without a rule take any value
#: of their type: names, paths).
RULES: dict[str, Rule] = {
    "store.backend": one_of(*BACKENDS),
    "store.batch_size": POSITIVE,
    "data.max_reject_share": between(0, 1),
    "data.chunk_rows": POSITIVE,
    "neo4j.uri": matching(r"(bolt|neo4j)(\+s|\+ssc)?://\S+", "a bolt:// or neo4j:// URI"),
    "neo4j.wait_seconds": NON_NEGATIVE,
    "neo4j.retry_seconds": NON_NEGATIVE,
    "train.model": one_of(*MODEL_NAMES),
    "train.dim": POSITIVE,
    "train.layers": POSITIVE,
    "train.kg_hops": at_least(0),
    "train.kg_dropout": between(0, 1, open_high=True),
    "train.kg_every": POSITIVE,
    "train.id_dropout": between(0, 1, open_high=True),
    "train.init_std": above(0),
    "train.cl_weight": NON_NEGATIVE,
    "train.cl_eps": NON_NEGATIVE,
    "train.cl_temperature": above(0),
    "train.item_input": one_of(*ITEM_INPUTS),
    "train.user_input": one_of(*USER_INPUTS),
    "train.text_hidden": at_least(0),
    "train.history_half_life": NON_NEGATIVE,
    "train.loss": one_of(*LOSSES),
    "train.temperature": above(0),
    "train.negatives": POSITIVE,
    "train.epochs": POSITIVE,
    "train.batch_size": POSITIVE,
    "train.lr": above(0),
    "train.max_steps_per_epoch": POSITIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.patience": POSITIVE,
    "train.min_gain": NON_NEGATIVE,
    "train.eval_every": POSITIVE,
    "train.eval_users": NON_NEGATIVE,
    "train.k": POSITIVE,
    "train.seed": at_least(0),
    "train.device": matching(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N"),
    "train.event_weights": Rule(_event_weights_ok, "event types (" + ", ".join(
        schema.INTERACTIONS) + " or words like 'purchase') mapped to weights >= 0"),
    "train.max_batches": POSITIVE,
    "train.max_minutes": above(0),
    "train.threads": POSITIVE,
    "train.split": one_of(*SPLITS),
    "train.behaviour_scales": Rule(lambda v: all(x >= 0 for x in v), "a list of numbers >= 0"),
    "train.behaviour_fit_epochs": POSITIVE,
    "train.target": Rule(lambda v: v in ("auto", "") or _event_word(v),
                         "auto, empty or an event word (purchase, cart, view, rating ...)"),
    "train.nproc": POSITIVE,
    "fusion.text_batch_size": POSITIVE,
    "fusion.text_precision": one_of(*TEXT_PRECISIONS),
    "fusion.text_fields": each(one_of(*TEXT_FIELDS)),
    "fusion.text_side": one_of("all", "tower", "profile"),
    "fusion.alpha_function": one_of("item", "constant"),
    "fusion.tower_epochs": POSITIVE,
    "fusion.profile_half_lives": each(NON_NEGATIVE),
    "fusion.search_alpha": between(0, 1),
    "fusion.search_top_k": POSITIVE,
    "fusion.normalise": one_of("zscore", "rank"),
    "fusion.fit_users": NON_NEGATIVE,
    "fusion.fit_pool": NON_NEGATIVE,
    "fusion.seen_prior": NON_NEGATIVE,
    "score.top_k": POSITIVE,
    "score.chunk_size": POSITIVE,
    "score.keep_versions": at_least(1),
    "score.spark": matching(r"|local(\[(\d+|\*)(,\d+)?\])?|yarn|(spark|k8s|mesos)://\S+",
                            "empty (local scoring), local[N], yarn, spark://HOST:PORT or "
                            "k8s://URL"),
    "source.kind": one_of(*SOURCE_KINDS),
    "run.baselines": Rule(lambda v: all(m in MODEL_NAMES for m in v),
                          "a list of models among " + ", ".join(MODEL_NAMES)),
    "run.items": one_of("long-tail", "cold-start", "all"),
    "run.sample_users": at_least(0),
}


class _Unreadable(Exception):
    """``value`` cannot be read as ``kind`` (turned into a ConfigError naming the key)."""

    def __init__(self, value: Any, kind: str) -> None:
        super().__init__(value, kind)
        self.value, self.kind = value, kind


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Unreadable(text, f"JSON ({exc.msg})") from None


def _parse_mapping(text: str) -> Any:
    """A dict from the environment or --set: JSON ``{"RATED": 1.0}`` or ``RATED=1,VIEWED=0.5``."""
    if text.lstrip().startswith("{"):
        return _json(text)
    pairs = [part.partition("=") for part in text.split(",") if part.strip()]
    for key, sep, _ in pairs:
        if not sep or not key.strip():
            raise _Unreadable(key, "KEY=VALUE")
    return {key.strip(): value.strip() for key, _, value in pairs}


def _parse_list(text: str) -> Any:
    """A list from the environment or --set: JSON ``["a", "b"]`` or ``a,b``."""
    if text.lstrip().startswith("["):
        return _json(text)
    return [part.strip() for part in text.split(",") if part.strip()]


def _convert(value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint``: strings (environment, --set) are parsed, typed values
    (TOML, command options) are checked, never silently kept as the wrong type."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):  # "X | None"
        if value is None or (isinstance(value, str) and value.strip().lower() in
                             ("", "none", "null")):
            return None
        return _convert(value, next(a for a in args if a is not type(None)))
    if origin is list:
        if isinstance(value, str):  # "a,b" or JSON
            value = _parse_list(value)
        if not isinstance(value, list | tuple):
            raise _Unreadable(value, "list")
        return [_convert(item, args[0]) for item in value]
    if origin is dict:
        value = _parse_mapping(value) if isinstance(value, str) else value
        if not isinstance(value, dict):
            raise _Unreadable(value, "table (dict)")
        return {str(key): _convert(item, args[1]) for key, item in value.items()}
    if isinstance(value, str) and hint is not str:
        text = value.strip()
        if hint is bool and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        if hint in (int, float):
            try:
                return hint(text)
            except ValueError:
                pass
        raise _Unreadable(value, hint.__name__)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not hint:
        raise _Unreadable(value, getattr(hint, "__name__", str(hint)))
    return value


def _field_types(cls: Any) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@dataclass
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    neo4j: Neo4jConfig = field(default_factory=Neo4jConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    source: SourceSpec = field(default_factory=SourceSpec)
    run: RunConfig = field(default_factory=RunConfig)
    #: "section.key" -> where its value came from ("file PATH", "env KGREC_X_Y", "--set",
    #: "--option"); keys left out hold their default.
    provenance: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def sections() -> list[str]:
        return [f.name for f in dataclasses.fields(Config) if f.name != "provenance"]

    def _section(self, name: str, where: str, key: str = "") -> Any:
        if name not in self.sections():
            raise ConfigError(f"{where}: unknown section [{name}]{f' ({key})' if key else ''}; "
                              f"known: {', '.join(self.sections())}")
        return getattr(self, name)

    def set_value(self, key: str, value: Any, source: str) -> None:
        """Set ``section.key`` to ``value`` (converted to the field's type) from ``source``."""
        name, _, attr = key.partition(".")
        section = self._section(name, source, key)
        types = _field_types(type(section))
        if attr not in types:
            raise ConfigError(f"{source}: unknown setting {attr!r} in [{name}] ({key}); known: "
                              f"{', '.join(sorted(types))}")
        try:
            value = _convert(value, types[attr])
        except _Unreadable as exc:
            raise ConfigError(f"{source}: {key}: cannot read {exc.value!r} as {exc.kind}") from None
        setattr(section, attr, value)
        self.provenance[key] = source
        log.debug("%s = %s (%s)", key, self.shown(key), source)

    def source_of(self, key: str) -> str:
        return self.provenance.get(key, "default")

    def items(self) -> list[tuple[str, Any]]:
        """Every ("section.key", value), in declaration order."""
        return [(f"{name}.{f.name}", getattr(getattr(self, name), f.name))
                for name in self.sections() for f in dataclasses.fields(getattr(self, name))]

    def shown(self, key: str) -> Any:
        """The value of ``key`` for printing: secrets masked."""
        name, _, attr = key.partition(".")
        value = getattr(getattr(self, name), attr)
        return "***" if key in SECRETS and value else value

    def validate(self) -> None:
        """Check every value against :data:`RULES`; an error names key, value, source, rule."""
        for key, value in self.items():
            rule = RULES.get(key)
            if rule is None or value is None:
                continue
            try:
                ok = rule.test(value)
            except TypeError:  # e.g. a wrong type set from Python
                ok = False
            if not ok:
                raise ConfigError(f"{key} = {self.shown(key)!r} ({self.source_of(key)}): "
                                  f"must be {rule.text}")

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, for printing and run records."""
        out = {name: dataclasses.asdict(getattr(self, name)) for name in self.sections()}
        for key in SECRETS:
            name, _, attr = key.partition(".")
            out[name][attr] = self.shown(key)
        return out


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    sets: Iterable[str] = (),
    *,
    validate: bool = True,
) -> Config:
    """Defaults < the TOML file (if any) < ``KGREC_*`` variables < ``sets`` (``--set``
    ``section.key=value`` strings), then validated (unless ``validate`` is False: the caller
    adds layers and validates)."""
    config = Config()
    env = dict(os.environ) if env is None else env
    file = Path(path) if path else Path(env.get("KGREC_CONFIG", DEFAULT_CONFIG_FILE))
    if path and not file.exists():
        raise ConfigError(f"config file {file} does not exist")
    if file.exists():
        with file.open("rb") as fh:
            try:
                raw = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {file}: {exc}") from exc
        where = f"file {file}"
        for name, values in raw.items():
            config._section(name, where)
            if not isinstance(values, dict):
                raise ConfigError(f"{where}: {name} must be a [{name}] table of settings")
            for key, value in values.items():
                config.set_value(f"{name}.{key}", value, where)
    for name in config.sections():
        prefix = f"KGREC_{name.upper()}_"
        for var in sorted(v for v in env if v.startswith(prefix)):
            config.set_value(f"{name}.{var[len(prefix):].lower()}", env[var], f"env {var}")
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        config.set_value(key.strip(), value, "--set")
    if validate:
        config.validate()
    return config


#: Options every command that opens a store shares: argparse dest -> setting.
STORE_OPTIONS = {"store": "store.backend", "store_path": "store.path"}


def cli_config(args: Any, options: Mapping[str, str] | None = None) -> Config:
    """One CLI call's settings: ``--config``, environment, ``--set``, then the command's own
    ``options`` (argparse dest -> "section.key"; None keeps the configured value), validated."""
    sets = [*(getattr(args, "set", None) or ()), *getattr(args, "late_set", ())]  # before/after
    config = load_config(getattr(args, "config", None), sets=sets, validate=False)
    for dest, key in {**STORE_OPTIONS, **(options or {})}.items():
        value = getattr(args, dest, None)
        if value is not None:
            config.set_value(key, value, "--" + dest.replace("_", "-"))
    config.validate()
    return config


def default_help(key: str, none: str = "none") -> str:
    """``(default: from config KEY, VALUE)`` for option help texts: VALUE is the built-in
    default (``none`` says what None means)."""
    name, _, attr = key.partition(".")
    value = getattr(getattr(_DEFAULTS, name), attr)
    return f"(default: from config {key}, {none if value is None else value})".replace("%", "%%")


_DEFAULTS = Config()
