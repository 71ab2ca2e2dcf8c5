(SELECT named_struct(
    'header', concat('ee1:', CAST(c.record.key_version AS STRING), ':string:'),
    'key', element_at({{unwrap}}('{{scope}}', array(to_json(c.record)), {{integrity}}), 1))
  FROM (SELECT max_by({{record}}, r.key_version) AS record
        FROM ({{records}}) r
        WHERE r.key_state = 'ENABLED') c)
