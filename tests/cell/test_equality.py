"""Deterministic cells and blind indexes: published vectors recomputed independently,
equality within a domain only, and every kind of tampering refused."""

from __future__ import annotations

import base64
import hmac
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from envelope_encryption.cell import decrypt_cell, parse_cell
from envelope_encryption.cell.equality import (
    BlindIndexer,
    DeterministicOpener,
    DeterministicSealer,
    DomainKeys,
    is_deterministic_cell,
    parse_blind_index,
    parse_deterministic_cell,
)
from envelope_encryption.errors import (
    ConfigError,
    DecryptionError,
    FormatError,
    UnknownKeyVersion,
)
from envelope_encryption.secret import SecretKey

VECTORS = json.loads(
    (Path(__file__).parents[2] / "docs" / "equality-vectors.json").read_text("utf-8"))
DETERMINISTIC = VECTORS["deterministic"]
BLIND_INDEX = VECTORS["blind_index"]
LABELS = {
    "enc": b"ee equality v1: deterministic cell encryption",
    "iv": b"ee equality v1: deterministic cell synthetic IV",
    "index": b"ee equality v1: blind index",
}


def keys(domain: str = "ssn", version: int = 1, material: bytes = bytes(range(32))) -> DomainKeys:
    return DomainKeys.derive(domain, version, SecretKey(material))


def hkdf(key_hex: str, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(
        bytes.fromhex(key_hex))


@pytest.mark.parametrize("vector", DETERMINISTIC, ids=[v["name"] for v in DETERMINISTIC])
def test_deterministic_vectors_recomputed_from_the_spec(vector):
    """The published cell, rebuilt with plain primitives from the vector's inputs only."""
    enc, iv_key = hkdf(vector["domain_key_hex"], LABELS["enc"]), hkdf(
        vector["domain_key_hex"], LABELS["iv"])
    assert (enc.hex(), iv_key.hex()) == (vector["enc_key_hex"], vector["iv_key_hex"])
    header = f"ed1:{vector['version']}:{vector['type']}:"
    aad = (header + "domain=" + vector["domain"]).encode()
    assert aad.decode() == vector["aad"]
    plain = vector["plaintext"].encode()
    iv = hmac.digest(iv_key, len(aad).to_bytes(8, "big") + aad + plain, "sha256")[:12]
    payload = iv + AESGCM(enc).encrypt(iv, plain, aad)
    assert (iv.hex(), payload.hex()) == (vector["iv_hex"], vector["payload_hex"])
    assert header + base64.b64encode(payload).decode() == vector["cell"]


@pytest.mark.parametrize("vector", DETERMINISTIC, ids=[v["name"] for v in DETERMINISTIC])
def test_deterministic_vectors_seal_and_open(vector):
    domain_keys = keys(vector["domain"], vector["version"],
                       bytes.fromhex(vector["domain_key_hex"]))
    assert DeterministicSealer(domain_keys).seal(vector["plaintext"], vector["type"]) \
        == vector["cell"]
    opened = DeterministicOpener(vector["domain"], [domain_keys]).open(vector["cell"])
    assert opened == (vector["plaintext"], vector["version"], vector["type"])


@pytest.mark.parametrize("vector", BLIND_INDEX, ids=[v["name"] for v in BLIND_INDEX])
def test_blind_index_vectors(vector):
    index_key = hkdf(vector["domain_key_hex"], LABELS["index"])
    assert index_key.hex() == vector["index_key_hex"]
    domain_keys = keys(vector["domain"], vector["version"],
                       bytes.fromhex(vector["domain_key_hex"]))
    index = BlindIndexer(domain_keys, vector["bits"], vector["normal_form"]).index(
        vector["plaintext"])
    assert index == vector["index"]
    version, digest = parse_blind_index(index)
    assert version == vector["version"] and len(digest) * 4 == vector["bits"]
    if vector["normal_form"] == "exact":  # recomputed with plain primitives
        expected = hmac.digest(index_key, vector["domain"].encode() + b"\x00"
                               + vector["plaintext"].encode(), "sha256")
        assert digest == expected[:vector["bits"] // 8].hex()


def test_equal_within_a_domain_version_and_type_only():
    ssn_v1 = DeterministicSealer(keys())
    same = [ssn_v1.seal("123-45-6789", "string") for _ in range(3)]
    assert len(set(same)) == 1
    assert ssn_v1.seal("123-45-6788", "string") != same[0]
    assert ssn_v1.seal("2024-01-31", "date") != ssn_v1.seal("2024-01-31", "string")
    assert DeterministicSealer(keys("tax_id")).seal("123-45-6789", "string") != same[0]
    assert DeterministicSealer(keys(version=2, material=bytes(32))).seal(
        "123-45-6789", "string") != same[0]
    # Same key material, other version number: the header and AAD differ, so the cell does.
    assert DeterministicSealer(keys(version=2)).seal("123-45-6789", "string") != same[0]


def test_different_plaintexts_get_different_ivs():
    sealer = DeterministicSealer(keys())
    ivs = {parse_deterministic_cell(sealer.seal(f"{n:09d}", "string"))[2][:12]
           for n in range(5000)}
    assert len(ivs) == 5000


def test_every_byte_of_a_deterministic_cell_is_authenticated():
    domain_keys = keys()
    opener = DeterministicOpener("ssn", [domain_keys])
    cell = DeterministicSealer(domain_keys).seal("123-45-6789", "string")
    header, payload = cell[:len("ed1:1:string:")], base64.b64decode(cell[13:])
    for position in range(len(payload)):
        for bit in (0x01, 0x80):
            flipped = bytearray(payload)
            flipped[position] ^= bit
            with pytest.raises(DecryptionError):
                opener.open(header + base64.b64encode(bytes(flipped)).decode())
    with pytest.raises(DecryptionError):  # the type tag is authenticated
        opener.open("ed1:1:date:" + cell[13:])
    with pytest.raises(UnknownKeyVersion):
        opener.open("ed1:2:string:" + cell[13:])
    with pytest.raises(DecryptionError):  # shorter by whole base64 quanta: still refused
        opener.open(cell[:-4])
    for malformed in (cell[:-1], cell[:20], "ed1:1:string:", cell + "=", cell + "\n",
                      "ed1:01:string:" + cell[13:], " " + cell):
        with pytest.raises(FormatError):
            opener.open(malformed)


def test_wrong_domain_wrong_key_and_mixed_keys_refused():
    cell = DeterministicSealer(keys()).seal("123-45-6789", "string")
    with pytest.raises(DecryptionError, match="domain tax_id"):
        DeterministicOpener("tax_id", [keys("tax_id")]).open(cell)
    with pytest.raises(DecryptionError):
        DeterministicOpener("ssn", [keys(material=bytes(32))]).open(cell)
    with pytest.raises(ConfigError, match="another domain"):
        DeterministicOpener("ssn", [keys("tax_id")])


def test_deterministic_and_randomized_cells_never_open_as_each_other():
    cell = DeterministicSealer(keys()).seal("123-45-6789", "string")
    assert is_deterministic_cell(cell)
    with pytest.raises(FormatError):
        parse_cell(cell)
    with pytest.raises(FormatError):
        decrypt_cell(cell, {1: keys().enc.reveal()}, "main.hr.people.ssn")
    randomized = "ee1:1:string:" + cell[13:]
    assert not is_deterministic_cell(randomized)
    with pytest.raises(FormatError):
        DeterministicOpener("ssn", [keys()]).open(randomized)


def test_blind_index_equality_domains_versions_and_forms():
    v1 = keys()
    exact = BlindIndexer(v1, 32)
    assert exact.index("123-45-6789") == exact.index("123-45-6789")
    assert exact.index("123-45-6789") != exact.index("123-45-6780")
    assert BlindIndexer(keys("tax_id"), 32).index("123-45-6789") != exact.index("123-45-6789")
    other_version = BlindIndexer(keys(version=2), 32).index("123-45-6789")
    assert other_version.startswith("bi1:2:") and other_version != exact.index("123-45-6789")
    digits = BlindIndexer(v1, 32, "digits")
    assert digits.index("123-45-6789") == digits.index("123 45 6789") == \
        exact.index("123456789")
    email = BlindIndexer(keys("email"), 64, "casefold")
    assert email.index(" Ann@Example.COM") == email.index("ann@example.com")
    assert len(BlindIndexer(v1, 8).index("x")) == len("bi1:1:") + 2
    assert BlindIndexer(v1, 256).index("x")[6:].startswith(exact.index("x")[6:])
    assert exact.index_many([None, "x"]) == [None, exact.index("x")]


@pytest.mark.parametrize("bits", [0, 4, 12, 264, -8])
def test_blind_index_bits_are_checked(bits):
    with pytest.raises(ConfigError, match="multiple of 8"):
        BlindIndexer(keys(), bits)


def test_bad_configuration_is_refused_without_showing_keys():
    with pytest.raises(ConfigError, match="normal form"):
        BlindIndexer(keys(), 32, "soundex")
    with pytest.raises(ConfigError):
        keys("bad domain")
    with pytest.raises(ConfigError, match="32 bytes"):
        keys(material=b"short")
    with pytest.raises(FormatError):
        parse_blind_index("bi1:1:abc")
    shown = repr(keys())
    assert bytes(range(32)).hex() not in shown and keys().enc.reveal().hex() not in shown


# -- domain and column configuration ----------------------------------------------------------

def test_domain_specs_parse_with_defaults_and_refuse_bad_ones() -> None:
    from envelope_encryption.cell.equality import (
        DomainSpec,
        parse_column_domains,
        parse_domain_specs,
    )

    specs = parse_domain_specs("ssn:digits:64, email:casefold,plain")
    assert specs == {"ssn": DomainSpec("ssn", "digits", 64),
                     "email": DomainSpec("email", "casefold", 32),
                     "plain": DomainSpec("plain", "exact", 32)}
    assert parse_domain_specs("") == {}
    for bad in ("ssn:digits:12", "ssn:soundex", "ssn:exact:x", "a:exact:32:1", "ssn,ssn",
                "bad name", "ssn:exact:512"):
        with pytest.raises(ConfigError):
            parse_domain_specs(bad)
    columns = parse_column_domains("ssn=ssn, mail = email", specs, "--blind-index-columns")
    assert columns == {"ssn": specs["ssn"], "mail": specs["email"]}
    for bad in ("ssn", "ssn=", "=ssn", "ssn=ssns", "ssn=ssn,ssn=email", "s s=ssn"):
        with pytest.raises(ConfigError):
            parse_column_domains(bad, specs, "--blind-index-columns")
    with pytest.raises(ConfigError, match="not declared"):
        parse_column_domains("ssn=ssnn", specs, "--deterministic-columns")
