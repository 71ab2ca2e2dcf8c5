CREATE OR REPLACE {{temporary}}FUNCTION {{function}}(
  value STRING, table_name STRING, column_name STRING)
RETURNS STRING
{{comment}}RETURN {{cell_function}}(
  value,
  concat('{{scope}}.', table_name, '.', column_name),
  {{keys}})
