"""The SQL mask opens legacy cells of every enabled imported legacy version of a scope.

A legacy cell (``base64(aes_encrypt(value, dek, 'GCM', 'DEFAULT'))``, the original notebooks'
format) names no version: the mask tries the scope's enabled legacy DEKs newest first and
the GCM tag picks the key. Run through the rendered SQL on local Spark (read_table_as).
"""

from __future__ import annotations

import os

import pytest
from pyspark.errors import PySparkException

from envelope_encryption.spark.columns import TableRef, encrypt_columns
from envelope_encryption.spark.sql.cell_shape import LEGACY_NOT_AUTHENTIC
from envelope_encryption.spark.sql.local_unity_catalog import read_table_as
from envelope_encryption.spark.sql.target import SqlOptions
from tests.support.legacy_data import local_legacy_scope, notebook_cells

from .conftest import make_local_context

V1 = ["Ada Lovelace", "Zoë Ångström 日本", ""]
V2 = ["Grace Hopper", "Ann ' ; --"]
NEW = ["Edsger Dijkstra"]


@pytest.fixture()
def legacy_scope(spark, tmp_path):
    """Scope ``<catalog>.legacy``: legacy v1 and v2 imported, v3 a fresh active DEK;
    table legacy.people holds legacy cells of v1 and v2 and ee1 cells of v3."""
    base = make_local_context(spark, tmp_path)  # its catalog, keyring table and KEK file
    settings, deks = local_legacy_scope(base, "legacy", versions=2)
    keyring = base.keyring
    ref = TableRef(settings.catalog, "legacy", "people")
    legacy = notebook_cells(spark, V1, deks[1]) + notebook_cells(spark, V2, deks[2])
    rows = [(i, cell) for i, cell in enumerate(legacy, start=1)]
    fresh = encrypt_columns(spark.createDataFrame(
        [(len(rows) + i, v) for i, v in enumerate(NEW, start=1)], "id int, name string"),
        ["name"], keyring=keyring, table=ref)
    base.lakehouse.ensure_schema(spark, ref.catalog, "legacy", "test data")
    table = f"{base.lakehouse.schema(ref.catalog, 'legacy')}.`people`"
    spark.createDataFrame(rows, "id int, name string").unionByName(fresh) \
        .write.saveAsTable(table)
    return settings, keyring, ref, deks


def _names(spark, settings, ref, *, member=True, decrypt="strict"):
    seen = read_table_as(spark, settings, ref, ["name"], member=member,
                         options=SqlOptions(decrypt=decrypt))
    return {r.id: r.name for r in seen.collect()}


def _append(spark, ref, rows):
    spark.createDataFrame(rows, "id int, name string").write.insertInto(
        f"`{ref.catalog}__{ref.schema}`.`people`")


def test_members_read_legacy_cells_of_every_version(spark, legacy_scope):
    settings, _, ref, _ = legacy_scope
    got = _names(spark, settings, ref)
    expected = dict(enumerate(V1 + V2 + NEW, start=1))
    assert got == expected and len(got) == 6  # 3 of legacy v1, 2 of legacy v2, 1 of v3
    assert set(_names(spark, settings, ref, member=False).values()) == {None}


def test_a_legacy_cell_under_a_key_not_in_the_keyring(spark, legacy_scope):
    settings, _, ref, _ = legacy_scope
    stranger = notebook_cells(spark, ["Mallory"], os.urandom(32))[0]
    _append(spark, ref, [(99, stranger)])
    with pytest.raises(PySparkException, match=LEGACY_NOT_AUTHENTIC):
        _names(spark, settings, ref)
    lenient = _names(spark, settings, ref, decrypt="lenient")
    assert lenient[99] is None
    assert {k: v for k, v in lenient.items() if k != 99} == dict(
        enumerate(V1 + V2 + NEW, start=1))


def test_a_retired_legacy_version_opens_nothing(spark, legacy_scope):
    settings, keyring, ref, _ = legacy_scope
    keyring.retire(settings.scope("legacy"), 1, in_use=False)
    with pytest.raises(PySparkException, match=LEGACY_NOT_AUTHENTIC):
        _names(spark, settings, ref)
    lenient = _names(spark, settings, ref, decrypt="lenient")
    # v1's cells: NULL; v2's legacy cells and the ee1 cell still open.
    assert lenient == {1: None, 2: None, 3: None, 4: V2[0], 5: V2[1], 6: NEW[0]}
    keyring.retire(settings.scope("legacy"), 2, in_use=False)
    lenient = _names(spark, settings, ref, decrypt="lenient")
    assert lenient == {1: None, 2: None, 3: None, 4: None, 5: None, 6: NEW[0]}
