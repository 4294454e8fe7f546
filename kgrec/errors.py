"""One error tree for kgrec. Messages name the file, row and field wherever there is one."""

from __future__ import annotations


class KgrecError(Exception):
    """Root of every error kgrec raises on purpose."""


class UsageError(KgrecError, ValueError):
    """An argument out of its range or not fitting the data it is used on (a ValueError too,
    so callers that catch that keep working)."""


class ConfigError(KgrecError):
    """A setting is missing, unknown or of the wrong type."""


class InputError(KgrecError):
    """Bad input that cannot be repaired or rejected row by row (e.g. a missing file or column)."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file, self.row, self.field = file, row, field
        where = ", ".join(
            part
            for part in (
                f"file {file}" if file else "",
                f"row {row}" if row is not None else "",
                f"field {field!r}" if field else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class SchemaError(KgrecError):
    """A label, relationship type or property that the schema does not know."""


class MissingIdError(KgrecError):
    """An id looked up in an IdMap that does not hold it (artefacts join on ids, not order)."""


class StoreError(KgrecError):
    """A graph store could not be reached or refused an operation."""


class ModelError(KgrecError):
    """A model directory, checkpoint or artefact is missing or does not fit."""
