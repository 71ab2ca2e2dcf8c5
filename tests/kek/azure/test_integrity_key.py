"""The keyring's integrity key under an Azure RSA key: sealed under a key derived from the
vault's signature, because anyone with the public key can RSA-wrap (local Key Vault)."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from envelope_encryption.errors import KeyServiceError, KeyUnwrapFailed
from envelope_encryption.kek import WrapContext, WrappedDek
from envelope_encryption.kek.azure import provider as akv
from envelope_encryption.kek.base import INTEGRITY_PURPOSE
from envelope_encryption.secret import SecretKey
from tests.support.azure_fixtures import make_provider

INTEGRITY = WrapContext("main.crypto.keyvault", 1, INTEGRITY_PURPOSE)
CTX = WrapContext("main.sales", 1)


def test_the_integrity_key_is_sealed_by_a_signature_and_unwraps_with_one_sign(vault):
    provider = make_provider(vault)
    provider.ensure()
    key, wrapped = provider.generate_dek(INTEGRITY)
    assert wrapped.blob[:2] == bytes([akv.FORMAT, 0x03])
    vault.reset_counts()
    assert make_provider(vault, provider.key_name).unwrap(wrapped, INTEGRITY) == key
    assert vault.counts["sign"] == 1 and "unwrapkey" not in vault.counts
    # It is bound to its context: as a DEK, or for another keyring, it does not unwrap.
    with pytest.raises(KeyUnwrapFailed):
        provider.unwrap(wrapped, WrapContext("main.crypto.other", 1, INTEGRITY_PURPOSE))


def test_an_rsa_wrapped_integrity_key_anyone_could_make_is_refused(vault):
    provider = make_provider(vault)
    provider.ensure()
    # The attacker wraps a key they know with the vault key's public half, binding tag and all.
    known = os.urandom(32)
    dek_wrapped = provider.wrap(SecretKey(known), CTX)  # RSA-OAEP, public key only
    rsa_part = dek_wrapped.blob[2:-akv.TAG_BYTES]
    tag = hmac.new(known, akv._TAG_LABEL + INTEGRITY.as_aad(), hashlib.sha256).digest()
    forged = WrappedDek(bytes([akv.FORMAT, akv.ALG_RSA_OAEP_256]) + rsa_part + tag,
                        dek_wrapped.kek_id, dek_wrapped.kek_version)
    with pytest.raises(KeyUnwrapFailed, match="not sealed by a vault signature"):
        provider.unwrap(forged, INTEGRITY)


def test_a_kid_of_another_key_in_the_same_vault_is_refused_without_a_call(vault):
    provider = make_provider(vault)
    provider.ensure()
    other = make_provider(vault)
    other.ensure()
    wrapped = other.wrap(SecretKey(os.urandom(32)), CTX)
    vault.reset_counts()
    with pytest.raises(KeyServiceError, match="not a version of the configured key"):
        provider.unwrap(wrapped, CTX)
    assert sum(vault.counts.values()) == 0


def test_ensure_permits_sign_on_a_key_made_without_it(vault):
    provider = make_provider(vault)
    provider.key_client.create_rsa_key(provider.key_name, size=2048,
                                       key_operations=["wrapKey", "unwrapKey"])
    provider.ensure()
    ops = provider.key_client.get_key(provider.key_name).key_operations
    assert "sign" in [str(getattr(op, "value", op)) for op in ops]
    key, wrapped = provider.generate_dek(INTEGRITY)
    assert provider.unwrap(wrapped, INTEGRITY) == key
