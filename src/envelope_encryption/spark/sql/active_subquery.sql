(SELECT named_struct(
    'header', concat('ee1:', CAST(c.record.key_version AS STRING), ':string:'),
    'key', element_at({{unwrap}}('{{scope}}', array(c.record.key_version),
        array(c.record.wrapped_key), array(c.record.kek_id), array(c.record.kek_version)), 1))
  FROM (SELECT max_by(struct(r.key_version, r.wrapped_key, r.kek_id, r.kek_version),
          r.key_version) AS record
        FROM ({{records}}) r) c)
