(SELECT named_struct(
    'job', {{job}},
    'member', {{member}},
    'keyring', CASE WHEN {{gate}} THEN to_json(named_struct(
        'key_alias', '{{scope}}',
        'records', c.records,
        'integrity', {{integrity}}{{domains}})) END)
  FROM (SELECT collect_list({{record}}) AS records
        FROM ({{records}}) r
        WHERE {{gate}}) c{{domain_records}})
