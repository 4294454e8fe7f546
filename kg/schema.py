"""The graph schema in one place: node labels, relationship types, keys and properties.

Every Cypher statement takes its labels and relationship types from here (validated by
:func:`label` and :func:`rel_type`), never from raw input. Node keys are the ``id``
property (a string); relationship tables carry ``src`` and ``dst`` node ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from kgrec.errors import SchemaError

USER = "User"
PRODUCT = "Product"
CATEGORY = "Category"
BRAND = "Brand"
ENTITY = "Entity"

NODE_KEY = "id"

#: Node label -> ordered (property, dtype) pairs besides the key. dtypes are pandas dtypes.
NODE_PROPERTIES: dict[str, tuple[tuple[str, str], ...]] = {
    USER: (("attributes", "string"),),
    PRODUCT: (
        ("title", "string"),
        ("description", "string"),
        ("features", "string"),
        ("brand", "string"),
        ("category_path", "string"),
        ("price", "Float64"),
        ("attributes", "string"),
    ),
    CATEGORY: (("name", "string"), ("level", "Int64")),
    BRAND: (("name", "string"),),
    ENTITY: (("name", "string"),),
}


@dataclass(frozen=True)
class RelSpec:
    """A relationship type: its end labels, the properties it carries and its merge key."""

    name: str
    src: str
    dst: str
    properties: tuple[tuple[str, str], ...] = ()
    #: Properties that, with (src, dst), identify one relationship (MERGE key).
    key: tuple[str, ...] = ()


_EVENT_PROPS = (("timestamp", "Int64"), ("value", "Float64"), ("weight", "Float64"))

VIEWED, CARTED, PURCHASED, RATED = "VIEWED", "CARTED", "PURCHASED", "RATED"
INTERACTIONS: tuple[str, ...] = (VIEWED, CARTED, PURCHASED, RATED)

IN_CATEGORY, SUBCATEGORY_OF, HAS_BRAND = "IN_CATEGORY", "SUBCATEGORY_OF", "HAS_BRAND"
ALSO_BOUGHT, ALSO_VIEWED = "ALSO_BOUGHT", "ALSO_VIEWED"
LINKED_TO, RELATED = "LINKED_TO", "RELATED"
RECOMMENDED = "RECOMMENDED"

RELATIONSHIPS: dict[str, RelSpec] = {
    **{
        name: RelSpec(name, USER, PRODUCT, _EVENT_PROPS, key=("timestamp",))
        for name in INTERACTIONS
    },
    IN_CATEGORY: RelSpec(IN_CATEGORY, PRODUCT, CATEGORY),
    SUBCATEGORY_OF: RelSpec(SUBCATEGORY_OF, CATEGORY, CATEGORY),
    HAS_BRAND: RelSpec(HAS_BRAND, PRODUCT, BRAND),
    ALSO_BOUGHT: RelSpec(ALSO_BOUGHT, PRODUCT, PRODUCT),
    ALSO_VIEWED: RelSpec(ALSO_VIEWED, PRODUCT, PRODUCT),
    LINKED_TO: RelSpec(LINKED_TO, PRODUCT, ENTITY),
    # Knowledge-graph relation names come from input data, so they are a property, not a type.
    RELATED: RelSpec(RELATED, ENTITY, ENTITY, (("relation", "string"),), key=("relation",)),
}

#: Relationships written by fusion's batch scoring (not part of the ingested graph).
RECOMMENDED_SPEC = RelSpec(
    RECOMMENDED,
    USER,
    PRODUCT,
    (
        ("score", "Float64"),
        ("score_gnn", "Float64"),
        ("score_text", "Float64"),
        ("rank", "Int64"),
        ("model_version", "string"),
        ("created_at", "Int64"),
    ),
    key=("model_version",),
)

#: Default weight of one event of each interaction type (purchase > cart > view);
#: ratings use their value scaled to [0, 1] times this weight. Overridable in the config.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {VIEWED: 0.25, CARTED: 0.5, PURCHASED: 1.0, RATED: 1.0}

#: Event-type words accepted in input files, mapped to relationship types.
EVENT_ALIASES: dict[str, str] = {
    "view": VIEWED,
    "viewed": VIEWED,
    "click": VIEWED,
    "cart": CARTED,
    "carted": CARTED,
    "addtocart": CARTED,
    "add_to_cart": CARTED,
    "purchase": PURCHASED,
    "purchased": PURCHASED,
    "buy": PURCHASED,
    "transaction": PURCHASED,
    "rating": RATED,
    "rated": RATED,
    "rate": RATED,
    "review": RATED,
}

NODE_LABELS: tuple[str, ...] = tuple(NODE_PROPERTIES)


def label(name: str) -> str:
    """Return ``name`` if it is a schema node label, else raise :class:`SchemaError`."""
    if name not in NODE_PROPERTIES:
        raise SchemaError(f"unknown node label {name!r}; known: {', '.join(NODE_LABELS)}")
    return name


def rel_type(name: str) -> str:
    """Return ``name`` if it is a schema relationship type, else raise :class:`SchemaError`."""
    if name not in RELATIONSHIPS and name != RECOMMENDED:
        raise SchemaError(f"unknown relationship type {name!r}; known: {', '.join(RELATIONSHIPS)}")
    return name


def rel_spec(name: str) -> RelSpec:
    """The :class:`RelSpec` of a relationship type (RECOMMENDED included)."""
    return RECOMMENDED_SPEC if rel_type(name) == RECOMMENDED else RELATIONSHIPS[name]


def row_key(name: str) -> list[str]:
    """The columns that identify a row of a node label or relationship type: the id, or
    src, dst and the type's key properties (what both stores and the bulk export merge on)."""
    if name in NODE_PROPERTIES:
        return [NODE_KEY]
    return ["src", "dst", *rel_spec(name).key]


def node_columns(name: str) -> list[str]:
    """Column order of a node table: the key, then the label's properties."""
    return [NODE_KEY, *(prop for prop, _ in NODE_PROPERTIES[label(name)])]


def rel_columns(name: str) -> list[str]:
    """Column order of a relationship table: src, dst, then the type's properties."""
    return ["src", "dst", *(prop for prop, _ in rel_spec(name).properties)]


def event_type(word: str) -> str:
    """Map an event word from input (``"purchase"``, ``"RATED"`` ...) to a relationship type."""
    key = word.strip().lower().replace("-", "_").replace(" ", "_")
    if key.upper() in INTERACTIONS:
        return key.upper()
    if key not in EVENT_ALIASES:
        raise SchemaError(f"unknown event type {word!r}; known: {', '.join(sorted(EVENT_ALIASES))}")
    return EVENT_ALIASES[key]
