"""Record the original notebooks' DEKs in the keyring as decrypt-only legacy versions.

Every variant ends here with plaintext DEKs by scope and version. Each one becomes the same
version of the same scope in this keyring (``key_type = LEGACY_IMPORTED_DEK``, state
``DECRYPT_ONLY``), wrapped by the configured KEK, verified (it unwraps to itself) and tagged
under the keyring's integrity key (created here when the keyring has none). A legacy DEK
never encrypts: once a scope's legacy versions are in, a fresh DEK is created above them and
becomes the active version. A legacy version an earlier release imported as ENABLED is made
DECRYPT_ONLY on the next run (audited as ``dek_state_changed``).

Idempotent: a version imported before (same DEK) is skipped, and a scope whose fresh DEK
exists gets none again. A scope is refused as a whole, before anything of it is written,
when its versions in the keyring are some other keys, or when the notebooks added a version
after the import (the keyring's next version is taken by the fresh DEK). ``dry_run`` does
the reads and checks and writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import KeyringError
from ..kek.base import KekProvider, WrapContext
from ..keyring.audit import REFUSED, AuditEvent, AuditLog
from ..keyring.base import LEGACY_KEY_TYPE, DekRecord, DekState, DekStore
from ..keyring.keyring import Keyring
from ..secret import SecretKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LegacyDek:
    """One unwrapped legacy DEK; ``note`` says where it came from (a KEK version, a flag)."""

    version: int
    dek: SecretKey
    note: str = ""


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do), per scope and version."""

    source: str
    imported: list[str] = field(default_factory=list)          # "<scope> v<n>"
    already_imported: list[str] = field(default_factory=list)  # "<scope> v<n>"
    activated: list[str] = field(default_factory=list)         # fresh DEKs: "<scope> v<n>"
    # legacy versions an earlier release imported as ENABLED, now DECRYPT_ONLY: "<scope> v<n>"
    decrypt_only: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (scope, why)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.refused


def _conflict(scope: str, deks: list[LegacyDek], existing: dict[int, DekRecord],
              kek: KekProvider) -> tuple[str, list[LegacyDek]]:
    """(why the scope is refused, or ''; the legacy versions still to import)."""
    versions = [d.version for d in deks]
    if versions != list(range(1, len(deks) + 1)):
        return (f"its legacy versions are {versions}, not 1..{len(deks)}: the keyring numbers "
                "versions without gaps"), []
    todo = []
    for legacy in deks:
        record = existing.get(legacy.version)
        if record is None:
            todo.append(legacy)
        elif record.key_type != LEGACY_KEY_TYPE or not record.decrypts \
                or kek.unwrap(record.wrapped, record.context) != legacy.dek:
            return (f"the keyring's {scope} v{legacy.version} is another key "
                    f"({record.key_type}, {record.state.value}); nothing of {scope} was "
                    "imported"), []
    newest = max(existing, default=0)
    if todo and todo[0].version != newest + 1:
        return (f"the notebooks' v{todo[0].version}.. came after the import, and the "
                f"keyring's v{todo[0].version} is already this project's DEK: re-encrypt the "
                "cells of those versions with the notebooks first, or import into a new "
                "keyring"), []
    return "", todo


def import_versions(found: dict[str, list[LegacyDek]], store: DekStore, kek: KekProvider,
                    source: str, who: str = "unknown", *, dry_run: bool = False,
                    audit: AuditLog | None = None) -> ImportReport:
    """Store every legacy DEK of ``found`` (scope -> versions) as described above; each
    import (and each refused scope) is recorded in ``audit`` unless it is a dry run."""
    keyring = Keyring(store, kek, who, audit=audit)
    report = ImportReport(source=source, dry_run=dry_run)
    for scope, deks in sorted(found.items()):
        deks = sorted(deks, key=lambda d: d.version)
        existing = {r.version: r for r in keyring.versions(scope)}
        why, todo = _conflict(scope, deks, existing, kek)
        if why:
            report.refused.append((scope, why))
            if not dry_run:
                keyring.audit.record(AuditEvent("dek_imported", REFUSED, scope=scope,
                                                detail=f"from {source}: {why}"))
            continue
        report.notes += [f"{scope} v{d.version}: {d.note}" for d in deks if d.note]
        new = {d.version for d in todo}
        report.already_imported += [f"{scope} v{d.version}" for d in deks
                                    if d.version not in new]
        for legacy in todo:
            if not dry_run:
                with keyring.audit.attempt("dek_imported", scope=scope,
                                           key_version=legacy.version,
                                           detail=f"from {source}; {legacy.note}".rstrip("; ")):
                    _store(keyring, scope, legacy, who)
            report.imported.append(f"{scope} v{legacy.version}")
        # A legacy version on top would be the active one: a fresh DEK goes above it.
        if todo or existing[max(existing)].key_type == LEGACY_KEY_TYPE:
            version = deks[-1].version + 1
            if not dry_run:
                version = keyring.create_version(scope).version
            report.activated.append(f"{scope} v{version}")
        for old in [d.version for d in deks if d.version not in new
                    and existing[d.version].state is DekState.ENABLED]:
            if not dry_run:
                keyring.set_state(scope, old, DekState.DECRYPT_ONLY)
            report.decrypt_only.append(f"{scope} v{old}")
    return report


class EmptyStore(DekStore):
    """The keyring of a dry run before the keyring exists: no record, and no write."""

    description = "no keyring yet"

    def ensure(self) -> None:
        raise KeyringError("a dry run creates nothing")

    def history(self, scope: str | None = None) -> list[DekRecord]:
        return []

    def integrity_history(self) -> list[DekRecord]:
        return []

    def append(self, record: DekRecord) -> None:
        raise KeyringError("a dry run stores nothing")


def _store(keyring: Keyring, scope: str, legacy: LegacyDek, who: str) -> None:
    context = WrapContext(scope, legacy.version)
    wrapped = keyring.kek.wrap(legacy.dek, context)
    if keyring.kek.unwrap(wrapped, context) != legacy.dek:
        raise KeyringError(f"wrapped legacy DEK of {scope} v{legacy.version} does not unwrap "
                           "to itself; nothing stored")
    integrity = keyring.integrity
    keyring.store.append(integrity.sign(integrity.create(upgrade=False), DekRecord(
        scope=scope, version=legacy.version, wrapped=wrapped, kek_backend=keyring.kek.backend,
        created_by=who, modified_by=who, key_type=LEGACY_KEY_TYPE, state=DekState.DECRYPT_ONLY,
    )))
    log.info("imported legacy DEK %s v%d (%s)", scope, legacy.version, LEGACY_KEY_TYPE)
