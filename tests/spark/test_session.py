"""Local state follows its folder: a copy of ``.envelope/`` never writes into the original."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from envelope_encryption.errors import ConfigError
from envelope_encryption.spark.session import ORIGIN_FILE, check_workdir_origin

# One job's worth of local state: a database and a table with one row per run.
SCRIPT = textwrap.dedent("""
    import sys
    from envelope_encryption.spark.session import local_spark_session
    spark = local_spark_session(sys.argv[1], shuffle_partitions=1)
    spark.sql("CREATE DATABASE IF NOT EXISTS main__hr")
    spark.sql("CREATE TABLE IF NOT EXISTS main__hr.runs (n INT)")
    spark.sql("INSERT INTO main__hr.runs VALUES (1)")
    print("rows", spark.table("main__hr.runs").count())
""")


def run_in(workdir):
    return subprocess.run([sys.executable, "-c", SCRIPT, str(workdir)], capture_output=True,
                          text=True, timeout=300, check=False)


def test_a_new_folder_is_marked_and_accepted_again(tmp_path):
    workdir = tmp_path / "state"
    check_workdir_origin(workdir)
    assert (workdir / "metastore" / ORIGIN_FILE).read_text().strip() == str(workdir)
    check_workdir_origin(workdir)


def test_a_marked_folder_moved_elsewhere_is_refused(tmp_path):
    original = tmp_path / "a" / "state"
    check_workdir_origin(original)
    copy = tmp_path / "b" / "state"
    shutil.copytree(original, copy)
    with pytest.raises(ConfigError, match=r"was made in .*/a/state.*make clean"):
        check_workdir_origin(copy)


@pytest.mark.slow
def test_a_copied_folder_never_writes_into_the_original(tmp_path):
    original = tmp_path / "project" / ".envelope"
    first = run_in(original)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "rows 1" in first.stdout

    copy = tmp_path / "copy" / ".envelope"
    shutil.copytree(original, copy)
    refused = run_in(copy)
    assert refused.returncode != 0
    assert "was made in" in refused.stderr and str(original) in refused.stderr

    # State from before folders were marked: the databases' locations give it away.
    (copy / "metastore" / ORIGIN_FILE).unlink()
    refused = run_in(copy)
    assert refused.returncode != 0
    assert "outside" in refused.stderr and "main__hr" in refused.stderr

    again = run_in(original)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "rows 2" in again.stdout  # the original saw exactly its own two runs
