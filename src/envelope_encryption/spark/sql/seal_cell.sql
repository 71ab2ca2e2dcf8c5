CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, place STRING, a STRUCT<header: STRING, key: BINARY>)
RETURNS STRING
{{comment}}RETURN CASE
  WHEN value IS NULL THEN NULL
  WHEN NOT is_valid_utf8(value) THEN raise_error('envelope encryption: a value to encrypt is not valid UTF-8 text (a BINARY cast to STRING?); encrypt its base64 instead')
  WHEN a.key IS NULL THEN raise_error('envelope encryption: the scope has no active DEK; run the kek_setup job')
  ELSE concat(a.header, replace(base64(aes_encrypt(value, a.key, 'GCM', 'DEFAULT', X'',
    concat(a.header, place))), concat(char(13), char(10)), ''))
END
