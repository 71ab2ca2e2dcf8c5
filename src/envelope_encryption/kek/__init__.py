"""Layer 2: key-encryption-key providers, one module per back end, one interface."""

from .base import KekInfo, KekProvider, WrapContext, WrappedDek
from .factory import build_kek_provider

__all__ = ["KekInfo", "KekProvider", "WrapContext", "WrappedDek", "build_kek_provider"]
