"""encrypt_columns --subject-column on file sources (the streaming path): two runs, new files
the second time, a subject erased in between; a file holding an erased subject's row is
refused and read again once fixed; a micro-batch replayed after a crash reads back the
salts its first attempt created (one salt per subject, never a second)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from envelope_encryption.cell.subject import SubjectErased, is_subject_cell
from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs import encrypt_columns, erase_subject, ingest_sink, kek_setup
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.ingest_stream import IngestFailed
from envelope_encryption.keyring.subjects import SubjectStore
from envelope_encryption.spark.columns import TableRef
from envelope_encryption.spark.subject_columns import decrypt_subject_columns


@pytest.fixture()
def settings(tmp_path):
    return Settings(catalog=f"f{uuid.uuid4().hex[:8]}", schemas=("crm",),
                    options={"local-kek-file": str(tmp_path / "kek.key")})


def _rows(first: int, last: int, subjects) -> list[tuple[int, int, str]]:
    return [(i, subjects[i % len(subjects)], f"name-{i}") for i in range(first, last + 1)]


def _land(folder: Path, name: str, rows) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["id,customer_id,name"] + [f"{i},{c},{n}" for i, c, n in rows]
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _run(settings, spark, tmp_path, **kw):
    return encrypt_columns.run(settings, spark, source=str(tmp_path / "landing"),
                               source_format="csv", target_table="crm.orders",
                               columns=["name"], subject_column="customer_id",
                               checkpoint_location=str(tmp_path / "checkpoint"), **kw)


def _store(settings, spark) -> SubjectStore:
    ctx = build_context(settings, spark)
    return SubjectStore(spark, ctx.lakehouse, settings.catalog, settings.crypto_schema)


def _salts(settings, spark) -> dict[str, tuple]:
    rows = spark.table(_store(settings, spark).table).collect()
    return {r["subject_hash"]: (r["salt"], r["salt_id"], r["erased_at"]) for r in rows}


def _plain(settings, spark) -> dict[int, str | None]:
    ctx = build_context(settings, spark)
    name = ctx.lakehouse.table(settings.catalog, "crm", "orders")
    spark.catalog.refreshTable(name.replace("`", ""))
    stored = spark.table(name)
    assert all(is_subject_cell(r["name"]) for r in stored.collect())
    read = decrypt_subject_columns(stored, ["name"], keyring=ctx.keyring,
                                   table=TableRef(settings.catalog, "crm", "orders"),
                                   subject_column="customer_id",
                                   subjects=_store(settings, spark), strict=False)
    return {r["id"]: r["name"] for r in read.collect()}


@pytest.mark.slow
def test_two_runs_by_subject_with_an_erase_in_between(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    _land(landing, "a.csv", _rows(1, 20, [0, 1, 2, 3, 4]))
    first = _run(settings, spark, tmp_path)
    assert (first.rows_written, first.files_read) == (20, 1)
    assert len(_salts(settings, spark)) == 5

    erase_subject.run(settings, spark, schema="crm", subject="3")
    # The second run reads only the new file: known subjects and two new ones (5, 6).
    _land(landing, "b.csv", _rows(21, 30, [0, 1, 2, 4, 5, 6]))
    second = _run(settings, spark, tmp_path)
    assert (second.rows_written, second.files_read) == (10, 1)
    salts = _salts(settings, spark)
    assert len(salts) == 7 and sum(s[0] is None for s in salts.values()) == 1
    expected = {i: (None if c == 3 else n) for i, c, n in
                _rows(1, 20, [0, 1, 2, 3, 4]) + _rows(21, 30, [0, 1, 2, 4, 5, 6])}
    assert _plain(settings, spark) == expected

    # A new file with a row of the erased subject: refused, nothing of it written, no salt
    # created; fixed in place, the next run reads it again.
    _land(landing, "c.csv", [(31, 7, "name-31"), (32, 3, "name-32")])
    with pytest.raises(SubjectErased, match=r"1 input row\(s\) belong to erased subjects"):
        _run(settings, spark, tmp_path)
    assert _salts(settings, spark) == salts
    assert len(_plain(settings, spark)) == 30
    _land(landing, "c.csv", [(31, 7, "name-31")])
    assert _run(settings, spark, tmp_path).rows_written == 1
    assert _plain(settings, spark) == {**expected, 31: "name-31"}
    assert len(_salts(settings, spark)) == 8


@pytest.mark.slow
def test_a_replayed_batch_reads_back_its_salts(settings, spark, tmp_path, monkeypatch):
    kek_setup.run(settings, spark)
    _land(tmp_path / "landing", "a.csv", _rows(1, 12, [10, 11, 12]))
    real_write = ingest_sink.LocalBatchWriter.write

    def crash(self, rows, batch_id):
        raise OSError("simulated crash after the salts were created, before the write")

    # The first attempt creates the batch's salts, then dies before writing any row.
    monkeypatch.setattr(ingest_sink.LocalBatchWriter, "write", crash)
    with pytest.raises(IngestFailed):
        _run(settings, spark, tmp_path)
    created = _salts(settings, spark)
    assert len(created) == 3
    monkeypatch.setattr(ingest_sink.LocalBatchWriter, "write", real_write)
    # The replay: same salts (bytes and row ids), no second one, every row readable.
    assert _run(settings, spark, tmp_path).rows_written == 12
    assert _salts(settings, spark) == created
    assert _plain(settings, spark) == {i: n for i, _, n in _rows(1, 12, [10, 11, 12])}


def test_subject_column_and_row_key_are_refused_together(settings, spark, tmp_path):
    with pytest.raises(ConfigError, match="no row binding"):
        _run(settings, spark, tmp_path, row_key_column="id")
