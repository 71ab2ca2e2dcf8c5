"""The keyring records the SQL hands to the unwrap function, and how the runtime reads them.

The key subqueries pass ``unwrap_key(key_alias, records, keyring_integrity)``: each record
(and the newest revision of the keyring's integrity record) as one JSON object,
``to_json(named_struct(...))`` of every column a record's tag covers (binary columns as
hex). Why JSON: a Unity Catalog batch Python function gets its arguments as pandas Series;
eleven parallel arrays plus eleven integrity columns would make a 23-parameter function
whose arrays could be misaligned. One named object per record keeps three parameters of
plain types (``STRING``, ``ARRAY<STRING>``) and names every field.

Nothing passed is trusted: the runtime verifies every record's tag under the keyring's
integrity key (or, for ``aws-sm``, compares it with the secret it reads) before unwrapping
(docs/keyring-integrity.md). A field the tag does not cover (ids, timestamps, authors) is
not passed; :func:`passed_row` fills it with a neutral value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# The keyring table's columns a record's tag covers (keyring/integrity.py record_message).
RECORD_COLUMNS = ("key_alias", "key_version", "revision", "key_state", "key_type",
                  "kek_backend", "wrapped_key", "kek_id", "kek_version", "record_tag",
                  "integrity")
HEX_COLUMNS = frozenset({"wrapped_key", "record_tag"})
# Columns no tag covers, which the records are built with (record_from_row needs them).
_UNAUTHENTICATED = {"record_id": "", "created_by": "sql", "modified_by": "sql",
                    "created_at": None, "modified_at": None}


def record_struct_sql(alias: str) -> str:
    """The SQL struct of one record of relation ``alias`` as the unwrap function takes it
    (binary columns as hex; ``to_json`` of it is NULL when the record is)."""
    fields = ", ".join(
        f"'{c}', hex({alias}.{c})" if c in HEX_COLUMNS else f"'{c}', {alias}.{c}"
        for c in RECORD_COLUMNS
    )
    return f"named_struct({fields})"


def passed_row(value: Any) -> dict[str, Any] | None:
    """One record as passed (JSON text, or a mapping of the keyring table's columns) as a
    mapping ``record_from_row`` reads; None for NULL. Raises KeyringError when it is not a
    record's shape (the message names no value)."""
    from ...errors import KeyringError

    if value is None:
        return None
    try:
        row = json.loads(value) if isinstance(value, str) else dict(value)
        if not isinstance(row, dict):
            raise TypeError("not an object")
        for column in HEX_COLUMNS:
            if isinstance(row.get(column), str):
                row[column] = bytes.fromhex(row[column])
        for column in ("key_version", "revision"):
            if row.get(column) is not None and not isinstance(row[column], int):
                raise TypeError(column)
        if not isinstance(row.get("key_alias"), str) or row.get("key_version") is None \
                or not isinstance(row.get("wrapped_key"), (bytes, bytearray)):
            raise TypeError("incomplete")
    except (TypeError, ValueError):
        raise KeyringError("unwrap_key: a value passed as a keyring record is not one: "
                           "refused") from None
    return {**_UNAUTHENTICATED, "kek_id": "", "kek_version": "", **row}


def as_record(row: Mapping[str, Any]):
    """The :class:`DekRecord` of a passed row; KeyringError when a field has no valid value."""
    from ...errors import KeyringError
    from ...keyring.table_store import record_from_row

    try:
        return record_from_row(row)
    except (KeyError, TypeError, ValueError):
        raise KeyringError("unwrap_key: a record passed lacks a valid state, key type or "
                           "back end: refused") from None


def passed_keyring(text: Any, function: str) -> dict[str, Any]:
    """The keyring JSON a key subquery passes a batch function (``key_alias``, ``records``,
    ``integrity`` and, for the masks, ``domains``), with ``records`` as a list; KeyringError
    (naming no value) when it is not of that shape."""
    from ...errors import KeyringError

    try:
        passed = json.loads(text)
        return {**passed, "key_alias": passed["key_alias"],
                "records": list(passed["records"] or []), "integrity": passed.get("integrity")}
    except (TypeError, ValueError, KeyError):
        raise KeyringError(f"{function}: the keyring passed is not the key subquery's: "
                           "refused") from None
