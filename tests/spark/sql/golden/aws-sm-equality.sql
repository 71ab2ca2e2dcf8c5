-- envelope-encryption 0.1.0: Unity Catalog SQL layer, aws-sm back end, catalog main.
-- Rendered by envelope_encryption.spark.sql_functions.render_script; run by kek_setup --sql-functions=true.
-- Readers: members of {catalog}.{schema}.crypto.user see plaintext; everyone else sees null (strict decryption).
-- Jobs: members of {catalog}.crypto.jobs read the cells unchanged (checked first); writers: no grants (no writer group configured).
-- Equality domains: email (casefold, 32 bits), ssn (digits, 64 bits); lookup functions: {catalog}.crypto.lookup.

CREATE SCHEMA IF NOT EXISTS `main`.`crypto` COMMENT 'Envelope encryption: keyring and SQL functions. No grants for readers.';

CREATE VOLUME IF NOT EXISTS `main`.`crypto`.`packages` COMMENT 'The envelope-encryption wheel the unwrap function installs';

CREATE OR REPLACE FUNCTION `main`.`crypto`.`unwrap_key`(key_alias STRING, records ARRAY<STRING>, keyring_integrity STRING)
RETURNS ARRAY<BINARY>
LANGUAGE PYTHON
PARAMETER STYLE PANDAS
HANDLER 'handler'
CREDENTIALS (`envelope-secrets` DEFAULT)
ENVIRONMENT (dependencies = '["/Volumes/main/crypto/packages/envelope_encryption-0.1.0-py3-none-any.whl"]', environment_version = 'None')
COMMENT 'Unwraps the DEKs of verified keyring records of the scopes of catalog main (default, finance) with the aws-sm KEK; refuses other scopes and any record whose integrity tag does not verify. Privileged: only its owner executes it (through the decrypt and encrypt functions). Managed by envelope-encryption 0.1.0.'
AS $$
from envelope_encryption.spark.sql.runtime import unwrap_batches

# The deployment's settings (names and options only; no secret).
SETTINGS = {
    'backend': 'aws-sm',
    'catalog': 'main',
    'schemas': ['default', 'finance'],
    'metastore_id': 'a1b2c3d4-metastore',
    'crypto_schema': 'crypto',
    'keyring_table': 'dek_keyring',
    'service_credential': 'envelope-secrets',
    'options': {
        'aws-region': 'eu-west-1',
    },
}


def handler(batch_iter):
    return unwrap_batches(batch_iter, SETTINGS)
$$;

CREATE OR REPLACE FUNCTION `main`.`crypto`.`dek_records`(key_alias STRING)
RETURNS STRING
LANGUAGE PYTHON
PARAMETER STYLE PANDAS
HANDLER 'handler'
CREDENTIALS (`envelope-secrets` DEFAULT)
ENVIRONMENT (dependencies = '["/Volumes/main/crypto/packages/envelope_encryption-0.1.0-py3-none-any.whl"]', environment_version = 'None')
COMMENT 'Current wrapped DEK records of a scope of catalog main, read from Secrets Manager (JSON, no plaintext). Managed by envelope-encryption 0.1.0.'
AS $$
from envelope_encryption.spark.sql.runtime import dek_records_batches

# The deployment's settings (names and options only; no secret).
SETTINGS = {
    'backend': 'aws-sm',
    'catalog': 'main',
    'schemas': ['default', 'finance'],
    'metastore_id': 'a1b2c3d4-metastore',
    'crypto_schema': 'crypto',
    'keyring_table': 'dek_keyring',
    'service_credential': 'envelope-secrets',
    'options': {
        'aws-region': 'eu-west-1',
    },
    'equality_domains': {'email': ['casefold', 32], 'ssn': ['digits', 64]},
}


def handler(batch_iter):
    return dek_records_batches(batch_iter, SETTINGS)
$$;

CREATE OR REPLACE FUNCTION `main`.`crypto`.`decrypt_cells`(value STRING, place STRING, keyring STRING)
RETURNS STRING
LANGUAGE PYTHON
PARAMETER STYLE PANDAS
HANDLER 'handler'
CREDENTIALS (`envelope-secrets` DEFAULT)
ENVIRONMENT (dependencies = '["/Volumes/main/crypto/packages/envelope_encryption-0.1.0-py3-none-any.whl"]', environment_version = 'None')
COMMENT 'Opens cells of the scopes of catalog main (default, finance) with the DEKs of verified keyring records, unwrapped inside with the aws-sm KEK: +plaintext or !cause per value. Privileged: only its owner executes it (through the decrypt functions). Managed by envelope-encryption 0.1.0.'
AS $$
from envelope_encryption.spark.sql.decrypt_cells import decrypt_cells_batches

# The deployment's settings (names and options only; no secret).
SETTINGS = {
    'backend': 'aws-sm',
    'catalog': 'main',
    'schemas': ['default', 'finance'],
    'metastore_id': 'a1b2c3d4-metastore',
    'crypto_schema': 'crypto',
    'keyring_table': 'dek_keyring',
    'service_credential': 'envelope-secrets',
    'options': {
        'aws-region': 'eu-west-1',
    },
    'equality_domains': {'email': ['casefold', 32], 'ssn': ['digits', 64]},
}


def handler(batch_iter):
    return decrypt_cells_batches(batch_iter, SETTINGS)
$$;

CREATE OR REPLACE FUNCTION `main`.`crypto`.`open_cell`(
  value STRING, place STRING, k STRUCT<job: BOOLEAN, member: BOOLEAN, keyring: STRING>)
RETURNS STRING
COMMENT 'Decrypts one cell with the keyring from a decrypt_<schema> mask: the cell unchanged for the job group, plaintext for members, NULL for everyone else (strict decryption). Not for direct use. Managed by envelope-encryption 0.1.0.'
RETURN CASE
  WHEN value IS NULL THEN NULL
  WHEN coalesce(k.job, FALSE) THEN value
  WHEN NOT coalesce(k.member, FALSE) THEN CAST(NULL AS STRING)
  WHEN startswith(`main`.`crypto`.`decrypt_cells`(value, place, k.keyring), '+') THEN substr(`main`.`crypto`.`decrypt_cells`(value, place, k.keyring), 2)
  ELSE CASE `main`.`crypto`.`decrypt_cells`(value, place, k.keyring)
    WHEN '!V' THEN raise_error('envelope encryption: a cell names a DEK version that is unknown or retired')
    WHEN '!A' THEN raise_error('envelope encryption: a cell does not authenticate here: wrong key, moved from another column or table, or tampered')
    WHEN '!U' THEN raise_error('envelope encryption: a cell decrypts to bytes that are not valid UTF-8')
    WHEN '!L' THEN raise_error('envelope encryption: a legacy cell does not authenticate with any enabled imported legacy DEK of the scope')
    WHEN '!W' THEN raise_error('envelope encryption: a legacy cell decrypts to bytes that are not valid UTF-8')
    WHEN '!M' THEN raise_error('envelope encryption: a value is a malformed cell (see docs/cell-format.md: Parsing)')
    WHEN '!N' THEN raise_error('envelope encryption: a value is not an encrypted cell (nor, in a scope with an imported legacy DEK, a legacy cell)')
    ELSE raise_error('envelope encryption: the decrypt function gave no outcome for a value')
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
      'keyring', CASE WHEN is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs') THEN to_json(named_struct(
          'key_alias', 'main.default',
          'records', c.records,
          'integrity', CAST(NULL AS STRING),
          'domains', array(named_struct('key_alias', 'main.$equality.email', 'records', dom0.records),
            named_struct('key_alias', 'main.$equality.ssn', 'records', dom1.records)))) END)
    FROM (SELECT collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity)) AS records
          FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                     d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                     unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                     CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
              FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.default'),
                      'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                    FROM (SELECT 1 AS one) WHERE is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) d) r
          WHERE is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) c
    CROSS JOIN (SELECT collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity)) AS records
          FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                     d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                     unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                     CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
              FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.$equality.email'),
                      'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                    FROM (SELECT 1 AS one) WHERE is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) d) r
          WHERE is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) dom0
    CROSS JOIN (SELECT collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity)) AS records
          FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                     d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                     unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                     CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
              FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.$equality.ssn'),
                      'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                    FROM (SELECT 1 AS one) WHERE is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) d) r
          WHERE is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) dom1));

CREATE OR REPLACE FUNCTION `main`.`crypto`.`encrypt_default`(
  value STRING, table_name STRING, column_name STRING)
RETURNS STRING
COMMENT 'Encrypts a STRING into a cell of the active DEK of main.default, bound to main.default.<table_name>.<column_name>. Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`seal_cell`(
  value,
  concat('main.default.', table_name, '.', column_name),
  (SELECT named_struct(
      'header', concat('ee1:', CAST(c.record.key_version AS STRING), ':string:'),
      'key', element_at(`main`.`crypto`.`unwrap_key`('main.default', array(to_json(c.record)), CAST(NULL AS STRING)), 1))
    FROM (SELECT max_by(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity), r.key_version) AS record
          FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                     d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                     unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                     CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
              FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.default'),
                      'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                    FROM (SELECT 1 AS one)) d) r
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
      'keyring', CASE WHEN is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs') THEN to_json(named_struct(
          'key_alias', 'main.finance',
          'records', c.records,
          'integrity', CAST(NULL AS STRING),
          'domains', array(named_struct('key_alias', 'main.$equality.email', 'records', dom0.records),
            named_struct('key_alias', 'main.$equality.ssn', 'records', dom1.records)))) END)
    FROM (SELECT collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity)) AS records
          FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                     d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                     unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                     CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
              FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.finance'),
                      'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                    FROM (SELECT 1 AS one) WHERE is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) d) r
          WHERE is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) c
    CROSS JOIN (SELECT collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity)) AS records
          FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                     d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                     unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                     CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
              FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.$equality.email'),
                      'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                    FROM (SELECT 1 AS one) WHERE is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) d) r
          WHERE is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) dom0
    CROSS JOIN (SELECT collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity)) AS records
          FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                     d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                     unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                     CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
              FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.$equality.ssn'),
                      'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                    FROM (SELECT 1 AS one) WHERE is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) d) r
          WHERE is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) dom1));

CREATE OR REPLACE FUNCTION `main`.`crypto`.`encrypt_finance`(
  value STRING, table_name STRING, column_name STRING)
RETURNS STRING
COMMENT 'Encrypts a STRING into a cell of the active DEK of main.finance, bound to main.finance.<table_name>.<column_name>. Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`seal_cell`(
  value,
  concat('main.finance.', table_name, '.', column_name),
  (SELECT named_struct(
      'header', concat('ee1:', CAST(c.record.key_version AS STRING), ':string:'),
      'key', element_at(`main`.`crypto`.`unwrap_key`('main.finance', array(to_json(c.record)), CAST(NULL AS STRING)), 1))
    FROM (SELECT max_by(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity), r.key_version) AS record
          FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                     d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                     unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                     CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
              FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.finance'),
                      'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                    FROM (SELECT 1 AS one)) d) r
          WHERE r.key_state = 'ENABLED') c));

CREATE OR REPLACE FUNCTION `main`.`crypto`.`equality_values`(kind STRING, domain STRING, value STRING, keyring STRING)
RETURNS STRING
LANGUAGE PYTHON
PARAMETER STYLE PANDAS
HANDLER 'handler'
CREDENTIALS (`envelope-secrets` DEFAULT)
ENVIRONMENT (dependencies = '["/Volumes/main/crypto/packages/envelope_encryption-0.1.0-py3-none-any.whl"]', environment_version = 'None')
COMMENT 'Blind indexes and deterministic cells of literals in the equality domains of catalog main (email, ssn), with the active key of verified keyring records, unwrapped inside with the aws-sm KEK. Privileged: only its owner executes it (through the blind_index_<domain> and deterministic_<domain> functions). Managed by envelope-encryption 0.1.0.'
AS $$
from envelope_encryption.spark.sql.equality_runtime import equality_values_batches

# The deployment's settings (names and options only; no secret).
SETTINGS = {
    'backend': 'aws-sm',
    'catalog': 'main',
    'schemas': ['default', 'finance'],
    'metastore_id': 'a1b2c3d4-metastore',
    'crypto_schema': 'crypto',
    'keyring_table': 'dek_keyring',
    'service_credential': 'envelope-secrets',
    'options': {
        'aws-region': 'eu-west-1',
    },
    'equality_domains': {'email': ['casefold', 32], 'ssn': ['digits', 64]},
}


def handler(batch_iter):
    return equality_values_batches(batch_iter, SETTINGS)
$$;

CREATE OR REPLACE FUNCTION `main`.`crypto`.`blind_index_email`(value STRING)
RETURNS STRING
COMMENT 'The blind index (bi1) of a literal in equality domain email under its active key version, normal form casefold, 32 bits, for lookups: WHERE c = this(literal). No key reaches the caller. Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`equality_values`('blind_index', 'email', value, (
  SELECT to_json(named_struct(
      'key_alias', 'main.$equality.email',
      'records', array(c.record),
      'integrity', CAST(NULL AS STRING)))
  FROM (SELECT max_by(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity), r.key_version) AS record
        FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                   d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                   unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                   CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
            FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.$equality.email'),
                    'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                  FROM (SELECT 1 AS one)) d) r
        WHERE r.key_state = 'ENABLED') c));

CREATE OR REPLACE FUNCTION `main`.`crypto`.`deterministic_email`(value STRING)
RETURNS STRING
COMMENT 'The deterministic cell (ed1) of a literal in equality domain email under its active key version, type string, for lookups: WHERE c = this(literal). No key reaches the caller. Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`equality_values`('deterministic', 'email', value, (
  SELECT to_json(named_struct(
      'key_alias', 'main.$equality.email',
      'records', array(c.record),
      'integrity', CAST(NULL AS STRING)))
  FROM (SELECT max_by(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity), r.key_version) AS record
        FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                   d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                   unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                   CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
            FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.$equality.email'),
                    'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                  FROM (SELECT 1 AS one)) d) r
        WHERE r.key_state = 'ENABLED') c));

CREATE OR REPLACE FUNCTION `main`.`crypto`.`blind_index_ssn`(value STRING)
RETURNS STRING
COMMENT 'The blind index (bi1) of a literal in equality domain ssn under its active key version, normal form digits, 64 bits, for lookups: WHERE c = this(literal). No key reaches the caller. Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`equality_values`('blind_index', 'ssn', value, (
  SELECT to_json(named_struct(
      'key_alias', 'main.$equality.ssn',
      'records', array(c.record),
      'integrity', CAST(NULL AS STRING)))
  FROM (SELECT max_by(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity), r.key_version) AS record
        FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                   d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                   unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                   CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
            FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.$equality.ssn'),
                    'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                  FROM (SELECT 1 AS one)) d) r
        WHERE r.key_state = 'ENABLED') c));

CREATE OR REPLACE FUNCTION `main`.`crypto`.`deterministic_ssn`(value STRING)
RETURNS STRING
COMMENT 'The deterministic cell (ed1) of a literal in equality domain ssn under its active key version, type string, for lookups: WHERE c = this(literal). No key reaches the caller. Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`equality_values`('deterministic', 'ssn', value, (
  SELECT to_json(named_struct(
      'key_alias', 'main.$equality.ssn',
      'records', array(c.record),
      'integrity', CAST(NULL AS STRING)))
  FROM (SELECT max_by(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity), r.key_version) AS record
        FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                   d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                   unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                   CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
            FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.$equality.ssn'),
                    'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                  FROM (SELECT 1 AS one)) d) r
        WHERE r.key_state = 'ENABLED') c));

CREATE TABLE IF NOT EXISTS `main`.`crypto`.`dek_subjects` (scope STRING NOT NULL COMMENT 'DEK scope <catalog>.<schema>', subject_hash STRING NOT NULL COMMENT 'HMAC of the subject id (never the id itself)', salt BINARY COMMENT 'Random salt of the subject key; NULL once the subject is erased', created_at TIMESTAMP NOT NULL COMMENT 'When the salt was created', erased_at TIMESTAMP COMMENT 'When the subject was erased (NULL: not erased)', salt_id STRING NOT NULL COMMENT 'Unique id of the row') COMMENT 'Salts of per-subject keys (erasure scopes); subjects named by hash only';

CREATE OR REPLACE FUNCTION `main`.`crypto`.`subject_hash`(subject STRING, keyring STRING)
RETURNS STRING
LANGUAGE PYTHON
PARAMETER STYLE PANDAS
HANDLER 'handler'
CREDENTIALS (`envelope-secrets` DEFAULT)
ENVIRONMENT (dependencies = '["/Volumes/main/crypto/packages/envelope_encryption-0.1.0-py3-none-any.whl"]', environment_version = 'None')
COMMENT 'Hashes data subject ids of the scopes of catalog main (default, finance) with the subject-id key derived from the verified keyring integrity key. Privileged: only its owner executes it. Managed by envelope-encryption 0.1.0.'
AS $$
from envelope_encryption.spark.sql.subject_cells import subject_hash_batches

# The deployment's settings (names and options only; no secret).
SETTINGS = {
    'backend': 'aws-sm',
    'catalog': 'main',
    'schemas': ['default', 'finance'],
    'metastore_id': 'a1b2c3d4-metastore',
    'crypto_schema': 'crypto',
    'keyring_table': 'dek_keyring',
    'service_credential': 'envelope-secrets',
    'options': {
        'aws-region': 'eu-west-1',
    },
}


def handler(batch_iter):
    return subject_hash_batches(batch_iter, SETTINGS)
$$;

CREATE OR REPLACE FUNCTION `main`.`crypto`.`decrypt_subject_cells`(value STRING, place STRING, keyring STRING, subject BINARY, strict BOOLEAN)
RETURNS STRING
LANGUAGE PYTHON
PARAMETER STYLE PANDAS
HANDLER 'handler'
CREDENTIALS (`envelope-secrets` DEFAULT)
ENVIRONMENT (dependencies = '["/Volumes/main/crypto/packages/envelope_encryption-0.1.0-py3-none-any.whl"]', environment_version = 'None')
COMMENT 'Opens subject-keyed cells of the scopes of catalog main (default, finance) with keys derived from the DEKs of verified keyring records (unwrapped inside with the aws-sm KEK) and the salts of the subjects; NULL or an error (strict) for a cell that does not open. Privileged: only its owner executes it. Managed by envelope-encryption 0.1.0.'
AS $$
from envelope_encryption.spark.sql.subject_cells import decrypt_subject_cells_batches

# The deployment's settings (names and options only; no secret).
SETTINGS = {
    'backend': 'aws-sm',
    'catalog': 'main',
    'schemas': ['default', 'finance'],
    'metastore_id': 'a1b2c3d4-metastore',
    'crypto_schema': 'crypto',
    'keyring_table': 'dek_keyring',
    'service_credential': 'envelope-secrets',
    'options': {
        'aws-region': 'eu-west-1',
    },
}


def handler(batch_iter):
    return decrypt_subject_cells_batches(batch_iter, SETTINGS)
$$;

CREATE OR REPLACE FUNCTION `main`.`crypto`.`open_subject_cell`(
  value STRING, place STRING, k STRUCT<job: BOOLEAN, member: BOOLEAN, keyring: STRING>,
  subject STRING)
RETURNS STRING
COMMENT 'Decrypts one subject-keyed cell from a decrypt_subject_<schema> mask: the cell unchanged for the job group, plaintext for members, NULL for everyone else (strict decryption: an erased subject reads as an error). Not for direct use. Managed by envelope-encryption 0.1.0.'
RETURN CASE
  -- The lookup and the Python function appear once: every copy would be one more join.
  WHEN value IS NULL OR coalesce(k.job, FALSE) THEN value
  WHEN NOT coalesce(k.member, FALSE) THEN CAST(NULL AS STRING)
  ELSE `main`.`crypto`.`decrypt_subject_cells`(
    value, place, k.keyring,
    (SELECT CASE WHEN max(s.erased_at IS NOT NULL) THEN unhex(max(s.subject_hash))
                 ELSE concat(unhex(max(s.subject_hash)),
                             min_by(s.salt, struct(s.created_at, s.salt_id))) END
      FROM `main`.`crypto`.`dek_subjects` s
      WHERE s.scope = substring_index(place, '.', 2)
        AND s.subject_hash = `main`.`crypto`.`subject_hash`(subject, k.keyring)),
    TRUE)
END;

CREATE OR REPLACE FUNCTION `main`.`crypto`.`decrypt_subject_default`(
  value STRING, table_name STRING, column_name STRING, subject STRING)
RETURNS STRING
COMMENT 'Column mask of subject-keyed columns of main.default: plaintext for members of main.default.crypto.user only, NULL or an error for erased subjects. Use: ALTER TABLE t ALTER COLUMN c SET MASK ... USING COLUMNS (<table>, <column>, <subject column>). Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`open_subject_cell`(
  value,
  concat('main.default.', table_name, '.', column_name),
  (SELECT named_struct(
      'job', is_account_group_member('main.crypto.jobs'),
      'member', is_account_group_member('main.default.crypto.user'),
      'keyring', CASE WHEN is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs') THEN to_json(named_struct(
          'key_alias', 'main.default',
          'records', c.records,
          'integrity', CAST(NULL AS STRING))) END)
    FROM (SELECT collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity)) AS records
          FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                     d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                     unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                     CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
              FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.default'),
                      'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                    FROM (SELECT 1 AS one) WHERE is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) d) r
          WHERE is_account_group_member('main.default.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) c),
  subject);

CREATE OR REPLACE FUNCTION `main`.`crypto`.`decrypt_subject_finance`(
  value STRING, table_name STRING, column_name STRING, subject STRING)
RETURNS STRING
COMMENT 'Column mask of subject-keyed columns of main.finance: plaintext for members of main.finance.crypto.user only, NULL or an error for erased subjects. Use: ALTER TABLE t ALTER COLUMN c SET MASK ... USING COLUMNS (<table>, <column>, <subject column>). Managed by envelope-encryption 0.1.0.'
RETURN `main`.`crypto`.`open_subject_cell`(
  value,
  concat('main.finance.', table_name, '.', column_name),
  (SELECT named_struct(
      'job', is_account_group_member('main.crypto.jobs'),
      'member', is_account_group_member('main.finance.crypto.user'),
      'keyring', CASE WHEN is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs') THEN to_json(named_struct(
          'key_alias', 'main.finance',
          'records', c.records,
          'integrity', CAST(NULL AS STRING))) END)
    FROM (SELECT collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version, 'revision', r.revision, 'key_state', r.key_state, 'key_type', r.key_type, 'kek_backend', r.kek_backend, 'wrapped_key', hex(r.wrapped_key), 'kek_id', r.kek_id, 'kek_version', r.kek_version, 'record_tag', hex(r.record_tag), 'integrity', r.integrity)) AS records
          FROM (SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
                     d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
                     unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
                     CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
              FROM (SELECT inline(from_json(`main`.`crypto`.`dek_records`('main.finance'),
                      'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
                    FROM (SELECT 1 AS one) WHERE is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) d) r
          WHERE is_account_group_member('main.finance.crypto.user') AND NOT is_account_group_member('main.crypto.jobs')) c),
  subject);

REVOKE ALL PRIVILEGES ON SCHEMA `main`.`crypto` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`unwrap_key` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`decrypt_cells` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`open_cell` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`seal_cell` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`subject_hash` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`decrypt_subject_cells` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`open_subject_cell` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`dek_records` FROM `account users`;

REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`equality_values` FROM `account users`;

GRANT USE SCHEMA ON SCHEMA `main`.`crypto` TO `main.crypto.lookup`;

GRANT EXECUTE ON FUNCTION `main`.`crypto`.`blind_index_email` TO `main.crypto.lookup`;

GRANT EXECUTE ON FUNCTION `main`.`crypto`.`deterministic_email` TO `main.crypto.lookup`;

GRANT EXECUTE ON FUNCTION `main`.`crypto`.`blind_index_ssn` TO `main.crypto.lookup`;

GRANT EXECUTE ON FUNCTION `main`.`crypto`.`deterministic_ssn` TO `main.crypto.lookup`;

ALTER TABLE `main`.`default`.`customers` ALTER COLUMN `name` SET MASK `main`.`crypto`.`decrypt_default` USING COLUMNS ('customers', 'name');

ALTER TABLE `main`.`default`.`customers` ALTER COLUMN `email` SET MASK `main`.`crypto`.`decrypt_default` USING COLUMNS ('customers', 'email');

ALTER TABLE `main`.`default`.`customers` ALTER COLUMN `ssn` SET MASK `main`.`crypto`.`decrypt_default` USING COLUMNS ('customers', 'ssn');
