SELECT d.key_alias, d.key_version, CAST(NULL AS INT) AS revision,
           d.key_state, d.key_type, CAST(NULL AS STRING) AS kek_backend,
           unbase64(d.wrapped_key) AS wrapped_key, d.kek_id, d.kek_version,
           CAST(NULL AS BINARY) AS record_tag, CAST(NULL AS STRING) AS integrity
    FROM (SELECT inline(from_json({{dek_records}}('{{scope}}'),
            'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string,key_state:string>>'))
          FROM (SELECT 1 AS one){{gate}}) d
