"""DEK records and the interface of the stores that keep them.

A store is append-only in spirit: every change to a DEK (creation, re-wrap under a new KEK,
a change of state) is a new *revision* of the record ``(scope, version)``. The newest
revision is the current one. Nothing is ever overwritten in place, so a failure part-way
through a change leaves the previous revision, which still works. The one exception is a
destroy (crypto-shredding, docs/key-lifecycle.md): a tombstone revision without key material
is appended, then :meth:`DekStore.purge` removes every older revision of that version.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum

from ..errors import ConfigError, KeyringError
from ..kek.base import WrapContext, WrappedDek


class DekState(str, Enum):
    """Where a DEK version is in its life (docs/key-lifecycle.md)."""

    ENABLED = "ENABLED"  # decrypts; the highest enabled version of a scope encrypts
    DECRYPT_ONLY = "DECRYPT_ONLY"  # decrypts; never encrypts, even when it is the highest
    RETIRED = "RETIRED"  # deliberately taken out of use: decrypts nothing (reversible)
    DESTROYED = "DESTROYED"  # the wrapped key is gone from every store: terminal

    @property
    def decrypts(self) -> bool:
        """Whether cells of a version in this state may be opened."""
        return self in (DekState.ENABLED, DekState.DECRYPT_ONLY)

    @property
    def encrypts(self) -> bool:
        """Whether a version in this state may be the active one (the highest of these)."""
        return self is DekState.ENABLED

    @property
    def label(self) -> str:
        """The state as the jobs' ``--to`` option spells it (``decrypt-only``)."""
        return self.value.lower().replace("_", "-")

    @staticmethod
    def parse(text: str) -> DekState:
        """A state from its label or value (``decrypt-only``, ``DECRYPT_ONLY``)."""
        try:
            return DekState(text.strip().upper().replace("-", "_"))
        except ValueError:
            labels = ", ".join(s.label for s in DekState)
            raise ConfigError(f"unknown DEK state {text!r} (states: {labels})") from None


KEY_TYPE = "ENCRYPTED_DEK"
# A DEK imported from the original notebooks: its cells carry no header and no AAD.
LEGACY_KEY_TYPE = "LEGACY_IMPORTED_DEK"
# The keyring's own integrity record (docs/keyring-integrity.md): its wrapped integrity key
# and authenticated metadata. Stored beside the DEK records under a scope no DEK can have
# (not a valid ``catalog.schema``); stores never return it among the DEK records.
INTEGRITY_KEY_TYPE = "KEYRING_INTEGRITY_KEY"
INTEGRITY_SCOPE = "$keyring"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class DekRecord:
    """One revision of one DEK version of one scope."""

    scope: str
    version: int
    wrapped: WrappedDek
    kek_backend: str
    state: DekState = DekState.ENABLED
    revision: int = 1
    created_by: str = "unknown"
    modified_by: str = "unknown"
    created_at: datetime = field(default_factory=_now)
    modified_at: datetime = field(default_factory=_now)
    record_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    key_type: str = KEY_TYPE
    # HMAC-SHA256 of the record under the keyring's integrity key (None: written before the
    # keyring had one; refused once it has). See keyring/integrity.py.
    tag: bytes | None = None
    # The integrity record's authenticated metadata (JSON); empty for DEK records.
    integrity: str = ""

    @property
    def context(self) -> WrapContext:
        return WrapContext(self.scope, self.version)

    @property
    def decrypts(self) -> bool:
        """Whether this version opens cells (ENABLED or DECRYPT_ONLY)."""
        return self.state.decrypts

    @property
    def encrypts(self) -> bool:
        """Whether this version may encrypt (ENABLED; the highest such one does)."""
        return self.state.encrypts

    @property
    def holds_key(self) -> bool:
        """Whether this revision carries wrapped key material (a destroy's tombstone does
        not)."""
        return bool(self.wrapped.blob)

    def next_revision(self, actor: str, **changes: object) -> DekRecord:
        """A new revision of this record (new id, modified now by ``actor``), untagged until
        the keyring signs it."""
        return replace(
            self,
            tag=None,
            revision=self.revision + 1,
            modified_by=actor,
            modified_at=_now(),
            record_id=str(uuid.uuid4()),
            **changes,
        )


@dataclass
class PurgeReport:
    """What :meth:`DekStore.purge` did: copies of a wrapped key removed, and copies the store
    knows of but cannot remove (said in the destroy's report and audit event)."""

    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


class DekStore(ABC):
    """Where wrapped DEK records live (a Unity Catalog table, or a Secrets Manager secret)."""

    description: str = "DEK store"
    # What the integrity key is bound to (a table's full name, a secret's name).
    identity: str = "keyring"

    @abstractmethod
    def ensure(self) -> None:
        """Create the store if it does not exist (idempotent)."""

    @abstractmethod
    def history(self, scope: str | None = None) -> list[DekRecord]:
        """Every stored revision of DEK records, of one scope or of all (never the
        integrity record)."""

    @abstractmethod
    def integrity_history(self) -> list[DekRecord]:
        """Every stored revision of the keyring's integrity record (scope
        :data:`INTEGRITY_SCOPE`)."""

    @abstractmethod
    def append(self, record: DekRecord) -> None:
        """Store ``record`` as the newest revision of ``(scope, version)``.

        Must refuse, with :class:`~envelope_encryption.errors.ConcurrentModification`, when
        another writer got there first: a revision 1 whose version is not exactly one more
        than the scope's highest, or a revision that is not exactly one more than the
        stored newest revision of that version. Must never lose an existing record.
        """

    def purge(self, scope: str, version: int, keep_record_id: str) -> PurgeReport:
        """Remove every stored copy of ``(scope, version)``'s wrapped key except the revision
        ``keep_record_id`` (the destroy's tombstone, which holds none). Idempotent: nothing
        removed the second time.

        The default refuses: a store that cannot remove its records cannot destroy a key.
        """
        raise KeyringError(f"{self.description} cannot remove records: keys in it cannot be "
                           "destroyed")

    def current(self, scope: str | None = None) -> list[DekRecord]:
        """The newest revision of every version, sorted by scope and version."""
        newest: dict[tuple[str, int], DekRecord] = {}
        for record in self.history(scope):
            key = (record.scope, record.version)
            if key not in newest or record.revision > newest[key].revision:
                newest[key] = record
        return [newest[key] for key in sorted(newest)]
