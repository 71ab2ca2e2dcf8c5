"""A local SparkSession for tests: Hive catalog (Derby) and warehouse in a temporary folder."""

from __future__ import annotations

from pathlib import Path

from envelope_encryption.spark.session import local_spark_session


def make_test_session(workdir: Path):
    return local_spark_session(workdir, app_name="envelope-encryption-tests", shuffle_partitions=2)
