CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, place STRING, k STRUCT<job: BOOLEAN, member: BOOLEAN, keyring: STRING>)
RETURNS STRING
{{comment}}RETURN CASE
  WHEN value IS NULL THEN NULL
  WHEN coalesce(k.job, FALSE) THEN value
  WHEN NOT coalesce(k.member, FALSE) THEN {{non_member}}
  WHEN startswith({{outcome}}, '{{opened}}') THEN substr({{outcome}}, 2)
  ELSE {{refused}}
END
