"""Concurrent loads into Neo4j: a type's CREATE-or-MERGE choice and the retry of write work."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from neo4j import Result
from neo4j.exceptions import ConstraintError, TransientError

from kgrec.kg import cypher


class RelLoad:
    """One load's writes of one relationship type, for the CREATE path.

    Every batch of every load takes the type's lock node first, so batches of one type run
    one at a time. Under that lock, if the type holds exactly the relationships this load has
    created (none at the start of a first load), nobody else wrote any: the rows, deduplicated
    on their key, are all new and CREATE is safe. Once another load has written (or the type
    was not empty at the start), the count differs and this load MERGEs to the end. A batch
    rolled back after :meth:`wrote` leaves the count short of ``expected``: MERGE, the safe
    side.
    """

    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.create = cypher.create_rels(rel)
        self.expected: int | None = 0  # None: MERGE from now on
        self.batches = {"create": 0, "merge": 0}

    def owns(self, stored: int) -> bool:
        if stored != self.expected:
            self.expected = None
        return self.expected is not None

    def wrote(self, created: int, create: bool) -> None:
        self.batches["create" if create else "merge"] += 1
        if self.expected is not None:
            self.expected += created


class RunAgain(Exception):
    """Raised inside a transaction function to roll back and run the batch again at once."""


def retry(call: Callable[..., Any], *args: Any, tries: int = 5) -> Any:
    """``call(*args)``, again after :class:`RunAgain`, a ConstraintError (two concurrent
    MERGEs of one new node: a known Neo4j race, the retry finds the node) or a transient error
    that the driver's own retries did not outlast (a deadlock between concurrent loads)."""
    for attempt in range(tries):
        try:
            result = call(*args)
            return result.consume() if isinstance(result, Result) else result
        except RunAgain:
            continue
        except (ConstraintError, TransientError):
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    return call(*args)
