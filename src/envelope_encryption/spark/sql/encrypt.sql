CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, table_name STRING, column_name STRING)
RETURNS STRING
{{comment}}RETURN CASE
  WHEN value IS NULL THEN NULL
  WHEN {{active}} IS NULL THEN raise_error('envelope encryption: no active DEK for {{scope}}; run the kek_setup job')
  ELSE concat({{active}}.header, base64(aes_encrypt(value, {{active}}.key, 'GCM', 'DEFAULT', X'',
    concat({{active}}.header, '{{scope}}.', table_name, '.', column_name))))
END
