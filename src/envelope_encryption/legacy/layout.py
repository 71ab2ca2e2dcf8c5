"""What the original notebooks left in a catalog, and how to recognise it.

Their AWS KMS and Azure Key Vault variants kept wrapped DEKs in ``<catalog>.crypto.keyvault``
(the name this project's keyring table had before it became ``dek_keyring``), with their
own columns, and created SQL functions in ``<catalog>.crypto``. This module names those
objects and their keys, and tells a table of theirs from one of ours by its columns. It only
looks: nothing here writes to, or drops, anything of theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Settings

# Where the notebooks put everything: fixed names, not parameters of theirs.
NOTEBOOK_SCHEMA = "crypto"
NOTEBOOK_TABLE = "keyvault"
# Their function names that this project never uses (``unwrap_key`` is also ours).
NOTEBOOK_FUNCTIONS = (
    "unwrap_kms_key", "unwrap_akv_key", "get_latest_dek_version", "get_encrypted_dek",
    "encrypt_kms", "decrypt_kms", "encrypt", "decrypt",
)
# The columns every variant of their table has, besides the scope column.
_NOTEBOOK_COLUMNS = {"key_enabled", "key_version", "key_type", "key"}
# A column only this project's keyring table has.
_OUR_COLUMN = "wrapped_key"

OURS = "ours"
AWS_KMS = "aws-kms"
AZURE = "azure"
# The variants import_legacy reads, by --kek-backend.
SUPPORTED_VARIANTS = ("aws-sm", AWS_KMS, AZURE)


def table_kind(columns: Iterable[str]) -> str | None:
    """``ours``, ``aws-kms`` (the notebooks' table, scope column ``key_alias``), ``azure``
    (scope column ``key_name``), or None (some other table)."""
    names = {c.lower() for c in columns}
    if _OUR_COLUMN in names:
        return OURS
    if _NOTEBOOK_COLUMNS <= names:
        if "key_alias" in names:
            return AWS_KMS
        if "key_name" in names:
            return AZURE
    return None


def scope_column(kind: str) -> str:
    """The column of the notebooks' table that holds ``<catalog>.<schema>``."""
    return "key_name" if kind == AZURE else "key_alias"


def notebook_kms_alias(metastore_id: str, catalog: str) -> str:
    """The notebooks' KMS key alias."""
    return f"alias/unity_catalog/{metastore_id}/{catalog}/cmk"


def notebook_azure_key_name(metastore_id: str, catalog: str) -> str:
    """The notebooks' Key Vault RSA key: underscores of the catalog become dashes."""
    return f"unity-catalog-{metastore_id}-{catalog}-kek".replace("_", "-")


def notebook_kms_context(metastore_id: str, catalog: str) -> dict[str, str]:
    """The encryption context of every KMS call the notebooks made."""
    return {"metastore/catalog": f"{metastore_id}/{catalog}"}


@dataclass
class NotebookObjects:
    """The notebooks' objects found in a catalog."""

    catalog: str
    table: str = ""           # full name of their key table, when found
    kind: str | None = None   # aws-kms or azure (from the table's columns)
    functions: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.table or self.functions)

    def describe(self) -> str:
        parts = []
        if self.table:
            parts.append(f"their key table {self.table} ({self.kind} layout)")
        if self.functions:
            parts.append(f"their functions {', '.join(self.functions)} in "
                         f"{self.catalog}.{NOTEBOOK_SCHEMA}")
        return " and ".join(parts)

    def import_command(self) -> str:
        backend = self.kind or "aws-kms|azure"
        return (f"the import_legacy job (databricks bundle run -t {backend} import_legacy, "
                f"or import_legacy --kek-backend={backend} --catalog={self.catalog}; see "
                "docs/migration.md)")


def default_kek_is_theirs(settings: Settings) -> str:
    """Why the configured KEK would be the notebooks' own key, or '' when it is not.

    This project's default KEK names (a KMS alias, a Key Vault key name) are the notebooks'
    names. Where their objects are present, a KEK name must be given explicitly, so no job
    adopts (and enables rotation on, or re-describes) a key they own without being asked.
    """
    ms, catalog = settings.metastore_id, settings.catalog
    if settings.backend == AWS_KMS and not (settings.option("kms-key-id")
                                           or settings.option("kms-key-alias")):
        return (f"the default KEK alias is the notebooks' key {notebook_kms_alias(ms, catalog)}: "
                "set --kms-key-alias (bundle variable kms_key_alias) to a new alias such as "
                f"alias/envelope_encryption/{ms}/{catalog}/kek, or name their key "
                "explicitly with --kms-key-alias/--kms-key-id to adopt it as this project's KEK")
    if settings.backend == AZURE and not settings.option("azure-key-name"):
        return (f"the default KEK name is the notebooks' key "
                f"{notebook_azure_key_name(ms, catalog)}: set --azure-key-name (bundle variable "
                f"azure_key_name) to a new key name such as "
                f"{notebook_azure_key_name(ms, catalog).removesuffix('-kek')}-ee-kek, or name "
                "their key explicitly to adopt it as this project's KEK")
    return ""
