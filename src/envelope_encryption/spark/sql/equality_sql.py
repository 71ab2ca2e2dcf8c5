"""Render the SQL of equality domains: the lookup functions and the function behind them.

Rendered only when the deployment configures equality domains (``SqlOptions.
equality_domains``, kek_setup ``--equality-domains``); otherwise the deployment is what it
was without them. For each domain ``<d>``:

- ``blind_index_<d>(value STRING) RETURNS STRING``: the ``bi1`` index of a literal under the
  domain's active version, with the domain's normal form and bits;
- ``deterministic_<d>(value STRING) RETURNS STRING``: the ``ed1`` cell (type ``string``)
  of a literal under the active version;

so that ``WHERE ssn_bidx = crypto.blind_index_ssn('123-45-6789')`` works. Both are SQL
functions that pass the literal and the domain's active keyring record (read with the
owner's rights, for every caller) to ``equality_values(kind, domain, value, keyring)``, an
owner-only batch Python function with the service credential, like ``decrypt_cells``: it
verifies and unwraps through the same runtime path and answers with the index or cell.
The caller gets that value, never a key. EXECUTE on the two lookup functions goes to
``--sql-lookup-group`` when it is set (none otherwise).
"""

from __future__ import annotations

from ... import __version__
from ...identifiers import domain_scope
from .function_sql import indent, managed, python_function, sql_function
from .keyring_sql import integrity_record, records_relation
from .passed_records import record_struct_sql
from .target import (
    EQUALITY_VALUES_FUNCTION,
    LOOKUP_KINDS,
    SqlOptions,
    SqlTarget,
    quote_principal,
)

_WHAT = {"blind_index": "the blind index (bi1)", "deterministic": "the deterministic cell (ed1)"}


def render_equality_values_function(target: SqlTarget, options: SqlOptions) -> str:
    """``equality_values(kind, domain, value, keyring)``: the privileged batch Python UDF
    behind the lookup functions (:mod:`.equality_runtime`)."""
    s = target.settings
    return python_function(
        target, options, EQUALITY_VALUES_FUNCTION,
        "kind STRING, domain STRING, value STRING, keyring STRING", "STRING",
        "equality_values_batches",
        f"Blind indexes and deterministic cells of literals in the equality domains of "
        f"catalog {s.catalog} ({', '.join(sorted(options.equality_domains))}), with the "
        f"active key of verified keyring records, unwrapped inside with the {s.backend} KEK. "
        "Privileged: only its owner executes it (through the blind_index_<domain> and "
        f"deterministic_<domain> functions). Managed by envelope-encryption {__version__}.",
        module="equality_runtime", domains=True,
    )


def render_lookup_function(target: SqlTarget, options: SqlOptions, kind: str,
                           domain: str) -> str:
    """``blind_index_<domain>(value)`` or ``deterministic_<domain>(value)``."""
    spec = options.equality_domains[domain]
    scope = domain_scope(target.settings.catalog, domain)
    form = (f", normal form {spec.normal_form}, {spec.bits} bits" if kind == "blind_index"
            else ", type string")
    comment = (f"{_WHAT[kind].capitalize()} of a literal in equality domain {domain} under "
               f"its active key version{form}, for lookups: WHERE c = this(literal). No key "
               f"reaches the caller. {managed()}")
    return sql_function(target, "lookup_function.sql", target.lookup_name(kind, domain),
                         comment, {
        "equality_values": target.function(EQUALITY_VALUES_FUNCTION),
        "kind": kind,
        "domain": domain,
        "scope": scope,
        "record": record_struct_sql("r"),
        "integrity": indent(integrity_record(target), 6),
        "records": indent(records_relation(target, scope), 8),
    })


def lookup_functions(target: SqlTarget, options: SqlOptions) -> list[tuple[str, str, str]]:
    """(kind, domain, function name) of every lookup function of the deployment."""
    return [(kind, domain, target.lookup_name(kind, domain))
            for domain in sorted(options.equality_domains) for kind in LOOKUP_KINDS]


def render_equality_functions(target: SqlTarget, options: SqlOptions) -> list[str]:
    """The Databricks statements of the equality domains: the privileged function, then the
    lookup functions of each domain."""
    return [render_equality_values_function(target, options),
            *(render_lookup_function(target, options, kind, domain)
              for kind, domain, _ in lookup_functions(target, options))]


def render_equality_grants(target: SqlTarget, options: SqlOptions) -> list[str]:
    """``equality_values`` stays with its owner; the lookup group (when set) may execute the
    lookup functions, and nothing else."""
    statements = [f"REVOKE ALL PRIVILEGES ON FUNCTION {target.function(EQUALITY_VALUES_FUNCTION)}"
                  " FROM `account users`"]
    group = options.lookup_group_name(target.settings.catalog)
    if group:
        lookups = quote_principal(group)
        statements.append(f"GRANT USE SCHEMA ON SCHEMA {target.crypto_schema} TO {lookups}")
        statements += [f"GRANT EXECUTE ON FUNCTION {target.function(name)} TO {lookups}"
                       for _, _, name in lookup_functions(target, options)]
    return statements


def equality_header(options: SqlOptions) -> str:
    """The golden script's header line on the equality domains."""
    domains = ", ".join(f"{d.name} ({d.normal_form}, {d.bits} bits)"
                        for _, d in sorted(options.equality_domains.items()))
    lookups = options.lookup_group or "no grants (no lookup group configured)"
    return f"-- Equality domains: {domains}; lookup functions: {lookups}."


__all__ = ["equality_header", "lookup_functions", "render_equality_functions",
           "render_equality_grants", "render_equality_values_function",
           "render_lookup_function"]
