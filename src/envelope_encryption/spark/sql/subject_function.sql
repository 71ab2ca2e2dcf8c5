CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, table_name STRING, column_name STRING, subject STRING)
RETURNS STRING
{{comment}}RETURN {{open_function}}(
  value,
  concat('{{scope}}.', table_name, '.', column_name),
  {{keys}},
  subject)
