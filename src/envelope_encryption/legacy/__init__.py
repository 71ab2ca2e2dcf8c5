"""Import of the original notebooks' Secrets Manager secret into the project's keyring."""

from .import_secret import ImportReport, import_legacy_secret, read_legacy_deks

__all__ = ["ImportReport", "import_legacy_secret", "read_legacy_deks"]
