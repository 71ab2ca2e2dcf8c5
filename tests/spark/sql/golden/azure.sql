-- envelope-encryption 0.1.0: Unity Catalog SQL layer, azure back end, catalog main.
-- Rendered by envelope_encryption.spark.sql_functions.render_script; run by kek_setup --sql-functions=true.
-- Readers: members of {catalog}.{schema}.crypto.user see plaintext; everyone else sees null (strict decryption).
-- Jobs: members of {catalog}.crypto.jobs read the cells unchanged (checked first); writers: no grants (no writer group configured).

CREATE SCHEMA IF NOT EXISTS `main`.`crypto` COMMENT 'Envelope encryption: keyring and SQL functions. No grants for readers.';

CREATE VOLUME IF NOT EXISTS `main`.`crypto`.`packages` COMMENT 'The envelope-encryption wheel the unwrap function installs';

CREATE OR REPLACE FUNCTION `main`.`crypto`.`unwrap_key`(key_alias STRING, records ARRAY<STRING>, keyring_integrity STRING)
RETURNS ARRAY<BINARY>
LANGUAGE PYTHON
PARAMETER STYLE PANDAS
HANDLER 'handler'
CREDENTIALS (`envelope-key-vault` DEFAULT)
ENVIRONMENT (dependencies = '["/Volumes/main/crypto/packages/envelope_encryption-0.1.0-py3-none-any.whl"]', environment_version = 'None')
COMMENT 'Unwraps the DEKs of verified keyring records of the scopes of catalog main (default, finance) with the azure KEK; refuses other scopes and any record whose integrity tag does not verify. Privileged: only its owner executes it (through the decrypt and encrypt functions). Managed by envelope-encryption 0.1.0.'
AS $$
from envelope_encryption.spark.sql.runtime import unwrap_batches

# The deployment's settings (names and options only; no secret).
SETTINGS = {
    'backend': 'azure',
    'catalog': 'main',
    'schemas': ['default', 'finance'],
    'metastore_id': 'a1b2c3d4-metastore',
    'crypto_schema': 'crypto',
    'keyring_table': 'dek_keyring',
    'service_credential': 'envelope-key-vault',
    'options': {
        'azure-vault-url': 'https://contoso-kek.vault.azure.net/',
    },
}


def handler(batch_iter):
    return unwrap_batches(batch_iter, SETTINGS)
$$;

CREATE OR REPLACE FUNCTION `main`.`crypto`.`open_cell`(
  value STRING, place STRING,
  k STRUCT<job: BOOLEAN, member: BOOLEAN, keys: MAP<INT, BINARY>, legacy_versions: ARRAY<INT>>)
RETURNS STRING
COMMENT 'Decrypts one cell with a key map from a decrypt_<schema> mask: the cell unchanged for the job group, plaintext for members, NULL for everyone else (strict decryption). Not for direct use. Managed by envelope-encryption 0.1.0.'
RETURN CASE
  WHEN value IS NULL THEN NULL
  WHEN coalesce(k.job, FALSE) THEN value
  WHEN NOT coalesce(k.member, FALSE) THEN CAST(NULL AS STRING)
  WHEN (value RLIKE '(?s)^ee1:[1-9][0-9]{0,9}:(?:[a-z_]+|decimal[(][0-9]{1,2},[0-9]{1,2}[)]):(?:[A-Za-z0-9+/]{4}){9,}(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)$(?!.)') THEN coalesce(
    try_validate_utf8(CAST(try_aes_decrypt(unbase64(substring(value, locate(':', value, locate(':', value, 5) + 1) + 1)),
      try_element_at(k.keys, try_cast(substring(value, 5, locate(':', value, 5) - 5) AS INT)),
      'GCM', 'DEFAULT', concat(substring(value, 1, locate(':', value, locate(':', value, 5) + 1)), place)) AS STRING)),
    CASE
      WHEN try_element_at(k.keys, try_cast(substring(value, 5, locate(':', value, 5) - 5) AS INT)) IS NULL THEN raise_error('envelope encryption: a cell names a DEK version that is unknown or retired')
      WHEN try_aes_decrypt(unbase64(substring(value, locate(':', value, locate(':', value, 5) + 1) + 1)),
      try_element_at(k.keys, try_cast(substring(value, 5, locate(':', value, 5) - 5) AS INT)),
      'GCM', 'DEFAULT', concat(substring(value, 1, locate(':', value, locate(':', value, 5) + 1)), place)) IS NULL THEN raise_error('envelope encryption: a cell does not authenticate here: wrong key, moved from another column or table, or tampered')
      ELSE raise_error('envelope encryption: a cell decrypts to bytes that are not valid UTF-8')
    END)
  WHEN size(k.legacy_versions) > 0 AND (value RLIKE '(?s)^(?:[A-Za-z0-9+/]{4}){9,}(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)$(?!.)') THEN coalesce(
    try_validate_utf8(CAST(aggregate(k.legacy_versions, CAST(NULL AS BINARY),
      (opened, v) -> coalesce(opened, try_aes_decrypt(unbase64(value),
        try_element_at(k.keys, v), 'GCM', 'DEFAULT'))) AS STRING)),
    CASE
      WHEN aggregate(k.legacy_versions, CAST(NULL AS BINARY),
      (opened, v) -> coalesce(opened, try_aes_decrypt(unbase64(value),
        try_element_at(k.keys, v), 'GCM', 'DEFAULT'))) IS NULL THEN raise_error('envelope encryption: a legacy cell does not authenticate with any enabled imported legacy DEK of the scope')
      ELSE raise_error('envelope encryption: a legacy cell decrypts to bytes that are not valid UTF-8')
    END)
  ELSE CASE
    WHEN startswith(value, 'ee1:') THEN raise_error('envelope encryption: a value is a malformed cell (see docs/cell-format.md: Parsing)')
    ELSE raise_error('envelope encryption: a value is not an encrypted cell (nor, in a scope with an imported legacy DEK, a legacy cell)')
  END
END;

CREATE OR REPLACE FUNCTION `main`.`crypto`.`seal_cell`(
  value STRING, place STRING, a STRUCT<header: STRING, key: BINARY>)
RETURNS STRING
COMMENT 'Encrypts one STRING into a cell with the active key from an encrypt_<schema> function. Not for direct use. Managed by envelope-encryption 0.1.0.'
RETURN CASE
  WHEN value IS NULL THEN NULL
  WHEN NOT is_valid_utf8(value) THEN raise_error('envelope encryption: a value to encrypt is not valid UTF-8 text (a BINARY cast to STRING?); encrypt its base64 instead')
  WHEN a.key IS NULL THEN raise_error('envelope encryption: the scope has no active DEK; run the kek_setup job')
  ELSE concat(a.header, replace(base64(aes_encrypt(value, a.key, 'GCM', 'DEFAULT', X'',
    concat(a.header, place))), concat(char(13), char(10)), ''))
END;

CREATE OR REPLACE FUNCTION `main`.`crypto`.`decrypt_default`(
  value STRING, table_name STRING, column_name STRING)
RETURNS STRING
COMMENT 'Column mask of main.default: plaintext for members of main.default.crypto.user only; members of main.crypto.jobs read the cells unchanged. Use: ALTER TABLE t ALTER COLUMN c SET MASK ... USING COLUMNS (<table>, <column>). Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`open_cell`(
  value,
  concat('main.default.', table_name, '.', column_name),
  (SELECT named_struct(
      'job', is_account_group_member('main.crypto.jobs'),
      'member', is_account_group_member('main.default.crypto.user'),
      'keys', map_from_arrays(transform(c.records, r -> r.key_version), `main`.`crypto`.`unwrap_key`('main.default',
          transform(c.records, r -> to_json(r)), (SELECT to_json(named_struct('key_alias', i.key_alias, 'key_version', i.key_version, 'revision', i.revision, 'key_state', i.key_state, 'key_type', i.key_type, 'kek_backend', i.kek_backend, 'wrapped_key', hex(i.wrapped_key), 'kek_id', i.kek_id, 'kek_version', i.kek_version, 'record_tag', hex(i.record_tag), 'integrity', i.integrity))
                FROM `main`.`crypto`.`dek_keyring` i
                WHERE i.key_type = 'KEYRING_INTEGRITY_KEY'
                ORDER BY i.revision DESC
                LIMIT 1))),
      'legacy_versions', c.legacy_versions)
    FROM (SELECT collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity)) AS records,
            sort_array(collect_list(CASE WHEN r.key_type = 'LEGACY_IMPORTED_DEK'
              THEN r.key_version END), FALSE) AS legacy_versions
          FROM (SELECT key_alias, key_version, revision, key_state, key_type, kek_backend, wrapped_key, kek_id, kek_version, record_tag, integrity
              FROM (SELECT *, row_number() OVER (PARTITION BY key_version ORDER BY revision DESC) AS newest
                    FROM `main`.`crypto`.`dek_keyring`
                    WHERE key_alias = 'main.default')
              WHERE newest = 1 AND key_state IN ('ENABLED', 'DECRYPT_ONLY')) r
          WHERE is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) c));

CREATE OR REPLACE FUNCTION `main`.`crypto`.`encrypt_default`(
  value STRING, table_name STRING, column_name STRING)
RETURNS STRING
COMMENT 'Encrypts a STRING into a cell of the active DEK of main.default, bound to main.default.<table_name>.<column_name>. Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`seal_cell`(
  value,
  concat('main.default.', table_name, '.', column_name),
  (SELECT named_struct(
      'header', concat('ee1:', CAST(c.record.key_version AS STRING), ':string:'),
      'key', element_at(`main`.`crypto`.`unwrap_key`('main.default', array(to_json(c.record)), (SELECT to_json(named_struct('key_alias', i.key_alias, 'key_version', i.key_version, 'revision', i.revision, 'key_state', i.key_state, 'key_type', i.key_type, 'kek_backend', i.kek_backend, 'wrapped_key', hex(i.wrapped_key), 'kek_id', i.kek_id, 'kek_version', i.kek_version, 'record_tag', hex(i.record_tag), 'integrity', i.integrity))
            FROM `main`.`crypto`.`dek_keyring` i
            WHERE i.key_type = 'KEYRING_INTEGRITY_KEY'
            ORDER BY i.revision DESC
            LIMIT 1)), 1))
    FROM (SELECT max_by(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity), r.key_version) AS record
          FROM (SELECT key_alias, key_version, revision, key_state, key_type, kek_backend, wrapped_key, kek_id, kek_version, record_tag, integrity
              FROM (SELECT *, row_number() OVER (PARTITION BY key_version ORDER BY revision DESC) AS newest
                    FROM `main`.`crypto`.`dek_keyring`
                    WHERE key_alias = 'main.default')
              WHERE newest = 1 AND key_state IN ('ENABLED', 'DECRYPT_ONLY')) r
          WHERE r.key_state = 'ENABLED') c));

CREATE OR REPLACE FUNCTION `main`.`crypto`.`decrypt_finance`(
  value STRING, table_name STRING, column_name STRING)
RETURNS STRING
COMMENT 'Column mask of main.finance: plaintext for members of main.finance.crypto.user only; members of main.crypto.jobs read the cells unchanged. Use: ALTER TABLE t ALTER COLUMN c SET MASK ... USING COLUMNS (<table>, <column>). Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`open_cell`(
  value,
  concat('main.finance.', table_name, '.', column_name),
  (SELECT named_struct(
      'job', is_account_group_member('main.crypto.jobs'),
      'member', is_account_group_member('main.finance.crypto.user'),
      'keys', map_from_arrays(transform(c.records, r -> r.key_version), `main`.`crypto`.`unwrap_key`('main.finance',
          transform(c.records, r -> to_json(r)), (SELECT to_json(named_struct('key_alias', i.key_alias, 'key_version', i.key_version, 'revision', i.revision, 'key_state', i.key_state, 'key_type', i.key_type, 'kek_backend', i.kek_backend, 'wrapped_key', hex(i.wrapped_key), 'kek_id', i.kek_id, 'kek_version', i.kek_version, 'record_tag', hex(i.record_tag), 'integrity', i.integrity))
                FROM `main`.`crypto`.`dek_keyring` i
                WHERE i.key_type = 'KEYRING_INTEGRITY_KEY'
                ORDER BY i.revision DESC
                LIMIT 1))),
      'legacy_versions', c.legacy_versions)
    FROM (SELECT collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity)) AS records,
            sort_array(collect_list(CASE WHEN r.key_type = 'LEGACY_IMPORTED_DEK'
              THEN r.key_version END), FALSE) AS legacy_versions
          FROM (SELECT key_alias, key_version, revision, key_state, key_type, kek_backend, wrapped_key, kek_id, kek_version, record_tag, integrity
              FROM (SELECT *, row_number() OVER (PARTITION BY key_version ORDER BY revision DESC) AS newest
                    FROM `main`.`crypto`.`dek_keyring`
                    WHERE key_alias = 'main.finance')
              WHERE newest = 1 AND key_state IN ('ENABLED', 'DECRYPT_ONLY')) r
          WHERE is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) c));

CREATE OR REPLACE FUNCTION `main`.`crypto`.`encrypt_finance`(
  value STRING, table_name STRING, column_name STRING)
RETURNS STRING
COMMENT 'Encrypts a STRING into a cell of the active DEK of main.finance, bound to main.finance.<table_name>.<column_name>. Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`seal_cell`(
  value,
  concat('main.finance.', table_name, '.', column_name),
  (SELECT named_struct(
      'header', concat('ee1:', CAST(c.record.key_version AS STRING), ':string:'),
      'key', element_at(`main`.`crypto`.`unwrap_key`('main.finance', array(to_json(c.record)), (SELECT to_json(named_struct('key_alias', i.key_alias, 'key_version', i.key_version, 'revision', i.revision, 'key_state', i.key_state, 'key_type', i.key_type, 'kek_backend', i.kek_backend, 'wrapped_key', hex(i.wrapped_key), 'kek_id', i.kek_id, 'kek_version', i.kek_version, 'record_tag', hex(i.record_tag), 'integrity', i.integrity))
            FROM `main`.`crypto`.`dek_keyring` i
            WHERE i.key_type = 'KEYRING_INTEGRITY_KEY'
            ORDER BY i.revision DESC
            LIMIT 1)), 1))
    FROM (SELECT max_by(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity), r.key_version) AS record
          FROM (SELECT key_alias, key_version, revision, key_state, key_type, kek_backend, wrapped_key, kek_id, kek_version, record_tag, integrity
              FROM (SELECT *, row_number() OVER (PARTITION BY key_version ORDER BY revision DESC) AS newest
                    FROM `main`.`crypto`.`dek_keyring`
                    WHERE key_alias = 'main.finance')
              WHERE newest = 1 AND key_state IN ('ENABLED', 'DECRYPT_ONLY')) r
          WHERE r.key_state = 'ENABLED') c));

REVOKE ALL PRIVILEGES ON SCHEMA `main`.`crypto` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`unwrap_key` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`open_cell` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`seal_cell` FROM `account users`;

ALTER TABLE `main`.`default`.`customers` ALTER COLUMN `name` SET MASK `main`.`crypto`.`decrypt_default` USING COLUMNS ('customers', 'name');

ALTER TABLE `main`.`default`.`customers` ALTER COLUMN `email` SET MASK `main`.`crypto`.`decrypt_default` USING COLUMNS ('customers', 'email');

ALTER TABLE `main`.`default`.`customers` ALTER COLUMN `ssn` SET MASK `main`.`crypto`.`decrypt_default` USING COLUMNS ('customers', 'ssn');
