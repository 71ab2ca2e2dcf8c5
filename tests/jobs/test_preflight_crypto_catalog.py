"""preflight with a dedicated crypto catalog (``--sql-crypto-catalog``): it looks for the
functions, the wheel and their privileges there, and for the keyring in the data catalog.

A catalog-level grant on the data catalog no longer reaches the unwrap function; the same
grant on the crypto catalog is reported."""

from __future__ import annotations

from envelope_encryption.jobs.preflight_grants import Status
from envelope_encryption.spark.sql_functions import default_udf_wheel
from tests.support.workspace_server import WorkspaceState

from .test_preflight import (  # noqa: F401  (the autouse fixture keeps the machine's config out)
    ADMINS,
    FUNCTIONS,
    JOB_SP,
    SETTINGS,
    SUBJECT_FUNCTIONS,
    _no_real_workspace,
    check,
    line,
    problems,
)

KEYS = "main_keys"


def in_crypto_catalog() -> WorkspaceState:
    state = WorkspaceState(user_name=JOB_SP, user_groups=["crypto-jobs", "main.crypto.jobs"])
    state.groups["main.crypto.jobs"] = "Group"
    for schema in SETTINGS.schemas:
        state.groups[f"main.{schema}.crypto.user"] = "Group"
    state.groups[ADMINS] = "Group"
    state.credentials["kms-cred"] = {"purpose": "SERVICE", "owner": "platform-admins"}
    state.grant("CREDENTIAL", "kms-cred", JOB_SP, "ACCESS")
    state.add_object("SCHEMA", "main.crypto", JOB_SP)  # the keyring's schema
    state.add_object("TABLE", "main.crypto.dek_keyring", JOB_SP)
    state.add_object("SCHEMA", f"{KEYS}.crypto", JOB_SP)
    state.add_object("VOLUME", f"{KEYS}.crypto.packages", JOB_SP)
    for name in (*FUNCTIONS, *SUBJECT_FUNCTIONS):
        state.add_object("FUNCTION", f"{KEYS}.crypto.{name}", JOB_SP)
    state.add_object("TABLE", "main.crypto.dek_subjects", JOB_SP)  # beside the keyring
    state.files[default_udf_wheel(SETTINGS, KEYS)] = 48_213
    return state


def test_the_functions_are_checked_in_the_crypto_catalog():
    state = in_crypto_catalog()
    # A broad grant on the data catalog: it reaches the keyring table, not the functions.
    state.grant("CATALOG", "main", "analysts", "EXECUTE")
    results, _ = check(state, crypto_catalog=KEYS)
    assert line(results, "function", f"{KEYS}.crypto.unwrap_key").status is Status.OK
    assert line(results, "keyring table", "main.crypto.dek_keyring").status is Status.OK
    assert line(results, "wheel", default_udf_wheel(SETTINGS, KEYS)).status is Status.OK
    unwrap = line(results, "privileges on unwrap function", f"{KEYS}.crypto.unwrap_key")
    assert unwrap.status is Status.OK
    assert not any("main.crypto.unwrap_key" in p for p in problems(results))

    # The same grant on the crypto catalog does reach it, and is reported.
    state.grant("CATALOG", KEYS, "analysts", "EXECUTE")
    results, _ = check(state, crypto_catalog=KEYS)
    unwrap = line(results, "privileges on unwrap function", f"{KEYS}.crypto.unwrap_key")
    assert unwrap.status is Status.PROBLEM and "analysts" in unwrap.line()


def test_the_subject_table_stays_beside_the_keyring():
    results, _ = check(in_crypto_catalog(), crypto_catalog=KEYS)
    assert problems(results) == []
    assert line(results, "subject table", "main.crypto.dek_subjects").status is Status.OK
    assert line(results, "function", f"{KEYS}.crypto.subject_hash").status is Status.OK
    # A grant on the data catalog reaches the salts, not the subject functions.
    state = in_crypto_catalog()
    state.grant("CATALOG", "main", "analysts", "SELECT")
    results, _ = check(state, crypto_catalog=KEYS)
    assert {r.check for r in results if r.status is Status.PROBLEM} == {
        "privileges on keyring table", "privileges on subject table"}
