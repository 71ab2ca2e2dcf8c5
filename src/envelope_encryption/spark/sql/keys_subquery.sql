(SELECT named_struct(
    'job', {{job}},
    'member', {{member}},
    'keys', map_from_arrays(transform(c.records, r -> r.key_version), {{unwrap}}('{{scope}}',
        transform(c.records, r -> r.key_version), transform(c.records, r -> r.wrapped_key),
        transform(c.records, r -> r.kek_id), transform(c.records, r -> r.kek_version))),
    'legacy_version', c.legacy_version)
  FROM (SELECT collect_list(struct(r.key_version, r.wrapped_key, r.kek_id, r.kek_version)) AS records,
          max(CASE WHEN r.key_type = 'LEGACY_IMPORTED_DEK' THEN r.key_version END) AS legacy_version
        FROM ({{records}}) r
        WHERE {{gate}}) c)
