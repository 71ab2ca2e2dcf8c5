"""The leak scan's scenario, run as its own process (its Spark session needs event logs on,
a local dir of its own and uncompressed files from the start).

``python -m tests.faults.leak_scenario <workdir> <fd>``: runs the jobs with every logger at
DEBUG into ``<workdir>/logs``, writes every exception's text, every object's repr and every
plan's ``explain(extended=True)`` into ``<workdir>/captured``, and talks to the parent over
the pipe ``fd`` (one JSON line per message) and its stdin:

Every logger is at DEBUG; py4j's records go to ``logs/py4j-debug.log``, the others to
``logs/debug.log``.

At each checkpoint (after the DataFrame decrypt, after the SQL mask path, at the end, after
the session stopped) it writes one JSON line ``{"checkpoint", "keys": {label: hex},
"known": [files]}`` and waits for a line on stdin while the parent scans: Spark removes
shuffle files once their query is garbage collected, and its whole local dir on stop, so the
parent scans while they exist. ``keys`` are the keys known so far, read through the
project's own API (the local KEK file, ``Keyring.dek``); they go only through this pipe.
``sql_files`` lists the files the SQL mask path added to the local dir (counted).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from envelope_encryption.config import Settings
from envelope_encryption.jobs import (
    dek_generation,
    encrypt_columns,
    kek_setup,
    reencrypt_columns,
    rotate_kek,
    status,
)
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.sample_data import PII_COLUMNS, customers, write_csv
from envelope_encryption.kek.base import WrapContext
from envelope_encryption.spark.columns import TableRef, decrypt_columns

SCHEMA = "sales"
PY4J_LOG = "py4j-debug.log"
TABLE = f"{SCHEMA}.customers"


class Capture:
    """Texts that must hold no key, written under ``captured/`` for the scan."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def text(self, name: str, text: str) -> None:
        self.count += 1
        (self.folder / f"{self.count:03d}-{name}.txt").write_text(text)

    def plan(self, name: str, df) -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            df.explain(extended=True)
        self.text(f"explain-{name}", out.getvalue())

    def error(self, name: str, call) -> None:
        try:
            call()
        except Exception as error:  # from a Python worker: a PythonException
            self.text(f"error-{name}", "".join(traceback.format_exception(error))
                      + repr(error) + "\n" + str(error))
        else:
            raise AssertionError(f"{name} was expected to fail")

    def reprs(self, name: str, *objects) -> None:
        self.text(f"repr-{name}", "\n".join(repr(o) for o in objects))


def local_files(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*") if p.is_file()}


class Parent:
    """The pipe to the test process, and the keys to hand it."""

    def __init__(self, fd: int, settings: Settings, spark) -> None:
        self.channel = os.fdopen(fd, "w")
        self.settings = settings
        self.spark = spark
        self.sql_files: list[str] = []

    def checkpoint(self, name: str) -> None:
        """Hand over the keys that exist now, then wait until the parent has scanned."""
        keys = {}
        if self.spark is not None:
            ctx = build_context(self.settings, self.spark)
            scope = self.settings.scope(SCHEMA)
            for record in ctx.keyring.versions(scope):
                keys[f"DEK v{record.version}"] = ctx.keyring.dek(scope, record.version)
            keys.update({f"KEK v{version}": key for version, key in ctx.kek._read()})
        self.channel.write(json.dumps({
            "checkpoint": name, "sql_files": self.sql_files,
            "keys": {label: key.reveal().hex() for label, key in keys.items()},
        }) + "\n")
        self.channel.flush()
        sys.stdin.readline()


def main(workdir: Path, fd: int) -> None:
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # py4j's DEBUG records go to a file of their own: py4j logs every command it sends the
    # JVM, including the pickled closures of the DataFrame path.
    for name, keep in (("debug.log", lambda r: not r.name.startswith("py4j")),
                       (PY4J_LOG, lambda r: r.name.startswith("py4j"))):
        handler = logging.FileHandler(logs / name)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                               "%(message)s"))
        handler.addFilter(keep)
        logging.getLogger().addHandler(handler)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        logging.getLogger(name).setLevel(logging.DEBUG)

    from pyspark.sql import functions as F

    from envelope_encryption.spark.session import local_spark_session
    from envelope_encryption.spark.sql.local_unity_catalog import read_table_as

    # Shuffle files readable: no key may be there even without Spark's I/O encryption (the
    # query shapes keep keys out of every exchange), and the scan must see into them.
    spark = local_spark_session(workdir / "state", app_name="leak-scan", shuffle_partitions=3,
                                io_encryption=False)
    conf = spark.sparkContext.getConf()
    # The parent's settings reached this session: event logs on, uncompressed shuffle files.
    assert conf.get("spark.eventLog.enabled") == "true"
    assert conf.get("spark.shuffle.compress") == "false"
    assert conf.get("spark.local.dir") == str(workdir / "local")
    capture = Capture(workdir / "captured")
    settings = Settings(catalog="leak", schemas=(SCHEMA,),
                        options={"local-kek-file": str(workdir.parent / "kek" / "kek.key")})
    parent = Parent(fd, settings, spark)
    landing = workdir / "landing"
    ref = TableRef(settings.catalog, SCHEMA, "customers")

    def encrypt():
        return encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                                   target_table=TABLE, columns=list(PII_COLUMNS))

    reports = [kek_setup.run(settings, spark)]
    write_csv(customers(60, first_id=1), landing / "a.csv")
    reports.append(encrypt())
    reports.append(dek_generation.run(settings, spark, schema=SCHEMA))
    write_csv(customers(60, first_id=61), landing / "b.csv")
    reports.append(encrypt())
    reports.append(reencrypt_columns.run(settings, spark, table=TABLE, columns=list(PII_COLUMNS)))

    ctx = build_context(settings, spark)
    stored = spark.table(ctx.lakehouse.table(settings.catalog, SCHEMA, "customers"))
    capture.plan("stored", stored)
    # The DataFrame decrypt path, through a shuffle (group by country), so shuffle files exist.
    plain = decrypt_columns(stored, list(PII_COLUMNS), keyring=ctx.keyring, table=ref)
    grouped = plain.groupBy("country").agg(F.count("*").alias("n"),
                                           F.collect_list("ssn").alias("ssns"))
    capture.plan("decrypt-dataframe", plain)
    capture.plan("decrypt-dataframe-grouped", grouped)
    assert sum(r["n"] for r in grouped.collect()) == 120
    parent.checkpoint("dataframe decrypt")
    # Errors: a tampered cell, a cell of another table, a DEK unwrapped for the wrong version.
    first = stored.limit(1)
    tampered = first.withColumn("ssn", F.concat(F.col("ssn"), F.lit("A")))
    capture.error("tampered-cell", lambda: decrypt_columns(
        tampered, ["ssn"], keyring=ctx.keyring, table=ref).collect())
    capture.error("other-table", lambda: decrypt_columns(
        first, ["ssn"], keyring=ctx.keyring, table=TableRef(settings.catalog, SCHEMA,
                                                            "other")).collect())
    record = ctx.keyring.versions(ref.scope)[0]
    capture.error("wrong-context", lambda: ctx.kek.unwrap(record.wrapped,
                                                           WrapContext(ref.scope, 99)))

    # The SQL mask path, as a member; the local dir's new files are reported apart.
    before_sql = local_files(workdir / "local")
    member = read_table_as(spark, settings, ref, list(PII_COLUMNS), member=True)
    capture.plan("read-table-as-member", member)
    assert member.count() == 120 and member.where("ssn LIKE '9%'").count() == 120
    parent.sql_files = sorted(local_files(workdir / "local") - before_sql)
    parent.checkpoint("SQL mask path")

    reports.append(rotate_kek.run(settings, spark))
    reports.append(status.run(settings, spark, tables=[TABLE]))
    ctx = build_context(settings, spark)
    deks = {f"DEK v{v}": ctx.keyring.dek(ref.scope, v) for v in (1, 2)}
    keks = {f"KEK v{version}": key for version, key in ctx.kek._read()}
    capture.reprs("objects", ctx, ctx.keyring, ctx.kek, ctx.store, ctx.keyring.cache,
                  settings, *reports, *ctx.store.history(), *deks.values(), *keks.values(),
                  stored, plain, member)
    parent.checkpoint("end")
    spark.stop()
    parent.spark = None
    parent.checkpoint("stopped")  # event logs complete, local dir removed
    parent.channel.close()

if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
