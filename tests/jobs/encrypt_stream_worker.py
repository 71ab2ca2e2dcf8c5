"""One ``encrypt_columns`` run in its own process, for ``test_encrypt_concurrency.py``.

``python -m tests.jobs.encrypt_stream_worker <workdir> <kek file> <landing> <checkpoint>
<table folder> <start at>``: its own local Spark session and metastore under ``workdir``
(an embedded Derby metastore serves one JVM), the target table declared at the shared
``table folder``, so every worker writes the same rows folder through the same checkpoint.
It waits until the wall-clock time ``start at``, runs the job once and prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time

from envelope_encryption.config import Settings
from envelope_encryption.errors import EnvelopeError
from envelope_encryption.jobs import encrypt_columns, kek_setup
from envelope_encryption.spark.session import local_spark_session

CATALOG = "conc"
DDL = "id INT, name STRING, _source_file STRING"


def main(workdir: str, kek_file: str, landing: str, checkpoint: str, table_dir: str,
         start_at: float) -> None:
    spark = local_spark_session(workdir, app_name="encrypt-worker", shuffle_partitions=2)
    settings = Settings(catalog=CATALOG, schemas=("hr",), options={"local-kek-file": kek_file})
    kek_setup.run(settings, spark)
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {CATALOG}__hr")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {CATALOG}__hr.people ({DDL}) LOCATION '{table_dir}'")
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    try:
        report = encrypt_columns.run(settings, spark, source=landing, source_format="csv",
                                     target_table="hr.people", columns=["name"],
                                     checkpoint_location=checkpoint)
        outcome = {"rows_written": report.rows_written, "files_read": report.files_read}
    except EnvelopeError as error:
        outcome = {"error": type(error).__name__, "message": str(error)}
    outcome.update(started=started, ended=time.time())
    print(json.dumps(outcome), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:6], float(sys.argv[6]))
