"""Import of the original notebooks' DEKs into the project's keyring.

Their Secrets Manager secret (:mod:`.notebook_secret`), their KMS and Key Vault key table
(:mod:`.notebook_table`), how their objects are recognised (:mod:`.layout`), and how the
DEKs are recorded as legacy versions (:mod:`.importer`). Part of the keyring layer: it
imports from ``kek``, ``keyring`` and the shared modules only.
"""

from .importer import ImportReport, LegacyDek, import_versions
from .notebook_secret import import_legacy_secret, read_legacy_deks

__all__ = ["ImportReport", "LegacyDek", "import_legacy_secret", "import_versions",
           "read_legacy_deks"]
