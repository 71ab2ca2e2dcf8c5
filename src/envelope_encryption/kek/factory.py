"""Build the KEK provider a :class:`Settings` names.

Back-end modules are imported lazily, so a job on one cloud never imports another's SDK.
Each module exposes ``from_settings(settings) -> KekProvider``.
"""

from __future__ import annotations

import importlib

from ..config import Settings
from .base import KekProvider

_MODULES = {
    "local": "envelope_encryption.kek.local",
    "aws-kms": "envelope_encryption.kek.aws_kms",
    "aws-sm": "envelope_encryption.kek.aws_secrets_manager",
    "azure": "envelope_encryption.kek.azure_key_vault",
}


def build_kek_provider(settings: Settings) -> KekProvider:
    module = importlib.import_module(_MODULES[settings.backend])
    return module.from_settings(settings)
