(SELECT named_struct(
    'job', {{job}},
    'member', {{member}},
    'keys', map_from_arrays(transform(c.records, r -> r.key_version), {{unwrap}}('{{scope}}',
        transform(c.records, r -> to_json(r)), {{integrity}})),
    'legacy_versions', c.legacy_versions)
  FROM (SELECT collect_list({{record}}) AS records,
          sort_array(collect_list(CASE WHEN r.key_type = 'LEGACY_IMPORTED_DEK'
            THEN r.key_version END), FALSE) AS legacy_versions
        FROM ({{records}}) r
        WHERE {{gate}}) c)
