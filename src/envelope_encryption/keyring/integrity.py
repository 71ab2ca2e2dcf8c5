"""The keyring's own integrity: every record authenticated under a key only the KEK holder
can obtain (docs/keyring-integrity.md).

- **The integrity key** is a random 256-bit key, generated once per keyring and stored
  *wrapped by the KEK* in the keyring's integrity record (scope ``$keyring``), under a wrap
  context no DEK has (purpose ``keyring-integrity``: KMS ``GenerateDataKey`` with that
  encryption context; AES-GCM under the local or aws-sm KEK with that associated data;
  Key Vault A256KW in a Managed HSM; with an RSA vault key, which anyone can wrap for, a key
  derived from the vault's deterministic RS256 signature, see the Azure provider). A writer
  of the table cannot make a wrapped key that unwraps under our KEK with that context, so
  cannot choose the integrity key.
- **How a reader finds it without trusting the table.** The integrity record may hold one
  wrapping per KEK id; a reader uses only the wrapping whose KEK id is the configured KEK's
  (``describe()``: the KMS key ARN behind the configured key id or alias, the aws-sm secret,
  the Key Vault key, the local file). When none is, the KEK was repointed: refused, naming
  both. The unwrapped key is cached like a DEK (one key-service call per process).
- **Record tags.** Each record carries ``HMAC-SHA256(integrity key, canonical(scope,
  version, revision, state, key type, back end, wrapped bytes, KEK id, KEK version,
  metadata))``. A record whose tag does not verify is refused, naming its scope and version.
- **Metadata** (JSON, authenticated by the integrity record's tag): the KEK ids the project
  recorded (setup, its own KMS rotations), the retired versions and the destroyed ones.
  Retiring and destroying write the metadata first, so deleting the RETIRED revision (or
  restoring a destroyed version's rows from a backup) does not bring the version back;
  only the explicit re-enable of a retired version (``dek_state --to enabled``) removes it
  from the retired list, and nothing removes a destroyed one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..errors import ConcurrentModification, KeyringError
from ..kek.base import INTEGRITY_PURPOSE, KekProvider, WrapContext, WrappedDek
from ..secret import SecretKey
from .base import INTEGRITY_KEY_TYPE, INTEGRITY_SCOPE, DekRecord, DekState, DekStore
from .cache import DekCache

log = logging.getLogger(__name__)

METADATA_FORMAT = "envelope-encryption/keyring-integrity/v1"
_TAG_LABEL = "envelope-encryption/keyring-record/v1"
_ATTEMPTS = 5


def integrity_context(store: DekStore) -> WrapContext:
    """The wrap context of a keyring's integrity key (one per keyring, version 1)."""
    return WrapContext(store.identity, 1, INTEGRITY_PURPOSE)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def record_message(record: DekRecord) -> bytes:
    """The canonical bytes a record's tag covers (every field that decides what decrypts)."""
    fields = [_TAG_LABEL, record.scope, record.version, record.revision, record.state.value,
              record.key_type, record.kek_backend, _b64(record.wrapped.blob),
              record.wrapped.kek_id, record.wrapped.kek_version, record.integrity]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


def record_tag(key: SecretKey, record: DekRecord) -> bytes:
    return hmac.new(key.reveal(), record_message(record), hashlib.sha256).digest()


def tag_matches(key: SecretKey, record: DekRecord) -> bool:
    return record.tag is not None and hmac.compare_digest(record_tag(key, record), record.tag)


@dataclass(frozen=True)
class Metadata:
    """What the integrity record authenticates besides its own wrapping."""

    keyring: str
    kek_ids: tuple[str, ...]
    wraps: tuple[WrappedDek, ...]  # the integrity key, wrapped under each recorded KEK id
    retired: frozenset[tuple[str, int]]
    destroyed: frozenset[tuple[str, int]] = frozenset()

    def to_json(self) -> str:
        # "destroyed" only once there is one: the metadata of a keyring that never destroyed
        # a key stays byte for byte what earlier releases wrote.
        destroyed = ({"destroyed": sorted([s, v] for s, v in self.destroyed)}
                     if self.destroyed else {})
        return json.dumps({
            **destroyed,
            "format": METADATA_FORMAT,
            "keyring": self.keyring,
            "kek_ids": sorted(self.kek_ids),
            "wraps": [{"kek_id": w.kek_id, "kek_version": w.kek_version, "blob": _b64(w.blob)}
                      for w in self.wraps],
            "retired": sorted([scope, version] for scope, version in self.retired),
        }, separators=(",", ":"), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Metadata:
        try:
            data = json.loads(text)
            if data.get("format") != METADATA_FORMAT:
                raise ValueError(data.get("format"))
            return Metadata(
                keyring=str(data["keyring"]),
                kek_ids=tuple(str(k) for k in data["kek_ids"]),
                wraps=tuple(WrappedDek(base64.b64decode(w["blob"], validate=True),
                                       str(w["kek_id"]), str(w["kek_version"]))
                            for w in data["wraps"]),
                retired=frozenset((str(s), int(v)) for s, v in data["retired"]),
                destroyed=frozenset((str(s), int(v)) for s, v in data.get("destroyed", [])),
            )
        except (TypeError, ValueError, KeyError, AttributeError):
            raise KeyringError("the keyring's integrity record holds no valid metadata: it "
                               "was edited; restore it from the table's history") from None

    def wrap_for(self, kek_id: str) -> WrappedDek | None:
        return next((w for w in reversed(self.wraps) if w.kek_id == kek_id), None)


@dataclass(frozen=True)
class IntegrityState:
    """A verified integrity record: its newest revision, metadata and key."""

    record: DekRecord
    metadata: Metadata
    key: SecretKey


class KeyringIntegrity:
    """Creates, verifies and updates one keyring's integrity record; checks DEK records."""

    def __init__(self, store: DekStore, kek: KekProvider, actor: str, cache: DekCache,
                 kek_id: str | None = None) -> None:
        self.store = store
        self.kek = kek
        self.actor = actor
        self.cache = cache
        # The configured KEK's id, asked once per keyring (or given: the SQL runtime keeps
        # it per worker).
        self._kek_id = kek_id

    # -- reading -------------------------------------------------------------------------

    def configured_kek_id(self) -> str:
        return self._configured_kek_id()

    def _configured_kek_id(self) -> str:
        if self._kek_id is None:
            self._kek_id = self.kek.describe().kek_id
        return self._kek_id

    def load(self) -> IntegrityState | None:
        """The verified integrity record, or None when the keyring has none yet."""
        revisions = self.store.integrity_history()
        if not revisions:
            return None
        newest = max(revisions, key=lambda r: r.revision)
        metadata = Metadata.from_json(newest.integrity)
        configured = self._configured_kek_id()
        wrapped = metadata.wrap_for(configured)
        if wrapped is None or configured not in metadata.kek_ids:
            raise KeyringError(
                f"the configured KEK {configured} is not a KEK of this keyring, which is "
                f"pinned to {', '.join(metadata.kek_ids)} (recorded by kek_setup and "
                "rotate_kek): the KEK setting or the key alias was changed outside this "
                "project. Point it back; only rotate_kek may change the KEK"
            )
        key = self.cache.get_or_unwrap(integrity_context(self.store), wrapped, self.kek.unwrap)
        if newest.key_type != INTEGRITY_KEY_TYPE or metadata.keyring != self.store.identity \
                or not tag_matches(key, newest):
            raise KeyringError(
                f"the integrity record of {self.store.description} (revision "
                f"{newest.revision}) fails its integrity check: it was edited or forged"
            )
        self.kek.pin(frozenset(metadata.kek_ids), on_new_kek=self.adopt_kek)
        return IntegrityState(newest, metadata, key)

    def require(self) -> IntegrityState:
        """The verified integrity record; a clear error when the keyring needs the upgrade."""
        state = self.load()
        if state is None:
            raise KeyringError(
                f"{self.store.description} has no integrity record yet: run the kek_setup job "
                "once to sign its records (docs/keyring-integrity.md, 'Upgrading')"
            )
        return state

    def verified(self, records: list[DekRecord]) -> list[DekRecord]:
        """``records`` (current revisions), each checked; retired ones marked RETIRED.

        Raises KeyringError naming the first record that is forged, edited or untagged.
        """
        if not records:
            return records
        state = self.require()
        return [self._check(state, record) for record in records]

    def _check(self, state: IntegrityState, record: DekRecord) -> DekRecord:
        where = f"{record.scope} v{record.version} (revision {record.revision})"
        if record.tag is None:
            raise KeyringError(
                f"the keyring record of DEK {where} carries no integrity tag: it was written "
                "outside this release after the keyring was signed; it is refused (delete it "
                "if you did not write it)"
            )
        if not tag_matches(state.key, record):
            raise KeyringError(
                f"the keyring record of DEK {where} fails its integrity check: it was edited "
                "or forged; it is refused"
            )
        if record.wrapped.kek_id not in state.metadata.kek_ids:
            raise KeyringError(f"the keyring record of DEK {where} names KEK "
                               f"{record.wrapped.kek_id}, not one of this keyring")
        if record.state is DekState.DESTROYED:
            return record  # terminal: no metadata makes a tombstone anything else
        # What the metadata says outlives any row: a removed RETIRED revision, or restored
        # rows of a destroyed version, change nothing.
        for listed, meant, how in ((state.metadata.destroyed, DekState.DESTROYED,
                                    "rows of it were restored into"),
                                   (state.metadata.retired, DekState.RETIRED,
                                    "a RETIRED revision was removed from")):
            if (record.scope, record.version) in listed and record.state is not meant:
                log.error("DEK %s is %s, but its newest record says %s: %s %s; it stays %s",
                          where, meant.value, record.state.value, how,
                          self.store.description, meant.value)
                return replace(record, state=meant)
        return record

    # -- writing -------------------------------------------------------------------------

    def sign(self, state: IntegrityState, record: DekRecord) -> DekRecord:
        return replace(record, tag=record_tag(state.key, record))

    def create(self, *, upgrade: bool) -> IntegrityState:
        """Create the integrity record (when there is none) and return the verified state.

        With records already stored, only ``upgrade`` (the kek_setup job) may create it: it
        then signs every current record once, trusting them as they are (logged).
        """
        existing = self.load()
        if existing is not None:
            return existing
        current = self.store.current()
        if current and not upgrade:
            self.require()  # raises: the upgrade is kek_setup's, explicitly
        kek_id = self._configured_kek_id()
        key, wrapped = self.kek.generate_dek(integrity_context(self.store))
        kek_ids = {kek_id, *(r.wrapped.kek_id for r in current)}
        metadata = Metadata(self.store.identity, tuple(sorted(kek_ids)), (wrapped,),
                            frozenset((r.scope, r.version) for r in current
                                      if r.state is DekState.RETIRED),
                            frozenset((r.scope, r.version) for r in current
                                      if r.state is DekState.DESTROYED))
        record = DekRecord(scope=INTEGRITY_SCOPE, version=1, wrapped=wrapped,
                           kek_backend=self.kek.backend, key_type=INTEGRITY_KEY_TYPE,
                           created_by=self.actor, modified_by=self.actor,
                           integrity=metadata.to_json())
        state = IntegrityState(record, metadata, key)
        try:
            self.store.append(self.sign(state, record))
        except ConcurrentModification:
            return self.require()  # another writer created it first: use theirs
        self.cache.put(integrity_context(self.store), wrapped, key)
        self.kek.pin(frozenset(metadata.kek_ids), on_new_kek=self.adopt_kek)
        for old in current:
            self.store.append(self.sign(state, old.next_revision(self.actor)))
            log.warning("keyring upgrade: signed the existing record of DEK %s v%d as it is",
                        old.scope, old.version)
        log.info("created the integrity record of %s under KEK %s", self.store.description,
                 kek_id)
        return state

    def update(self, change: Callable[[Metadata], Metadata]) -> IntegrityState:
        """Append a new revision of the integrity record with ``change(metadata)``."""
        for _attempt in range(_ATTEMPTS):
            state = self.require()
            metadata = change(state.metadata)
            if metadata == state.metadata:
                return state
            record = state.record.next_revision(self.actor, integrity=metadata.to_json(),
                                                wrapped=metadata.wraps[-1])
            updated = IntegrityState(record, metadata, state.key)
            try:
                self.store.append(self.sign(updated, record))
            except ConcurrentModification:
                continue
            self.kek.pin(frozenset(metadata.kek_ids), on_new_kek=self.adopt_kek)
            return updated
        raise ConcurrentModification(f"{self.store.description}: the integrity record kept "
                                     "changing under us; run the job again")

    def record_retired(self, scope: str, version: int) -> None:
        self.update(lambda m: replace(m, retired=m.retired | {(scope, version)}))

    def record_reinstated(self, scope: str, version: int) -> None:
        """The explicit undo of a retirement: the version leaves the retired list (written
        before its new revision, so a crash in between leaves it retired)."""
        if (scope, version) in self.require().metadata.destroyed:
            raise KeyringError(f"DEK {scope} v{version} was destroyed: it cannot come back")
        self.update(lambda m: replace(m, retired=m.retired - {(scope, version)}))

    def record_destroyed(self, scope: str, version: int) -> None:
        """List the version as destroyed for good (before its key material is removed)."""
        self.update(lambda m: replace(m, destroyed=m.destroyed | {(scope, version)},
                                      retired=m.retired - {(scope, version)}))

    def adopt_kek(self, new_kek_id: str,
                  rewrap_to: Callable[[WrappedDek, WrapContext], WrappedDek]) -> None:
        """Record a new KEK (this project's own rotation) before it becomes current."""
        context = integrity_context(self.store)
        state = self.require()
        # Loading pinned the recorded ids only; the rotation may use its new key from here.
        self.kek.pin(frozenset({*state.metadata.kek_ids, new_kek_id}), on_new_kek=self.adopt_kek)
        new = rewrap_to(state.metadata.wrap_for(self._configured_kek_id()), context)
        if self.kek.unwrap(new, context) != state.key:
            raise KeyringError("the integrity key re-wrapped under the new KEK does not "
                               "unwrap to the same key; the rotation is stopped")
        self.update(lambda m: replace(m, kek_ids=tuple(sorted({*m.kek_ids, new_kek_id})),
                                      wraps=(*m.wraps, new)))
        log.info("recorded the new KEK %s in %s", new_kek_id, self.store.description)

    def rewrap(self) -> None:
        """Re-wrap the integrity key under the current KEK version (after a rotation)."""
        info = self.kek.describe()
        self._kek_id = info.kek_id
        state = self.require()
        wrapped = state.metadata.wrap_for(info.kek_id)
        if wrapped is not None and wrapped.kek_version == info.kek_version:
            return
        context = integrity_context(self.store)
        new = self.kek.rewrap(wrapped, context)
        if self.kek.unwrap(new, context) != state.key:
            raise KeyringError("the re-wrapped integrity key does not unwrap to the same key")
        self.update(lambda m: replace(m, wraps=tuple(
            [w for w in m.wraps if w.kek_id != new.kek_id] + [new])))


class GivenIntegrityRecord(DekStore):
    """A read-only store holding only the integrity record a caller read (the SQL runtime,
    which gets the keyring's rows from the query and cannot read the table itself)."""

    def __init__(self, identity: str, record: DekRecord | None) -> None:
        self.identity = identity
        self.description = f"keyring {identity}"
        self._revisions = [] if record is None else [record]

    def ensure(self) -> None:
        raise KeyringError("a given integrity record is read-only")

    def history(self, scope: str | None = None) -> list[DekRecord]:
        return []

    def integrity_history(self) -> list[DekRecord]:
        return list(self._revisions)

    def append(self, record: DekRecord) -> None:
        raise KeyringError("a given integrity record is read-only")
