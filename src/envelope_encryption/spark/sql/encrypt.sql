CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, table_name STRING, column_name STRING)
RETURNS STRING
{{comment}}RETURN {{seal_cell}}(
  value,
  concat('{{scope}}.', table_name, '.', column_name),
  {{active}})
