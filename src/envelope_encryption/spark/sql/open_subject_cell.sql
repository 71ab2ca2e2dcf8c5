CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, place STRING, k STRUCT<job: BOOLEAN, member: BOOLEAN, keyring: STRING>,
  subject STRING)
RETURNS STRING
{{comment}}RETURN CASE
  -- The lookup and the Python function appear once: every copy would be one more join.
  WHEN value IS NULL OR coalesce(k.job, FALSE) THEN value
  WHEN NOT coalesce(k.member, FALSE) THEN {{non_member}}
  ELSE {{decrypt}}(
    value, place, k.keyring,
    {{lookup}},
    {{strict}})
END
