"""Import of the original notebooks' Secrets Manager secret into the project's keyring.

Part of the keyring layer: it imports from ``kek``, ``keyring`` and the shared modules only.
"""

from .notebook_secret import ImportReport, import_legacy_secret, read_legacy_deks

__all__ = ["ImportReport", "import_legacy_secret", "read_legacy_deks"]
