"""Writing each micro-batch of ``encrypt_columns`` exactly once, and one run per checkpoint.

Structured Streaming replays a batch whose commit it did not record (a crash between the
write and the checkpoint's commit): the write must recognise a batch it already made.

- **Delta** (Databricks): the writer's idempotent-write options ``txnAppId`` (stable for one
  target and checkpoint) and ``txnVersion`` (the batch id). Delta records both in the same
  commit as the rows and skips a write whose version it already has for that app id.
- **Local parquet tables**: the same guarantee with a redo log in the checkpoint
  (``_txn/``). A batch is first written in full to ``_txn/<batch>.staged`` (Spark marks it
  complete with ``_SUCCESS``), then its files are renamed into the table's folder (each
  rename atomic), then ``_txn/<batch>.json`` records the (app id, batch id) as committed.
  A replay finds the marker and skips, or finds a complete staged batch and finishes moving
  it (without encrypting again), or finds an incomplete one and starts over. Nothing is
  written twice and nothing half.

:func:`checkpoint_lock` keeps a second local run on the same checkpoint waiting until the
first ends (it then finds nothing new); on Databricks the job's ``max_concurrent_runs: 1``
and Delta's transaction ids do that.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, EnvelopeError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

TXN_FOLDER = "_txn"
LOCK_FILE = "_lock"
# How long a local run waits for another run on the same checkpoint before giving up.
LOCK_WAIT_SECONDS = 900.0
_ROWS_FILE = "_envelope_rows"


class CheckpointBusy(EnvelopeError):
    """Another run holds the checkpoint of this target."""


def transaction_app_id(target: str, checkpoint: str) -> str:
    """The ``txnAppId`` of one target fed from one checkpoint (stable across runs)."""
    digest = hashlib.sha256(f"{target}\n{checkpoint}".encode()).hexdigest()[:24]
    return f"envelope-encrypt-{digest}"


@contextmanager
def checkpoint_lock(checkpoint: str, wait_seconds: float = LOCK_WAIT_SECONDS,
                    job: str = "encrypt_columns") -> Iterator[None]:
    """Hold an exclusive lock on ``<checkpoint>/_lock`` (released when the process dies);
    ``job`` names the kind of run that holds it in the error of a run that waited too long."""
    path = Path(checkpoint) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CheckpointBusy(
                        f"another {job} run holds {path} (waited "
                        f"{wait_seconds:.0f} s): let it finish, then run again; a second "
                        "run on the same checkpoint would only find nothing new") from None
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class DeltaBatchWriter:
    """Appends a batch to a Delta table once per (app id, batch id): Delta's own check."""

    def __init__(self, spark: SparkSession, table: str, app_id: str):
        self.spark = spark
        self.table = table
        self.app_id = app_id

    def committed(self, batch_id: int) -> bool:
        return False  # Delta itself skips a txnVersion it has recorded for this app id

    def write(self, rows: DataFrame, batch_id: int, rows_known: int | None = None) -> int | None:
        """Append ``rows``; the number written is not known here (None: count the batch)."""
        (rows.write.format("delta").mode("append")
         .option("txnAppId", self.app_id).option("txnVersion", str(batch_id))
         .saveAsTable(self.table))
        return None


class LocalBatchWriter:
    """Appends a batch to a local parquet table through the redo log in ``txn_dir``."""

    def __init__(self, spark: SparkSession, table: str, txn_dir: Path, app_id: str):
        self.spark = spark
        self.table = table
        self.txn_dir = txn_dir
        self.app_id = app_id
        self.table_dir = table_location(spark, table)

    def _marker(self, batch_id: int) -> Path:
        return self.txn_dir / f"{batch_id:012d}.json"

    def committed(self, batch_id: int) -> bool:
        marker = self._marker(batch_id)
        if not marker.is_file():
            return False
        return json.loads(marker.read_text())["app_id"] == self.app_id

    def write(self, rows: DataFrame, batch_id: int, rows_known: int | None = None) -> int:
        """Append ``rows`` (stage, move, mark); the number of rows written (``rows_known``:
        the caller knows it, so the staged batch is not read again to count it)."""
        staged = self.txn_dir / f"{batch_id:012d}.staged"
        if not (staged / "_SUCCESS").is_file():  # never staged, or cut short: start over
            shutil.rmtree(staged, ignore_errors=True)
            rows.write.mode("overwrite").parquet(staged.as_uri())
        count_file = staged / _ROWS_FILE
        if not count_file.is_file():
            count = (rows_known if rows_known is not None
                     else self.spark.read.parquet(staged.as_uri()).count())
            count_file.write_text(str(count))
        count = int(count_file.read_text())
        self._commit(staged, batch_id, count)
        return count

    def _commit(self, staged: Path, batch_id: int, count: int) -> None:
        prefix = f"part-{self.app_id[-12:]}-{batch_id:012d}-"
        for part in sorted(staged.glob("part-*")):
            os.replace(part, self.table_dir / (prefix + part.name[len("part-"):]))
        write_json_atomically(self._marker(batch_id), {"app_id": self.app_id,
                                                       "batch_id": batch_id, "rows": count})
        shutil.rmtree(staged)
        self.spark.catalog.refreshTable(self.table)


def write_json_atomically(path: Path, payload: dict) -> None:
    """Write ``path`` whole or not at all: a ``.partial`` file renamed over it (atomic)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(payload))
    os.replace(partial, path)


def table_location(spark: SparkSession, table: str) -> Path:
    """The local folder of a (parquet) table, from its catalog entry."""
    from urllib.parse import unquote, urlparse

    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {table}").collect()
    found = {r["col_name"]: r["data_type"] for r in rows}
    location = found.get("Location", "")
    if not location.startswith("file:") or found.get("Provider", "").lower() != "parquet":
        raise ConfigError(f"{table}: local runs append to parquet tables in a local folder, "
                          f"not {found.get('Provider')} at {location or 'no location'}")
    return Path(unquote(urlparse(location).path))


def batch_writer(spark: SparkSession, databricks: bool, table: str, checkpoint: str,
                 app_id: str) -> DeltaBatchWriter | LocalBatchWriter:
    if databricks:
        return DeltaBatchWriter(spark, table, app_id)
    txn_dir = Path(checkpoint) / TXN_FOLDER
    txn_dir.mkdir(parents=True, exist_ok=True)
    return LocalBatchWriter(spark, table, txn_dir, app_id)


def checkpoint_has_commits(checkpoint: str) -> bool:
    """Whether a streaming run has committed a batch from this checkpoint (not a first run)."""
    commits = Path(checkpoint) / "commits"
    return commits.is_dir() and any(p.name.isdigit() for p in commits.iterdir())
