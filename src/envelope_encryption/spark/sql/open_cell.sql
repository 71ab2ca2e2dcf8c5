CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, place STRING,
  k STRUCT<job: BOOLEAN, member: BOOLEAN, keys: MAP<INT, BINARY>, legacy_version: INT>)
RETURNS STRING
{{comment}}RETURN CASE
  WHEN value IS NULL THEN NULL
  WHEN coalesce(k.job, FALSE) THEN value
  WHEN NOT coalesce(k.member, FALSE) THEN {{non_member}}
  WHEN startswith(value, 'ee1:') THEN coalesce(
    CAST({{aes_decrypt}}(
      unbase64(substring(value, locate(':', value, locate(':', value, 5) + 1) + 1)),
      try_element_at(k.keys, try_cast(substring(value, 5, locate(':', value, 5) - 5) AS INT)),
      'GCM', 'DEFAULT',
      concat(substring(value, 1, locate(':', value, locate(':', value, 5) + 1)), place)) AS STRING),
    {{undecryptable}})
  WHEN k.legacy_version IS NOT NULL THEN coalesce(
    CAST({{aes_decrypt}}(unbase64(value), try_element_at(k.keys, k.legacy_version),
      'GCM', 'DEFAULT') AS STRING),
    {{undecryptable}})
  ELSE {{not_a_cell}}
END
