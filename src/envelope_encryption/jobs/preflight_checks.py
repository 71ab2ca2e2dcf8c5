"""The checks of ``preflight``: what a Databricks workspace must have, read with the SDK.

:func:`run_checks` reads the workspace through a ``databricks.sdk.WorkspaceClient`` and
returns one :class:`CheckResult` per thing checked; it prints nothing and changes nothing.
Only read calls are made: the caller (``current_user.me``), SCIM groups, the service
credential, the crypto schema and its objects, the wheel's metadata, and effective
(inherited) privileges. See docs/preflight.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied

from ..cell.equality import DomainSpec
from ..config import Settings
from ..errors import ConfigError
from ..identifiers import validate_principal
from ..spark.sql.deployed_objects import deployed_objects
from ..spark.sql.render import default_udf_wheel
from ..spark.sql.target import SqlOptions, SqlTarget
from .legacy_detection import preflight_check
from .preflight_grants import (
    RUN_AS_OWNER,
    CheckResult,
    Securable,
    Status,
    quote_principal,
    read_effective,
)
from .preflight_objects import ObjectChecks

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

STAGES = ("before", "after")
CREDENTIAL_USE = frozenset({"ACCESS", "ALL_PRIVILEGES"})
# Every user is in this account group whether or not SCIM lists it among the caller's groups.
ALL_USERS = "account users"
_NOT_A_GROUP = re.compile(r"@|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class PreflightOptions:
    """What preflight expects beyond :class:`Settings` (its own parameters)."""

    stage: str = "after"
    admins: tuple[str, ...] = ()
    reader_group: str = SqlOptions.reader_group
    writer_group: str = ""
    job_group: str = SqlOptions.job_group
    udf_wheel: str = ""
    crypto_catalog: str = ""  # kek_setup --sql-crypto-catalog: where the functions live
    job_principal: str = ""
    # kek_setup --equality-domains (parsed by parse_domain_specs) and --sql-lookup-group.
    equality_domains: Mapping[str, DomainSpec] = field(default_factory=dict)
    lookup_group: str = ""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"--stage must be before or after, not {self.stage!r}")
        self.sql_options()  # the SQL options' own checks, with kek_setup's option names
        for admin in self.admins:
            validate_principal(admin, "admin principal")
        if self.job_principal:
            validate_principal(self.job_principal, "job principal")

    def sql_options(self) -> SqlOptions:
        """The parts of the deployment's SQL options that say which objects it creates."""
        return SqlOptions(crypto_catalog=self.crypto_catalog,
                          equality_domains=self.equality_domains, lookup_group=self.lookup_group)


def run_checks(client: WorkspaceClient, settings: Settings,
               options: PreflightOptions | None = None) -> list[CheckResult]:
    """Every check, in report order. Raises :class:`ConfigError` when the workspace cannot be
    reached at all (authentication); any other failure is reported as that check's problem."""
    return _Checks(client, settings, options or PreflightOptions()).run()


class _Checks(ObjectChecks):
    def __init__(self, client: WorkspaceClient, settings: Settings,
                 options: PreflightOptions) -> None:
        self.client = client
        self.settings = settings
        self.options = options
        self.owners: dict[str, str] = {}  # full name -> owner, of the objects found
        self.missing: set[str] = set()
        self.principal = ""
        # None: not read (the principal was given with --job-principal).
        self.principal_groups: list[str] | None = None
        self.sql = options.sql_options()
        self.target = SqlTarget.of(settings, self.sql)
        self.deployed = deployed_objects(self.target, self.sql)
        s = settings
        # The functions and the wheel's volume (in the crypto catalog when configured) and
        # the keyring table (always in the data catalog's crypto schema).
        self.schema_name = f"{self.target.functions_catalog}.{s.crypto_schema}"
        self.keyring_schema = f"{s.catalog}.{s.crypto_schema}"

    def run(self) -> list[CheckResult]:
        results = [self.backend(), self.job_principal()]
        results.append(self.credential())
        results += self.groups()
        results.append(self.job_group_membership())
        results.append(self.wheel())
        results += self.objects()
        results += self.privileges()
        results.append(preflight_check(self.client, self.settings, self.before))
        return results

    # -- helpers -------------------------------------------------------------------------

    @property
    def before(self) -> bool:
        return self.options.stage == "before"

    # -- checks --------------------------------------------------------------------------

    def backend(self) -> CheckResult:
        backend = self.settings.backend
        if backend == "local":
            return CheckResult(
                "back end", backend, Status.PROBLEM,
                "the local KEK is a file on one machine: development only, never a workspace",
                "set --kek-backend (bundle variable kek_backend) to aws-kms, aws-sm or azure",
            )
        return CheckResult("back end", backend, Status.OK, "a key service reachable from UDFs")

    def job_principal(self) -> CheckResult:
        try:
            me = self.client.current_user.me()
        except DatabricksError as error:
            raise ConfigError(
                f"cannot read the calling principal from the workspace ({error}): check "
                "DATABRICKS_HOST and DATABRICKS_TOKEN, or --profile"
            ) from None
        if self.options.job_principal:
            self.principal = self.options.job_principal
            return CheckResult("job principal", self.principal, Status.OK,
                               f"given by --job-principal (checked by {me.user_name}); its "
                               "group memberships are not read")
        self.principal = me.user_name or ""
        self.principal_groups = [g.display for g in me.groups or [] if g.display]
        groups = ", ".join(self.principal_groups) or "none listed"
        return CheckResult("job principal", self.principal, Status.OK,
                           f"the caller (groups: {groups})")

    def credential(self) -> CheckResult:
        name = self.settings.service_credential
        if self.settings.backend == "local":
            return CheckResult("service credential", "-", Status.SKIPPED,
                               "the local back end uses none")
        if not name:
            return CheckResult(
                "service credential", "-", Status.PROBLEM, "none configured",
                "set --service-credential (bundle variable service_credential) to the Unity "
                "Catalog service credential that reaches the key service",
            )
        securable = Securable("CREDENTIAL", name, "service credential")
        grant = f"GRANT ACCESS ON {securable.sql()} TO {quote_principal(self.principal)}"
        try:
            info = self.client.credentials.get_credential(name)
        except NotFound:
            return CheckResult(
                "service credential", name, Status.PROBLEM, "does not exist",
                "create a service credential for the key service's IAM role or managed "
                f"identity (Catalog > External data > Credentials), then {grant}",
            )
        except PermissionDenied:
            return CheckResult("service credential", name, Status.PROBLEM,
                               f"{self.principal} may not see it", grant)
        self.owners[name] = info.owner or ""
        purpose = info.purpose.value if info.purpose else "unknown purpose"
        if purpose != "SERVICE":
            return CheckResult(
                "service credential", name, Status.PROBLEM,
                f"is a {purpose} credential; UDFs and jobs need a SERVICE credential",
                "create a service credential (not a storage credential) and set "
                "--service-credential to its name",
            )
        if (info.owner or "").casefold() == self.principal.casefold():
            return CheckResult("service credential", name, Status.OK,
                               f"SERVICE credential owned by {self.principal}")
        holders = {p.casefold()
                   for p in (self.principal, *(self.principal_groups or ()), ALL_USERS)}
        try:
            assignments = read_effective(self.client, securable)
        except DatabricksError as error:
            return CheckResult("service credential", name, Status.PROBLEM,
                               f"exists, but its grants cannot be read ({error})",
                               f"{RUN_AS_OWNER}, or check SHOW GRANTS; it needs: {grant}")
        via = sorted(
            a.principal for a in assignments
            if (a.principal or "").casefold() in holders
            and any(p.privilege and p.privilege.value in CREDENTIAL_USE
                    for p in a.privileges or [])
        )
        if via:
            how = ", ".join("granted directly" if p == self.principal else f"through {p}"
                            for p in via)
            return CheckResult("service credential", name, Status.OK,
                               f"SERVICE credential; ACCESS for {self.principal} ({how})")
        return CheckResult(
            "service credential", name, Status.PROBLEM,
            f"{self.principal} has no ACCESS on it (owner {info.owner}; nested groups are not "
            "followed)", grant,
        )

    def groups(self) -> list[CheckResult]:
        s, o = self.settings, self.options
        wanted = [(self.sql.group(o.reader_group, s.catalog, schema), f"readers of {schema}")
                  for schema in s.schemas]
        if o.writer_group:
            wanted += [(self.sql.group(o.writer_group, s.catalog, schema),
                        f"writers of {schema}") for schema in s.schemas]
        if self.job_group:
            wanted.append((self.job_group, "jobs that read cells"))
        if self.sql.lookup_group:
            wanted.append((self.sql.lookup_group_name(s.catalog), "lookup group"))
        wanted += [(admin, "admin") for admin in o.admins]
        return [self.group(name, role) for name, role in wanted]

    @property
    def job_group(self) -> str:
        """The group the masks give the cells unchanged to (per catalog; '' for none)."""
        o, s = self.options, self.settings
        return self.sql.group(o.job_group, s.catalog, s.schemas[0]) if o.job_group else ""

    def job_group_membership(self) -> CheckResult:
        """The jobs' principal reads cells through the masks: in the job group, no reader."""
        name = self.job_group
        if not name:
            return CheckResult("job group", "(none)", Status.SKIPPED,
                               "no job group: reencrypt_columns, status and retire_dek refuse "
                               "masked tables")
        groups = self.principal_groups
        if groups is None:
            return CheckResult("job group", name, Status.SKIPPED,
                               f"memberships of {self.principal} are not read (--job-principal)")
        readers = sorted({self.sql.group(self.options.reader_group, self.settings.catalog, s)
                          for s in self.settings.schemas} & set(groups))
        if readers:
            return CheckResult(
                "job group", name, Status.PROBLEM,
                f"{self.principal} is a reader ({', '.join(readers)}): through the masks it "
                "reads plaintext, which the jobs refuse to rewrite",
                f"remove {self.principal} from {', '.join(readers)}",
            )
        if name not in groups:
            return CheckResult(
                "job group", name, Status.PROBLEM,
                f"{self.principal} is not a member: on masked tables it reads what non-members "
                "read, and reencrypt_columns, status and retire_dek refuse to run",
                f"add {self.principal} to the account group {name} (nested groups are not "
                "followed)",
            )
        return CheckResult("job group", name, Status.OK,
                           f"{self.principal} reads cells through the masks")

    def group(self, name: str, role: str) -> CheckResult:
        if role == "admin" and _NOT_A_GROUP.search(name):
            return CheckResult("group", name, Status.SKIPPED,
                               "admin given as a user or service principal, not looked up")
        create = (f"create the account group {name} (account console > User management > "
                  "Groups) and assign it to this workspace")
        try:
            found = [g for g in self.client.groups.list(
                filter=f'displayName eq "{name}"', attributes="id,displayName,meta")
                if (g.display_name or "").casefold() == name.casefold()]
        except DatabricksError as error:
            return CheckResult("group", name, Status.PROBLEM,
                               f"cannot list groups ({error})", RUN_AS_OWNER)
        if not found:
            return CheckResult("group", name, Status.PROBLEM, f"({role}) does not exist", create)
        kind = found[0].meta.resource_type if found[0].meta else None
        if kind == "WorkspaceGroup":
            return CheckResult(
                "group", name, Status.PROBLEM,
                f"({role}) is a workspace-local group: is_account_group_member() in the "
                "masks sees account groups only", create + ", then delete the local group",
            )
        return CheckResult("group", name, Status.OK, f"({role}) exists")

    def wheel(self) -> CheckResult:
        path = self.options.udf_wheel or default_udf_wheel(self.settings,
                                                           self.options.crypto_catalog)
        if not path.startswith("/Volumes/"):
            return CheckResult("wheel", path, Status.SKIPPED,
                               "installed from a package index, not from a volume")
        try:
            meta = self.client.files.get_metadata(path)
        except NotFound:
            status = Status.TO_CREATE if self.before else Status.PROBLEM
            return CheckResult("wheel", path, status, "not in the volume",
                               "" if self.before else
                               "build the wheel and deploy the bundle (which uploads it), or "
                               f"copy it: databricks fs cp dist/<wheel> dbfs:{path}")
        except DatabricksError as error:
            return CheckResult("wheel", path, Status.PROBLEM, f"cannot be read ({error})",
                               f"{RUN_AS_OWNER}: it needs READ VOLUME on the packages volume")
        if not meta.content_length:
            return CheckResult("wheel", path, Status.PROBLEM, "is empty",
                               f"upload the wheel again to {path}")
        return CheckResult("wheel", path, Status.OK, f"present ({meta.content_length} bytes)")
