"""The ``import_legacy`` job's report and exit statuses (the import itself runs against moto in
tests/jobs/test_aws_sm_legacy_import.py)."""

from __future__ import annotations

import pytest

from envelope_encryption.jobs import import_legacy
from envelope_encryption.legacy import ImportReport

ARGV = ["--kek-backend=aws-sm", "--catalog=main", "--import-schemas=a, b"]


def test_report_and_exit_code_0(monkeypatch, capsys):
    asked = {}

    def run(settings, spark=None, *, schemas=()):
        asked.update(catalog=settings.catalog, schemas=schemas)
        return ImportReport(source="legacy/s", imported=["main.a"], already_imported=["main.b"])

    monkeypatch.setattr(import_legacy, "run", run)
    assert import_legacy.main(ARGV) == 0
    assert asked == {"catalog": "main", "schemas": ["a", "b"]}
    out = capsys.readouterr().out
    assert "imported main.a v1 (LEGACY_IMPORTED_DEK) from legacy/s" in out
    assert "main.b: already imported, skipped" in out
    assert "the legacy secret legacy/s was not changed" in out


def test_a_refused_scope_fails_the_job_after_reporting_the_others(monkeypatch, capsys):
    report = ImportReport(source="legacy/s", imported=["main.a"],
                          refused=[("main.b", "main.b already has DEK versions 1..2")])
    monkeypatch.setattr(import_legacy, "run", lambda settings, spark=None, *, schemas=(): report)
    # The error ends the process with status 2: a wheel task ignores returned values.
    with pytest.raises(SystemExit) as stopped:
        import_legacy.main(ARGV)
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert "imported main.a v1" in out
    assert err == "error: refused main.b: main.b already has DEK versions 1..2\n"
