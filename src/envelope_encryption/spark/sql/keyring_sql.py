"""The SQL that reads the keyring for the key subqueries, and the templates' filler.

:func:`keys_subquery`: the masks' ``k`` (membership, and the keyring for readers of
plaintext). :func:`sql_function`, :func:`literal`, :func:`indent`: filling templates.

:func:`records_relation`: a scope's current, enabled DEK records, with every column their
tag covers (:data:`.passed_records.RECORD_COLUMNS`), from the keyring table or (``aws-sm``)
the secret through ``dek_records``. :func:`integrity_record`: the newest revision of the
keyring's integrity record as the unwrap function takes it. Pure: text in, text out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources

from ...errors import ConfigError
from ...identifiers import domain_scope, sql_string, validate_identifier
from .passed_records import RECORD_COLUMNS, record_struct_sql
from .target import DEK_RECORDS_FUNCTION, SqlOptions, SqlTarget

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def template(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text("utf-8")


def render_template(text: str, values: dict[str, str]) -> str:
    """Fill ``{{name}}`` placeholders; every placeholder must have a value and vice versa."""
    used = set(_PLACEHOLDER.findall(text))
    missing = used - set(values)
    if missing:
        raise ConfigError(f"template placeholders without a value: {', '.join(sorted(missing))}")
    unused = set(values) - used
    if unused:
        raise ConfigError(f"values for no placeholder: {', '.join(sorted(unused))}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text).strip()


def records_relation(target: SqlTarget, scope: str, member: str = "") -> str:
    """The scope's current, enabled DEK records as a relation.

    For ``aws-sm`` the records come from the secret through ``dek_records``; ``member``
    gates that call, so the secret is not even read for a non-member.
    """
    if target.settings.backend == "aws-sm":
        return render_template(template("records_secret.sql"), {
            "dek_records": target.function(DEK_RECORDS_FUNCTION),
            "scope": scope,
            "gate": f" WHERE {member}" if member else "",
        })
    return render_template(template("records_table.sql"), {
        "columns": ", ".join(RECORD_COLUMNS),
        "keyring": target.keyring, "scope": scope, "gate": "",
    })


def integrity_record(target: SqlTarget) -> str:
    """The newest revision of the keyring's integrity record, as the unwrap function takes
    it (NULL for ``aws-sm``, whose function reads its secret itself)."""
    if target.settings.backend == "aws-sm":
        return "CAST(NULL AS STRING)"
    return render_template(template("records_integrity.sql"), {
        "record": record_struct_sql("i"), "keyring": target.keyring,
    })


def domain_keyrings(target: SqlTarget, domains: Sequence[str], gate: str) -> tuple[str, str]:
    """The equality domains' part of a mask's key subquery: (the ``'domains'`` field of the
    keyring JSON, the relations it reads). Each domain's current readable records are
    collected under the same ``gate`` as the scope's, so a reader who gets no plaintext gets
    no domain record either. No domains: ('', ''), the key subquery as without them."""
    if not domains:
        return "", ""
    fields, relations = [], []
    for position, domain in enumerate(domains):
        scope, alias = domain_scope(target.settings.catalog, domain), f"dom{position}"
        fields.append(f"named_struct('key_alias', '{scope}', 'records', {alias}.records)")
        relations.append("\n  " + render_template(template("domain_records.sql"), {
            "record": record_struct_sql("r"), "gate": gate, "alias": alias,
            "records": records_relation(target, scope, gate).replace("\n", "\n" + " " * 8),
        }))
    return (",\n        'domains', array(" + ",\n          ".join(fields) + ")",
            "".join(relations))


def indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return text.replace("\n", "\n" + pad)


def keys_subquery(target: SqlTarget, schema: str, options: SqlOptions, *,
                  with_domains: bool = True) -> str:
    """The masks' ``k`` of a scope: membership, and the keyring records for readers of
    plaintext only (a scalar subquery, evaluated once per query). ``with_domains``: the
    configured equality domains' records ride along (the scope masks open ``ed1`` cells;
    the subject masks do not)."""
    settings = target.settings
    scope = settings.scope(validate_identifier(schema, "schema"))
    group = options.group(options.reader_group, settings.catalog, schema)
    member = f"is_account_group_member({sql_string(group)})"
    jobs = options.job_group_name(settings.catalog, schema)
    job = f"is_account_group_member({sql_string(jobs)})" if jobs else "FALSE"
    # The keyring is passed (and, for aws-sm, the secret read) only for readers who get
    # plaintext: a job-group member gets the cell as stored and needs no key.
    gate = f"{member} AND NOT {job}" if jobs else member
    domains, domain_records = domain_keyrings(
        target, sorted(options.equality_domains) if with_domains else [], gate)
    return render_template(template("keys_subquery.sql"), {
        "job": job,
        "member": member,
        "gate": gate,
        "scope": scope,
        "record": record_struct_sql("r"),
        "integrity": indent(integrity_record(target), 8),
        "records": indent(records_relation(target, scope, gate), 8),
        "domains": domains,
        "domain_records": domain_records,
    })
