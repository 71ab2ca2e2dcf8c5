(SELECT CASE WHEN max(s.erased_at IS NOT NULL) THEN unhex(max(s.subject_hash))
             ELSE concat(unhex(max(s.subject_hash)),
                         min_by(s.salt, struct(s.created_at, s.salt_id))) END
  FROM {{subjects}} s
  WHERE s.scope = substring_index(place, '.', 2)
    AND s.subject_hash = {{subject_hash}}(subject, k.keyring))
