"""Validation and quoting of every identifier that reaches SQL or a cell's associated data.

Catalog, schema, table, column, function, credential and group names come from job
parameters and bundle variables. They are checked against a conservative pattern and then
quoted with backticks, so that none of them can change the meaning of a SQL statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigError

# Unity Catalog allows more, but a conservative set keeps AAD strings, SQL and key names
# unambiguous: letters, digits, underscores and dashes, starting with a letter or underscore.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")
# Group and credential names are free text in Unity Catalog; allow the usual characters but
# never quotes, backticks, backslashes or control characters.
_PRINCIPAL = re.compile(r"^[A-Za-z0-9_.@+\- ]{1,255}$")


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a safe identifier, else raise :class:`ConfigError`."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ConfigError(
            f"invalid {what} {name!r}: use letters, digits, '_' or '-', starting with a "
            "letter or '_' (at most 255 characters)"
        )
    return name


def validate_principal(name: str, what: str = "principal") -> str:
    """Return ``name`` if it is a safe group/credential name, else raise ConfigError."""
    if not isinstance(name, str) or not _PRINCIPAL.match(name):
        raise ConfigError(
            f"invalid {what} {name!r}: use letters, digits, spaces and . @ + _ - only"
        )
    return name


def quote(name: str, what: str = "identifier") -> str:
    """Backtick-quote one validated identifier."""
    return f"`{validate_identifier(name, what)}`"


def sql_string(value: str) -> str:
    """A SQL string literal for a validated principal name (group, credential)."""
    return "'" + validate_principal(value) + "'"


@dataclass(frozen=True)
class ColumnPlace:
    """Where a cell lives: ``catalog.schema.table.column``. Bound into every cell's AAD."""

    catalog: str
    schema: str
    table: str
    column: str

    def __post_init__(self) -> None:
        validate_identifier(self.catalog, "catalog")
        validate_identifier(self.schema, "schema")
        validate_identifier(self.table, "table")
        validate_identifier(self.column, "column")

    @property
    def scope(self) -> str:
        """The DEK scope (key alias) of this place: ``catalog.schema``."""
        return f"{self.catalog}.{self.schema}"

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}.{self.column}"


def parse_scope(scope: str) -> tuple[str, str]:
    """Split a ``catalog.schema`` key alias into validated parts."""
    parts = scope.split(".") if isinstance(scope, str) else []
    if len(parts) != 2:
        raise ConfigError(f"invalid key scope {scope!r}: expected '<catalog>.<schema>'")
    return validate_identifier(parts[0], "catalog"), validate_identifier(parts[1], "schema")


# The middle part of an equality domain's key scope: "$" is in no identifier, so a domain's
# scope can never be a schema's (docs/equality.md).
EQUALITY_SCOPE_MARK = "$equality"


def domain_scope(catalog: str, domain: str) -> str:
    """The key scope of an equality domain: ``catalog.$equality.domain``."""
    return (f"{validate_identifier(catalog, 'catalog')}.{EQUALITY_SCOPE_MARK}."
            f"{validate_identifier(domain, 'equality domain')}")


def parse_key_scope(scope: str) -> str:
    """Validate any key scope the keyring holds: a schema's ``catalog.schema`` or an
    equality domain's ``catalog.$equality.domain``; returns it unchanged."""
    parts = scope.split(".") if isinstance(scope, str) else []
    if len(parts) == 3 and parts[1] == EQUALITY_SCOPE_MARK:
        domain_scope(parts[0], parts[2])
    else:
        parse_scope(scope)
    return scope


def parse_table_name(name: str, default_catalog: str) -> tuple[str, str, str]:
    """Split ``[catalog.]schema.table`` into validated parts."""
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) == 2:
        parts = [default_catalog, *parts]
    if len(parts) != 3:
        raise ConfigError(f"invalid table name {name!r}: expected '[catalog.]schema.table'")
    return (
        validate_identifier(parts[0], "catalog"),
        validate_identifier(parts[1], "schema"),
        validate_identifier(parts[2], "table"),
    )
