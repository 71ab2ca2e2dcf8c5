SELECT d.key_alias, d.key_version, d.key_type, unbase64(d.wrapped_key) AS wrapped_key,
           d.kek_id, d.kek_version
    FROM (SELECT inline(from_json({{dek_records}}('{{scope}}'),
            'array<struct<key_alias:string,key_version:int,key_type:string,wrapped_key:string,kek_id:string,kek_version:string>>'))
          FROM (SELECT 1 AS one){{gate}}) d
