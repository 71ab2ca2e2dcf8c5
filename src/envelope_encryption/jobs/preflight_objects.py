"""Preflight's checks of the deployed objects: that each exists, and who holds privileges.

What the deployment creates comes from one list,
:func:`~envelope_encryption.spark.sql.deployed_objects.deployed_objects` (the one the
renderer is tested against): the crypto schema, the keyring and the packages volume are
checked here by name, every function and table of the SQL deployment from that list. The
**guarded** objects of the list (the privileged ones, and the lookup functions) get an
effective-privileges check: nobody but the owner and the admins may hold anything on them,
except EXECUTE for the principals the deployment grants it to (the lookup group).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from databricks.sdk.errors import DatabricksError, NotFound

from ..config import Settings
from ..spark.sql.deployed_objects import FUNCTION, DeployedObject
from ..spark.sql.target import PACKAGES_VOLUME, SqlOptions, SqlTarget
from .preflight_grants import RUN_AS_OWNER, CheckResult, Securable, Status, check_privileges

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient


class _Options(Protocol):
    """What these checks read of ``preflight_checks.PreflightOptions``."""

    admins: tuple[str, ...]
    writer_group: str


class ObjectChecks:
    """The object and privilege checks of preflight's ``_Checks`` (which sets these)."""

    client: WorkspaceClient
    settings: Settings
    options: _Options
    sql: SqlOptions
    target: SqlTarget
    deployed: list[DeployedObject]
    owners: dict[str, str]  # full name -> owner, of the objects found
    missing: set[str]
    principal: str
    schema_name: str  # the crypto schema of the functions
    keyring_schema: str  # the crypto schema of the data catalog (keyring, subject table)
    before: bool

    def objects(self) -> list[CheckResult]:
        s = self.settings
        schemas = self.client.schemas.get
        getters: list[tuple[str, str, Callable[[str], Any]]] = [
            ("schema", self.schema_name, schemas)]
        if self.keyring_schema != self.schema_name:  # the subject table is always there
            getters.append(("schema", self.keyring_schema, schemas))
        if s.backend != "aws-sm":  # aws-sm keeps the keyring in a secret
            getters.append(("keyring table", f"{self.keyring_schema}.{s.keyring_table}",
                            self.client.tables.get))
        getters.append(("volume", f"{self.schema_name}.{PACKAGES_VOLUME}",
                        self.client.volumes.read))
        getters += [("function", o.full_name, self.client.functions.get)
                    if o.kind == FUNCTION else (o.role, o.full_name, self.client.tables.get)
                    for o in self.deployed]
        return [self.object(what, name, get) for what, name, get in getters]

    def object(self, what: str, full_name: str, get: Callable[[str], Any]) -> CheckResult:
        if what != "schema" and full_name.rsplit(".", 1)[0] in self.missing:
            self.missing.add(full_name)
            if self.before:
                return CheckResult(what, full_name, Status.TO_CREATE, "created by kek_setup")
            return CheckResult(what, full_name, Status.SKIPPED, "its schema does not exist")
        try:
            info = get(full_name)
        except NotFound:
            self.missing.add(full_name)
            if self.before:
                return CheckResult(what, full_name, Status.TO_CREATE, "created by kek_setup")
            step = "kek_setup" if what == "keyring table" else "kek_setup --sql-functions=true"
            if self.sql.equality_domains:
                step += " with the same --equality-domains"
            return CheckResult(what, full_name, Status.PROBLEM, "does not exist",
                               f"run {step} (as the deployment's service principal)")
        except DatabricksError as error:
            return CheckResult(what, full_name, Status.PROBLEM, f"cannot be read ({error})",
                               RUN_AS_OWNER)
        self.owners[full_name] = info.owner or ""
        return CheckResult(what, full_name, Status.OK, f"exists, owner {info.owner}")

    def privileges(self) -> list[CheckResult]:
        s, o = self.settings, self.options
        schema = self.schema_name
        # (securable, trusted besides owner and admins, EXECUTE allowed to)
        targets: list[tuple[Securable, tuple[str, ...], tuple[str, ...]]] = []
        if s.backend != "local" and s.service_credential in self.owners:
            # The job principal must hold ACCESS; anyone else could call the key service.
            targets.append((Securable("CREDENTIAL", s.service_credential, "service credential"),
                            (self.principal,), ()))
        if schema in self.missing:
            # No schema to read yet: what it would inherit is what the catalog grants.
            targets.append((Securable("CATALOG", self.target.functions_catalog,
                                      "catalog (the crypto schema inherits)"), (), ()))
        targets.append((Securable("SCHEMA", schema, "crypto schema"), (), ()))
        if s.backend != "aws-sm":  # aws-sm: the keyring function is a deployed object
            targets.append((Securable("TABLE", f"{self.keyring_schema}.{s.keyring_table}",
                                      "keyring table"), (), ()))
        targets += [(Securable(d.kind, d.full_name, d.role), (), d.executors)
                    for d in self.deployed if d.guarded]
        targets.append((Securable("VOLUME", f"{schema}.{PACKAGES_VOLUME}", "packages volume"),
                        (), ()))
        # Writer and lookup groups are granted USE SCHEMA on the crypto schema, to reach
        # encrypt_<schema> and the lookup functions; nothing more.
        schema_users = [self.sql.group(o.writer_group, s.catalog, name) for name in s.schemas
                        ] if o.writer_group else []
        lookup_group = self.sql.lookup_group_name(s.catalog)
        schema_users += [lookup_group] if lookup_group else []
        results = []
        for securable, extra, executors in targets:
            if securable.full_name in self.missing:
                results.append(CheckResult(
                    f"privileges on {securable.what}", securable.full_name, Status.SKIPPED,
                    "does not exist yet" if self.before else "does not exist"))
                continue
            owner = self.owners.get(securable.full_name, "")
            trusted = [p for p in (owner, *o.admins, *extra) if p]
            allowed: Mapping[str, Collection[str]] = {"USE_SCHEMA": schema_users,
                                                      "EXECUTE": executors}
            results.append(check_privileges(self.client, securable, trusted, allowed))
        return results
