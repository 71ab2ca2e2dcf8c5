"""Build the DEK store a :class:`Settings` names: the keyring table, or (aws-sm) a secret."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..lakehouse import Lakehouse
from .base import DekStore

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def build_dek_store(
    settings: Settings,
    spark: SparkSession | None = None,
    lakehouse: Lakehouse | None = None,
    credential: Any | None = None,
) -> DekStore:
    """The DEK store of a deployment: jobs, the legacy import and the SQL runtime use it.

    ``aws-sm`` keeps wrapped DEKs in a Secrets Manager secret (no Spark needed;
    ``credential`` as for :func:`envelope_encryption.kek.build_kek_provider`); every other
    back end in the keyring table, which needs ``spark``.
    """
    if settings.backend == "aws-sm":
        # Wrapped DEKs live in Secrets Manager beside (not inside) the KEK's secret.
        module = importlib.import_module("envelope_encryption.keyring.secrets_manager_store")
        return module.from_settings(settings, credential)
    if spark is None:
        raise ValueError(f"the {settings.backend} back end keeps its DEKs in a table: "
                         "build_dek_store needs a SparkSession")
    from .table_store import TableDekStore

    return TableDekStore(
        spark, settings.catalog, settings.crypto_schema, settings.keyring_table, lakehouse
    )
