"""The shared bottom modules every layer uses: ``secret``, ``identifiers``, ``config``."""

from __future__ import annotations

import os
import pickle

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.identifiers import ColumnPlace, parse_scope, parse_table_name, quote
from envelope_encryption.secret import SecretKey


def test_secret_key_never_shows_its_bytes():
    material = os.urandom(32)
    key = SecretKey(material, "dek x v1")
    for text in (repr(key), str(key), f"{key}", repr([key]), repr({"k": key})):
        assert material.hex() not in text and repr(material) not in text
        assert "redacted" in text
    assert key == SecretKey(material) and key != SecretKey(os.urandom(32))
    with pytest.raises(TypeError):
        hash(key)
    assert pickle.loads(pickle.dumps(key)).reveal() == material


@pytest.mark.parametrize("bad", [
    "a`b", "a.b", "a b", "x; DROP TABLE t", "1abc", "", "a'b", 'a"b', "a\nb", "ä", "a" * 300,
])
def test_identifiers_refuse_injection(bad):
    with pytest.raises(ConfigError):
        quote(bad)
    with pytest.raises(ConfigError):
        ColumnPlace("main", "hr", "t", bad)


def test_identifier_helpers():
    assert quote("my_table-1") == "`my_table-1`"
    assert parse_scope("main.hr") == ("main", "hr")
    assert parse_table_name("hr.people", "main") == ("main", "hr", "people")
    with pytest.raises(ConfigError):
        parse_table_name("a.b.c.d", "main")
    with pytest.raises(ConfigError):
        parse_scope("main")


def test_settings_validate():
    with pytest.raises(ConfigError, match="unknown KEK back end"):
        Settings(backend="gcp")
    with pytest.raises(ConfigError, match="invalid catalog"):
        Settings(catalog="<catalog>")
    with pytest.raises(ConfigError, match="unknown back-end option"):
        Settings(options={"nope": "1"})
    with pytest.raises(ConfigError, match="needs --aws-region"):
        Settings(backend="aws-kms").require("aws-region")
    assert Settings().option("local-kek-file") == ".envelope/local-kek.key"
    assert Settings(metastore_id="3b7d2c5e-1f2a-4c3d-9e8f-0a1b2c3d4e5f").metastore_id[0] == "3"
    with pytest.raises(ConfigError, match="invalid metastore id"):
        Settings(metastore_id="a/b")
