"""The interactive notebooks (notebooks/*.py): Databricks source notebooks that call the
wheel, run here cell by cell on local Spark."""

from __future__ import annotations

from pathlib import Path

import pytest

from envelope_encryption.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def test_notebooks_are_databricks_source_notebooks_calling_the_wheel():
    names = [path.name for path in NOTEBOOKS]
    assert names == ["01_setup.py", "02_user_verification.py", "03_new_dek.py"]
    for path in NOTEBOOKS:
        text = path.read_text()
        assert text.startswith("# Databricks notebook source\n"), path.name
        assert "\n# COMMAND ----------\n" in text
        compile(text, str(path), "exec")
        assert "dbutils.widgets.text(" in text
    assert "kek_setup.run(settings, spark," in NOTEBOOKS[0].read_text()
    assert "is_account_group_member(:group)" in NOTEBOOKS[1].read_text()
    assert "dek_generation.run(settings, spark," in NOTEBOOKS[2].read_text()


class Widgets:
    """Stands in for ``dbutils.widgets``, which exists only on Databricks: text widgets with
    values preset by the test (what a user would type), defaults otherwise."""

    def __init__(self, values: dict[str, str]):
        self.values = dict(values)

    def text(self, name: str, default: str, label: str | None = None) -> None:
        self.values.setdefault(name, default)

    def get(self, name: str) -> str:
        return self.values[name]


@pytest.mark.parametrize("name", ["01_setup.py", "03_new_dek.py"])
def test_notebooks_refuse_the_local_back_end_on_databricks(name, monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    # The widgets' cells only: they parse the settings and refuse before any key is made.
    with pytest.raises(ConfigError, match="local back end is for local runs only"):
        run_notebook(ROOT / "notebooks" / name, None, Widgets({}), stop_after="print(settings)")


def run_notebook(path: Path, spark, widgets: Widgets, stop_after: str = "") -> tuple[dict, list]:
    shown: list = []
    namespace = {"spark": spark, "dbutils": type("dbutils", (), {"widgets": widgets}),
                 "display": lambda df: shown.append(df.collect()), "__name__": "__notebook__"}
    for cell in path.read_text().split("\n# COMMAND ----------\n"):
        if "dbutils.library" in cell:
            continue  # installing the wheel into the notebook is Databricks-only
        exec(compile(cell, str(path), "exec"), namespace)
        if stop_after and stop_after in cell:
            break
    return namespace, shown


@pytest.mark.slow
def test_notebooks_run_the_jobs_on_local_spark(spark, tmp_path, capsys):
    # A catalog of its own, so other tests' keyrings are untouched.
    widgets = Widgets({"catalog": "nbcat", "schemas": "nbs",
                       "local_kek_file": str(tmp_path / "kek.key")})
    setup, _ = run_notebook(ROOT / "notebooks" / "01_setup.py", spark, widgets)
    assert setup["settings"].catalog == "nbcat"
    assert setup["report"].created_deks == ["nbcat.nbs v1"]
    again, _ = run_notebook(ROOT / "notebooks" / "01_setup.py", spark, widgets)
    assert again["report"].created_deks == [] and again["report"].existing_deks == ["nbcat.nbs v1"]

    new_dek, _ = run_notebook(ROOT / "notebooks" / "03_new_dek.py", spark, widgets)
    assert (new_dek["record"].scope, new_dek["record"].version) == ("nbcat.nbs", 2)

    spark.sql("CREATE SCHEMA IF NOT EXISTS nbcat__nbs")
    spark.sql("CREATE TABLE nbcat__nbs.customers (id INT, name STRING)")
    spark.sql("INSERT INTO nbcat__nbs.customers VALUES (1, 'ee1:not-really')")
    # Unity Catalog's group check does not exist locally; a SQL function of the same name
    # (no Python worker to start) makes this user a member of the notebook's group.
    spark.sql("CREATE TEMPORARY FUNCTION is_account_group_member(g STRING) RETURNS BOOLEAN "
              "RETURN g = 'nbcat.nbs.crypto.user'")
    try:
        capsys.readouterr()
        _, shown = run_notebook(
            ROOT / "notebooks" / "02_user_verification.py", spark,
            Widgets({"catalog": "nbcat", "schema": "nbs", "table": "customers"}),
        )
    finally:
        spark.sql("DROP TEMPORARY FUNCTION IF EXISTS is_account_group_member")
    (who,), rows = shown
    assert who["crypto_user_group"] == "nbcat.nbs.crypto.user" and who["is_member"] is True
    assert [tuple(r) for r in rows] == [(1, "ee1:not-really")]
    # Local Spark has no grants: the notebook says the keyring is readable, as it should.
    # Two DEK versions and the keyring's integrity record (docs/keyring-integrity.md).
    assert "can read the keyring table (3 rows)" in capsys.readouterr().out
