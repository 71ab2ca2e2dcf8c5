"""Entry points run the way a ``python_wheel_task`` runs them: a failed job fails the run.

A wheel task imports the entry point named in the wheel's ``entry_points.txt`` and calls
it; what the function returns is ignored, so only the process status can report a failure.
Each test installs the built wheel into a folder of its own (``pip install --no-deps
--target``), and calls each entry point in a fresh interpreter that sees that folder, not
this checkout's sources.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from envelope_encryption.jobs import registry

# Loads an entry point object and calls it with sys.argv set, ignoring its return value,
# as the wheel task's launcher does.
LAUNCHER = """
import importlib, sys
name, target, *argv = sys.argv[1:]
module_name, _, attribute = target.partition(":")
module = importlib.import_module(module_name)
assert module.__file__.startswith(sys.path[0]), module.__file__  # the installed wheel
sys.argv = [name, *argv]
getattr(module, attribute)()
"""
# Invalid for every entry point: settings are checked before anything else runs.
INVALID = ["--catalog=bad;name"]
# Parameters some jobs require, so that the invalid setting is what fails.
REQUIRED = {
    "encrypt_columns": ["--source=landing", "--target-table=s.t", "--columns=a"],
    "reencrypt_columns": ["--table=s.t", "--columns=a"],
    "retire_dek": ["--schema=s", "--version=1"],
    "dek_state": ["--schema=s", "--version=1", "--to=retired"],
    "purge_residue": ["--retain-hours=168"],
    "erase_subject": ["--schema=s", "--subject=42"],
}


@pytest.fixture(scope="module")
def installed(built_wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(target), str(built_wheel)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(built_wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        text = archive.read(name).decode()
    parser = configparser.ConfigParser()
    parser.read_string(text)
    return target, dict(parser["console_scripts"])


def call_like_a_wheel_task(site: Path, name: str, target: str, argv: list[str],
                           cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "DATABRICKS_RUNTIME_VERSION")}
    environ.update(PYTHONPATH=str(site), **env)
    return subprocess.run(
        [sys.executable, "-c", LAUNCHER, name, target, *argv],
        # A job that starts Spark on a busy 2-core CI machine has taken over 120 s.
        capture_output=True, text=True, timeout=600, check=False, cwd=cwd, env=environ,
    )


def test_every_job_is_an_entry_point_of_the_wheel(installed):
    _, scripts = installed
    assert {job.name: job.entry_point for job in registry.JOBS}.items() <= scripts.items()


@pytest.mark.parametrize("job", [job.name for job in registry.JOBS])
def test_a_failed_job_ends_the_process_with_a_non_zero_status(installed, job, tmp_path):
    site, scripts = installed
    argv = [*INVALID, *REQUIRED.get(job, [])]
    failed = call_like_a_wheel_task(site, job, scripts[job], argv, tmp_path)
    assert failed.returncode == 2, (failed.stdout, failed.stderr)
    assert failed.stderr.strip().splitlines()[-1].startswith("error: invalid catalog")
    assert "Traceback" not in failed.stderr

    helped = call_like_a_wheel_task(site, job, scripts[job], ["--help"], tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert f"usage: {job}" in helped.stdout


@pytest.mark.slow
def test_a_successful_job_ends_with_status_zero(installed, tmp_path):
    # kek_setup on the local back end in an empty folder: a KEK file and a first DEK.
    site, scripts = installed
    done = call_like_a_wheel_task(
        site, "kek_setup", scripts["kek_setup"],
        [f"--local-kek-file={tmp_path / 'kek.key'}", "--catalog=wheeltask"], tmp_path,
        ENVELOPE_WORKDIR=str(tmp_path / ".envelope"),
    )
    assert done.returncode == 0, done.stderr
    assert "DEK wheeltask.default v1: created" in done.stdout


@pytest.mark.parametrize("job", ["kek_setup", "dek_generation", "demo"])
def test_the_local_back_end_is_refused_on_databricks(installed, job, tmp_path):
    site, scripts = installed
    refused = call_like_a_wheel_task(
        site, job, scripts[job], ["--kek-backend=local"], tmp_path,
        DATABRICKS_RUNTIME_VERSION="16.4",
    )
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "local back end is for local runs only" in refused.stderr
    assert "databricks bundle deploy -t aws-kms" in refused.stderr
    assert not (tmp_path / ".envelope").exists()
