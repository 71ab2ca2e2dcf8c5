(SELECT named_struct(
    'header', concat('ee1:', CAST(r.key_version AS STRING), ':string:'),
    'key', {{unwrap}}(r.wrapped_key, r.key_alias, r.key_version, r.kek_id, r.kek_version))
  FROM ({{records}}) r
  ORDER BY r.key_version DESC
  LIMIT 1)
