CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, place STRING, a STRUCT<header: STRING, key: BINARY>)
RETURNS STRING
{{comment}}RETURN CASE
  WHEN value IS NULL THEN NULL
  WHEN a.key IS NULL THEN raise_error('envelope encryption: the scope has no active DEK; run the kek_setup job')
  ELSE concat(a.header, base64(aes_encrypt(value, a.key, 'GCM', 'DEFAULT', X'',
    concat(a.header, place))))
END
