"""The local Key Vault server, checked against the real azure-keyvault-keys SDK.

Everything Azure in this project is measured against this server, so its behaviour is tested
on its own: the wire format the SDK expects, the challenge flow, real RSA-OAEP-256 and A256KW,
the JSON errors, fault injection, the token endpoint and its speed.
"""

from __future__ import annotations

import os
import time

import pytest
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm, KeyWrapAlgorithm
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.keyvault_server import b64url, b64url_decode, keyvault_server

API = "api-version=7.6"


def _kw(server):
    return {"verify_challenge_resource": False, "connection_verify": str(server.ca_file)}


def _client(server, credential=None):
    return KeyClient(server.vault_url, credential or server.credential(), **_kw(server))


def _crypto(server, kid, credential=None):
    return CryptographyClient(kid, credential or server.credential(), **_kw(server))


def _public_key(key):
    n = int.from_bytes(key.key.n, "big")
    e = int.from_bytes(key.key.e, "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


OAEP_256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def test_requests_without_a_valid_token_get_the_bearer_challenge(vault):
    for headers in ({}, {"Authorization": "Bearer not-issued"}):
        response = requests.get(f"{vault.url}/keys/k/?{API}", headers=headers,
                                verify=str(vault.ca_file), timeout=5)
        assert response.status_code == 401
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ")
        assert f'authorization="https://login.microsoftonline.com/{vault.tenant_id}"' in challenge
        assert 'resource="https://vault.azure.net"' in challenge
        assert response.json()["error"]["code"] == "Unauthorized"
    assert vault.counts["challenge"] == 2
    assert vault.counts["get"] == 0


def test_missing_api_version_is_a_bad_request(vault):
    token = vault.issue_token()
    response = requests.get(f"{vault.url}/keys/k/", headers={"Authorization": f"Bearer {token}"},
                            verify=str(vault.ca_file), timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadParameter"


def test_sdk_round_trip_create_get_versions_rotate(vault):
    client = _client(vault)
    created = client.create_rsa_key("kek", size=2048, key_operations=["wrapKey", "unwrapKey"])
    # kid is an absolute URL on the vault host; binary fields are base64url without padding.
    assert created.id == f"{vault.url}/keys/kek/{created.properties.version}"
    assert created.key_type == "RSA"
    assert int.from_bytes(created.key.e, "big") == 65537
    assert int.from_bytes(created.key.n, "big").bit_length() == 2048
    assert sorted(created.key_operations) == ["unwrapKey", "wrapKey"]
    assert created.properties.enabled is True

    latest = client.get_key("kek")  # GET /keys/kek/ (trailing slash)
    assert latest.id == created.id and latest.key.n == created.key.n
    exact = client.get_key("kek", created.properties.version)
    assert exact.id == created.id

    rotated = client.rotate_key("kek")
    assert rotated.properties.version != created.properties.version
    assert client.get_key("kek").id == rotated.id
    versions = {p.version for p in client.list_properties_of_key_versions("kek")}
    assert versions == {created.properties.version, rotated.properties.version}
    # The old version keeps its own key material.
    assert client.get_key("kek", created.properties.version).key.n == created.key.n
    assert rotated.key.n != created.key.n
    assert vault.counts["create"] == 1 and vault.counts["rotate"] == 1


def test_rsa_oaep_256_is_real_and_interoperable(vault):
    client = _client(vault)
    key = client.create_rsa_key("kek", size=2048)
    crypto = _crypto(vault, key.id)
    dek = os.urandom(32)
    # Wrapped outside the SDK with SHA-256 and MGF1-SHA-256: the server must unwrap it.
    foreign = _public_key(key).encrypt(dek, OAEP_256)
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, foreign).key == dek
    # The SDK wraps locally with the public key the server returned, the server unwraps.
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek)
    assert len(wrapped.encrypted_key) == 256
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == dek
    assert vault.counts["wrapkey"] == 0  # RSA wraps never reach the vault
    assert vault.counts["unwrapkey"] == 2
    # encrypt/decrypt take the same path.
    encrypted = crypto.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"hello")
    assert crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, encrypted.ciphertext).plaintext \
        == b"hello"
    # SHA-1 OAEP is a different algorithm: the same ciphertext does not unwrap under it.
    with pytest.raises(HttpResponseError) as caught:
        crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, wrapped.encrypted_key)
    assert caught.value.status_code == 400


def test_remote_wrap_and_raw_rest_shapes(vault):
    client = _client(vault)
    key = client.create_rsa_key("kek", size=2048)
    token = vault.issue_token()
    headers = {"Authorization": f"Bearer {token}"}
    value = os.urandom(32)
    response = requests.post(f"{key.id}/wrapkey?{API}", headers=headers,
                             json={"alg": "RSA-OAEP-256", "value": b64url(value)},
                             verify=str(vault.ca_file), timeout=5)
    body = response.json()
    assert response.status_code == 200 and body["kid"] == key.id
    assert "=" not in body["value"]
    response = requests.post(f"{key.id}/unwrapkey?{API}", headers=headers,
                             json={"alg": "RSA-OAEP-256", "value": body["value"]},
                             verify=str(vault.ca_file), timeout=5)
    assert b64url_decode(response.json()["value"]) == value
    assert vault.counts["wrapkey"] == 1 and vault.counts["unwrapkey"] == 1


def test_tampered_ciphertext_is_a_400(vault):
    client = _client(vault)
    key = client.create_rsa_key("kek", size=2048)
    crypto = _crypto(vault, key.id)
    wrapped = bytearray(crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, os.urandom(32))
                        .encrypted_key)
    wrapped[10] ^= 1
    with pytest.raises(HttpResponseError) as caught:
        crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, bytes(wrapped))
    assert caught.value.status_code == 400
    assert caught.value.error.code == "BadParameter"


def _remote(server, client, kid, operation, alg, value):
    from azure.core.rest import HttpRequest

    path = kid.split(server.url, 1)[1]
    response = client.send_request(HttpRequest("POST", f"{path}/{operation}",
                                               json={"alg": alg, "value": b64url(value)}))
    return response


def test_oct_hsm_only_in_a_managed_hsm_and_a256kw_works(vault, hsm):
    with pytest.raises(HttpResponseError) as caught:
        _client(vault).create_oct_key("aes", size=256, hardware_protected=True)
    assert caught.value.status_code == 400

    client = _client(hsm)
    key = client.create_oct_key("aes", size=256, hardware_protected=True)
    assert key.key_type == "oct-HSM"
    assert key.key.k is None  # symmetric material never leaves the HSM
    dek = os.urandom(32)
    response = _remote(hsm, client, key.id, "wrapkey", "A256KW", dek)
    assert response.status_code == 200 and response.json()["kid"] == key.id
    wrapped = b64url_decode(response.json()["value"])
    assert len(wrapped) == 40  # RFC 3394: 8 bytes of integrity check
    response = _remote(hsm, client, key.id, "unwrapkey", "A256KW", wrapped)
    assert b64url_decode(response.json()["value"]) == dek
    assert hsm.counts["wrapkey"] == 1 and hsm.counts["unwrapkey"] == 1
    tampered = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    response = _remote(hsm, client, key.id, "unwrapkey", "A256KW", tampered)
    assert response.status_code == 400
    # RSA algorithms do not apply to an AES key; A256KW needs whole 8-byte blocks.
    assert _remote(hsm, client, key.id, "unwrapkey", "RSA-OAEP-256", wrapped).status_code == 400
    assert _remote(hsm, client, key.id, "wrapkey", "A256KW", b"x" * 20).status_code == 400


def test_sdk_pitfall_cryptography_client_wraps_oct_hsm_with_a_random_local_key(hsm):
    """Why the provider sends A256KW to the HSM itself.

    azure-keyvault-keys (4.11) builds a local AES key from random bytes when the vault
    returns an oct key without ``k`` (as a Managed HSM always does) and wraps locally. The
    result never reaches the HSM and no other client can unwrap it. If this test starts to
    fail, the SDK has been fixed and the provider could use CryptographyClient again.
    """
    key = _client(hsm).create_oct_key("aes", size=256, hardware_protected=True)
    dek = os.urandom(32)
    wrapped = _crypto(hsm, key.id).wrap_key(KeyWrapAlgorithm.aes_256, dek).encrypted_key
    assert hsm.counts["wrapkey"] == 0  # wrapped locally, under a key the HSM does not have
    with pytest.raises(HttpResponseError) as caught:
        _crypto(hsm, key.id).unwrap_key(KeyWrapAlgorithm.aes_256, wrapped)
    assert caught.value.status_code == 400


def test_disabled_version_is_forbidden_until_enabled_again(vault):
    client = _client(vault)
    key = client.create_rsa_key("kek", size=2048)
    wrapped = _crypto(vault, key.id).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32)
    client.update_key_properties("kek", key.properties.version, enabled=False)
    assert [p.enabled for p in client.list_properties_of_key_versions("kek")] == [False]
    with pytest.raises(HttpResponseError) as caught:
        client.get_key("kek", key.properties.version)
    assert caught.value.status_code == 403
    assert caught.value.error.innererror == {"code": "KeyDisabled"}
    with pytest.raises(HttpResponseError) as caught:
        _crypto(vault, key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert caught.value.status_code == 403 and "disabled" in caught.value.message
    client.update_key_properties("kek", key.properties.version, enabled=True)
    assert _crypto(vault, key.id).unwrap_key(
        KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == b"k" * 32


def test_key_ops_are_enforced(vault):
    key = _client(vault).create_rsa_key("enc-only", size=2048, key_operations=["encrypt",
                                                                               "decrypt"])
    wrapped = _public_key(key).encrypt(b"x" * 32, OAEP_256)
    with pytest.raises(HttpResponseError) as caught:
        _crypto(vault, key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped)
    assert caught.value.status_code == 403


def test_not_found_errors(vault):
    client = _client(vault)
    with pytest.raises(ResourceNotFoundError):
        client.get_key("missing")
    key = client.create_rsa_key("kek", size=2048)
    with pytest.raises(ResourceNotFoundError):
        client.get_key("kek", "0" * 32)
    vault.purge_version("kek", key.properties.version)
    with pytest.raises(ResourceNotFoundError):
        _crypto(vault, key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"x" * 256)


def test_invalid_names_and_sizes_are_rejected(vault):
    client = _client(vault)
    with pytest.raises(HttpResponseError) as caught:
        client.create_rsa_key("bad_name", size=2048)
    assert caught.value.status_code == 400
    with pytest.raises(HttpResponseError) as caught:
        client.create_rsa_key("ok", size=1024)
    assert caught.value.status_code == 400


def test_delete_recover_purge(vault):
    client = _client(vault)
    key = client.create_rsa_key("kek", size=2048)
    deleted = client.begin_delete_key("kek").result()
    assert deleted.recovery_id == f"{vault.url}/deletedkeys/kek"
    with pytest.raises(ResourceNotFoundError):
        client.get_key("kek")
    with pytest.raises(ResourceExistsError):  # the name is held while recoverable
        client.create_rsa_key("kek", size=2048)
    recovered = client.begin_recover_deleted_key("kek").result()
    assert recovered.id == key.id
    client.begin_delete_key("kek").result()
    client.purge_deleted_key("kek")
    assert client.create_rsa_key("kek", size=2048).id != key.id


def test_injected_429_honours_retry_after(vault):
    client = _client(vault)
    key = client.create_rsa_key("kek", size=2048)
    crypto = _crypto(vault, key.id)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32).encrypted_key
    vault.reset_counts()
    vault.inject(429, count=1, operations={"unwrapkey"}, retry_after="1")
    started = time.perf_counter()
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped).key == b"k" * 32
    elapsed = time.perf_counter() - started
    assert elapsed >= 0.95, "the SDK must wait the Retry-After second"
    assert vault.counts["unwrapkey"] == 2


def test_injected_403_after_some_calls(vault):
    client = _client(vault)
    client.create_rsa_key("kek", size=2048)
    vault.inject(403, count=1, operations={"get"}, after=1)
    client.get_key("kek")
    with pytest.raises(HttpResponseError) as caught:
        client.get_key("kek")
    assert caught.value.status_code == 403
    client.get_key("kek")


def test_token_endpoint_issues_tokens_the_vault_accepts(vault):
    vault.register_client("app-id", "right-secret")
    good = ClientSecretCredential(vault.tenant_id, "app-id", "right-secret",
                                  authority=vault.authority, disable_instance_discovery=True,
                                  connection_verify=str(vault.ca_file))
    _client(vault, good).create_rsa_key("kek", size=2048)
    assert vault.counts["token"] == 1 and vault.counts["create"] == 1
    bad = ClientSecretCredential(vault.tenant_id, "app-id", "wrong-secret",
                                 authority=vault.authority, disable_instance_discovery=True,
                                 connection_verify=str(vault.ca_file))
    with pytest.raises(ClientAuthenticationError):
        _client(vault, bad).get_key("kek")


def test_keep_alive_and_speed(vault):
    client = _client(vault)
    key = client.create_rsa_key("kek", size=2048)
    crypto = _crypto(vault, key.id)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32).encrypted_key
    vault.reset_counts()
    started = time.perf_counter()
    for _ in range(50):
        crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped)
    per_call = (time.perf_counter() - started) / 50
    assert vault.counts["connection"] <= 1, "calls must reuse one kept-alive connection"
    # ~3 ms measured on a 2-core machine; 40 ms would mean Nagle/delayed-ACK stalls.
    assert per_call < 0.03, f"{per_call * 1000:.1f} ms per unwrap"


def test_certificate_is_generated_for_loopback_and_removed_on_stop():
    with keyvault_server() as server:
        cert = x509.load_pem_x509_certificate(server.ca_file.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in san.get_values_for_type(x509.DNSName)
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        key_file = server.ca_file.parent / "key.pem"
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        assert server.url.startswith("https://127.0.0.1:")
        with pytest.raises(requests.exceptions.SSLError):  # not trusted without the CA file
            requests.get(server.url, timeout=5)
    assert not server.ca_file.parent.exists()
