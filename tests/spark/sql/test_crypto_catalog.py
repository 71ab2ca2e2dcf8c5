"""A dedicated crypto catalog on local Spark: the functions live in it, the data catalog's
masked tables read through them, and the keyring stays where the jobs keep it."""

from __future__ import annotations

from envelope_encryption.spark.sql.deploy import apply_column_masks, deploy_sql_layer
from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment
from envelope_encryption.spark.sql.target import SqlOptions

from .conftest import write_encrypted

ROWS = [(1, "Ada", "111-11-1111"), (2, "Grace", None)]


def test_functions_in_a_crypto_catalog_serve_the_masks_of_the_data_catalog(local_ctx, spark):
    settings = local_ctx.settings
    catalog = settings.catalog
    keys = f"{catalog}_keys"
    options = SqlOptions(crypto_catalog=keys)
    ref = write_encrypted(local_ctx, ROWS)

    report = deploy_sql_layer(spark, settings, options, databricks=False)
    assert report.local and report.functions == ["decrypt_hr", "encrypt_hr"]
    names = {f.name for f in spark.catalog.listFunctions()}
    assert {f"{keys}__crypto__decrypt_hr", f"{keys}__crypto__encrypt_hr",
            f"{keys}__crypto__unwrap_key"} <= names
    assert not any(n.startswith(f"{catalog}__crypto__") for n in names)

    # A member reads plaintext through the crypto catalog's decrypt function.
    member = LocalSqlEnvironment(spark, settings, options,
                                 groups=[f"{catalog}.hr.crypto.user"]).install()
    assert member.decrypt_function("hr") == f"`{keys}__crypto__decrypt_hr`"
    view = member.masked_view(ref, ["name", "ssn"])
    assert sorted(tuple(r) for r in spark.table(view).collect()) == sorted(ROWS)
    # SQL encrypt from the crypto catalog makes cells the data catalog's masks read.
    cell = spark.sql(f"SELECT {member.encrypt_function('hr')}('Linus', 'people', 'name') AS c"
                     ).first().c
    assert spark.sql(f"SELECT {member.decrypt_function('hr')}(:c, 'people', 'name') AS p",
                     args={"c": cell}).first().p == "Linus"

    # The masks on the data catalog's table name: everyone else reads NULL.
    apply_column_masks(spark, settings, ref, ["name", "ssn"], databricks=False,
                       options=options)
    rows = spark.table(local_ctx.lakehouse.table(catalog, "hr", "people")).collect()
    assert {(r.name, r.ssn) for r in rows} == {(None, None)}
    # The keyring is the jobs' table in the data catalog's crypto schema, untouched.
    assert spark.table(local_ctx.store.table).count() >= 2
