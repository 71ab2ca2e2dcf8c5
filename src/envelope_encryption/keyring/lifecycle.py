"""State changes of a DEK version: decrypt-only, retired, re-enabled, destroyed.

The states and what each allows are in :class:`~.base.DekState` (docs/key-lifecycle.md).
Every change here is explicit, validated, idempotent and recorded in the audit trail:

- ENABLED <-> DECRYPT_ONLY <-> RETIRED, in any direction; a retirement (and its undo) is
  written to the integrity metadata first, so a plain table write can neither un-retire a
  version nor retire one behind the keyring's back.
- any state -> DESTROYED (terminal, crypto-shredding): the version is listed as destroyed
  in the integrity metadata, a tombstone revision without key material is appended (who,
  when), the store removes every other copy of the wrapped key it holds
  (:meth:`~.base.DekStore.purge`), and the keyring's DEK cache is emptied.

Refused: taking the only ENABLED version of a scope out of encryption (create a new version
first: ``dek_generation``); retiring or destroying while the caller says stored cells still
use the version, unless forced; any destroy whose ``confirm`` is not ``<scope>:v<version>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import KeyringError, UnknownKeyVersion
from ..kek.base import WrappedDek
from .base import DekRecord, DekState, PurgeReport

if TYPE_CHECKING:
    from .audit import AuditLog
    from .base import DekStore
    from .cache import DekCache
    from .integrity import KeyringIntegrity


class Keyring(Protocol):
    """What the state changes use of a :class:`~.keyring.Keyring` (which calls them: a
    protocol, so that this module does not import the one that imports it)."""

    actor: str
    audit: AuditLog
    cache: DekCache
    integrity: KeyringIntegrity
    store: DekStore

    def versions(self, scope: str) -> list[DekRecord]: ...

log = logging.getLogger(__name__)

STATE_CHANGED = "dek_state_changed"
DESTROYED = "dek_destroyed"


def destroy_confirmation(scope: str, version: int) -> str:
    """What a destroy's ``confirm`` must say: the scope and version typed out again."""
    return f"{scope}:v{version}"


@dataclass
class StateChange:
    """What a state change did (``changed`` False: the version already was in that state)."""

    scope: str
    version: int
    before: DekState
    after: DekState
    changed: bool
    record: DekRecord
    purge: PurgeReport = field(default_factory=PurgeReport)
    # The version that encrypts from now on, when this change moved it (else None).
    new_active: int | None = None

    def __str__(self) -> str:
        where = f"DEK {self.scope} v{self.version}"
        if not self.changed:
            text = f"{where} is already {self.after.value}: no change"
        else:
            text = f"{where}: {self.before.value} -> {self.after.value}"
        return text + self.consequences()

    def consequences(self) -> str:
        """What else the change did: a new active version, copies removed and left."""
        parts = [f"the active version is now v{self.new_active}"] \
            if self.new_active is not None else []
        if self.purge.removed:
            parts.append(f"removed: {'; '.join(self.purge.removed)}")
        if self.purge.left:
            parts.append(f"not removable by this project: {'; '.join(self.purge.left)}")
        return "".join(f"; {part}" for part in parts)


def change_state(ring: Keyring, scope: str, version: int, to: DekState, *, in_use: bool,
                 force: bool = False, confirm: str = "",
                 operation: str | None = None) -> StateChange:
    """Move ``scope`` v``version`` to state ``to`` (see the module docstring).

    ``in_use``: whether the caller found stored cells of the version (the keyring does not
    know where cells are); ``operation`` names the audit event (default
    ``dek_state_changed``, or ``dek_destroyed``).
    """
    default = DESTROYED if to is DekState.DESTROYED else STATE_CHANGED
    with ring.audit.attempt(operation or default, scope=scope, key_version=version) as facts:
        versions = ring.versions(scope)
        record = next((r for r in versions if r.version == version), None)
        if record is None:
            raise UnknownKeyVersion(f"{scope} has no DEK version {version}")
        facts.update(kek_id=record.wrapped.kek_id,
                     kek_version=record.wrapped.kek_version or "")
        if to is DekState.DESTROYED:
            change = _destroy(ring, record, versions, in_use=in_use, force=force,
                              confirm=confirm)
        else:
            change = _move(ring, record, versions, to, in_use=in_use, force=force)
        active = [r.version for r in versions if r.encrypts]
        if change.changed and active and active[-1] == version and not to.encrypts:
            change.new_active = max(v for v in active if v != version)
        elif change.changed and to.encrypts and (not active or version > active[-1]):
            change.new_active = version
        facts["detail"] = _detail(change, in_use=in_use)
    log.info("%s", change)
    return change


def _detail(change: StateChange, *, in_use: bool) -> str:
    if not change.changed and not change.purge.removed:
        detail = f"already {change.after.value}: no change"
    else:
        detail = f"{change.before.value} -> {change.after.value}"
        if not change.after.decrypts:
            detail += ("; forced while stored cells still use it" if in_use
                       else "; no stored cells use it")
    return detail + change.consequences()


def _guard(record: DekRecord, versions: list[DekRecord], to: DekState, *, in_use: bool,
           force: bool) -> None:
    where = f"{record.scope} v{record.version}"
    if record.encrypts and not to.encrypts \
            and not any(r.encrypts for r in versions if r.version != record.version):
        raise KeyringError(
            f"refusing to make {where} {to.value}: it is the only ENABLED version, so "
            f"{record.scope} would have no active DEK. Create a new version first (the "
            "dek_generation job for this schema), re-encrypt, then try again")
    if in_use and not to.decrypts and not force:
        raise KeyringError(
            f"refusing to make {where} {to.value}: stored cells still use it; re-encrypt "
            "them first (reencrypt_columns), or force (their data becomes unreadable)")


def _move(ring: Keyring, record: DekRecord, versions: list[DekRecord], to: DekState, *,
          in_use: bool, force: bool) -> StateChange:
    before = record.state
    if before is to:
        return StateChange(record.scope, record.version, before, to, False, record)
    if before is DekState.DESTROYED:
        raise KeyringError(f"DEK {record.scope} v{record.version} was destroyed: a "
                           "destroyed version never comes back")
    _guard(record, versions, to, in_use=in_use, force=force)
    # The integrity metadata first: until it changes, the version keeps its old meaning
    # whatever the new revision says, so a crash in between changes nothing.
    if before is DekState.RETIRED:
        ring.integrity.record_reinstated(record.scope, record.version)
    if to is DekState.RETIRED:
        ring.integrity.record_retired(record.scope, record.version)
    new = record.next_revision(ring.actor, state=to)
    ring.store.append(ring.integrity.sign(ring.integrity.require(), new))
    return StateChange(record.scope, record.version, before, to, True, new)


def _destroy(ring: Keyring, record: DekRecord, versions: list[DekRecord], *, in_use: bool,
             force: bool, confirm: str) -> StateChange:
    scope, version, before = record.scope, record.version, record.state
    stored = next(r for r in ring.store.current(scope) if r.version == version)
    if before is DekState.DESTROYED and stored.state is DekState.DESTROYED:
        # Already destroyed: remove any copy a crash part-way left behind (usually none).
        purge = ring.store.purge(scope, version, stored.record_id)
        ring.cache.clear()
        return StateChange(scope, version, before, before, False, stored, purge)
    expected = destroy_confirmation(scope, version)
    if confirm != expected:
        raise KeyringError(
            f"destroying {scope} v{version} cannot be undone: every value encrypted under "
            f"it becomes unreadable for good. Type the scope and version again to confirm: "
            f"--confirm {expected}")
    if before is not DekState.DESTROYED:
        _guard(record, versions, DekState.DESTROYED, in_use=in_use, force=force)
        ring.integrity.record_destroyed(scope, version)
    # The tombstone keeps the KEK id (the integrity check expects one of this keyring) and
    # says who destroyed the version and when; it holds no key material.
    tombstone = record.next_revision(
        ring.actor, state=DekState.DESTROYED,
        wrapped=WrappedDek(b"", record.wrapped.kek_id, record.wrapped.kek_version))
    ring.store.append(ring.integrity.sign(ring.integrity.require(), tombstone))
    purge = ring.store.purge(scope, version, tombstone.record_id)
    ring.cache.clear()
    return StateChange(scope, version, before, DekState.DESTROYED, True, tombstone, purge)
