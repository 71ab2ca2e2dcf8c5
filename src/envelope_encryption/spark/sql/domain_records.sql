CROSS JOIN (SELECT collect_list({{record}}) AS records
        FROM ({{records}}) r
        WHERE {{gate}}) {{alias}}
