"""Layer 3: versioned, wrapped DEKs per scope, and the in-memory cache of unwrapped ones."""

from .base import DekRecord, DekState, DekStore
from .cache import DekCache
from .factory import build_dek_store
from .keyring import Keyring, RewrapReport

__all__ = ["DekCache", "DekRecord", "DekState", "DekStore", "Keyring", "RewrapReport",
           "build_dek_store"]
