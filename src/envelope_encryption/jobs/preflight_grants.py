"""Preflight's report lines, and its check of **effective** privileges on the key objects.

Unity Catalog privileges are inherited: ``ALL PRIVILEGES`` or ``EXECUTE`` granted on the
catalog reaches the unwrap function, ``SELECT`` reaches the keyring table, ``READ VOLUME``
the packages volume. Whoever holds them can unwrap DEKs or read the wheel the service
principal runs, so the check reads ``grants.get_effective`` (direct and inherited
privileges, with ``inherited_from_type``/``inherited_from_name``) and accepts nobody but the
owner and the configured admins.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from databricks.sdk.errors import DatabricksError, NotFound

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

# Privileges that give nothing inside the crypto schema: seeing names (BROWSE), entering the
# catalog (USE_CATALOG, needed to reach anything in it), making other schemas.
HARMLESS = frozenset({"BROWSE", "USE_CATALOG", "CREATE_SCHEMA"})
RUN_AS_OWNER = ("run preflight as the principal that deployed the crypto schema (its owner) "
                "or as a metastore admin")
_SQL_KIND = {"CREDENTIAL": "SERVICE CREDENTIAL"}


class Status(str, Enum):
    OK = "ok"
    PROBLEM = "problem"
    SKIPPED = "skipped"
    TO_CREATE = "to create"  # missing before deployment, as expected


@dataclass(frozen=True)
class CheckResult:
    """One line of the report: what was checked, its status, and how to fix a problem."""

    check: str
    subject: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.value:<9}  {self.check} {self.subject}: {self.detail}"
        return text + (f" | fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Securable:
    kind: str  # Unity Catalog securable type, upper case: CATALOG, SCHEMA, FUNCTION, ...
    full_name: str
    what: str  # how the report names it

    def sql(self) -> str:
        """The securable as GRANT/REVOKE name it."""
        return sql_securable(self.kind, self.full_name)


def quote_principal(principal: str) -> str:
    return "`" + principal.replace("`", "``") + "`"


def sql_securable(kind: str, full_name: str) -> str:
    if kind == "CREDENTIAL":  # credential names may contain dots: one quoted name
        return f"{_SQL_KIND[kind]} {quote_principal(full_name)}"
    return f"{kind} " + ".".join(quote_principal(part) for part in full_name.split("."))


def read_effective(client: WorkspaceClient, securable: Securable) -> list[Any]:
    """Every effective privilege assignment, all pages.

    Paginated (``max_results=0``: the service picks the page size), as the API asks; a page
    may be empty and still have a next token, so only a missing token ends the list.
    """
    assignments: list[Any] = []
    token = None
    while True:
        page = client.grants.get_effective(
            securable_type=securable.kind.lower(), full_name=securable.full_name,
            max_results=0, page_token=token,
        )
        assignments += page.privilege_assignments or []
        token = page.next_page_token
        if not token:
            return assignments


def _casefolded(allowed: Mapping[str, Collection[str]] | None) -> dict[str, set[str]]:
    """Privilege -> the principals allowed it, compared case-insensitively as UC does."""
    return {privilege: {p.casefold() for p in principals}
            for privilege, principals in (allowed or {}).items()}


def held_by_others(securable: Securable, assignments: list[Any], trusted: Collection[str],
                   allowed: Mapping[str, Collection[str]] | None = None,
                   ) -> tuple[list[str], list[str]]:
    """Who else holds what and where it comes from, and the REVOKE that removes each.

    ``trusted`` principals (owner, admins) may hold anything; ``allowed`` maps a privilege to
    the principals that may hold it and nothing more (``USE_SCHEMA`` for the writer and
    lookup groups, which reach their functions through the crypto schema; ``EXECUTE`` on a
    lookup function for the lookup group). Principal names compare case-insensitively, as
    Unity Catalog does. An unknown privilege counts as held.
    """
    trusted = {p.casefold() for p in trusted}
    permitted = _casefolded(allowed)
    held: list[str] = []
    revokes: list[str] = []
    for assignment in assignments:
        principal = assignment.principal or "?"
        if principal.casefold() in trusted:
            continue
        for effective in assignment.privileges or []:
            privilege = effective.privilege.value if effective.privilege else None
            if privilege in HARMLESS:
                continue
            if principal.casefold() in permitted.get(privilege or "", ()):
                continue
            kind, name, where = securable.kind, securable.full_name, "granted on it"
            if effective.inherited_from_name:
                kind = (effective.inherited_from_type.value
                        if effective.inherited_from_type else "CATALOG")
                name = effective.inherited_from_name
                where = f"inherited from {kind.lower()} {name}"
            held.append(f"{principal}: {privilege or 'an unknown privilege'} ({where})")
            revokes.append(f"REVOKE {(privilege or 'ALL_PRIVILEGES').replace('_', ' ')} ON "
                           f"{sql_securable(kind, name)} FROM {quote_principal(principal)}")
    return held, revokes


def check_privileges(client: WorkspaceClient, securable: Securable, trusted: Collection[str],
                     allowed: Mapping[str, Collection[str]] | None = None) -> CheckResult:
    """One line: nobody but ``trusted`` holds a privilege on ``securable``, or who does."""
    check = f"privileges on {securable.what}"
    try:
        assignments = read_effective(client, securable)
    except NotFound:
        return CheckResult(check, securable.full_name, Status.PROBLEM, "does not exist",
                           f"create {securable.sql()} or correct the settings")
    except DatabricksError as error:
        return CheckResult(check, securable.full_name, Status.PROBLEM,
                           f"grants cannot be read ({error})", RUN_AS_OWNER)
    held, revokes = held_by_others(securable, assignments, trusted, allowed)
    names = ", ".join(sorted({p for p in trusted if p})) or "nobody"
    if not held:
        # Name what the allowed principals hold, so an ok line says who can use the object.
        permitted = _casefolded(allowed)
        granted = sorted({f"{a.principal}: {e.privilege.value}" for a in assignments
                          for e in a.privileges or [] if e.privilege
                          and (a.principal or "").casefold() in permitted.get(e.privilege.value,
                                                                              ())})
        also = f"; as the deployment grants, {', '.join(granted)}" if granted else ""
        return CheckResult(check, securable.full_name, Status.OK,
                           f"held by nobody but {names}{also}")
    return CheckResult(
        check, securable.full_name, Status.PROBLEM,
        f"also held by {'; '.join(held)} (trusted: {names})",
        "; ".join(dict.fromkeys(revokes)) + " (or, when a principal is meant to administer "
        "the keys, add it to --admin-groups)",
    )
