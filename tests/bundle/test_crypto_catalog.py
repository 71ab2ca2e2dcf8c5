"""The bundle variable ``sql_crypto_catalog`` reaches kek_setup, encrypt_columns and preflight.

Resolved the way the CLI resolves ``--var`` for a cloud target, loaded with the typed models
of ``databricks-bundles``, and parsed by each job's own argument parser into the SQL options
that put the functions in the dedicated catalog.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from databricks.bundles.jobs import Job

from envelope_encryption.config import settings_from_args
from envelope_encryption.jobs import encrypt_columns, kek_setup, preflight, registry
from envelope_encryption.jobs.bundle import load_bundle
from envelope_encryption.spark.sql_functions import (
    SqlOptions,
    SqlTarget,
    render_deployment,
    render_mask,
)

ROOT = Path(__file__).resolve().parents[2]
# The aws-kms target's <placeholders> replaced, as a deployment would.
VARIABLES = {"catalog": "sales", "schemas": "hr", "new_dek_schema": "hr",
             "metastore_id": "ms1", "service_credential": "envelope-kms",
             "source_path": "/Volumes/sales/hr/landing/customers",
             "target_table": "hr.customers", "aws_region": "eu-west-1",
             "sql_crypto_catalog": "sales_keys"}


def _parsed(bundle, job: str):
    (task,) = bundle.tasks(job)
    assert "--sql-crypto-catalog=sales_keys" in task.parameters
    return registry.job(task.entry_point).module().build_parser().parse_args(task.parameters)


def test_the_variable_reaches_the_jobs_and_the_typed_models_accept_them():
    bundle = load_bundle(ROOT, "aws-kms", overrides=VARIABLES, environ={})
    for key in ("kek_setup", "encrypt_columns", "preflight"):
        model = Job.from_dict(bundle.jobs[key])
        params = model.as_dict()["tasks"][0]["python_wheel_task"]["named_parameters"]
        assert params["sql-crypto-catalog"] == "sales_keys"

    args = _parsed(bundle, "kek_setup")
    options = kek_setup.sql_options(args)
    assert options == SqlOptions(crypto_catalog="sales_keys", job_group=args.sql_job_group,
                                 non_member=args.sql_non_member, decrypt=args.sql_decrypt)
    settings = settings_from_args(args)
    statements = "\n".join(render_deployment(settings, options))
    assert "CREATE OR REPLACE FUNCTION `sales_keys`.`crypto`.`unwrap_key`(" in statements
    assert "FUNCTION `sales`.`crypto`." not in statements
    assert "FROM `sales`.`crypto`.`dek_keyring`" in statements  # the keyring stays put
    assert "/Volumes/sales_keys/crypto/packages/" in statements

    assert _parsed(bundle, "encrypt_columns").sql_crypto_catalog == "sales_keys"
    assert preflight.preflight_options(_parsed(bundle, "preflight")).crypto_catalog == \
        "sales_keys"


def test_by_default_the_functions_stay_in_the_data_catalog():
    bundle = load_bundle(ROOT, "aws-kms", overrides={**VARIABLES, "sql_crypto_catalog": ""},
                         environ={})
    (task,) = bundle.tasks("kek_setup")
    args = kek_setup.build_parser().parse_args(task.parameters)
    assert kek_setup.sql_options(args).crypto_catalog == ""
    (task,) = bundle.tasks("encrypt_columns")
    assert encrypt_columns.build_parser().parse_args(task.parameters).sql_crypto_catalog == ""


def test_an_invalid_crypto_catalog_is_refused_before_anything_runs():
    from envelope_encryption.errors import ConfigError

    with pytest.raises(ConfigError, match="crypto catalog"):
        SqlOptions(crypto_catalog="keys`; DROP")
    # The mask names the function in the crypto catalog, on a table of the data catalog.
    from envelope_encryption.config import Settings
    from envelope_encryption.spark.columns import TableRef

    settings = Settings(backend="aws-kms", catalog="sales", schemas=("hr",))
    target = SqlTarget.of(settings, SqlOptions(crypto_catalog="sales_keys"))
    assert "SET MASK `sales_keys`.`crypto`.`decrypt_hr`" in render_mask(
        target, TableRef("sales", "hr", "people"), "ssn")
