"""The SparkSession a job runs on: the cluster's on Databricks, a local one elsewhere.

The local session keeps its warehouse and Derby metastore under one project-local folder
(``.envelope/`` by default), so tables made by one job are there for the next one.

The Derby metastore stores absolute paths: a copy of that folder elsewhere would still read
and write the *original* folder's warehouse. So the folder records where it was made
(``metastore/ORIGIN``), and a session refuses to start on a folder made elsewhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..lakehouse import running_on_databricks

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_WORKDIR = Path(".envelope")
ORIGIN_FILE = "ORIGIN"


def check_workdir_origin(workdir: Path) -> None:
    """Refuse local state made in another folder (its metastore points there); mark new state.

    ``workdir`` is resolved. A folder without a metastore yet is marked as made here.
    """
    metastore = workdir / "metastore"
    origin = metastore / ORIGIN_FILE
    if origin.is_file():
        made_in = origin.read_text().strip()
        if made_in != str(workdir):
            raise ConfigError(
                f"the local state in {workdir} was made in {made_in}: its metastore holds "
                f"absolute paths, so using it here would read and write {made_in}. Remove "
                f"{workdir} ('make clean') to start afresh here, or run from {made_in}"
            )
        return
    if (metastore / "db").exists():
        # State from before the folder was marked: its databases must lie in this warehouse.
        # Checked after the session starts (see _check_database_locations).
        return
    metastore.mkdir(parents=True, exist_ok=True)
    origin.write_text(str(workdir) + "\n")


def _check_database_locations(session: SparkSession, workdir: Path) -> None:
    from urllib.parse import unquote, urlparse

    warehouse = workdir / "warehouse"
    for database in session.catalog.listDatabases():
        if database.name == "default" or not database.locationUri:
            continue
        location = Path(unquote(urlparse(database.locationUri).path))
        if location.is_relative_to(warehouse):
            continue
        session.stop()
        raise ConfigError(
            f"the local metastore in {workdir / 'metastore'} keeps database {database.name} at "
            f"{location}, outside {warehouse}: it was made in another folder. Remove {workdir} "
            "('make clean') to start afresh here"
        )
    (workdir / "metastore" / ORIGIN_FILE).write_text(str(workdir) + "\n")


def local_spark_session(
    workdir: str | os.PathLike[str] = DEFAULT_WORKDIR,
    app_name: str = "envelope-encryption",
    shuffle_partitions: int = 4,
    io_encryption: bool = True,
) -> SparkSession:
    """A local[*] session with a persistent Hive catalog under ``workdir``.

    ``io_encryption=False`` leaves shuffle and spill files readable: only for tests that
    show what a query itself would write to disk.
    """
    from pyspark.sql import SparkSession

    workdir = Path(workdir).resolve()
    check_workdir_origin(workdir)
    # Python workers must run this interpreter (and see this package).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # A local session talks to itself only over loopback (not the machine's other interfaces).
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    derby = f"-Dderby.system.home={workdir / 'metastore'}"
    session = (
        SparkSession.builder.master("local[*]")
        .appName(app_name)
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.warehouse.dir", str(workdir / "warehouse"))
        .config("spark.driver.extraJavaOptions", derby)
        .config("spark.hadoop.javax.jdo.option.ConnectionURL",
                f"jdbc:derby:;databaseName={workdir / 'metastore' / 'db'};create=true")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        # Shuffle and spill files are encrypted with a per-application key: whatever a
        # query shuffles (cells, plaintext after decryption) is not left readable on disk.
        .config("spark.io.encryption.enabled", str(io_encryption).lower())
        .enableHiveSupport()
        .getOrCreate()
    )
    # Spark's INFO/WARN chatter would bury the jobs' own report.
    session.sparkContext.setLogLevel("ERROR")
    if not (workdir / "metastore" / ORIGIN_FILE).is_file():
        _check_database_locations(session, workdir)
    return session


def get_spark(workdir: str | os.PathLike[str] | None = None) -> SparkSession:
    """The active session on Databricks; otherwise a local one under ``workdir``.

    Locally, the principal whose groups the column masks see is set from
    ``ENVELOPE_LOCAL_GROUPS`` (none when unset): the job being started runs as that principal.
    """
    from pyspark.sql import SparkSession

    from .sql.local_masks import sync_local_groups_from_env

    if running_on_databricks():
        return SparkSession.builder.getOrCreate()
    session = SparkSession.getActiveSession() or local_spark_session(
        workdir or os.environ.get("ENVELOPE_WORKDIR", DEFAULT_WORKDIR))
    sync_local_groups_from_env(session)
    return session
