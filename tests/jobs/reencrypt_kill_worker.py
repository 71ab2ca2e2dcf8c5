"""One step of a re-encryption that is killed part-way, in its own process, for
``test_reencrypt_resume.py``.

``python -m tests.jobs.reencrypt_kill_worker <workdir> <kek file> setup``: the table
``hr.people`` (120 rows, 12 parquet files of 10 rows): rows 0-79 under DEK v1, rows
80-99 with ``name`` under v1 and ``email`` under v2, rows 100-119 under v2; v2 active.

``... run <point>:<n>``: prints the table's state (one JSON line), then runs
``reencrypt_columns`` (20 rows per batch) and, with a kill point, kills its whole process
group (the driver and its JVM) with SIGKILL when the re-encryption reaches it:

- ``stage:<n>``  the n-th batch staged, before its journal record is written;
- ``record:<n>`` the n-th journal record written, before any file of it is swapped;
- ``swap:<n>``   right after the n-th file swapped (a batch half swapped);
- ``batch:<n>``  the n-th batch finished (between batches).

Counts include what the run finishes of an earlier run. Without a kill point (``none``) it
prints the report and the state after. The hook wraps the module's own steps; nothing in the
package reads it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from envelope_encryption.config import Settings
from envelope_encryption.jobs import dek_generation, kek_setup, reencrypt_columns, reencrypt_files
from envelope_encryption.jobs.common import build_context
from envelope_encryption.spark.columns import (
    TableRef,
    cells_per_version,
    decrypt_columns,
    encrypt_columns,
)
from envelope_encryption.spark.session import local_spark_session

CATALOG = "rk"
TABLE = f"{CATALOG}__hr.people"
REF = TableRef(CATALOG, "hr", "people")
COLUMNS = ["name", "email"]
ROWS = 120
BATCH_ROWS = 20


def plain(row_id: int) -> list[str]:
    return [f"name {row_id}", f"user{row_id}@example.com"]


def _settings(kek_file: str) -> Settings:
    return Settings(catalog=CATALOG, schemas=("hr",), options={"local-kek-file": kek_file})


def _files(spark, first: int, last: int, columns: list[str], keyring):
    """Rows ``first``..``last`` with ``columns`` encrypted, 10 rows per DataFrame (per file)."""
    for start in range(first, last, 10):
        data = [(i, *plain(i)) for i in range(start, start + 10)]
        rows = spark.createDataFrame(data, "id INT, name STRING, email STRING").coalesce(1)
        # Materialized: encryption draws random IVs, a second evaluation would differ.
        yield encrypt_columns(rows, columns, keyring=keyring, table=REF).localCheckpoint()


def setup(spark, settings: Settings) -> None:
    kek_setup.run(settings, spark)
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {CATALOG}__hr")
    spark.sql(f"CREATE TABLE {TABLE} (id INT, name STRING, email STRING)")
    with build_context(settings, spark) as ctx:
        for rows in _files(spark, 0, 80, COLUMNS, ctx.keyring):
            rows.write.insertInto(TABLE)
        # Rows 80-99 get their names under v1 now, their emails under v2 below.
        halves = list(_files(spark, 80, 100, ["name"], ctx.keyring))
    dek_generation.run(settings, spark, schema="hr")
    with build_context(settings, spark) as ctx:
        for rows in halves:  # the v1 name cells are kept (already cells of this place)
            encrypt_columns(rows, COLUMNS, keyring=ctx.keyring,
                            table=REF).coalesce(1).write.insertInto(TABLE)
        for rows in _files(spark, 100, ROWS, COLUMNS, ctx.keyring):
            rows.write.insertInto(TABLE)


def state(spark, settings: Settings) -> dict:
    spark.catalog.refreshTable(TABLE)
    stored = spark.table(TABLE)
    folder = reencrypt_files.table_location(spark, TABLE)
    with build_context(settings, spark) as ctx:
        opened = decrypt_columns(stored, COLUMNS, keyring=ctx.keyring, table=REF,
                                 types={c: "string" for c in COLUMNS})
        return {
            "kind": "state",
            "ids": [r["id"] for r in stored.select("id").collect()],
            "cells": {r["id"]: [r["name"], r["email"]] for r in stored.collect()},
            "plain": {r["id"]: [r["name"], r["email"]] for r in opened.collect()},
            "versions": cells_per_version(stored, COLUMNS),
            "files": sorted(p.name for p in folder.glob("part-*")),
            "journal": sorted(p.name for p in (folder / reencrypt_files.JOURNAL_FOLDER).glob("*")
                              if p.name != "_lock") if (folder / "_reencrypt").is_dir() else [],
        }


def install_kill(point: str) -> None:
    """Kill this process group when the re-encryption reaches ``point`` (see above)."""
    step, _, count = point.partition(":")
    target, seen = int(count or 0), [0]

    def kill() -> None:
        sys.stdout.flush()
        os.killpg(os.getpgrp(), signal.SIGKILL)

    def wrap(name: str, before: bool):
        original = getattr(reencrypt_files, name)

        def wrapped(*args, **kwargs):
            if before:
                seen[0] += 1
                if seen[0] == target:
                    kill()
            result = original(*args, **kwargs)
            # A swap counts only when it put a file in place.
            if not before and (name != "_swap" or result):
                seen[0] += 1
                if seen[0] == target:
                    kill()
            return result

        setattr(reencrypt_files, name, wrapped)

    hooks = {"stage": ("_write_record", True), "record": ("_write_record", False),
             "swap": ("_swap", False), "batch": ("_finish", False)}
    if step in hooks:
        wrap(*hooks[step])


def main(workdir: str, kek_file: str, action: str, point: str = "none") -> None:
    spark = local_spark_session(workdir, app_name="reencrypt-worker", shuffle_partitions=2)
    settings = _settings(kek_file)
    if action == "setup":
        setup(spark, settings)
        print(json.dumps(state(spark, settings)), flush=True)
        return
    print(json.dumps(state(spark, settings)), flush=True)
    install_kill(point)
    report = reencrypt_columns.run(settings, spark, table="hr.people", columns=COLUMNS,
                                   batch_rows=BATCH_ROWS)
    print(json.dumps({"kind": "report", "rows_to_do": report.rows_to_do,
                      "rows_done": report.rows_done, "batches": report.batches,
                      "before": report.before, "after": report.after}), flush=True)
    print(json.dumps(state(spark, settings)), flush=True)
    spark.stop()


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
    main(*sys.argv[1:5])
