"""Equality domains: versioned keys for deterministic cells and blind indexes.

A domain's key is kept in the keyring like a DEK, under the scope ``catalog.$equality.domain``
(:func:`~envelope_encryption.identifiers.domain_scope`), so it is wrapped by the same KEK,
authenticated by the keyring's integrity records, versioned, rotated, re-wrapped, audited
and shown by ``status`` like any DEK. Its plaintext never leaves this process: only the
sub-keys derived from it (``cell/equality.py``) reach the cell functions.
"""

from __future__ import annotations

from ..cell.equality import DomainKeys
from ..identifiers import domain_scope
from .keyring import Keyring


class EqualityDomains:
    """The equality domains of one catalog, over a keyring."""

    def __init__(self, keyring: Keyring, catalog: str) -> None:
        self.keyring = keyring
        self.catalog = catalog

    def scope(self, domain: str) -> str:
        return domain_scope(self.catalog, domain)

    def ensure(self, domain: str) -> tuple[int, bool]:
        """The domain's active version, created when the domain has none. (version, created)"""
        record, created = self.keyring.ensure_active(self.scope(domain))
        return record.version, created

    def rotate(self, domain: str) -> int:
        """A new version of the domain's key, which becomes the active one."""
        return self.keyring.create_version(self.scope(domain)).version

    def active(self, domain: str) -> DomainKeys:
        """The sub-keys of the active version: what new cells and indexes are made with."""
        version, key = self.keyring.active_dek(self.scope(domain))
        return DomainKeys.derive(domain, version, key)

    def readable(self, domain: str) -> list[DomainKeys]:
        """The sub-keys of every version that may still be read (what opens cells)."""
        return [DomainKeys.derive(domain, version, key)
                for version, key in sorted(self.keyring.deks(self.scope(domain)).items())]
