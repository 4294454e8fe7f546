"""The Cypher builders: labels/types from the schema only, values only as parameters."""

from __future__ import annotations

import pytest

from kgrec.errors import SchemaError
from kgrec.kg import cypher, schema


def test_constraint_per_label_is_unique_on_the_key() -> None:
    assert cypher.create_constraint("Product") == (
        "CREATE CONSTRAINT `kgrec_product_id` IF NOT EXISTS "
        "FOR (n:`Product`) REQUIRE n.`id` IS UNIQUE"
    )
    names = {cypher.constraint_name(lab) for lab in schema.NODE_LABELS}
    assert names == {f"kgrec_{lab.lower()}_id" for lab in schema.NODE_LABELS}


def test_node_writes_unwind_rows_and_merge_on_the_key() -> None:
    assert cypher.merge_nodes("User") == (
        "UNWIND $rows AS row\nMERGE (n:`User` {`id`: row.`id`})\n"
        "SET n.`attributes` = coalesce(row.`attributes`, n.`attributes`)"
    )
    assert cypher.create_nodes("Entity").splitlines()[1] == (
        "CREATE (n:`Entity` {`id`: row.`id`, `name`: row.`name`})"
    )
    # Every product property is written, one by one (no `+= map`: no Eager in the plan).
    merge = cypher.merge_nodes("Product")
    for prop, _ in schema.NODE_PROPERTIES["Product"]:
        assert f"n.`{prop}` = coalesce(row.`{prop}`, n.`{prop}`)" in merge
    assert "+=" not in merge and "+=" not in cypher.create_nodes("Product")


def test_rel_merge_uses_the_schema_merge_key_and_groups_by_source() -> None:
    lines = cypher.merge_rels("RATED").splitlines()
    assert lines == [
        "UNWIND $rows AS g",
        "MATCH (s:`User` {`id`: g.src})",
        "UNWIND g.rels AS row",
        "MATCH (d:`Product` {`id`: row.dst})",
        "MERGE (s)-[r:`RATED` {`timestamp`: row.`timestamp`}]->(d)",
        "SET r.`value` = coalesce(row.`value`, r.`value`), "
        "r.`weight` = coalesce(row.`weight`, r.`weight`)",
        "RETURN count(*) AS matched",
    ]
    assert "MERGE (s)-[r:`RELATED` {`relation`: row.`relation`}]->(d)" in cypher.merge_rels(
        "RELATED"
    )
    # No merge key: one relationship per (src, dst).
    assert "MERGE (s)-[r:`IN_CATEGORY`]->(d)\nRETURN" in cypher.merge_rels("IN_CATEGORY")
    assert "MATCH (d:`Category` {`id`: row.dst})" in cypher.merge_rels("SUBCATEGORY_OF")


def test_first_load_creates_under_the_type_lock() -> None:
    lines = cypher.create_rels("RATED").splitlines()
    assert lines[:4] == cypher.merge_rels("RATED").splitlines()[:4]  # same grouped endpoints
    assert lines[4:] == ["CREATE (s)-[r:`RATED` {`timestamp`: row.`timestamp`, "
                         "`value`: row.`value`, `weight`: row.`weight`}]->(d)",
                         "RETURN count(*) AS matched"]
    assert cypher.lock_rel_type().splitlines() == [
        "MERGE (l:`KgrecLoadLock` {type: $type})",
        "SET l.`_kgrec_lock` = true REMOVE l.`_kgrec_lock`"]
    assert "REQUIRE l.type IS UNIQUE" in cypher.create_lock_constraint()


def test_null_key_statement_matches_absent_properties() -> None:
    q = cypher.merge_rels_null_key("RATED", ("timestamp",))
    # Concurrent loads: the source's write lock is taken before the existence check.
    assert q.index("SET s.`_kgrec_lock` = true REMOVE s.`_kgrec_lock`") < q.index("OPTIONAL")
    assert "_kgrec_lock" not in cypher.merge_rels("RATED")
    assert "OPTIONAL MATCH (s)-[old:`RATED`]->(d) WHERE old.`timestamp` IS NULL" in q
    assert "CREATE (s)-[:`RATED` {`timestamp`: row.`timestamp`, " in q
    assert "| SET old.`value` = coalesce(row.`value`, old.`value`), " in q
    # RELATED has no property besides its key: nothing to update on a match.
    related = cypher.merge_rels_null_key("RELATED", ("relation",))
    assert "old.`relation` IS NULL" in related and "SET old" not in related
    with pytest.raises(ValueError, match="subset"):
        cypher.merge_rels_null_key("RATED", ("relation",))
    with pytest.raises(ValueError):
        cypher.merge_rels_null_key("IN_CATEGORY", ())


def test_reads_are_ordered_for_deterministic_snapshots() -> None:
    q = cypher.read_nodes("Category")
    assert q == (
        "MATCH (n:`Category`) WHERE n.`id` > $after\n"
        "WITH n ORDER BY n.`id` LIMIT $limit\n"
        "RETURN collect([n.`id`, n.`name`, n.`level`]) AS rows"
    )
    r = cypher.read_rels("RATED").splitlines()
    assert r == [
        "MATCH (s:`User`) WHERE s.`id` > $after",
        "WITH s ORDER BY s.`id` LIMIT $limit",
        "WITH collect(s) AS page, max(s.`id`) AS last",
        "UNWIND page AS s",
        "OPTIONAL MATCH (s)-[r:`RATED`]->(d:`Product`)",
        "WITH last, s.`id` AS src, d.`id` AS dst, r ORDER BY src, dst, r.`timestamp`",
        "RETURN last, collect(CASE WHEN r IS NULL THEN null ELSE "
        "[src, dst, r.`timestamp`, r.`value`, r.`weight`] END) AS rows",
    ]
    assert "ORDER BY src, dst\n" in cypher.read_rels("ALSO_BOUGHT")
    assert "[src, dst] END" in cypher.read_rels("ALSO_BOUGHT")


def test_counts_recommendations_and_clear() -> None:
    assert cypher.count_nodes("Brand") == "MATCH (n:`Brand`) RETURN count(n) AS n"
    assert cypher.count_rels("RECOMMENDED") == (
        "MATCH ()-[r:`RECOMMENDED`]->() RETURN count(r) AS n"
    )
    delete = cypher.delete_recommendations()
    assert "WHERE r.`model_version` = u.model_version" in delete and delete.endswith("DELETE r")
    create = cypher.create_recommendations()
    assert "MATCH (s:`User` {`id`: row.src})" in create
    assert "CREATE (s)-[r:`RECOMMENDED` {`score`: row.`score`, " in create
    assert cypher.delete_all(500).endswith("IN TRANSACTIONS OF 500 ROWS")
    assert "$ids" in cypher.absent_nodes("Product")


def test_unknown_labels_and_types_are_refused() -> None:
    with pytest.raises(SchemaError):
        cypher.merge_nodes("Person) DETACH DELETE (n")
    with pytest.raises(SchemaError):
        cypher.merge_rels("KNOWS")
    with pytest.raises(SchemaError):
        cypher.count_rels("RATED]->() DETACH DELETE r //")
    assert cypher.quote("a`b") == "`a``b`"


def test_no_statement_inlines_a_value() -> None:
    statements = [cypher.merge_nodes(lab) for lab in schema.NODE_LABELS]
    statements += [cypher.merge_rels(rel) for rel in schema.RELATIONSHIPS]
    statements += [cypher.read_rels(rel) for rel in schema.RELATIONSHIPS]
    for q in statements:
        assert "'" not in q and '"' not in q, q
