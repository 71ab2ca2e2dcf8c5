"""The audit trail: every key operation of the jobs, refused and failed ones too, lands in the
append-only audit table with who, what, which run and how it ended, and never a key."""

from __future__ import annotations

import base64
import json
import logging
import uuid

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError, KeyringError
from envelope_encryption.jobs import (
    dek_generation,
    encrypt_columns,
    kek_setup,
    reencrypt_columns,
    retire_dek,
    rotate_kek,
)
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.sample_data import PII_COLUMNS, customers, write_csv
from envelope_encryption.keyring.audit import AUDIT_LOGGER, TableAuditLog


def _settings(tmp_path, **options: str) -> Settings:
    return Settings(catalog=f"au{uuid.uuid4().hex[:8]}", schemas=("hr",),
                    options={"local-kek-file": str(tmp_path / "kek.key"), **options})


def _events(settings, spark) -> list[dict]:
    with build_context(settings, spark) as ctx:
        assert isinstance(ctx.keyring.audit, TableAuditLog)
        return ctx.keyring.audit.events()


def test_every_key_operation_is_recorded_with_its_outcome_and_no_key(tmp_path, spark):
    settings = _settings(tmp_path, **{"run-id": "4242"})
    scope = settings.scope("hr")
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    write_csv(customers(5), landing / "a.csv")
    encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                        target_table="hr.customers", columns=list(PII_COLUMNS))
    dek_generation.run(settings, spark, schema="hr")
    with pytest.raises(KeyringError, match="still use it"):
        retire_dek.run(settings, spark, schema="hr", version=1, tables=["hr.customers"])
    reencrypt_columns.run(settings, spark, table="hr.customers", columns=list(PII_COLUMNS))
    retire_dek.run(settings, spark, schema="hr", version=1, tables=["hr.customers"])
    rotate_kek.run(settings, spark)

    events = _events(settings, spark)
    seen = [(e["operation"], e["outcome"], e["scope"], e["key_version"]) for e in events]
    assert seen == [
        ("kek_ensured", "ok", "", None),
        ("dek_created", "ok", scope, 1),
        ("dek_created", "ok", scope, 2),
        ("dek_retired", "refused", scope, 1),
        ("cells_reencrypted", "ok", scope, 2),
        ("dek_retired", "ok", scope, 1),
        ("kek_rotated", "ok", "", None),
        ("dek_rewrapped", "ok", scope, 1),
        ("dek_rewrapped", "ok", scope, 2),
    ]
    by_operation = {e["operation"]: e for e in events}
    assert "still use it" in events[3]["detail"]
    moved = by_operation["cells_reencrypted"]
    assert moved["table_name"] == f"{settings.catalog}.hr.customers"
    cells = 5 * len(PII_COLUMNS)
    assert f"before {{1: {cells}}}, after {{2: {cells}}}" in moved["detail"]
    assert by_operation["kek_rotated"]["kek_version"] == "2"
    assert {e["run_id"] for e in events} == {"4242"}
    assert all(e["actor"] and e["event_time"] is not None for e in events)

    # No key of any kind in any row: DEKs, their wrapped forms, the KEK file's bytes.
    with build_context(settings, spark) as ctx:
        secrets = [k.reveal() for k in ctx.keyring.deks(scope).values()]
        secrets += [r.wrapped.blob for r in ctx.store.history()]
    text = json.dumps(events, default=str)
    for secret in secrets:
        for form in (secret.hex(), base64.b64encode(secret).decode(),
                     base64.urlsafe_b64encode(secret).decode()):
            assert form not in text


def test_without_an_audit_table_the_trail_is_in_the_log(tmp_path, spark, caplog):
    settings = _settings(tmp_path, **{"audit-table": "none"})
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        kek_setup.run(settings, spark)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == AUDIT_LOGGER]
    assert [(e["operation"], e["outcome"]) for e in lines] == [
        ("kek_ensured", "ok"), ("dek_created", "ok")]
    with build_context(settings, spark) as ctx:
        assert not isinstance(ctx.keyring.audit, TableAuditLog)
        assert not ctx.lakehouse.table_exists(spark, settings.catalog, "crypto", "key_audit")


@pytest.mark.parametrize("value", ["key audit", "x;DROP", "a`b"])
def test_a_bad_audit_table_name_is_refused(tmp_path, spark, value):
    with pytest.raises(ConfigError, match="--audit-table"):
        build_context(_settings(tmp_path, **{"audit-table": value}), spark)
