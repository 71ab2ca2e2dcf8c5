"""The KEK provider contract, one test body run over every back end.

Each back end runs against the closest thing to its service that runs here: a key file
(``local``), moto over HTTP (``aws-kms``, ``aws-sm``) and the project's HTTPS Key Vault
driven by the real Azure SDK (``azure``). Every provider is built by
:func:`envelope_encryption.kek.build_kek_provider`, as the jobs and the SQL runtime build
them; a second provider object on the same KEK stands for another process.

Back-end-specific behaviour (KMS contexts and aliases, Secrets Manager stages, Key Vault
kid binding, HSM keys, error messages) is tested beside each back end, in tests/kek/aws and
tests/kek/azure.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import (
    ConfigError,
    KeyNotFound,
    KeyServiceError,
    KeyUnwrapFailed,
)
from envelope_encryption.kek import KekProvider, WrapContext, WrappedDek, build_kek_provider
from envelope_encryption.kek.base import INTEGRITY_PURPOSE
from envelope_encryption.secret import SecretKey

BACKENDS = ("local", "aws-kms", "aws-sm", "azure")
CTX = WrapContext("main.sales", 1)


@dataclass
class Backend:
    """One back end under test: its name and a maker of providers on one KEK."""

    name: str
    make: Callable[[], KekProvider]

    def unknown_version(self, wrapped: WrappedDek) -> WrappedDek:
        """``wrapped`` naming a KEK version that does not exist (for KMS, a KEK is a key)."""
        if self.name == "aws-kms":
            missing = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-4000-8000-000000000000"
            return replace(wrapped, kek_id=missing)
        missing = {"local": "9", "aws-sm": "00000000-0000-4000-8000-000000000000",
                   "azure": "0" * 32}[self.name]
        return replace(wrapped, kek_version=missing)


def _settings(request: pytest.FixtureRequest, name: str, tmp_path) -> tuple[Settings, object]:
    """Settings of one back end pointed at its local service, and the credential to pass."""
    if name == "local":
        return Settings(backend="local", options={"local-kek-file": str(tmp_path / "kek.key")}), \
            None
    if name == "aws-kms":
        return request.getfixturevalue("make_kms_settings")(), None
    if name == "aws-sm":
        request.getfixturevalue("sm")  # empty moto state
        return request.getfixturevalue("sm_settings"), None
    vault = request.getfixturevalue("vault")
    return Settings(backend="azure", catalog="main", metastore_id="ms1", options={
        "azure-vault-url": vault.vault_url, "azure-ca-bundle": str(vault.ca_file),
        "azure-key-size": "2048", "azure-key-name": f"kek-{uuid.uuid4().hex[:8]}",
    }), vault.credential()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[Backend]:
    settings, credential = _settings(request, request.param, tmp_path)
    made: list[KekProvider] = []

    def make() -> KekProvider:
        provider = build_kek_provider(settings, credential)
        made.append(provider)
        return provider

    yield Backend(request.param, make)
    for provider in made:
        provider.close()


@pytest.fixture
def kek(backend: Backend) -> KekProvider:
    provider = backend.make()
    provider.ensure()
    return provider


def _forms(key: SecretKey) -> list[str]:
    material = key.reveal()
    return [material.hex(), repr(material), base64.b64encode(material).decode(),
            base64.urlsafe_b64encode(material).rstrip(b"=").decode()]


def test_round_trip(backend, kek):
    dek, wrapped = kek.generate_dek(CTX)
    assert isinstance(dek, SecretKey) and len(dek) == 32
    assert dek.reveal() not in wrapped.blob
    assert kek.unwrap(wrapped, CTX) == dek
    other, _ = kek.generate_dek(CTX)
    assert other != dek  # fresh keys, not a constant
    given = SecretKey(os.urandom(32), "imported dek")
    assert kek.unwrap(kek.wrap(given, CTX), CTX) == given
    # Another process (a new provider on the same KEK) needs nothing but the record.
    assert backend.make().unwrap(wrapped, CTX) == dek


def test_the_integrity_key_and_a_dek_never_stand_in_for_each_other(backend, kek):
    """docs/keyring-integrity.md: the integrity key's wrap context is one no DEK has."""
    integrity = WrapContext("main.crypto.keyvault", 1, INTEGRITY_PURPOSE)
    key, wrapped = kek.generate_dek(integrity)
    assert backend.make().unwrap(wrapped, integrity) == key  # another process
    as_dek = WrapContext("main.crypto.keyvault", 1)
    with pytest.raises(KeyUnwrapFailed):
        kek.unwrap(wrapped, as_dek)
    _, dek_wrapped = kek.generate_dek(as_dek)
    with pytest.raises(KeyUnwrapFailed):
        kek.unwrap(dek_wrapped, integrity)


@pytest.mark.parametrize("other", [WrapContext("main.hr", 1), WrapContext("main.sales", 2)],
                         ids=["wrong-scope", "wrong-version"])
def test_wrong_scope_or_version_is_refused(kek, other):
    _, wrapped = kek.generate_dek(CTX)
    with pytest.raises(KeyUnwrapFailed):
        kek.unwrap(wrapped, other)


def test_tampered_blob_is_refused(kek):
    _, wrapped = kek.generate_dek(CTX)
    flipped = bytearray(wrapped.blob)
    flipped[-1] ^= 0x01
    with pytest.raises(KeyUnwrapFailed):
        kek.unwrap(replace(wrapped, blob=bytes(flipped)), CTX)


@pytest.mark.parametrize("keep", [-5, 20], ids=["short-by-5", "first-20-bytes"])
def test_truncated_blob_is_refused(kek, keep):
    _, wrapped = kek.generate_dek(CTX)
    with pytest.raises(KeyUnwrapFailed):
        kek.unwrap(replace(wrapped, blob=wrapped.blob[:keep]), CTX)


@pytest.mark.parametrize("size", [16, 31, 33])
def test_wrong_dek_length_is_refused(kek, size):
    with pytest.raises(ConfigError, match="not a 256-bit key"):
        kek.wrap(SecretKey(os.urandom(size)), CTX)


def test_rotation_keeps_old_versions_unwrapping(backend, kek):
    dek = SecretKey(os.urandom(32))
    before = kek.describe()
    old = kek.wrap(dek, CTX)
    assert (old.kek_id, old.kek_version) == (before.kek_id, before.kek_version)
    after = kek.rotate()
    assert (after.kek_id, after.kek_version) != (before.kek_id, before.kek_version)
    current = kek.describe()
    assert (current.kek_id, current.kek_version) == (after.kek_id, after.kek_version)
    new = kek.wrap(dek, CTX)
    assert (new.kek_id, new.kek_version) == (after.kek_id, after.kek_version)
    fresh = backend.make()  # a new process reads both versions again
    assert fresh.unwrap(old, CTX) == dek == fresh.unwrap(new, CTX)
    assert kek.unwrap(old, CTX) == dek == kek.unwrap(new, CTX)
    rewrapped = kek.rewrap(old, CTX)
    assert (rewrapped.kek_id, rewrapped.kek_version) == (after.kek_id, after.kek_version)
    assert kek.unwrap(rewrapped, CTX) == dek


def test_an_unknown_kek_version_is_key_not_found(backend, kek):
    _, wrapped = kek.generate_dek(CTX)
    with pytest.raises(KeyNotFound):
        backend.make().unwrap(backend.unknown_version(wrapped), CTX)


def test_a_missing_kek_is_key_not_found(backend):
    with pytest.raises(KeyNotFound):
        backend.make().describe()


def test_an_untranslated_failure_becomes_key_service_error(kek, monkeypatch):
    secret = "token=s3cr3t-from-the-sdk"

    def broken(*args, **kwargs):
        raise RuntimeError(secret)

    monkeypatch.setattr(kek, "_unwrap_key", broken)
    monkeypatch.setattr(kek, "_wrap_key", broken)
    dek = SecretKey(os.urandom(32))
    for call in (lambda: kek.wrap(dek, CTX),
                 lambda: kek.unwrap(WrappedDek(b"x" * 60, "k", "1"), CTX)):
        with pytest.raises(KeyServiceError, match="RuntimeError") as caught:
            call()
        assert secret not in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_repr_and_errors_never_show_the_key(kek):
    dek, wrapped = kek.generate_dek(CTX)
    with pytest.raises(KeyUnwrapFailed) as caught:
        kek.unwrap(wrapped, WrapContext("main.hr", 1))
    texts = [repr(kek), str(kek), repr(wrapped), repr(dek), str(dek), str(caught.value)]
    for form in _forms(dek):
        for text in texts:
            assert form not in text
    assert "redacted" in repr(dek)


def test_close_is_idempotent_and_a_context_manager(backend):
    with backend.make() as provider:
        provider.ensure()
        _, wrapped = provider.generate_dek(CTX)
    provider.close()
    provider.close()
    # Closing releases clients, it does not break the provider: a later call opens new ones.
    assert provider.unwrap(wrapped, CTX) == backend.make().unwrap(wrapped, CTX)
