"""The keyring: versioned DEKs per scope over a :class:`DekStore` and a KEK provider.

Unwrapped DEKs are kept in the keyring's :class:`~.cache.DekCache`, keyed by the wrapped
bytes, so each version is unwrapped once per keyring however many rows or tables use it (a
job builds one keyring). Calls to the key service therefore scale with the DEK versions
touched, not with rows.

Every record is authenticated (:mod:`.integrity`): reads refuse a forged, edited or untagged
record and treat a version the integrity metadata lists as retired as retired; every write
is tagged under the keyring's integrity key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import ConcurrentModification, DestroyedKey, KeyringError, UnknownKeyVersion
from ..identifiers import parse_key_scope
from ..kek.base import KekInfo, KekProvider, WrapContext
from ..secret import SecretKey
from .audit import AuditLog
from .base import DekRecord, DekState, DekStore
from .cache import DekCache
from .integrity import IntegrityState, KeyringIntegrity
from .lifecycle import StateChange, change_state

log = logging.getLogger(__name__)

@dataclass
class RewrapReport:
    """What a KEK rotation's re-wrap did."""

    kek: KekInfo
    rewrapped: list[tuple[str, int]] = field(default_factory=list)
    already_current: list[tuple[str, int]] = field(default_factory=list)


class Keyring:
    """Versioned DEKs of every scope: ``store`` keeps them wrapped by ``kek``.

    ``actor`` is recorded on every change; ``cache`` holds the unwrapped DEKs (None: a new,
    empty one). Share a cache between keyrings only when they use the same store and KEK.
    ``audit`` records every change, refused and failed ones too (None: the job log only).
    """

    def __init__(self, store: DekStore, kek: KekProvider, actor: str = "unknown",
                 cache: DekCache | None = None, audit: AuditLog | None = None) -> None:
        self.store = store
        self.kek = kek
        self.actor = actor
        self.cache = cache if cache is not None else DekCache()
        self.audit = audit if audit is not None else AuditLog(actor)
        self.integrity = KeyringIntegrity(store, kek, actor, self.cache)

    # -- reading -------------------------------------------------------------------------

    def versions(self, scope: str) -> list[DekRecord]:
        """Current revision of every version of ``scope``, oldest first, each verified."""
        parse_key_scope(scope)
        return self.integrity.verified(self.store.current(scope))

    def active(self, scope: str) -> DekRecord:
        """The version that encrypts: the highest enabled one (never a decrypt-only one)."""
        enabled = [r for r in self.versions(scope) if r.encrypts]
        if not enabled:
            raise KeyringError(
                f"no active DEK for {scope}: run the kek_setup or dek_generation job"
            )
        return enabled[-1]

    def dek(self, scope: str, version: int) -> SecretKey:
        """The plaintext DEK of one version (unwrapped once per keyring)."""
        for record in self.versions(scope):
            if record.version == version:
                return self._unwrap(record)
        raise UnknownKeyVersion(f"{scope} has no DEK version {version}")

    def active_dek(self, scope: str) -> tuple[int, SecretKey]:
        record = self.active(scope)
        return record.version, self._unwrap(record)

    def deks(self, scope: str, versions: set[int] | None = None) -> dict[int, SecretKey]:
        """Plaintext DEKs of every version of ``scope`` that decrypts (ENABLED or
        DECRYPT_ONLY), or of those among ``versions``."""
        return {
            r.version: self._unwrap(r)
            for r in self.versions(scope)
            if r.decrypts and (versions is None or r.version in versions)
        }

    def _unwrap(self, record: DekRecord) -> SecretKey:
        if record.state is DekState.DESTROYED:
            raise DestroyedKey(f"DEK {record.scope} v{record.version} was destroyed: its "
                               "values can never be decrypted again")
        if not record.decrypts:
            raise UnknownKeyVersion(
                f"DEK {record.scope} v{record.version} is {record.state.value}: it decrypts "
                "nothing"
            )
        cached = self.cache.get(record.context, record.wrapped)
        if cached is not None:
            return cached
        dek = self.kek.unwrap(record.wrapped, record.context)
        self.cache.put(record.context, record.wrapped, dek)
        log.info("unwrapped DEK %s v%d", record.scope, record.version)
        return dek

    # -- changing ------------------------------------------------------------------------

    def create_version(self, scope: str) -> DekRecord:
        """A new DEK version for ``scope``; it becomes the active one."""
        parse_key_scope(scope)
        with self.audit.attempt("dek_created", scope=scope) as facts:
            existing = self.versions(scope)
            version = facts["key_version"] = (existing[-1].version if existing else 0) + 1
            state = self.integrity.create(upgrade=False)
            dek, wrapped = self.kek.generate_dek(WrapContext(scope, version))
            facts.update(kek_id=wrapped.kek_id, kek_version=wrapped.kek_version or "")
            record = DekRecord(
                scope=scope, version=version, wrapped=wrapped, kek_backend=self.kek.backend,
                created_by=self.actor, modified_by=self.actor,
            )
            try:
                self.store.append(self.integrity.sign(state, record))
            except ConcurrentModification:
                raise ConcurrentModification(
                    f"another writer created {scope} v{version} at the same time; run the job "
                    "again"
                ) from None
        self.cache.put(record.context, wrapped, dek)
        log.info("created DEK %s v%d wrapped by %s", scope, version, wrapped.kek_id)
        return record

    def ensure_active(self, scope: str) -> tuple[DekRecord, bool]:
        """The active DEK of ``scope``, created when the scope has none. (record, created)"""
        enabled = [r for r in self.versions(scope) if r.encrypts]
        if enabled:
            return enabled[-1], False
        return self.create_version(scope), True

    def retire(self, scope: str, version: int, *, in_use: bool, force: bool = False) -> DekRecord:
        """Take a version out of use. Refused while cells still use it, unless forced."""
        return change_state(self, scope, version, DekState.RETIRED, in_use=in_use, force=force,
                            operation="dek_retired").record

    def set_state(self, scope: str, version: int, to: DekState, *, in_use: bool = False,
                  force: bool = False, confirm: str = "") -> StateChange:
        """Move a version to ENABLED, DECRYPT_ONLY, RETIRED or DESTROYED (keyring/lifecycle.py:
        the rules, the refusals, the audit events). ``in_use``: stored cells still use it;
        ``confirm``: for a destroy, ``<scope>:v<version>`` typed out again."""
        return change_state(self, scope, version, to, in_use=in_use, force=force,
                            confirm=confirm)

    def destroy(self, scope: str, version: int, *, confirm: str, in_use: bool = False,
                force: bool = False) -> StateChange:
        """Crypto-shred a version: its wrapped key leaves every store copy (irreversible)."""
        return self.set_state(scope, version, DekState.DESTROYED, in_use=in_use, force=force,
                              confirm=confirm)

    def check_kek(self) -> IntegrityState | None:
        """Verify the integrity record (when there is one) and pin the KEK to the ids it
        records, so that a repointed KEK is refused before anything uses it."""
        return self.integrity.load()

    def ensure_integrity(self) -> IntegrityState:
        """Create the integrity record when there is none: the one-time upgrade step of an
        existing keyring (kek_setup), which signs its current records as they are."""
        return self.integrity.create(upgrade=True)

    def rewrap_all(self, scopes: list[str] | None = None) -> RewrapReport:
        """Re-wrap every DEK not wrapped by the current KEK version, verifying each one.

        Each DEK is re-wrapped, the new wrapping is unwrapped and compared with the old one
        (in memory), and only then stored as a new revision. A failure part-way leaves the
        records not yet done on their old wrapping, which still unwraps; running again
        finishes the work.
        """
        info = self.kek.describe()
        report = RewrapReport(kek=info)
        records = self.integrity.verified(self.store.current())
        if records:
            self.integrity.rewrap()
        for record in records:
            if scopes is not None and record.scope not in scopes:
                continue
            where = (record.scope, record.version)
            if not record.holds_key:
                continue  # a destroyed version's tombstone: nothing to re-wrap
            if (record.wrapped.kek_id, record.wrapped.kek_version) == (
                info.kek_id, info.kek_version
            ):
                report.already_current.append(where)
                continue
            with self.audit.attempt(
                    "dek_rewrapped", scope=record.scope, key_version=record.version,
                    kek_id=info.kek_id, kek_version=info.kek_version,
                    detail=f"from {record.wrapped.kek_id} version "
                           f"{record.wrapped.kek_version or '-'}"):
                old = self.kek.unwrap(record.wrapped, record.context)
                new_wrapped = self.kek.rewrap(record.wrapped, record.context)
                if self.kek.unwrap(new_wrapped, record.context) != old:
                    raise KeyringError(
                        f"re-wrapped DEK {record.scope} v{record.version} does not unwrap to "
                        "the same key; nothing was stored for it"
                    )
                rewrapped = record.next_revision(self.actor, wrapped=new_wrapped)
                self.store.append(self.integrity.sign(self.integrity.require(), rewrapped))
            report.rewrapped.append(where)
            log.info("re-wrapped DEK %s v%d under %s", record.scope, record.version,
                     info.describe())
        return report
