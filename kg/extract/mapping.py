"""Column mappings of generic dumps: which input column holds each schema field, plus options.

A :class:`ColumnMapping` comes from a small TOML file and/or ``section.field=column``
overrides (:func:`load_mapping`); defaults try common names (``item_id``, ``user_id`` ...).

TOML example::

    [product]
    id = "item_id"
    category = "category_path"   # a list, or a string split on options.category_separator
    [event]
    user = "visitorid"
    product = "itemid"
    type = "event"               # view/cart/purchase/rating ... (kg.schema.EVENT_ALIASES)
    [options]
    event_type = "purchase"      # used when the events have no type column
    rating_scale = 5
    category_separator = " > "
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kgrec.errors import ConfigError, InputError, SchemaError
from kgrec.kg import schema

#: Section -> field -> candidate column names tried in order when not mapped.
DEFAULT_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "product": {
        "id": ("id", "product_id", "item_id", "itemid", "asin", "sku"),
        "title": ("title", "name", "product_name", "item_name"),
        "description": ("description", "desc"),
        "features": ("features", "feature"),
        "brand": ("brand",),
        "category": ("category", "categories", "category_path", "categoryid"),
        "price": ("price",),
    },
    "event": {
        "user": ("user", "user_id", "userid", "visitorid", "reviewerID", "customer_id"),
        "product": ("product", "product_id", "item_id", "itemid", "asin", "sku"),
        "type": ("type", "event", "event_type"),
        "timestamp": ("timestamp", "time", "ts", "unixReviewTime"),
        "value": ("value", "rating", "overall", "count", "quantity"),
    },
    "user": {"id": ("id", "user_id", "userid", "visitorid", "reviewerID", "customer_id")},
    "kg": {
        "head": ("head", "head_id", "subject"),
        "relation": ("relation", "relation_id", "predicate"),
        "tail": ("tail", "tail_id", "object"),
    },
    "link": {
        "product": ("product", "product_id", "item_id", "itemid", "asin", "sku"),
        "entity": ("entity", "entity_id"),
    },
}
DEFAULT_OPTIONS: dict[str, Any] = {
    "event_type": "purchase",
    "rating_scale": 5.0,
    "category_separator": " > ",
}
OPTIONAL_FIELDS = {
    "title",
    "description",
    "features",
    "brand",
    "category",
    "price",
    "type",
    "timestamp",
    "value",
}


@dataclass
class ColumnMapping:
    """Which input column holds each schema field, per section, plus reader options."""

    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_OPTIONS))
    #: Event words of the input mapped to schema event types (``event.listen=view``),
    #: tried before the schema's own words (:data:`kgrec.kg.schema.EVENT_ALIASES`).
    event_words: dict[str, str] = field(default_factory=dict)

    def set(self, item: str) -> None:
        """Apply one ``section.field=column`` override (``options.NAME=VALUE`` for options,
        ``event.WORD=TYPE`` to map an event word the schema does not know)."""
        target, sep, value = item.partition("=")
        section, dot, name = target.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"mapping {item!r}: expected section.field=column")
        if section == "event" and name not in DEFAULT_COLUMNS["event"]:
            try:
                self.event_words[name.strip().lower()] = schema.event_type(value)
            except SchemaError as exc:
                raise ConfigError(f"mapping {item!r}: {exc}") from None
            return
        if section == "options":
            if name not in DEFAULT_OPTIONS:
                raise ConfigError(
                    f"mapping {item!r}: unknown option; known: {', '.join(DEFAULT_OPTIONS)}"
                )
            kind = type(DEFAULT_OPTIONS[name])
            self.options[name] = kind(value)
            return
        if section not in DEFAULT_COLUMNS or name not in DEFAULT_COLUMNS[section]:
            known = ", ".join(f"{s}.{f}" for s, fs in DEFAULT_COLUMNS.items() for f in fs)
            raise ConfigError(f"mapping {item!r}: unknown field; known: {known}")
        self.columns.setdefault(section, {})[name] = value.strip()

    def resolve(self, section: str, frame: pd.DataFrame, file: str) -> dict[str, str]:
        """Field -> column present in ``frame``; raises InputError for a missing required one."""
        out: dict[str, str] = {}
        for name, candidates in DEFAULT_COLUMNS[section].items():
            mapped = self.columns.get(section, {}).get(name)
            if mapped is not None:
                if mapped not in frame.columns:
                    raise InputError(
                        f"mapped column {mapped!r} is not in the file",
                        file=file,
                        row=1,
                        field=f"{section}.{name}",
                    )
                out[name] = mapped
                continue
            found = next((c for c in candidates if c in frame.columns), None)
            if found is not None:
                out[name] = found
            elif name not in OPTIONAL_FIELDS:
                raise InputError(
                    f"no column for {section}.{name} (tried {', '.join(candidates)}; map one "
                    f"with --map {section}.{name}=COLUMN)",
                    file=file,
                    row=1,
                    field=f"{section}.{name}",
                )
        return out


def load_mapping(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ColumnMapping:
    """A mapping from a TOML file (optional) and ``section.field=column`` overrides."""
    mapping = ColumnMapping()
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("mapping file does not exist", file=str(path)) from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"bad TOML: {exc}", file=str(path)) from exc
        for section, values in raw.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            for name, value in values.items():
                mapping.set(f"{section}.{name}={value}")
    for item in overrides:
        mapping.set(item)
    return mapping
