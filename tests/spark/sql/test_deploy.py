"""Deployment on Databricks runs the rendered statements, in order, through the session given."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.spark.columns import TableRef
from envelope_encryption.spark.sql.deploy import apply_column_masks, deploy_sql_layer
from envelope_encryption.spark.sql.render import render_deployment, render_mask
from envelope_encryption.spark.sql.target import SqlOptions, SqlTarget

SETTINGS = Settings(backend="aws-kms", catalog="main", schemas=("default",), metastore_id="m1",
                    service_credential="cred", options={"aws-region": "eu-west-1"})


class RecordingSession:
    """Just enough of a SparkSession: records the SQL it is given."""

    def __init__(self, functions: tuple[str, ...] = ()) -> None:
        self.statements: list[str] = []
        self.catalog = SimpleNamespace(functionExists=lambda name: name in functions)

    def sql(self, statement: str) -> None:
        self.statements.append(statement)


def test_deploy_runs_every_rendered_statement_in_order():
    session = RecordingSession()
    options = SqlOptions(non_member="redacted")
    report = deploy_sql_layer(session, SETTINGS, options, databricks=True)
    assert session.statements == render_deployment(SETTINGS, options)
    assert report.statements == len(session.statements) and not report.local
    assert report.functions == ["unwrap_key", "decrypt_cells", "open_cell", "seal_cell",
                                "decrypt_default", "encrypt_default", "subject_hash",
                                "decrypt_subject_cells", "open_subject_cell",
                                "decrypt_subject_default"]


def test_masks_need_the_decrypt_function():
    ref = TableRef("main", "default", "customers")
    with pytest.raises(ConfigError, match="does not exist"):
        apply_column_masks(RecordingSession(), SETTINGS, ref, ["ssn"], databricks=True)
    session = RecordingSession(functions=("main.crypto.decrypt_default",))
    run = apply_column_masks(session, SETTINGS, ref, ["name", "ssn"], databricks=True)
    target = SqlTarget(SETTINGS)
    assert run == session.statements == [render_mask(target, ref, c) for c in ("name", "ssn")]


def test_masks_refuse_a_schema_without_functions():
    with pytest.raises(ConfigError, match="no decrypt function"):
        apply_column_masks(RecordingSession(), SETTINGS, TableRef("main", "sales", "t"), ["x"],
                           databricks=True)


def test_masks_use_the_functions_of_a_dedicated_crypto_catalog():
    ref = TableRef("main", "default", "customers")
    options = SqlOptions(crypto_catalog="keys")
    # The data catalog's function does not count: the masks must name the crypto catalog's.
    with pytest.raises(ConfigError, match=r"keys\.crypto\.decrypt_default does not exist"):
        apply_column_masks(RecordingSession(functions=("main.crypto.decrypt_default",)),
                           SETTINGS, ref, ["ssn"], databricks=True, options=options)
    session = RecordingSession(functions=("keys.crypto.decrypt_default",))
    apply_column_masks(session, SETTINGS, ref, ["ssn"], databricks=True, options=options)
    assert session.statements == [
        "ALTER TABLE `main`.`default`.`customers` ALTER COLUMN `ssn` SET MASK "
        "`keys`.`crypto`.`decrypt_default` USING COLUMNS ('customers', 'ssn')"]
    deployed = RecordingSession()
    deploy_sql_layer(deployed, SETTINGS, options, databricks=True)
    assert not any("`main`.`crypto`" in s for s in deployed.statements if "FUNCTION" in s
                   and "dek_keyring" not in s and "dek_subjects" not in s)
