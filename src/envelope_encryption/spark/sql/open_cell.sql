CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, place STRING,
  k STRUCT<job: BOOLEAN, member: BOOLEAN, keys: MAP<INT, BINARY>, legacy_versions: ARRAY<INT>>)
RETURNS STRING
{{comment}}RETURN CASE
  WHEN value IS NULL THEN NULL
  WHEN coalesce(k.job, FALSE) THEN value
  WHEN NOT coalesce(k.member, FALSE) THEN {{non_member}}
  WHEN {{is_cell}} THEN coalesce(
    try_validate_utf8(CAST({{plaintext}} AS STRING)),
    {{undecryptable}})
  WHEN size(k.legacy_versions) > 0 AND {{is_legacy}} THEN coalesce(
    try_validate_utf8(CAST({{legacy_plaintext}} AS STRING)),
    {{legacy_undecryptable}})
  ELSE {{not_a_cell}}
END
