"""One concurrent writer, run as its own process by ``test_concurrency.py``.

``python -m tests.faults.concurrent_worker <job> <moto url> <catalog> <start at> <runs>``
waits until the wall-clock time ``start at`` (so every process begins at the same moment),
then runs the job ``runs`` times through its ``run(...)`` function and prints one JSON line
per run: the DEK version it created (dek_generation), the KEK version it rotated to
(rotate_kek), or the project error it stopped on. The aws-sm back end keeps its DEKs in a
Secrets Manager secret, so these jobs need no Spark session (``spark`` is a placeholder the
jobs never touch on that back end).
"""

from __future__ import annotations

import json
import sys
import time

from envelope_encryption.errors import EnvelopeError
from envelope_encryption.jobs import dek_generation, rotate_kek
from tests.faults.scenario import SCHEMA, aws_settings


class NoSpark:
    """Stands in for a SparkSession: with aws-sm, dek_generation and rotate_kek use none."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the aws-sm jobs must not use Spark ({name})")


def main(job: str, endpoint: str, catalog: str, start_at: float, runs: int) -> None:
    settings = aws_settings("aws-sm", endpoint, catalog, audit_table="none")
    time.sleep(max(0.0, start_at - time.time()))
    for _ in range(runs):
        try:
            if job == "dek_generation":
                outcome = {"version": dek_generation.run(settings, NoSpark(),
                                                         schema=SCHEMA).version}
            else:
                report = rotate_kek.run(settings, NoSpark())
                outcome = {"kek_version": report.kek.kek_version,
                           "rewrapped": len(report.rewrapped)}
        except EnvelopeError as error:
            outcome = {"error": type(error).__name__, "message": str(error)}
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
