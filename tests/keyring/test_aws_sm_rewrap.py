"""KEK rotation over the Secrets Manager provider and store, interrupted and finished."""

from __future__ import annotations

import pytest

from envelope_encryption.kek.aws.secrets_manager import SecretsManagerKekProvider
from envelope_encryption.kek.base import KekInfo, KekProvider, WrapContext, WrappedDek
from envelope_encryption.keyring import Keyring
from envelope_encryption.secret import SecretKey


class CrashAfter(KekProvider):
    """The real provider, but the process dies (an exception) after ``n`` re-wraps."""

    backend = "aws-sm"

    def __init__(self, inner: KekProvider, n: int) -> None:
        self.inner, self.left = inner, n

    def ensure(self) -> KekInfo:
        return self.inner.ensure()

    def describe(self) -> KekInfo:
        return self.inner.describe()

    def _wrap_key(self, dek: bytes, context: WrapContext) -> WrappedDek:
        return self.inner.wrap(SecretKey(dek), context)

    def _unwrap_key(self, wrapped: WrappedDek, context: WrapContext) -> bytes:
        return self.inner.unwrap(wrapped, context).reveal()

    def rewrap(self, wrapped: WrappedDek, context: WrapContext) -> WrappedDek:
        if self.left == 0:
            raise RuntimeError("driver lost in the middle of the re-wrap")
        self.left -= 1
        return self.inner.rewrap(wrapped, context)


def test_interrupted_rewrap_leaves_every_dek_readable_and_a_rerun_finishes(sm, sm_kek, sm_store):
    kek, store = sm_kek, sm_store
    kek.ensure()
    store.ensure()
    keyring = Keyring(store, kek, "admin")
    for scope in ("main.sales", "main.sales", "main.hr"):
        keyring.create_version(scope)
    plain = {(r.scope, r.version): keyring.dek(r.scope, r.version) for r in store.current()}
    old_version = kek.describe().kek_version

    new_version = kek.rotate().kek_version
    with pytest.raises(RuntimeError, match="driver lost"):
        # Two re-wraps: the keyring's integrity key first, then one DEK.
        Keyring(store, CrashAfter(kek, 2), "admin").rewrap_all()

    # A new process: every DEK still unwraps, whichever KEK version wraps it now.
    kek = SecretsManagerKekProvider(sm, kek.secret_name)
    versions = sorted(r.wrapped.kek_version == new_version for r in store.current())
    assert versions == [False, False, True]
    for (scope, version), dek in plain.items():
        assert Keyring(store, kek).dek(scope, version) == dek

    report = Keyring(store, kek, "admin").rewrap_all()
    assert len(report.rewrapped) == 2 and len(report.already_current) == 1
    kek = SecretsManagerKekProvider(sm, kek.secret_name)  # another new process
    assert {r.wrapped.kek_version for r in store.current()} == {new_version}
    for (scope, version), dek in plain.items():
        assert Keyring(store, kek).dek(scope, version) == dek
    # The previous KEK version is still there (AWSPREVIOUS) for anything wrapped by it.
    stages = sm.describe_secret(SecretId=kek.secret_name)["VersionIdsToStages"]
    assert stages[old_version] == ["AWSPREVIOUS"]
    # A second re-run has nothing to do.
    assert Keyring(store, kek).rewrap_all().rewrapped == []
