"""The job registry is the one list of jobs: pyproject's entry points, the job modules and
their summaries must agree with it (the bundle's jobs are checked in tests/bundle/)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest

from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs import registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
JOBS_FOLDER = ROOT / "src" / "envelope_encryption" / "jobs"
# Modules of the jobs folder that are not jobs.
NOT_JOBS = {"__init__", "bundle", "bundle_flags", "bundle_variables", "cli", "common",
            "guarded_reads", "legacy_detection", "local_run", "notebook_widgets",
            "inventory_tables", "preflight_checks", "preflight_grants", "registry", "sample_data",
            "preflight_objects",
            "ingest_equality", "ingest_sink", "ingest_source", "ingest_stream", "ingest_target",
            "usage_limits", "reencrypt_batches", "reencrypt_files", "reencrypt_subjects",
            "reencrypt_equality", "domain_columns"}


def test_project_scripts_are_exactly_the_registered_entry_points():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == registry.console_scripts()
    assert scripts["envelope-encryption"] == "envelope_encryption.jobs.cli:main"


def test_every_job_module_is_registered_once():
    names = [job.name for job in registry.JOBS]
    assert len(names) == len(set(names))
    modules = {path.stem for path in JOBS_FOLDER.glob("*.py")} - NOT_JOBS
    assert modules == set(names), "a new module in jobs/ is a job (register it) or a helper"


@pytest.mark.parametrize("job", registry.JOBS, ids=lambda job: job.name)
def test_every_job_has_a_parser_a_main_and_a_summary(job):
    module = job.module()
    assert module.__doc__.startswith(f"Job ``{job.name}``: "), job.name
    assert job.summary[0].isupper() and job.summary.endswith(".")
    assert "``" not in job.summary and "\n" not in job.summary
    assert list(inspect.signature(job.load()).parameters) == ["argv"]
    assert module.build_parser().prog == job.name


def test_lookup_by_name():
    assert registry.job("kek_setup").entry_point == "envelope_encryption.jobs.kek_setup:main"
    assert registry.job("import-legacy").name == "import_legacy"
    with pytest.raises(ConfigError, match=r"no job 'nope'.*kek_setup"):
        registry.job("nope")


def test_summary_is_the_first_sentence_without_its_label():
    doc = """Job ``x``: move ``a.b`` cells to v2. More text
    here.

    Another paragraph."""
    assert registry.summary(doc, "x") == "Move a.b cells to v2."
    assert registry.summary("``run <job>``: run a job.", "run") == "Run a job."
    assert registry.summary("One line without a full stop", "y") == "One line without a full stop"
    with pytest.raises(ConfigError, match="no docstring"):
        registry.summary(None, "z")
