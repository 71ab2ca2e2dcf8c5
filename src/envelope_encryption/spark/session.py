"""The SparkSession a job runs on: the cluster's on Databricks, a local one elsewhere.

The local session keeps its warehouse and Derby metastore under one project-local folder
(``.envelope/`` by default), so tables made by one job are there for the next one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..lakehouse import running_on_databricks

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_WORKDIR = Path(".envelope")


def local_spark_session(
    workdir: str | os.PathLike[str] = DEFAULT_WORKDIR,
    app_name: str = "envelope-encryption",
    shuffle_partitions: int = 4,
) -> SparkSession:
    """A local[*] session with a persistent Hive catalog under ``workdir``."""
    from pyspark.sql import SparkSession

    workdir = Path(workdir).resolve()
    (workdir / "metastore").mkdir(parents=True, exist_ok=True)
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
        .enableHiveSupport()
        .getOrCreate()
    )
    # Spark's INFO/WARN chatter would bury the jobs' own report.
    session.sparkContext.setLogLevel("ERROR")
    return session


def get_spark(workdir: str | os.PathLike[str] | None = None) -> SparkSession:
    """The active session on Databricks; otherwise a local one under ``workdir``."""
    from pyspark.sql import SparkSession

    if running_on_databricks():
        return SparkSession.builder.getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    return local_spark_session(workdir or os.environ.get("ENVELOPE_WORKDIR", DEFAULT_WORKDIR))
