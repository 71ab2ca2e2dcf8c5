SELECT {{columns}}
    FROM (SELECT *, row_number() OVER (PARTITION BY key_version ORDER BY revision DESC) AS newest
          FROM {{keyring}}
          WHERE key_alias = '{{scope}}'{{gate}})
    WHERE newest = 1 AND key_state IN ('ENABLED', 'DECRYPT_ONLY')
