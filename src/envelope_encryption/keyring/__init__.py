"""Layer 3: versioned, wrapped DEKs per scope, and the in-memory cache of unwrapped ones."""

from .base import DekRecord, DekState, DekStore
from .keyring import Keyring, RewrapReport, clear_dek_cache

__all__ = ["DekRecord", "DekState", "DekStore", "Keyring", "RewrapReport", "clear_dek_cache"]
