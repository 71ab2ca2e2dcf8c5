"""The key management dashboard (resources/dashboards.yml, its .lvdash.json) against the bundle
models and against real inventory and audit rows.

The resource is resolved for every target the way the CLI does (``${var.*}`` from the
target's variables) and loaded with the typed ``databricks-bundles`` model. The serialized
dashboard must parse, and every widget must name an existing dataset and only fields that
dataset's query returns. Then every dataset query runs on local Spark, with the default
catalog and schema the resource gives them (``dataset_catalog``, ``dataset_schema``, mapped
to the local database by ``Lakehouse``), over the rows that running the jobs wrote, and its
results are compared with the keyring and a direct scan of the table.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import uuid
from pathlib import Path

import pytest
import yaml
from databricks.bundles.dashboards import Dashboard

from envelope_encryption.config import Settings
from envelope_encryption.errors import KeyringError
from envelope_encryption.jobs import (
    dek_generation,
    encrypt_columns,
    kek_setup,
    reencrypt_columns,
    retire_dek,
    status,
)
from envelope_encryption.jobs.bundle import load_bundle
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.inventory_tables import (
    CELL_INVENTORY,
    KEY_INVENTORY,
    USAGE_INVENTORY,
)
from envelope_encryption.jobs.sample_data import PII_COLUMNS, customers, write_csv
from envelope_encryption.keyring.usage import DEFAULT_HARD_LIMIT, DEFAULT_SOFT_LIMIT
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.columns import cells_per_version

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = yaml.safe_load((ROOT / "databricks.yml").read_text())
TARGETS = list(BUNDLE["targets"])
RESOURCE = yaml.safe_load((ROOT / "resources" / "dashboards.yml").read_text())
(DASHBOARD_KEY,) = RESOURCE["resources"]["dashboards"]
LVDASH = ROOT / "resources" / RESOURCE["resources"]["dashboards"][DASHBOARD_KEY]["file_path"]
SERIALIZED = json.loads(LVDASH.read_text())
DATASETS = {d["name"]: "".join(d["queryLines"]) for d in SERIALIZED["datasets"]}
WIDGETS = [item["widget"] for page in SERIALIZED["pages"] for item in page["layout"]]
# What the dashboard may read: the inventory tables and the audit trail, nothing else.
READABLE = {KEY_INVENTORY, CELL_INVENTORY, USAGE_INVENTORY, "key_audit"}
VAR_REF = re.compile(r"\$\{var\.([A-Za-z0-9_]+)\}")
BACKTICKED = re.compile(r"`([^`]+)`")


def resolved_dashboard(target: str, environ: dict[str, str] | None = None) -> dict:
    """The dashboard resource as the CLI deploys it to ``target``."""
    bundle = load_bundle(ROOT, target, environ=environ or {})
    return {key: VAR_REF.sub(lambda m: bundle.variables[m.group(1)], value)
            if isinstance(value, str) else value
            for key, value in RESOURCE["resources"]["dashboards"][DASHBOARD_KEY].items()}


# --- the resource and the serialized dashboard ----------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_the_dashboard_resource_loads_with_the_typed_model(target):
    bundle = load_bundle(ROOT, target, environ={})
    resource = resolved_dashboard(target)
    model = Dashboard.from_dict(resource)
    assert model.as_dict() == resource
    # The queries' default catalog and schema are the deployment's crypto schema.
    assert model.dataset_catalog == bundle.variables["catalog"]
    assert model.dataset_schema == bundle.variables["crypto_schema"]
    assert model.warehouse_id == bundle.variables["dashboard_warehouse_id"]
    assert model.embed_credentials is True
    assert (ROOT / "resources" / model.file_path).is_file()
    if target != "local":
        assert model.warehouse_id == "<sql-warehouse-id>"


def test_the_typed_model_rejects_an_unknown_field():
    resource = copy.deepcopy(resolved_dashboard("local"))
    resource["dataset_catalogue"] = resource.pop("dataset_catalog")
    with pytest.raises(ValueError, match="Unexpected field"):
        Dashboard.from_dict(resource)


def test_dataset_queries_read_only_the_inventory_and_audit_tables_unqualified():
    assert len(DATASETS) == len(SERIALIZED["datasets"])  # names are unique
    for name, query in DATASETS.items():
        tables = set(re.findall(r"\b(?:FROM|JOIN)\s+([\w.`]+)", query, flags=re.I))
        # A subquery's FROM is followed by "(": only names are collected.
        assert tables and tables <= READABLE, (name, tables)
        assert "SELECT *" not in query.upper(), name


def test_every_widget_names_an_existing_dataset_and_its_own_fields():
    names = [w["name"] for w in WIDGETS]
    assert len(names) == len(set(names))
    with_queries = [w for w in WIDGETS if "queries" in w]
    assert {q["query"]["datasetName"] for w in with_queries for q in w["queries"]} \
        == set(DATASETS), "every dataset is shown, and only datasets that exist"
    for widget in with_queries:
        (query,) = widget["queries"]
        fields = {f["name"] for f in query["query"]["fields"]}
        encodings = widget["spec"]["encodings"]
        used = ([c["fieldName"] for c in encodings["columns"]] if "columns" in encodings
                else [e["fieldName"] for e in encodings.values()])
        assert set(used) <= fields, widget["name"]
    for page in SERIALIZED["pages"]:
        for item in page["layout"]:
            position = item["position"]
            assert position["x"] + position["width"] <= 6, item["widget"]["name"]


def test_the_dashboard_shows_encryptions_against_the_limits():
    texts = " ".join(line for w in WIDGETS for line in w.get("multilineTextboxSpec",
                                                              {}).get("lines", []))
    assert "not counted yet" not in texts and "Encryptions vs limit" in texts
    assert "FROM usage_inventory" in DATASETS["encryptions_vs_limit"]
    charts = [w for w in WIDGETS if w.get("spec", {}).get("widgetType") == "bar"
              and w["queries"][0]["query"]["datasetName"] == "encryptions_vs_limit"]
    assert charts and charts[0]["spec"]["frame"]["title"] == "Encryptions vs limit per DEK version"


# --- every query on local Spark, over rows the jobs wrote -----------------------------------


def _widget_sql(widget: dict, dataset_sql: str) -> str:
    """The widget's own query over its dataset: its fields, grouped by the plain columns
    when it aggregates."""
    query = widget["queries"][0]["query"]
    fields = query["fields"]
    select = ", ".join(f"{f['expression']} AS `{f['name']}`" for f in fields)
    sql = f"SELECT {select} FROM ({dataset_sql}) AS dataset"
    if not query["disaggregated"]:
        plain = [f["expression"] for f in fields if BACKTICKED.fullmatch(f["expression"])]
        sql += f" GROUP BY {', '.join(plain)}"
    return sql


def test_every_dataset_query_runs_on_local_spark_and_agrees_with_a_direct_scan(spark, tmp_path):
    catalog = f"db{uuid.uuid4().hex[:8]}"
    settings = Settings(catalog=catalog, schemas=("hr", "sales"),
                        options={"local-kek-file": str(tmp_path / "kek.key"), "run-id": "77"})
    hr, sales = settings.scope("hr"), settings.scope("sales")
    table = f"{catalog}.hr.customers"
    landing = tmp_path / "landing"

    def encrypt() -> None:
        encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                            target_table="hr.customers", columns=list(PII_COLUMNS))

    kek_setup.run(settings, spark)
    write_csv(customers(6), landing / "a.csv")
    encrypt()
    dek_generation.run(settings, spark, schema="hr")
    write_csv(customers(4, first_id=7), landing / "b.csv")
    encrypt()
    with pytest.raises(KeyringError, match="still use it"):
        retire_dek.run(settings, spark, schema="hr", version=1, tables=["hr.customers"])
    status.run(settings, spark, tables=["hr.customers"], write_inventory=True)
    with build_context(settings, spark) as ctx:
        first_scan = cells_per_version(ctx.spark.table(
            ctx.lakehouse.table(catalog, "hr", "customers")))
    assert first_scan == {1: 6 * len(PII_COLUMNS), 2: 4 * len(PII_COLUMNS)}
    # A second snapshot after the cells moved to v2: the dashboard shows the latest one.
    reencrypt_columns.run(settings, spark, table="hr.customers", columns=list(PII_COLUMNS))
    status.run(settings, spark, tables=["hr.customers"], write_inventory=True)

    with build_context(settings, spark) as ctx:
        scan = cells_per_version(ctx.spark.table(ctx.lakehouse.table(catalog, "hr", "customers")))
        events = ctx.keyring.audit.events()
        usage_scan = {(r["scope"], r["version"]): r["used"] for r in spark.sql(
            "SELECT scope, version, sum(encryptions) AS used FROM "
            f"{ctx.lakehouse.table(catalog, settings.crypto_schema, 'dek_usage')} "
            "GROUP BY scope, version").collect()}
        secrets = [k.reveal() for scope in (hr, sales)
                   for k in ctx.keyring.deks(scope).values()]
        secrets += [r.wrapped.blob for r in ctx.store.history()]
    assert scan == {2: 10 * len(PII_COLUMNS)}
    inventory = json.loads(status.run(settings, spark, tables=["hr.customers"],
                                      output_format="json"))

    # The queries' default namespace, as the resource sets it for this deployment's catalog.
    resource = resolved_dashboard("local", {"BUNDLE_VAR_catalog": catalog})
    namespace = Lakehouse(databricks=False).schema(resource["dataset_catalog"],
                                                   resource["dataset_schema"])
    previous = spark.catalog.currentDatabase()
    spark.sql(f"USE {namespace}")
    try:
        results = {name: [r.asDict() for r in spark.sql(sql).collect()]
                   for name, sql in DATASETS.items()}
        columns = {name: set(spark.sql(sql).columns) for name, sql in DATASETS.items()}
        widget_rows = {}
        for widget in (w for w in WIDGETS if "queries" in w):
            query = widget["queries"][0]["query"]
            referenced = {c for f in query["fields"] for c in BACKTICKED.findall(f["expression"])}
            assert referenced <= columns[query["datasetName"]], widget["name"]
            widget_rows[widget["name"]] = spark.sql(
                _widget_sql(widget, DATASETS[query["datasetName"]])).collect()
    finally:
        spark.catalog.setCurrentDatabase(previous)

    # Key versions: exactly the inventory's, from the latest snapshot, all created today.
    expected_versions = {(s["scope"], v["version"], v["state"], v["active"], v["kek_id"])
                         for s in inventory["scopes"] for v in s["versions"]}
    assert {(r["scope"], r["version"], r["state"], r["active"], r["kek_id"])
            for r in results["key_versions"]} == expected_versions
    assert {(hr, 1), (hr, 2), (sales, 1)} == {(s, v) for s, v, *_ in expected_versions}
    assert all(r["age_days"] == 0 and r["problem"] == "" for r in results["key_versions"])
    assert len({r["snapshot_time"] for r in results["key_versions"]}) == 1
    assert {r["key_label"] for r in results["key_versions"]} \
        == {f"{hr} v1", f"{hr} v2", f"{sales} v1"}
    assert {(r["scope"], r["state"], r["versions"], r["active_version"])
            for r in results["versions_per_scope"]} \
        == {(hr, "ENABLED", 2, 2), (sales, "ENABLED", 1, 1)}

    # Cells per version: the latest snapshot equals the direct scan, and the history holds
    # the first snapshot too (for trends).
    assert {(r["table_name"], r["version"], r["legacy"]): r["cells"]
            for r in results["cells_per_version"]} \
        == {(table, v, False): n for v, n in scan.items()}
    history = spark.table(Lakehouse(databricks=False).table(
        catalog, settings.crypto_schema, CELL_INVENTORY)).collect()
    assert sorted((r["version"], r["cells"]) for r in history) \
        == sorted([*first_scan.items(), *scan.items()])
    assert {(r["version_label"]) for r in results["cells_per_version"]} == {"v2"}

    # Operations: every event of the audit trail (all recent); the refused one apart.
    assert sorted((r["operation"], r["outcome"], r["scope"], r["key_version"])
                  for r in results["recent_operations"]) \
        == sorted((e["operation"], e["outcome"], e["scope"], e["key_version"]) for e in events)
    # Encryptions vs limit: the latest snapshot equals a direct scan of the usage table, which
    # counted what encrypt_columns and reencrypt_columns encrypted (v2's own cells were kept).
    assert usage_scan == {(hr, 1): first_scan[1], (hr, 2): first_scan[2] + first_scan[1]}
    assert {(r["scope"], r["version"]): r["encryptions"]
            for r in results["encryptions_vs_limit"] if r["encryptions"]} == usage_scan
    assert {(r["soft_limit"], r["hard_limit"]) for r in results["encryptions_vs_limit"]} \
        == {(DEFAULT_SOFT_LIMIT, DEFAULT_HARD_LIMIT)}
    assert {r["usage_level"] for r in results["encryptions_vs_limit"]} == {"below soft limit"}

    (refused,) = results["unsuccessful_operations"]
    assert (refused["operation"], refused["outcome"], refused["key_version"]) \
        == ("dek_retired", "refused", 1)
    assert "still use it" in refused["detail"] and refused["run_id"] == "77"

    # Every widget's query runs and shows something; nothing shown is key material.
    assert all(widget_rows.values()), [n for n, rows in widget_rows.items() if not rows]
    shown = json.dumps(results, default=str)
    for secret in secrets:
        for form in (secret.hex(), base64.b64encode(secret).decode(),
                     base64.urlsafe_b64encode(secret).decode()):
            assert form not in shown
