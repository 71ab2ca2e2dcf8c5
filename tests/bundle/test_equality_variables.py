"""The bundle variables ``equality_domains``, ``deterministic_columns`` and
``blind_index_columns`` reach kek_setup and encrypt_columns (and ``equality_domains``
preflight) (docs/equality.md, "Jobs").

Resolved the way the CLI resolves ``--var`` for a cloud target, loaded with the typed models
of ``databricks-bundles``, and parsed by encrypt_columns' own argument parser into the
deterministic and blind-index columns of a run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from databricks.bundles.jobs import Job

from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs import encrypt_columns, preflight
from envelope_encryption.jobs.bundle import load_bundle
from envelope_encryption.jobs.ingest_equality import EqualityColumns

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = {"catalog": "sales", "schemas": "hr", "new_dek_schema": "hr",
             "metastore_id": "ms1", "service_credential": "envelope-kms",
             "source_path": "/Volumes/sales/hr/landing/customers",
             "target_table": "hr.customers", "aws_region": "eu-west-1",
             "encrypt_columns": "name,ssn",
             "equality_domains": "ssn:digits:64,email:casefold",
             "deterministic_columns": "email=email", "blind_index_columns": "ssn=ssn"}


def _equality(bundle, params: dict[str, str] | None = None) -> EqualityColumns:
    (task,) = bundle.tasks("encrypt_columns", params or {})
    args = encrypt_columns.build_parser().parse_args(task.parameters)
    return EqualityColumns.parse(args.equality_domains, args.deterministic_columns,
                                 args.blind_index_columns)


def test_the_variables_reach_the_jobs_and_the_typed_models_accept_them():
    bundle = load_bundle(ROOT, "aws-kms", overrides=VARIABLES, environ={})
    for key in ("kek_setup", "encrypt_columns", "preflight"):
        params = Job.from_dict(bundle.jobs[key]).as_dict()["tasks"][0][
            "python_wheel_task"]["named_parameters"]
        assert params["equality-domains"] == "ssn:digits:64,email:casefold"
    equality = _equality(bundle)
    assert {c: (s.name, s.normal_form, s.bits) for c, s in equality.deterministic.items()} \
        == {"email": ("email", "casefold", 32)}
    assert {c: (s.name, s.normal_form, s.bits) for c, s in equality.blind_indexes.items()} \
        == {"ssn": ("ssn", "digits", 64)}
    equality.check(["name", "ssn"], id_column="id")  # the bundle's columns fit
    # preflight expects the functions kek_setup creates for the same domains.
    (task,) = bundle.tasks("preflight")
    options = preflight.preflight_options(preflight.build_parser().parse_args(task.parameters))
    assert sorted(options.equality_domains) == ["email", "ssn"]


def test_a_run_may_change_the_columns_but_not_the_domains():
    bundle = load_bundle(ROOT, "aws-kms", overrides=VARIABLES, environ={})
    changed = _equality(bundle, {"deterministic_columns": "work_email=email",
                                 "blind_index_columns": ""})
    assert list(changed.deterministic) == ["work_email"] and not changed.blind_indexes
    # The domains are a deployment setting: a run naming another domain is refused.
    with pytest.raises(ConfigError, match="domain 'phone' of column 'mobile' is not declared"):
        _equality(bundle, {"deterministic_columns": "mobile=phone"})
    with pytest.raises(ConfigError, match="has no parameter equality_domains"):
        bundle.tasks("encrypt_columns", {"equality_domains": "phone"})


def test_by_default_no_column_is_deterministic_or_indexed():
    bundle = load_bundle(ROOT, "local", environ={})
    assert not _equality(bundle)
    (task,) = bundle.tasks("kek_setup")
    assert "--equality-domains=" in task.parameters
