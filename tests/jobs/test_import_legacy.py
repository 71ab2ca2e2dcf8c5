"""The ``import_legacy`` job's report and exit statuses (the import itself runs against moto in
tests/jobs/test_aws_sm_legacy_import.py)."""

from __future__ import annotations

import pytest

from envelope_encryption.jobs import import_legacy
from envelope_encryption.legacy import ImportReport

ARGV = ["--kek-backend=aws-sm", "--catalog=main", "--import-schemas=a, b"]


def test_report_and_exit_code_0(monkeypatch, capsys):
    asked = {}

    def run(settings, spark=None, *, schemas=(), **options):
        asked.update(catalog=settings.catalog, schemas=schemas, **options)
        return ImportReport(source="legacy/s", imported=["main.a v1"],
                            already_imported=["main.b v1"], activated=["main.a v2"])

    monkeypatch.setattr(import_legacy, "run", run)
    assert import_legacy.main(ARGV) == 0
    assert asked == {"catalog": "main", "schemas": ["a", "b"], "dry_run": False,
                     "legacy_key": "", "legacy_vault_url": ""}
    out = capsys.readouterr().out
    assert "imported main.a v1 (LEGACY_IMPORTED_DEK) from legacy/s" in out
    assert "main.b v1: already imported, skipped" in out
    assert "main.a v2: a fresh DEK, the active version" in out
    assert "legacy/s was not changed" in out


def test_a_refused_scope_fails_the_job_after_reporting_the_others(monkeypatch, capsys):
    report = ImportReport(source="legacy/s", imported=["main.a v1"],
                          refused=[("main.b", "main.b already has DEK versions 1..2")])
    monkeypatch.setattr(import_legacy, "run", lambda settings, spark=None, **options: report)
    # The error ends the process with status 2: a wheel task ignores returned values.
    with pytest.raises(SystemExit) as stopped:
        import_legacy.main(ARGV)
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert "imported main.a v1" in out
    assert err == "error: refused main.b: main.b already has DEK versions 1..2\n"


@pytest.mark.parametrize("backend", ["local"])
def test_a_backend_without_a_notebooks_variant_says_what_is_supported(backend, capsys):
    with pytest.raises(SystemExit) as stopped:
        import_legacy.main([f"--kek-backend={backend}", "--catalog=main"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "aws-sm variant" in err and "aws-kms and azure variants" in err
    assert f"--kek-backend={backend} is none of them" in err


def test_dry_run_is_reported_as_such(monkeypatch, capsys):
    report = ImportReport(source="main.crypto.keyvault", imported=["main.a v1", "main.a v2"],
                          activated=["main.a v3"], dry_run=True,
                          notes=["main.a v1: opened by Key Vault key k (v0)"])
    monkeypatch.setattr(import_legacy, "run", lambda settings, spark=None, **options: report)
    assert import_legacy.main(["--kek-backend=azure", "--catalog=main", "--dry-run=true"]) == 0
    out = capsys.readouterr().out
    assert "would import main.a v2 (LEGACY_IMPORTED_DEK) from main.crypto.keyvault" in out
    assert "main.a v3: would be a fresh DEK, the active version" in out
    assert "main.a v1: opened by Key Vault key k (v0)" in out
    assert "dry run: nothing was written" in out
