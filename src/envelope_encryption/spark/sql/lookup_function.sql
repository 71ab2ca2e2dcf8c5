CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(value STRING)
RETURNS STRING
{{comment}}RETURN {{equality_values}}('{{kind}}', '{{domain}}', value, (
  SELECT to_json(named_struct(
      'key_alias', '{{scope}}',
      'records', array(c.record),
      'integrity', {{integrity}}))
  FROM (SELECT max_by({{record}}, r.key_version) AS record
        FROM ({{records}}) r
        WHERE r.key_state = 'ENABLED') c))
