"""What the SQL functions run for equality domains (docs/equality.md, "SQL").

Two uses, both through :func:`.runtime.unwrap_records` (the one keyring-bound path: the
deployment's scopes only, every record's tag verified, the KEK pinned, the retired set;
``aws-sm``: the secret it reads itself), with the worker's DEK cache, so a domain key
version is unwrapped once per Python worker:

- ``decrypt_cells`` opens deterministic (``ed1``) cells for the masks: the key subquery
  passes, for readers of plaintext only, each configured domain's readable records beside
  the scope's (``"domains": [{"key_alias": "<catalog>.$equality.<d>", "records": [...]}]``).
  :func:`domain_openers` verifies and unwraps them and derives the sub-keys;
  :func:`open_deterministic` tries every domain that has the cell's version, and the GCM
  tag decides.
- ``equality_values(kind, domain, value, keyring)``, the owner-only batch function behind
  ``blind_index_<domain>(value)`` and ``deterministic_<domain>(value)``: the blind index or
  the deterministic ``string`` cell of a literal under the domain's active version, with the
  domain's normal form and bits from the deployment (:func:`equality_values_batches`). Its
  callers receive indexes and cells, never a key.

A domain the deployment does not configure is refused here, before anything is unwrapped.
Nothing here logs or raises a key or a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .batch_columns import column_like, column_values
from .cell_shape import OPENED, REFUSED
from .passed_records import passed_keyring, passed_row
from .runtime import unwrap_records

if TYPE_CHECKING:
    from ...cell.equality import DeterministicOpener, DomainKeys

KINDS = ("blind_index", "deterministic")


def _domain(payload: Mapping[str, Any], key_alias: Any) -> str:
    """The domain of a configured domain's scope; KeyringError for anything else."""
    from ...errors import KeyringError
    from ...identifiers import EQUALITY_SCOPE_MARK

    parts = key_alias.split(".") if isinstance(key_alias, str) else []
    domains = payload.get("equality_domains") or {}
    if len(parts) != 3 or parts[0] != payload["catalog"] or parts[1] != EQUALITY_SCOPE_MARK \
            or parts[2] not in domains:
        raise KeyringError(f"the SQL functions of catalog {payload['catalog']} serve the "
                           f"equality domains {', '.join(sorted(domains)) or '(none)'}, not "
                           f"{key_alias}: refused")
    return parts[2]


def domain_keys(payload: Mapping[str, Any], key_alias: Any, records: Sequence[Any],
                integrity: Any, on_unwrap: Callable[[int], None] | None = None,
                ) -> tuple[str, list[DomainKeys], list[str]]:
    """(domain, sub-keys of each record passed, each record's state), after
    :func:`.runtime.unwrap_records` verified and unwrapped them."""
    from ...cell.equality import DomainKeys
    from ...secret import SecretKey

    domain = _domain(payload, key_alias)
    deks = unwrap_records(payload, key_alias, records, integrity, on_unwrap)
    keys, states = [], []
    for record, dek in zip(records, deks, strict=True):
        row = passed_row(record)
        if row is None or dek is None:
            continue
        version = row["key_version"]
        keys.append(DomainKeys.derive(domain, version, SecretKey(dek, f"{domain} v{version}")))
        states.append(row.get("key_state"))
    return domain, keys, states


def domain_openers(payload: Mapping[str, Any], passed: Any, integrity: Any,
                   on_unwrap: Callable[[int], None] | None = None) -> list[DeterministicOpener]:
    """Openers of the domains passed in a mask's keyring (``"domains"``; none: [])."""
    from ...cell.equality import DeterministicOpener
    from ...errors import KeyringError

    if passed is None:
        return []
    try:
        entries = [(entry["key_alias"], list(entry["records"] or [])) for entry in passed]
    except (TypeError, KeyError):
        raise KeyringError("decrypt_cells: the domains passed are not the key subquery's: "
                           "refused") from None
    openers = []
    for key_alias, records in entries:
        domain, keys, _ = domain_keys(payload, key_alias, records, integrity, on_unwrap)
        openers.append(DeterministicOpener(domain, keys))
    return openers


def open_deterministic(openers: Sequence[DeterministicOpener], value: str) -> str:
    """``+<plaintext>`` of a deterministic cell that authenticates in one of the domains,
    else ``!<cause>``: ``V`` no domain has its version, ``A`` none authenticates it, ``U``
    it authenticates but is not UTF-8, ``M`` malformed (docs/cell-format.md's order)."""
    from ...cell.equality import parse_deterministic_cell
    from ...errors import DecryptionError, FormatError, UnknownKeyVersion

    try:
        parse_deterministic_cell(value)
    except FormatError:
        return REFUSED + "M"
    cause = "V"
    for opener in openers:
        try:
            plain, _, _ = opener.open(value)
        except UnknownKeyVersion:
            continue
        except DecryptionError:
            cause = "A"
            continue
        except FormatError:
            return REFUSED + "U"  # parsed above, so the only format error left is UTF-8
        return OPENED + plain
    return REFUSED + cause


def _computer(payload: Mapping[str, Any], kind: Any, domain: Any, keyring: str,
              on_unwrap: Callable[[int], None] | None) -> Callable[[str], str]:
    """The function giving a literal's index or cell under the domain's active version."""
    from ...cell.equality import BlindIndexer, DeterministicSealer
    from ...errors import ConfigError, KeyringError

    if kind not in KINDS:
        raise ConfigError(f"equality_values: kind must be one of {', '.join(KINDS)}")
    passed = passed_keyring(keyring, "equality_values")
    key_alias, records, integrity = passed["key_alias"], passed["records"], passed["integrity"]
    found, keys, states = domain_keys(payload, key_alias, records, integrity, on_unwrap)
    if found != domain:
        raise KeyringError(f"equality_values: records of domain {found} passed for {domain}: "
                           "refused")
    active = [k for k, state in zip(keys, states, strict=True) if state == "ENABLED"]
    if not active:
        raise KeyringError(f"equality domain {domain} has no active key version: run "
                           "kek_setup with --equality-domains")
    newest = max(active, key=lambda k: k.version)
    if kind == "deterministic":
        sealer = DeterministicSealer(newest)
        return lambda value: sealer.seal(value, "string")
    normal_form, bits = payload["equality_domains"][domain]
    return BlindIndexer(newest, bits, normal_form).index


def equality_values(payload: Mapping[str, Any], kinds: Sequence[Any], domains: Sequence[Any],
                    values: Sequence[Any], keyrings: Sequence[Any],
                    on_unwrap: Callable[[int], None] | None = None) -> list[str | None]:
    """Each row's index or cell (NULL for a NULL value); the same (kind, domain, keyring)
    is verified and unwrapped once per batch."""
    computers: dict[tuple[Any, Any, Any], Callable[[str], str]] = {}
    out: list[str | None] = []
    for kind, domain, value, keyring in zip(kinds, domains, values, keyrings, strict=True):
        if value is None:
            out.append(None)
            continue
        key = (kind, domain, keyring)
        if key not in computers:
            computers[key] = _computer(payload, kind, domain, keyring, on_unwrap)
        out.append(computers[key](value))
    return out


def equality_values_batches(batches: Iterator[tuple[Any, ...]], payload: Mapping[str, Any],
                            on_unwrap: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Batch handler of ``equality_values(kind, domain, value, keyring)`` (pandas Series on
    Databricks, pyarrow arrays from the local stand-in; the answer is of the kind given)."""
    for kinds, domains, values, keyrings in batches:
        yield column_like(values, equality_values(
            payload, column_values(kinds), column_values(domains), column_values(values),
            column_values(keyrings), on_unwrap))
