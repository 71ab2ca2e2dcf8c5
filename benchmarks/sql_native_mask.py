"""For the benchmark only: the column mask's decrypt as it was before ``decrypt_cells``.

That mask opened each cell in SQL with Spark's native ``try_aes_decrypt`` and a key map
``MAP<INT, BINARY>`` that ``unwrap_key`` returned once per query (so the plaintext DEKs were
values of the query), after the same grammar check (``RLIKE``) and with the same UTF-8
check and errors. It is rebuilt here, strict mode, without the legacy branch (the
benchmark's data has no legacy cells), so the shipped batch function can be measured
against it in the same run.
"""

from __future__ import annotations

from envelope_encryption.spark.sql.cell_shape import (
    NOT_A_CELL,
    NOT_AUTHENTIC,
    NOT_UTF8,
    UNKNOWN_VERSION,
    is_cell_sql,
)
from envelope_encryption.spark.sql.keyring_sql import integrity_record, records_relation
from envelope_encryption.spark.sql.passed_records import record_struct_sql

_HEADER_END = "locate(':', value, locate(':', value, 5) + 1)"
_KEY = "try_element_at(k.keys, try_cast(substring(value, 5, locate(':', value, 5) - 5) AS INT))"
_PLAINTEXT = (f"try_aes_decrypt(unbase64(substring(value, {_HEADER_END} + 1)), {_KEY}, "
              f"'GCM', 'DEFAULT', concat(substring(value, 1, {_HEADER_END}), place))")


def _refuse(message: str) -> str:
    return f"raise_error('envelope encryption: {message}')"


def register(spark, env, schema: str, group: str, name: str = "native_decrypt") -> str:
    """Create ``<name>(value, table_name, column_name)`` (temporary); returns the name."""
    target = env.target
    scope = env.settings.scope(schema)
    member = f"is_account_group_member('{group}')"
    spark.sql(f"""
        CREATE OR REPLACE TEMPORARY FUNCTION {name}_open(
          value STRING, place STRING, k STRUCT<member: BOOLEAN, keys: MAP<INT, BINARY>>)
        RETURNS STRING
        RETURN CASE
          WHEN value IS NULL THEN NULL
          WHEN NOT coalesce(k.member, FALSE) THEN CAST(NULL AS STRING)
          WHEN {is_cell_sql('value')} THEN coalesce(
            try_validate_utf8(CAST({_PLAINTEXT} AS STRING)),
            CASE WHEN {_KEY} IS NULL THEN {_refuse(UNKNOWN_VERSION)}
                 WHEN {_PLAINTEXT} IS NULL THEN {_refuse(NOT_AUTHENTIC)}
                 ELSE {_refuse(NOT_UTF8)} END)
          ELSE {_refuse(NOT_A_CELL)}
        END""")
    spark.sql(f"""
        CREATE OR REPLACE TEMPORARY FUNCTION {name}(
          value STRING, table_name STRING, column_name STRING)
        RETURNS STRING
        RETURN {name}_open(value, concat('{scope}.', table_name, '.', column_name),
          (SELECT named_struct(
             'member', {member},
             'keys', map_from_arrays(transform(c.records, r -> r.key_version),
               {target.function('unwrap_key')}('{scope}', transform(c.records, r -> to_json(r)),
                 {integrity_record(target)})))
           FROM (SELECT collect_list({record_struct_sql('r')}) AS records
                 FROM ({records_relation(target, scope)}) r
                 WHERE {member}) c))""")
    return name
