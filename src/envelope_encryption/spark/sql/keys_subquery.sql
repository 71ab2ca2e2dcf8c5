(SELECT named_struct(
    'job', {{job}},
    'member', {{member}},
    'keys', map_from_arrays(transform(c.records, r -> r.key_version), {{unwrap}}('{{scope}}',
        transform(c.records, r -> to_json(r)), {{integrity}})),
    'legacy_version', c.legacy_version)
  FROM (SELECT collect_list({{record}}) AS records,
          max(CASE WHEN r.key_type = 'LEGACY_IMPORTED_DEK' THEN r.key_version END) AS legacy_version
        FROM ({{records}}) r
        WHERE {{gate}}) c)
