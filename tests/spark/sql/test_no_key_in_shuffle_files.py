"""No plaintext DEK reaches Spark's shuffle files on the SQL decrypt path.

The key subquery collects the wrapped records (that aggregation may shuffle: wrapped keys
are safe) and hands them to ``decrypt_cells``, which unwraps the DEKs inside its Python
worker: no plaintext DEK is ever a value of the query. Each run has its own Spark session
in a subprocess with ``spark.local.dir`` in a temporary folder, scanned file by file for
the DEKs (raw, hex, base64; compared in that process's memory, never written anywhere).
The planted query (the old shape: unwrap, then collect_list across an exchange) proves the
scan sees shuffle files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

JOB = Path(__file__).with_name("shuffle_scan_job.py")
ROOT = Path(__file__).parents[3]


def _run(tmp_path: Path, mode: str) -> dict:
    local_dir, work = tmp_path / "local", tmp_path / "work"
    local_dir.mkdir()
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run([sys.executable, str(JOB), str(local_dir), str(work), mode],
                          capture_output=True, text=True, env=env, timeout=900, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_sql_decrypt_leaves_no_dek_in_shuffle_files_and_the_scan_can_see_them(tmp_path):
    result = _run(tmp_path, "plain-session")
    assert result["decrypted"] == 80 and result["unwrapped"] == [1, 2]
    assert result["shape"] == 0, "a plaintext DEK reached a shuffle or spill file"
    # The scan works: the old query shape leaves the DEKs in the same folder.
    assert result["planted"] > 0


@pytest.mark.slow
def test_the_project_session_encrypts_shuffle_files(tmp_path):
    result = _run(tmp_path, "project-session")
    assert result["decrypted"] == 80 and result["shuffle_files"] > 0  # the scanned folder
    # spark.io.encryption.enabled: even the old query shape leaves no readable DEK.
    assert result["shape"] == 0 and result["planted"] == 0
