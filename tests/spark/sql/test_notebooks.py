"""The setup and user-verification notebooks, run locally with a minimal ``dbutils``.

Only widgets, ``display`` and ``dbutils.library.restartPython`` are stood in; the notebooks'
own code runs as written (``# MAGIC`` lines, such as ``%pip``, are comments in the source).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from envelope_encryption.spark.sql.deploy import apply_column_masks

from .conftest import write_encrypted

NOTEBOOKS = Path(__file__).parents[3] / "notebooks"


class Widgets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)

    def text(self, name: str, default: str, label: str = "") -> None:
        self.values.setdefault(name, default)

    def get(self, name: str) -> str:
        return self.values[name]


def run_notebook(name: str, spark, widgets: dict[str, str]) -> dict:
    shown = []
    namespace = {
        "spark": spark,
        "dbutils": SimpleNamespace(widgets=Widgets(widgets),
                                   library=SimpleNamespace(restartPython=lambda: None)),
        "display": lambda df: shown.append(df.collect()),
        "__name__": "__notebook__",
    }
    source = (NOTEBOOKS / name).read_text("utf-8")
    exec(compile(source, str(NOTEBOOKS / name), "exec"), namespace)
    namespace["_shown"] = shown
    return namespace


@pytest.mark.parametrize("member", [True, False])
def test_setup_then_user_verification(spark, tmp_path, local_ctx, monkeypatch, capsys, member):
    settings = local_ctx.settings
    kek_file = settings.option("local-kek-file")
    setup = run_notebook("01_setup.py", spark, {
        "kek_backend": "local", "catalog": settings.catalog, "schemas": "hr",
        "local_kek_file": kek_file, "sql_functions": "true",
    })
    assert "DEK " in str(setup["report"])
    masked = ("name", "email", "ssn", "birth_date", "salary")
    ref = write_encrypted(local_ctx, [(1, "Ada", "a@x.org", "111-11-1111", "1815-12-10", "10"),
                                      (2, "Grace", None, "222-22-2222", "1906-12-09", "20")],
                          table="customers", columns=masked,
                          ddl="id int, name string, email string, ssn string, "
                              "birth_date string, salary string")
    apply_column_masks(spark, settings, ref, masked, databricks=False)
    group = f"{settings.catalog}.hr.crypto.user"
    monkeypatch.setenv("ENVELOPE_LOCAL_GROUPS", group if member else "")
    user = run_notebook("02_user_verification.py", spark, {
        "catalog": settings.catalog, "schema": "hr", "table": "customers",
        "local_sql": "true", "kek_backend": "local", "local_kek_file": kek_file,
    })
    out = capsys.readouterr().out
    verdict = "member" if member else "not a member"
    assert f"{verdict} of {group}" in out and "as it should be" in out
    # Every masked column is checked, not a typed-in list of some of them.
    assert f"of {', '.join(sorted(masked))}, every masked column" in out
    table_rows = user["_shown"][1]
    if member:
        assert sorted(r.ssn for r in table_rows) == ["111-11-1111", "222-22-2222"]
        assert sorted(r.salary for r in table_rows) == ["10", "20"]
    else:
        assert {(r.name, r.salary) for r in table_rows} == {(None, None)}


def test_user_verification_fails_on_an_unmasked_column(spark, local_ctx, monkeypatch):
    settings = local_ctx.settings
    ref = write_encrypted(local_ctx, [(1, "Ada", "111-11-1111")], table="people2")
    apply_column_masks(spark, settings, ref, ["name"], databricks=False)
    monkeypatch.setenv("ENVELOPE_LOCAL_GROUPS", "")
    with pytest.raises(AssertionError, match="NOT MASKED: ssn"):
        run_notebook("02_user_verification.py", spark, {
            "catalog": settings.catalog, "schema": "hr", "table": "people2",
            "columns": "name,ssn", "local_sql": "true", "kek_backend": "local",
            "local_kek_file": settings.option("local-kek-file"),
        })
