"""Build the DEK store a :class:`Settings` names: the keyring table, or (aws-sm) a secret."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..config import Settings
from ..lakehouse import Lakehouse
from .base import DekStore

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def build_dek_store(
    settings: Settings, spark: SparkSession, lakehouse: Lakehouse | None = None
) -> DekStore:
    if settings.backend == "aws-sm":
        # Wrapped DEKs live in Secrets Manager beside (not inside) the KEK's secret.
        module = importlib.import_module("envelope_encryption.keyring.secrets_manager_store")
        return module.from_settings(settings)
    from .table_store import TableDekStore

    return TableDekStore(
        spark, settings.catalog, settings.crypto_schema, settings.keyring_table, lakehouse
    )
