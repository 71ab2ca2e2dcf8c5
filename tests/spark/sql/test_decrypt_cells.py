"""The batch decrypt function's handler, called as Unity Catalog and local Spark call it.

``decrypt_cells_batches`` gets batches of (value, place, keyring) columns: pandas Series on
Databricks, pyarrow arrays from the local Arrow UDF. These tests call it directly with both
kinds and check every answer: the plaintext of an authentic cell, the cause of each
refusal, NULL for NULL, nothing at all (and no key-service call) without a keyring, and a
refusal of a keyring whose records do not verify.
"""

from __future__ import annotations

import base64
import json
import os

import pandas as pd
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope_encryption.cell.format import RowKey, encrypt_value
from envelope_encryption.errors import KeyringError, UnknownKeyVersion
from envelope_encryption.spark.sql import runtime
from envelope_encryption.spark.sql.decrypt_cells import decrypt_cells_batches, scope_keys
from envelope_encryption.spark.sql.passed_records import HEX_COLUMNS

PLACE = "people.ssn"


def _passed(record) -> dict:
    """A record as the key subquery passes it: the columns its tag covers, binary as hex."""
    row = {"key_alias": record.scope, "key_version": record.version,
           "revision": record.revision, "key_state": record.state.value,
           "key_type": record.key_type, "kek_backend": record.kek_backend,
           "wrapped_key": record.wrapped.blob, "kek_id": record.wrapped.kek_id,
           "kek_version": record.wrapped.kek_version, "record_tag": record.tag,
           "integrity": record.integrity}
    return {k: v.hex() if k in HEX_COLUMNS and v is not None else v for k, v in row.items()}


def _keyring_text(ctx, scope: str, edit=None) -> str:
    records = [_passed(r) for r in ctx.store.current(scope)]
    if edit:
        edit(records)
    (integrity,) = ctx.store.integrity_history()
    return json.dumps({"key_alias": scope, "records": records,
                       "integrity": json.dumps(_passed(integrity))})


@pytest.fixture
def scope(local_ctx):
    """A scope with versions 1 and 2; its place, keys and a fresh worker state."""
    name = local_ctx.settings.scope("hr")
    local_ctx.keyring.create_version(name)
    keys = {v: local_ctx.keyring.dek(name, v).reveal() for v in (1, 2)}
    worker = runtime._Worker()
    original, runtime._worker = runtime._worker, worker
    yield name, f"{name}.{PLACE}", keys
    runtime._worker = original
    worker.close()


def _cases(place: str, keys: dict[int, bytes]) -> list[tuple[str | None, str | None]]:
    """(value, expected answer) pairs covering every outcome."""
    def cell(text, version=1, at=place, row=None):
        return encrypt_value(text, keys[version], version, "string", at, row=row)

    not_utf8_iv = os.urandom(12)
    not_utf8 = "ee1:2:string:" + base64.b64encode(not_utf8_iv + AESGCM(keys[2]).encrypt(
        not_utf8_iv, b"\xff\xfe", f"ee1:2:string:{place}".encode())).decode()
    good = cell("933-73-8723")
    return [
        (good, "+933-73-8723"),
        (cell("Zoë Ångström 日本", 2), "+Zoë Ångström 日本"),
        (cell(""), "+"),
        (None, None),
        (good.replace("ee1:1:", "ee1:7:"), "!V"),  # a version the keyring lacks
        (cell("x", at=place + "_other"), "!A"),  # moved from another column
        (good[:-6] + ("A" if good[-6] != "A" else "B") + good[-5:], "!A"),  # tampered
        (not_utf8, "!U"),
        (good + "\n", "!M"),
        (good.replace(":string:", ":string+row:"), "!M"),
        (cell("x", row=RowKey("id", "1")), "!M"),  # row-bound: the masks bind no row
        ("933-73-8723", "!N"),
        (base64.b64encode(os.urandom(40)).decode(), "!N"),  # legacy shape, no legacy key
    ]


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_every_value_gets_its_answer_with_both_column_kinds(local_ctx, scope, kind):
    name, place, keys = scope
    cases = _cases(place, keys)
    values = [v for v, _ in cases]
    ring = _keyring_text(local_ctx, name)
    column = (lambda xs: pd.Series(xs, dtype=object)) if kind == "pandas" else \
        (lambda xs: pa.array(xs, type=pa.string()))
    unwrapped: list[int] = []
    batches = [(column(values), column([place] * len(values)), column([ring] * len(values)))] * 2
    answers = list(decrypt_cells_batches(iter(batches), runtime.settings_payload(
        local_ctx.settings), unwrapped.append))
    for answer in answers:
        got = answer.tolist() if kind == "pandas" else answer.to_pylist()
        assert got == [expected for _, expected in cases]
    # Two batches, two versions: each version unwrapped once by this worker.
    assert sorted(unwrapped) == [1, 2]


def test_no_keyring_no_answer_and_no_unwrap(local_ctx, scope):
    _, place, keys = scope
    values = [v for v, _ in _cases(place, keys)]
    unwrapped: list[int] = []
    (answer,) = decrypt_cells_batches(iter([(
        pa.array(values), pa.array([place] * len(values)), pa.array([None] * len(values),
                                                                    type=pa.string()))]),
        runtime.settings_payload(local_ctx.settings), unwrapped.append)
    assert answer.to_pylist() == [None] * len(values)
    assert unwrapped == [] and len(runtime._worker._deployments) == 0


def test_places_and_keyrings_mixed_in_one_batch_are_each_answered(local_ctx, scope):
    name, place, keys = scope
    other = place.replace(".ssn", ".name")
    ring = _keyring_text(local_ctx, name)
    values = [encrypt_value("a", keys[1], 1, "string", place),
              encrypt_value("b", keys[2], 2, "string", other),
              encrypt_value("c", keys[1], 1, "string", place)]
    (answer,) = decrypt_cells_batches(iter([(
        pa.array(values), pa.array([place, other, place]), pa.array([ring, ring, None]))]),
        runtime.settings_payload(local_ctx.settings))
    assert answer.to_pylist() == ["+a", "+b", None]


def test_a_keyring_that_does_not_verify_is_refused_before_any_unwrap(local_ctx, scope):
    name, _, _ = scope
    payload = runtime.settings_payload(local_ctx.settings)

    def edit_state(records):
        records[0]["key_state"] = "RETIRED" if records[0]["key_state"] == "ENABLED" \
            else "ENABLED"

    def forge(records):
        records[0]["wrapped_key"] = os.urandom(60).hex()

    unwrapped: list[int] = []
    for edit in (edit_state, forge):
        with pytest.raises((KeyringError, UnknownKeyVersion)):
            scope_keys(payload, _keyring_text(local_ctx, name, edit), unwrapped.append)
    for text in ("not json", json.dumps({"records": []}), json.dumps([1])):
        with pytest.raises(KeyringError, match="not the key subquery's"):
            scope_keys(payload, text)
    assert unwrapped == []
    keys = scope_keys(payload, _keyring_text(local_ctx, name))
    assert sorted(keys.keys) == [1, 2] and keys.legacy == []
    assert "versions=[1, 2]" in repr(keys) and keys.keys[1].hex() not in repr(keys)
