(SELECT to_json({{record}})
      FROM {{keyring}} i
      WHERE i.key_type = 'KEYRING_INTEGRITY_KEY'
      ORDER BY i.revision DESC
      LIMIT 1)
