"""The list of deployed objects is what the rendered deployment creates, no more, no less.

Every ``CREATE ... FUNCTION`` and ``CREATE TABLE`` of :func:`render_deployment` is one of
:func:`deployed_objects`, in the same order, and the privileged ones are exactly those the
deployment revokes from ``account users``; grants to writers and to the lookup group are the
objects' executors. Pure: no Spark.
"""

from __future__ import annotations

import re

import pytest

from envelope_encryption.cell.equality import parse_domain_specs
from envelope_encryption.config import Settings
from envelope_encryption.spark.sql.deployed_objects import FUNCTION, TABLE, deployed_objects
from envelope_encryption.spark.sql.render import render_deployment
from envelope_encryption.spark.sql.target import SqlOptions, SqlTarget

_NAME = r"((?:`[^`]+`\.){2}`[^`]+`)"
CREATED = re.compile(rf"^CREATE (?:OR REPLACE FUNCTION|TABLE IF NOT EXISTS) {_NAME}")
OWNER_ONLY = re.compile(rf"^REVOKE ALL PRIVILEGES ON (FUNCTION|TABLE) {_NAME} "
                        r"FROM `account users`$")
EXECUTE = re.compile(rf"^GRANT EXECUTE ON FUNCTION {_NAME} TO `([^`]+)`$")


def _unquoted(name: str) -> str:
    return ".".join(part.strip("`") for part in name.split("`.`"))


def settings(backend: str) -> Settings:
    return Settings(backend=backend, catalog="main", schemas=("hr", "sales"),
                    metastore_id="ms-1", service_credential="cred",
                    options={"aws-region": "eu-west-1"})


CASES = {
    "aws-kms": (settings("aws-kms"), SqlOptions()),
    "aws-sm, writers": (settings("aws-sm"),
                        SqlOptions(writer_group="{catalog}.{schema}.crypto.writer")),
    "azure, equality, lookup group, crypto catalog": (
        settings("azure"),
        SqlOptions(equality_domains=parse_domain_specs("ssn:digits,email:casefold"),
                   lookup_group="{catalog}.crypto.lookup", crypto_catalog="keys")),
    "equality without a lookup group": (
        settings("aws-kms"), SqlOptions(equality_domains=parse_domain_specs("ssn"))),
}


@pytest.mark.parametrize("case", CASES)
def test_the_list_is_what_the_deployment_creates_and_keeps_for_its_owner(case):
    config, options = CASES[case]
    statements = render_deployment(config, options)
    objects = deployed_objects(SqlTarget.of(config, options), options)

    created = [_unquoted(m[1]) for s in statements if (m := CREATED.match(s))]
    assert [o.full_name for o in objects] == created
    kinds = {_unquoted(m[1]): ("TABLE" if "TABLE" in m[0] else "FUNCTION")
             for s in statements if (m := CREATED.match(s))}
    assert {o.full_name: o.kind for o in objects} == kinds

    owner_only = {_unquoted(m[2]) for s in statements if (m := OWNER_ONLY.match(s))}
    privileged = {o.full_name for o in objects if o.privileged}
    # The subject table is created owner-only (no grant at all): the revokes cover functions.
    assert owner_only == {o.full_name for o in objects if o.privileged and o.kind == FUNCTION}
    assert privileged - owner_only == {o.full_name for o in objects if o.kind == TABLE}

    granted: dict[str, set[str]] = {}
    for statement in statements:
        if m := EXECUTE.match(statement):
            granted.setdefault(_unquoted(m[1]), set()).add(m[2])
    assert granted == {o.full_name: set(o.executors) for o in objects if o.executors}
    assert not any(o.privileged and o.executors for o in objects)


def test_names_and_places():
    config, options = CASES["azure, equality, lookup group, crypto catalog"]
    objects = {o.name: o for o in deployed_objects(SqlTarget.of(config, options), options)}
    assert objects["unwrap_key"].full_name == "keys.crypto.unwrap_key"
    # The subject table stays beside the keyring, in the data catalog.
    assert objects["dek_subjects"].full_name == "main.crypto.dek_subjects"
    assert objects["blind_index_ssn"].executors == ("main.crypto.lookup",)
    assert objects["deterministic_email"].role == "lookup function"
    assert {n for n, o in objects.items() if o.privileged} == {
        "unwrap_key", "decrypt_cells", "open_cell", "seal_cell", "equality_values",
        "dek_subjects", "subject_hash", "decrypt_subject_cells", "open_subject_cell"}
    assert "dek_records" not in objects  # aws-sm only
    # Who may hold privileges is checked on the privileged objects and the lookup functions.
    assert {n for n, o in objects.items() if o.guarded} == {
        n for n, o in objects.items() if o.privileged or o.role == "lookup function"}
    assert not objects["encrypt_hr"].guarded and not objects["decrypt_subject_hr"].guarded
