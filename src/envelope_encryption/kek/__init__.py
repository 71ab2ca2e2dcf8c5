"""Layer 2: key-encryption-key providers behind one interface (:class:`KekProvider`).

``local`` is a module; the cloud back ends are sub-packages split by role (``aws/``: errors,
session, kms, secrets, secrets_manager; ``azure/``: errors, credentials, provider,
key_operations, notebook_helpers). :func:`build_kek_provider` is the one way to build a provider.
"""

from .base import KekInfo, KekProvider, WrapContext, WrappedDek
from .factory import build_kek_provider

__all__ = ["KekInfo", "KekProvider", "WrapContext", "WrappedDek", "build_kek_provider"]
