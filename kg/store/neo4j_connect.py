"""Connecting to a Neo4j server: the driver, the wait for a starting server, credential errors."""

from __future__ import annotations

import time

from neo4j import GraphDatabase
from neo4j.exceptions import AuthError, ClientError, ServiceUnavailable

from kgrec.errors import StoreError
from kgrec.kg.store.neo4j import Neo4jStore
from kgrec.settings import Neo4jConfig


def _auth_error(settings: Neo4jConfig, password: str) -> StoreError:
    where = f"Neo4j at {settings.uri}"
    fix = Neo4jConfig.PASSWORD_HINT
    if not password:
        return StoreError(f"{where} needs a password: {fix}")
    return StoreError(f"{where} refused the credentials of user {settings.user!r}: {fix}")


def connect(settings: Neo4jConfig, *, batch_size: int = 5_000) -> Neo4jStore:
    """Open a driver from ``settings`` (uri, user, password or a ``password_file``, database;
    no password means no authentication), check that the server answers (retrying for
    ``settings.wait_seconds``, so a server that is still starting is waited for), and return
    a store that owns the driver.

    Raises:
        StoreError: the server cannot be reached or refuses the credentials (the message names
            the uri and user, never the password).
    """
    password = settings.read_password()
    auth = (settings.user, password) if password else None
    driver = GraphDatabase.driver(settings.uri, auth=auth,
                                  max_transaction_retry_time=settings.retry_seconds)
    deadline = time.monotonic() + settings.wait_seconds
    while True:
        try:
            driver.verify_connectivity()
            break
        except AuthError:
            driver.close()
            raise _auth_error(settings, password) from None
        except ClientError as exc:  # e.g. too many wrong passwords: the user is locked a while
            driver.close()
            raise StoreError(f"Neo4j at {settings.uri}: {exc.message}") from None
        except (ServiceUnavailable, OSError) as exc:
            if time.monotonic() > deadline:
                driver.close()
                raise StoreError(
                    f"Neo4j at {settings.uri} does not answer ({exc}); start it with "
                    "`bash scripts/neo4j/server.sh start`"
                ) from None
            time.sleep(0.5)
    return Neo4jStore(driver, settings.database, batch_size, owns_driver=True)

