(SELECT named_struct(
    'job', {{job}},
    'member', {{member}},
    'keys', map_from_entries(collect_list(struct(r.key_version,
        {{unwrap}}(r.wrapped_key, r.key_alias, r.key_version, r.kek_id, r.kek_version)))),
    'legacy_version', max(CASE WHEN r.key_type = 'LEGACY_IMPORTED_DEK' THEN r.key_version END))
  FROM ({{records}}) r
  WHERE {{gate}})
