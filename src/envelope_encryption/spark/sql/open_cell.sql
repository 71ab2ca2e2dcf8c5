CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, place STRING,
  k STRUCT<member: BOOLEAN, keys: MAP<INT, BINARY>, legacy_version: INT>)
RETURNS STRING
{{comment}}RETURN CASE
  WHEN value IS NULL THEN NULL
  WHEN NOT coalesce(k.member, FALSE) THEN {{non_member}}
  WHEN startswith(value, 'ee1:') THEN
    CASE
      WHEN try_element_at(k.keys, try_cast(split_part(value, ':', 2) AS INT)) IS NULL
        THEN {{unknown_version}}
      ELSE CAST({{aes_decrypt}}(
        unbase64(substring(value, length(substring_index(value, ':', 3)) + 2)),
        try_element_at(k.keys, try_cast(split_part(value, ':', 2) AS INT)),
        'GCM', 'DEFAULT',
        concat(substring_index(value, ':', 3), ':', place)) AS STRING)
    END
  WHEN k.legacy_version IS NOT NULL AND value RLIKE '^[A-Za-z0-9+/]+={0,2}$' THEN
    CAST({{aes_decrypt}}(unbase64(value), try_element_at(k.keys, k.legacy_version),
      'GCM', 'DEFAULT') AS STRING)
  ELSE {{malformed}}
END
