"""Build the KEK provider a :class:`Settings` names: the one way jobs and the SQL runtime do.

Back-end modules are imported lazily, so a job on one cloud never imports another's SDK.
Each module exposes ``from_settings(settings, credential=None) -> KekProvider``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..config import Settings
from .base import KekProvider

_MODULES = {
    "local": "envelope_encryption.kek.local",
    "aws-kms": "envelope_encryption.kek.aws.kms",
    "aws-sm": "envelope_encryption.kek.aws.secrets_manager",
    "azure": "envelope_encryption.kek.azure.provider",
}


def build_kek_provider(settings: Settings, credential: Any | None = None) -> KekProvider:
    """The provider of ``settings.backend``, with every back-end option the settings carry.

    ``credential`` replaces the credential the settings name: the UDF runtime passes the
    Unity Catalog service credential of its function (a botocore session for AWS, a token
    credential for Azure). ``None`` means: from the settings (service credential on
    Databricks, else the default chain).
    """
    module = importlib.import_module(_MODULES[settings.backend])
    return module.from_settings(settings, credential)
