"""Names that reach the SQL layer cannot inject SQL (or Python into a function body)."""

from __future__ import annotations

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.spark.columns import TableRef
from envelope_encryption.spark.sql.render import (
    render_decrypt_function,
    render_deployment,
    render_mask,
    render_template,
)
from envelope_encryption.spark.sql.target import SqlOptions, SqlTarget

GOOD = dict(backend="aws-kms", catalog="main", schemas=("default",), metastore_id="m1",
            service_credential="cred")

ATTACKS = [
    "x`; DROP TABLE t; --",
    "x'; DROP TABLE t; --",
    "x) OR (1=1",
    "a.b",
    "x\nGRANT ALL",
    "$$ import os $$",
    "",
]


@pytest.mark.parametrize("bad", ATTACKS)
@pytest.mark.parametrize("field", ["catalog", "crypto_schema", "keyring_table", "metastore_id"])
def test_settings_names_refused(field, bad):
    with pytest.raises(ConfigError):
        render_deployment(Settings(**{**GOOD, field: bad}))


@pytest.mark.parametrize("bad", ATTACKS)
def test_schema_names_refused(bad):
    with pytest.raises(ConfigError):
        render_deployment(Settings(**{**GOOD, "schemas": (bad,)}))


@pytest.mark.parametrize("bad", ["cred`) DEFAULT", "c'red", "c\\red", "c$$", "c\ncred"])
def test_service_credential_refused(bad):
    with pytest.raises(ConfigError):
        render_deployment(Settings(**{**GOOD, "service_credential": bad}))


@pytest.mark.parametrize("bad", ATTACKS[:5])
@pytest.mark.parametrize("part", ["schema", "table", "column"])
def test_mask_target_refused(part, bad):
    target = SqlTarget(Settings(**GOOD))
    table = dict(catalog="main", schema="default", table="customers")
    column = "ssn"
    if part == "column":
        column = bad
    else:
        table[part] = bad
    with pytest.raises(ConfigError):
        render_mask(target, TableRef(**table), column)


@pytest.mark.parametrize("group", ["{catalog}.{schema}' OR TRUE --", "g`x", "g\\x", "g;x'",
                                   "{0}", "{catalog.__class__}", "{other}"])
def test_group_names_refused(group):
    with pytest.raises(ConfigError):
        render_decrypt_function(SqlTarget(Settings(**GOOD)), "default",
                                SqlOptions(reader_group=group))


@pytest.mark.parametrize("wheel", ["/Volumes/x/y'.whl", "pkg; rm -rf /", '/V/a".whl', "x==1'"])
def test_udf_dependencies_refused(wheel):
    with pytest.raises(ConfigError):
        SqlOptions(udf_wheel=wheel)


@pytest.mark.parametrize("value", ["https://v.vault.azure.net/$$\nimport os", "a\nb"])
def test_option_values_cannot_break_out_of_the_function_body(value):
    settings = Settings(**{**GOOD, "backend": "azure",
                           "options": {"azure-vault-url": value}})
    with pytest.raises(ConfigError):
        render_deployment(settings)


def test_option_values_are_python_literals():
    settings = Settings(**{**GOOD, "options": {"aws-region": "eu-west-1') ; import os #"}})
    ddl = "\n".join(render_deployment(settings))
    assert "'aws-region': \"eu-west-1') ; import os #\"," in ddl


def test_modes_and_back_ends_checked():
    with pytest.raises(ConfigError):
        SqlOptions(non_member="plaintext")
    with pytest.raises(ConfigError):
        SqlOptions(decrypt="maybe")
    with pytest.raises(ConfigError, match="local back end"):
        render_deployment(Settings(**{**GOOD, "backend": "local"}))
    with pytest.raises(ConfigError, match="service credential"):
        render_deployment(Settings(**{**GOOD, "service_credential": ""}))
    with pytest.raises(ConfigError, match="catalog"):
        render_mask(SqlTarget(Settings(**GOOD)), TableRef("other", "default", "t"), "c")


def test_templates_need_every_placeholder():
    with pytest.raises(ConfigError, match="without a value"):
        render_template("SELECT {{a}}, {{b}}", {"a": "1"})
    with pytest.raises(ConfigError, match="no placeholder"):
        render_template("SELECT {{a}}", {"a": "1", "c": "2"})
