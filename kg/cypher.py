"""Cypher statements for the Neo4j store, built by small pure functions.

Labels, relationship types and property names come only from :mod:`kgrec.kg.schema` (validated by
:func:`kgrec.kg.schema.label` / :func:`kgrec.kg.schema.rel_type` and backtick-quoted); every
value is a query parameter. Write statements take ``$rows``: flat maps shaped by
:mod:`kgrec.kg.store.neo4j` (``{id, <property>...}`` for nodes; relationships grouped by source node
as ``{src, rels: [{dst, <property>...}]}``), with ``null`` for a missing value.

Properties are written one by one, never as ``SET n += map``: a dynamic map could touch the
``id`` the statement seeks on, so the planner would add an Eager step that buffers the
whole batch. A null value is skipped on create and keeps the stored value on merge
(``coalesce``), so NA never overwrites data and never becomes a value.
"""

from __future__ import annotations

from kgrec.errors import UsageError
from kgrec.kg import schema


def quote(name: str) -> str:
    """Backtick-quote an identifier (labels, types and properties are schema names anyway)."""
    return "`" + name.replace("`", "``") + "`"


def constraint_name(label: str) -> str:
    return f"kgrec_{schema.label(label).lower()}_{schema.NODE_KEY}"


def create_constraint(label: str) -> str:
    """Uniqueness constraint on the node key (also the index every MERGE and MATCH seeks on)."""
    return (
        f"CREATE CONSTRAINT {quote(constraint_name(label))} IF NOT EXISTS "
        f"FOR (n:{quote(schema.label(label))}) REQUIRE n.{quote(schema.NODE_KEY)} IS UNIQUE"
    )


def _props(label_or_rel: str) -> list[str]:
    if label_or_rel in schema.NODE_PROPERTIES:
        return [p for p, _ in schema.NODE_PROPERTIES[label_or_rel]]
    return [p for p, _ in schema.rel_spec(label_or_rel).properties]


def _map(props: list[str], var: str = "row") -> str:
    """``{`a`: row.`a`, ...}`` (empty string for no properties)."""
    return "{" + ", ".join(f"{quote(p)}: {var}.{quote(p)}" for p in props) + "}" if props else ""


def _keep_set(var: str, props: list[str], row: str = "row") -> str:
    """``SET`` each property to the row's value, keeping the stored one where the row has null."""
    if not props:
        return ""
    parts = [f"{var}.{quote(p)} = coalesce({row}.{quote(p)}, {var}.{quote(p)})" for p in props]
    return "SET " + ", ".join(parts)


def create_nodes(label: str) -> str:
    """Create a batch of new nodes (the uniqueness constraint rejects an existing key)."""
    lab = schema.label(label)
    props = [schema.NODE_KEY, *_props(lab)]
    return f"UNWIND $rows AS row\nCREATE (n:{quote(lab)} {_map(props)})"


def merge_nodes(label: str) -> str:
    """Merge a batch of nodes by key; non-null properties overwrite, null ones keep the stored."""
    lab = schema.label(label)
    return (
        "UNWIND $rows AS row\n"
        f"MERGE (n:{quote(lab)} {{{quote(schema.NODE_KEY)}: row.{quote(schema.NODE_KEY)}}})\n"
        + _keep_set("n", _props(lab))
    ).rstrip("\n")


def _endpoints(rel: str) -> str:
    spec = schema.rel_spec(rel)
    key = quote(schema.NODE_KEY)
    return (
        f"MATCH (s:{quote(spec.src)} {{{key}: row.src}})\n"
        f"MATCH (d:{quote(spec.dst)} {{{key}: row.dst}})\n"
    )


#: A property set and removed at once: writing it takes the node's write lock until commit.
LOCK = "_kgrec_lock"


def _grouped_endpoints(rel: str, *, lock_source: bool = False) -> str:
    """``$rows`` holds one map per source node, ``{src, rels: [{dst, <property>...}]}``:
    the source is looked up once per group instead of once per relationship.
    ``lock_source``: take the source node's write lock first, so that a check-then-create
    of two concurrent loads runs one after the other (MERGE locks by itself)."""
    spec = schema.rel_spec(rel)
    key = quote(schema.NODE_KEY)
    lock = (f"SET s.{quote(LOCK)} = true REMOVE s.{quote(LOCK)}\nWITH s, g\n"
            if lock_source else "")
    return (
        "UNWIND $rows AS g\n"
        f"MATCH (s:{quote(spec.src)} {{{key}: g.src}})\n"
        + lock
        + "UNWIND g.rels AS row\n"
        f"MATCH (d:{quote(spec.dst)} {{{key}: row.dst}})\n"
    )


def merge_rels(rel: str) -> str:
    """Merge relationships grouped by source on ``(src, dst, *key)``; key values non-null.

    Returns ``matched``: relationships whose two end nodes exist (fewer than sent means
    missing nodes).
    """
    spec = schema.rel_spec(rel)
    keys = _map(list(spec.key))
    pattern = f"[r:{quote(spec.name)}{' ' + keys if keys else ''}]"
    rest = _keep_set("r", [p for p in _props(rel) if p not in spec.key])
    return (
        _grouped_endpoints(rel)
        + f"MERGE (s)-{pattern}->(d)\n"
        + (rest + "\n" if rest else "")
        + "RETURN count(*) AS matched"
    )


def create_rels(rel: str) -> str:
    """Create relationships grouped by source, skipping MERGE's look-up of existing ones.

    Only for rows known to be new: the store uses it while, under :func:`lock_rel_type`, the
    type holds exactly what this load created (rows are deduplicated on their key). Returns
    ``matched`` as :func:`merge_rels`.
    """
    props = _map(_props(rel))
    return (
        _grouped_endpoints(rel)
        + f"CREATE (s)-[r:{quote(schema.rel_spec(rel).name)}{' ' + props if props else ''}]->(d)\n"
        "RETURN count(*) AS matched"
    )


#: Label of the lock nodes, one per relationship type, that writers of a type take in turn.
LOAD_LOCK = "KgrecLoadLock"


def create_lock_constraint() -> str:
    """One lock node per type, even when two loads create it at once."""
    return (f"CREATE CONSTRAINT kgrec_load_lock IF NOT EXISTS FOR (l:{quote(LOAD_LOCK)}) "
            "REQUIRE l.type IS UNIQUE")


def lock_rel_type() -> str:
    """Take the write lock of relationship type ``$type`` until the transaction ends."""
    return (f"MERGE (l:{quote(LOAD_LOCK)} {{type: $type}})\n"
            f"SET l.{quote(LOCK)} = true REMOVE l.{quote(LOCK)}")


def merge_rels_null_key(rel: str, null_keys: tuple[str, ...]) -> str:
    """Like :func:`merge_rels` for rows whose key properties ``null_keys`` are null.

    MERGE cannot match on a null property, so this finds an existing relationship with the
    same non-null key values and those properties absent, and creates one only when there
    is none (rows are deduplicated beforehand, so one batch never holds the same key twice).
    The source node's lock makes two concurrent loads check and create one after the other.
    """
    spec = schema.rel_spec(rel)
    unknown = set(null_keys) - set(spec.key)
    if unknown or not null_keys:
        raise UsageError(f"{rel}: null_keys {sorted(null_keys)} must be a subset of {spec.key}")
    cond = [
        f"old.{quote(k)} IS NULL" if k in null_keys else f"old.{quote(k)} = row.{quote(k)}"
        for k in spec.key
    ]
    t = quote(spec.name)
    update = _keep_set("old", [p for p in _props(rel) if p not in spec.key])
    return (
        _grouped_endpoints(rel, lock_source=True)
        + f"OPTIONAL MATCH (s)-[old:{t}]->(d) WHERE {' AND '.join(cond)}\n"
        "WITH s, d, row, head(collect(old)) AS old\n"
        f"FOREACH (_ IN CASE WHEN old IS NULL THEN [1] ELSE [] END |\n"
        f"  CREATE (s)-[:{t} {_map(_props(rel))}]->(d))\n"
        + (f"FOREACH (_ IN CASE WHEN old IS NULL THEN [] ELSE [1] END | {update})\n" * bool(update))
        + "RETURN count(*) AS matched"
    )


def missing_endpoints(rel: str) -> str:
    """Which ``src``/``dst`` ids of ``$rows`` have no node (for the error message)."""
    spec = schema.rel_spec(rel)
    key = quote(schema.NODE_KEY)
    return (
        "UNWIND $rows AS row\n"
        f"OPTIONAL MATCH (s:{quote(spec.src)} {{{key}: row.src}})\n"
        f"OPTIONAL MATCH (d:{quote(spec.dst)} {{{key}: row.dst}})\n"
        "WITH row, s, d WHERE s IS NULL OR d IS NULL\n"
        "RETURN row.src AS src, s IS NOT NULL AS src_found, "
        "row.dst AS dst, d IS NOT NULL AS dst_found\n"
        "LIMIT 5"
    )


def absent_nodes(label: str) -> str:
    """How many of the ids ``$ids`` have no ``label`` node, and one of them (no row if none)."""
    return (
        "UNWIND $ids AS id\n"
        f"OPTIONAL MATCH (n:{quote(schema.label(label))} {{{quote(schema.NODE_KEY)}: id}})\n"
        "WITH id WHERE n IS NULL\n"
        "RETURN count(id) AS absent, min(id) AS example"
    )


def read_nodes(label: str) -> str:
    """One page of nodes after key ``$after``, at most ``$limit``, ordered by key.

    Keyset pagination on the unique index; the page comes back as one record, ``rows`` a
    list of ``[id, <property>...]`` lists (nulls kept), which the driver decodes far faster
    than one record per node.
    """
    lab = schema.label(label)
    key = quote(schema.NODE_KEY)
    cols = ", ".join(f"n.{quote(c)}" for c in schema.node_columns(lab))
    return (
        f"MATCH (n:{quote(lab)}) WHERE n.{key} > $after\n"
        f"WITH n ORDER BY n.{key} LIMIT $limit\n"
        f"RETURN collect([{cols}]) AS rows"
    )


def read_rels(rel: str) -> str:
    """The ``rel`` relationships of one page of source nodes: the first ``$limit`` sources
    with key after ``$after``, returned as one record ``(last, rows)``.

    ``last`` is the page's last source key (the next ``$after``; no record once the sources
    are exhausted); ``rows`` lists ``[src, dst, <property>...]`` ordered by
    ``(src, dst, *key)``, nulls sorting last as in pandas. Sources without such a
    relationship still advance the page.
    """
    spec = schema.rel_spec(rel)
    key = quote(schema.NODE_KEY)
    cols = ", ".join(["src", "dst", *(f"r.{quote(p)}" for p, _ in spec.properties)])
    order = ", ".join(["src", "dst", *(f"r.{quote(k)}" for k in spec.key)])
    return (
        f"MATCH (s:{quote(spec.src)}) WHERE s.{key} > $after\n"
        f"WITH s ORDER BY s.{key} LIMIT $limit\n"
        f"WITH collect(s) AS page, max(s.{key}) AS last\n"
        "UNWIND page AS s\n"
        f"OPTIONAL MATCH (s)-[r:{quote(spec.name)}]->(d:{quote(spec.dst)})\n"
        f"WITH last, s.{key} AS src, d.{key} AS dst, r ORDER BY {order}\n"
        f"RETURN last, collect(CASE WHEN r IS NULL THEN null ELSE [{cols}] END) AS rows"
    )


def count_nodes(label: str) -> str:
    return f"MATCH (n:{quote(schema.label(label))}) RETURN count(n) AS n"


def count_rels(rel: str) -> str:
    return f"MATCH ()-[r:{quote(schema.rel_type(rel))}]->() RETURN count(r) AS n"


def delete_recommendations() -> str:
    """Delete the RECOMMENDED edges of ``$users`` ({src, model_version} maps) of that version."""
    spec = schema.RECOMMENDED_SPEC
    return (
        "UNWIND $users AS u\n"
        f"MATCH (s:{quote(spec.src)} {{{quote(schema.NODE_KEY)}: u.src}})"
        f"-[r:{quote(spec.name)}]->()\n"
        "WHERE r.`model_version` = u.model_version\n"
        "DELETE r"
    )


def create_recommendations() -> str:
    """Create RECOMMENDED edges (old ones of the same users and version deleted first)."""
    spec = schema.RECOMMENDED_SPEC
    return (
        "UNWIND $rows AS row\n"
        + _endpoints(spec.name)
        + f"CREATE (s)-[r:{quote(spec.name)} {_map(_props(spec.name))}]->(d)\n"
        "RETURN count(*) AS matched"
    )


def recommendation_versions() -> str:
    """The distinct ``model_version`` values of the RECOMMENDED edges."""
    return (f"MATCH ()-[r:{quote(schema.RECOMMENDED_SPEC.name)}]->()\n"
            "RETURN DISTINCT r.`model_version` AS version")


def delete_recommendation_versions(batch: int = 10_000) -> str:
    """Delete the RECOMMENDED edges of ``$versions`` in batches (auto-commit: ``run``)."""
    return (f"MATCH ()-[r:{quote(schema.RECOMMENDED_SPEC.name)}]->()\n"
            "WHERE r.`model_version` IN $versions\n"
            f"CALL (r) {{ DELETE r }} IN TRANSACTIONS OF {int(batch)} ROWS")


def delete_all(batch: int = 10_000) -> str:
    """Delete every node and relationship in batches (auto-commit: ``run``, not execute_write)."""
    return (
        "MATCH (n) CALL (n) { DETACH DELETE n } "
        f"IN TRANSACTIONS OF {int(batch)} ROWS"
    )


# -- exploration (kgrec.kg.graph_sources): bounded reads, every value a parameter -----------------

def _node_key_expr(var: str) -> str:
    """``"<Label>:<id>"`` of a node, the key explore results use on both stores."""
    return f"labels({var})[0] + ':' + {var}.{quote(schema.NODE_KEY)}"


def explore_expand(label: str) -> str:
    """Distinct neighbours of the ``label`` nodes whose id is in ``$ids``, over relationship
    types ``$types`` in either direction, leaving out keys in ``$seen``: the first ``$cap``
    by (label, id). The server scans a hub's relationships, but never returns more than
    ``$cap`` rows."""
    key = quote(schema.NODE_KEY)
    return (
        f"MATCH (n:{quote(schema.label(label))}) WHERE n.{key} IN $ids\n"
        "MATCH (n)-[r]-(m) WHERE type(r) IN $types\n"
        f"WITH DISTINCT labels(m)[0] AS label, m.{key} AS id\n"
        "WHERE NOT label + ':' + id IN $seen\n"
        "RETURN label, id ORDER BY label, id LIMIT $cap"
    )


def explore_nodes(label: str) -> str:
    """The properties of the ``label`` nodes whose id is in ``$ids``."""
    key = quote(schema.NODE_KEY)
    return (f"MATCH (n:{quote(schema.label(label))}) WHERE n.{key} IN $ids\n"
            f"RETURN n.{key} AS id, properties(n) AS props")


def explore_edges(rel: str) -> str:
    """The ``rel`` relationships from sources ``$src`` to targets ``$dst`` (ids), ordered by
    (src, dst, then the type's key) as a snapshot orders them, at most ``$cap``."""
    spec = schema.rel_spec(rel)
    key = quote(schema.NODE_KEY)
    props = ", ".join(f"r.{quote(p)} AS {quote(p)}" for p, _ in spec.properties)
    order = ", ".join(["src", "dst", *(f"r.{quote(k)}" for k in spec.key)])
    return (
        f"MATCH (a:{quote(spec.src)})-[r:{quote(spec.name)}]->(b:{quote(spec.dst)})\n"
        f"WHERE a.{key} IN $src AND b.{key} IN $dst\n"
        f"RETURN a.{key} AS src, b.{key} AS dst{', ' + props if props else ''}\n"
        f"ORDER BY {order} LIMIT $cap"
    )


def explore_degrees(label: str) -> str:
    """Distinct neighbours over ``$types`` of the ``label`` nodes whose id is in ``$ids``."""
    key = quote(schema.NODE_KEY)
    return (f"MATCH (n:{quote(schema.label(label))}) WHERE n.{key} IN $ids\n"
            "OPTIONAL MATCH (n)-[r]-(m) WHERE type(r) IN $types\n"
            f"RETURN n.{key} AS id, count(DISTINCT m) AS degree")


def explore_paths(max_hops: int) -> str:
    """Node-key sequences of the simple paths of at most ``max_hops`` relationships (types
    ``$types``, any direction) from user ``$user`` to product ``$product``, at most ``$cap``
    distinct ones."""
    if not isinstance(max_hops, int) or max_hops < 1:
        raise UsageError(f"max_hops must be a positive integer, got {max_hops!r}")
    key = quote(schema.NODE_KEY)
    return (
        f"MATCH (u:{quote(schema.USER)} {{{key}: $user}}), "
        f"(p:{quote(schema.PRODUCT)} {{{key}: $product}})\n"
        f"MATCH path = (u)-[rels*1..{max_hops}]-(p)\n"
        "WHERE all(r IN rels WHERE type(r) IN $types)\n"
        f"WITH DISTINCT [n IN nodes(path) | {_node_key_expr('n')}] AS keys\n"
        # simple paths only (a relationship path may come back to a node), then the cap
        "WHERE all(i IN range(0, size(keys) - 2) WHERE NOT keys[i] IN keys[i + 1..])\n"
        "RETURN keys LIMIT $cap"
    )


def browser_neighbourhood(label: str, id_: str, hops: int, types: list[str], limit: int) -> str:
    """A Cypher query to paste into Neo4j Browser that draws the same neighbourhood (values
    written as literals, escaped as JSON strings, which Cypher reads the same way)."""
    import json

    names = ", ".join(json.dumps(schema.rel_type(t)) for t in types)
    return (
        f"MATCH path = (n:{quote(schema.label(label))} {{{quote(schema.NODE_KEY)}: "
        f"{json.dumps(str(id_))}}})-[rels*0..{int(hops)}]-(m)\n"
        f"WHERE all(r IN rels WHERE type(r) IN [{names}])\n"
        f"RETURN path LIMIT {int(limit)}"
    )
