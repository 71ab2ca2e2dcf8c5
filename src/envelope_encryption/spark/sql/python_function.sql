CREATE OR REPLACE FUNCTION {{function}}({{parameters}})
RETURNS {{returns}}
LANGUAGE PYTHON
PARAMETER STYLE PANDAS
HANDLER 'handler'
{{credentials}}ENVIRONMENT (dependencies = '{{dependencies}}', environment_version = 'None')
COMMENT '{{comment}}'
AS $$
{{body}}
$$
