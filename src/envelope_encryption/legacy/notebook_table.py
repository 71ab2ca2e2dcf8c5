"""The original notebooks' key table (aws-kms and azure variants): read and unwrap its DEKs.

Their table ``<catalog>.crypto.keyvault`` holds one row per DEK version of each scope
``<catalog>.<schema>`` (column ``key_alias`` in the KMS variant, ``key_name`` in the Azure
one), with ``key_enabled``, ``key_version``, ``key_type = ENCRYPTED_DEK`` and ``key``:

* aws-kms: ``key`` is the ``CiphertextBlob`` of KMS ``GenerateDataKey`` (AES_256) on the
  alias ``alias/unity_catalog/<metastore_id>/<catalog>/cmk`` with encryption context
  ``{"metastore/catalog": "<metastore_id>/<catalog>"}``; KMS ``Decrypt`` with that context
  opens it.
* azure: ``key`` is 32 random bytes wrapped with RSA-OAEP-256 by the key
  ``unity-catalog-<metastore_id>-<catalog with _ as ->-kek``, through whatever version was
  current then. The row does not say which: the key's versions are tried newest first, and
  the one that opens the row is reported.

The table is only read (one ``SELECT``); keys are only asked to decrypt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, KeyUnwrapFailed
from ..identifiers import parse_scope
from ..secret import SecretKey
from .layout import notebook_kms_context, scope_column

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

NOTEBOOK_KEY_TYPE = "ENCRYPTED_DEK"
DEK_BYTES = 32


@dataclass(frozen=True)
class NotebookRow:
    """One DEK version of the notebooks' table (the wrapped bytes, never a plaintext)."""

    scope: str
    version: int
    enabled: bool
    wrapped: bytes


def read_notebook_rows(spark: SparkSession, table: str, kind: str,
                       catalog: str) -> list[NotebookRow]:
    """Every DEK row of their table (``table``: its quoted name) for scopes of ``catalog``,
    enabled or not, sorted by scope and version. A row of another key type, or a scope of
    another catalog, is refused: the table is not what this reader expects."""
    scope = scope_column(kind)
    rows = spark.sql(
        f"SELECT {scope} AS scope, key_version, key_enabled, key_type, key FROM {table}"
    ).collect()
    found = []
    for row in rows:
        where = f"{table} row {row['scope']} v{row['key_version']}"
        if row["key_type"] != NOTEBOOK_KEY_TYPE or row["key"] is None \
                or row["key_version"] is None:
            raise ConfigError(f"{where}: key_type {row['key_type']!r} with no usable key or "
                              f"version, not a {NOTEBOOK_KEY_TYPE} row of the notebooks")
        row_catalog, _ = parse_scope(row["scope"])
        if row_catalog != catalog:
            raise ConfigError(f"{where}: scope of catalog {row_catalog}, not {catalog}")
        found.append(NotebookRow(row["scope"], int(row["key_version"]),
                                 bool(row["key_enabled"]), bytes(row["key"])))
    return sorted(found, key=lambda r: (r.scope, r.version))


def _checked(dek: bytes, where: str) -> SecretKey:
    if len(dek) != DEK_BYTES:
        raise KeyUnwrapFailed(f"{where} unwraps to {len(dek)} bytes, not an AES-256 DEK")
    return SecretKey(dek, label=f"legacy dek {where}")


class KmsNotebookKek:
    """The notebooks' KMS key, asked only to ``Decrypt`` with their encryption context."""

    def __init__(self, client: Any, metastore_id: str, catalog: str, key_id: str) -> None:
        self.client = client
        self.key_id = key_id
        self.context = notebook_kms_context(metastore_id, catalog)

    @property
    def description(self) -> str:
        return f"KMS key {self.key_id}"

    def unwrap(self, row: NotebookRow) -> tuple[SecretKey, str]:
        """(DEK, ARN of the key that opened it)."""
        from ..kek.aws.errors import aws_errors

        where = f"{row.scope} v{row.version}"
        with aws_errors("kms:Decrypt", f"{self.key_id} (legacy DEK {where})"):
            answer = self.client.decrypt(CiphertextBlob=row.wrapped, KeyId=self.key_id,
                                         EncryptionContext=self.context)
        return _checked(answer["Plaintext"], where), answer["KeyId"]


class AzureNotebookKek:
    """The notebooks' Key Vault key: RSA-OAEP-256 unwrap, trying its versions newest first."""

    def __init__(self, vault_url: str, key_name: str, credential: Any,
                 connection_verify: str | None = None) -> None:
        self.vault_url = vault_url
        self.key_name = key_name
        self.credential = credential
        self.verify = connection_verify
        self._versions: list[str] | None = None
        self._opened_by: dict[str, str] = {}

    @property
    def description(self) -> str:
        return f"Key Vault key {self.key_name} in {self.vault_url}"

    def versions(self) -> list[str]:
        """The key's versions, newest first (read once)."""
        if self._versions is None:
            from azure.core.exceptions import AzureError
            from azure.keyvault.keys import KeyClient

            from ..kek.azure.credentials import client_kwargs
            from ..kek.azure.errors import translate_azure_error

            client = KeyClient(self.vault_url, self.credential,
                               **client_kwargs(self.vault_url, self.verify, 8, 0.8))
            try:
                listed = list(client.list_properties_of_key_versions(self.key_name))
            except AzureError as error:
                raise translate_azure_error(error, action="list the versions of",
                                            key=self.key_name, vault=self.vault_url,
                                            officer=False) from None
            finally:
                client.close()
            listed.sort(key=lambda p: (p.created_on is not None, p.created_on), reverse=True)
            self._versions = [p.version for p in listed if p.enabled is not False]
        return self._versions

    def unwrap(self, row: NotebookRow) -> tuple[SecretKey, str]:
        """(DEK, the key version that opened it). Versions that do not open it are skipped;
        an access error stops at once."""
        from ..kek.azure.notebook_helpers import unwrap_data_key

        where = f"{row.scope} v{row.version}"
        extra = {"connection_verify": self.verify} if self.verify else {}
        for version in self.versions():
            try:
                dek = unwrap_data_key(self.vault_url, self.key_name, row.wrapped,
                                      self.credential, version=version, **extra)
            except KeyUnwrapFailed:
                continue
            log.info("legacy DEK %s opens with %s version %s", where, self.key_name, version)
            return _checked(dek.reveal(), where), version
        raise KeyUnwrapFailed(
            f"no enabled version of {self.description} unwraps the legacy DEK {where} "
            f"(tried {len(self.versions())}): was it wrapped by another key, or is the version "
            "that wrapped it disabled?"
        )
