"""A small local Databricks workspace: the handful of REST endpoints ``preflight`` calls.

The preflight tests run the real ``databricks-sdk`` ``WorkspaceClient`` against this server
(plain HTTP on 127.0.0.1, bearer token ``dapi-test``), so paths, verbs, query parameters and
JSON shapes are the ones the SDK sends and parses (``databricks/sdk/service/{catalog,iam,
files}.py``):

- ``GET /.well-known/databricks-config``: host metadata the SDK reads (unauthenticated) when
  it builds its configuration: the workspace id, which it then sends as
  ``X-Databricks-Workspace-Id``;
- ``GET /api/2.0/preview/scim/v2/Me``: the caller (``userName``, ``groups``);
- ``GET /api/2.0/preview/scim/v2/Groups?filter=displayName eq "x"&startIndex=&count=``: SCIM
  list; the SDK pages by ``startIndex`` until a page has no ``Resources``;
- ``GET /api/2.1/unity-catalog/credentials/{name}``, ``.../schemas/{full_name}``,
  ``.../tables/{full_name}``, ``.../functions/{full_name}``, ``.../volumes/{full_name}``;
- ``GET /api/2.1/unity-catalog/effective-permissions/{type}/{full_name}``: direct grants and
  grants inherited from the parent schema and catalog (``inherited_from_type``/``_name``),
  paged with ``max_results``/``page_token`` like the service (a page may be empty);
- ``HEAD /api/2.0/fs/files{path}``: metadata in the response headers, no body.

Errors use the Databricks shape ``{"error_code": ..., "message": ...}`` with the HTTP status
the SDK maps to its exceptions (404 -> ``NotFound``, 403 -> ``PermissionDenied``, 401);
a HEAD error has no body, as on the real service. Every request is logged (``requests``);
a request to an endpoint not served here is answered 404 ``ENDPOINT_NOT_FOUND`` and kept in
``unexpected`` so a test can assert the checks call nothing else. The modelled inheritance
(which privileges of a catalog or schema reach a table, function or volume) follows the Unity
Catalog privilege docs; it is a model, not the service.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "dapi-test"  # the fixed token of a local test server
UC = "/api/2.1/unity-catalog/"
SCIM = "/api/2.0/preview/scim/v2/"
FILES = "/api/2.0/fs/files"
WORKSPACE_ID = "1234567890123456"
PAGE_SIZE = 2  # effective permissions per page: small, so the tests page
# Privileges that may appear on a securable of each type, granted there or inherited.
APPLICABLE = {
    "CATALOG": None,  # anything granted on the catalog shows on the catalog
    "SCHEMA": {"ALL_PRIVILEGES", "MANAGE", "BROWSE", "APPLY_TAG", "USE_SCHEMA", "EXECUTE",
               "SELECT", "MODIFY", "READ_VOLUME", "WRITE_VOLUME", "REFRESH", "CREATE_TABLE",
               "CREATE_FUNCTION", "CREATE_VOLUME", "CREATE_MODEL", "CREATE_MATERIALIZED_VIEW"},
    "TABLE": {"ALL_PRIVILEGES", "MANAGE", "BROWSE", "APPLY_TAG", "SELECT", "MODIFY", "REFRESH"},
    "FUNCTION": {"ALL_PRIVILEGES", "MANAGE", "BROWSE", "APPLY_TAG", "EXECUTE"},
    "VOLUME": {"ALL_PRIVILEGES", "MANAGE", "BROWSE", "APPLY_TAG", "READ_VOLUME",
               "WRITE_VOLUME"},
    "CREDENTIAL": {"ALL_PRIVILEGES", "MANAGE", "ACCESS", "CREATE_CONNECTION"},
}
OBJECT_KINDS = {"schemas": "SCHEMA", "tables": "TABLE", "functions": "FUNCTION",
                "volumes": "VOLUME"}


@dataclass
class Grant:
    """A privilege granted directly on one securable (``GRANT ... ON <type> <name>``)."""

    securable_type: str  # CATALOG, SCHEMA, TABLE, FUNCTION, VOLUME, CREDENTIAL
    full_name: str
    principal: str
    privilege: str


@dataclass
class WorkspaceState:
    """What exists in the workspace. Tests change it freely between requests."""

    user_name: str = "deployer@example.com"
    user_groups: list[str] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # name -> "Group" | "WorkspaceGroup"
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, dict[str, str]] = field(default_factory=dict)  # "SCHEMA:a.b" -> owner
    files: dict[str, int] = field(default_factory=dict)  # absolute path -> size
    grants: list[Grant] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)  # path prefixes answered 403

    def add_object(self, kind: str, full_name: str, owner: str) -> None:
        self.objects[f"{kind}:{full_name}"] = {"owner": owner}

    def grant(self, securable_type: str, full_name: str, principal: str,
              *privileges: str) -> None:
        for privilege in privileges:
            self.grants.append(Grant(securable_type, full_name, principal, privilege))

    def revoke_all(self, principal: str) -> None:
        self.grants = [g for g in self.grants if g.principal != principal]

    def effective(self, securable_type: str, full_name: str) -> list[dict[str, Any]]:
        """Effective privilege assignments: direct grants, then the ones inherited."""
        parts = full_name.split(".")
        sources = [(securable_type, full_name)]
        if securable_type in ("TABLE", "FUNCTION", "VOLUME"):
            sources += [("SCHEMA", ".".join(parts[:2])), ("CATALOG", parts[0])]
        elif securable_type == "SCHEMA":
            sources.append(("CATALOG", parts[0]))
        applicable = APPLICABLE.get(securable_type)
        by_principal: dict[str, list[dict[str, Any]]] = {}
        for kind, name in sources:
            for grant in self.grants:
                if (grant.securable_type, grant.full_name) != (kind, name):
                    continue
                if applicable is not None and grant.privilege not in applicable:
                    continue
                entry: dict[str, Any] = {"privilege": grant.privilege}
                if (kind, name) != (securable_type, full_name):
                    entry["inherited_from_type"] = kind
                    entry["inherited_from_name"] = name
                by_principal.setdefault(grant.principal, []).append(entry)
        return [{"principal": p, "privileges": privs} for p, privs in by_principal.items()]


class WorkspaceServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: WorkspaceState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.unexpected: list[str] = []
        self.workspace_ids: set[str] = set()  # X-Databricks-Workspace-Id values seen
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p, _ in self.requests if method is None or m == method]


class _Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: WorkspaceServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with self.server.lock:
            self.server.requests.append((method, path, query))
            self.server.workspace_ids.add(self.headers.get("X-Databricks-Workspace-Id", ""))
            try:
                if path == "/.well-known/databricks-config":  # read before any credential
                    status, body, headers = 200, {"oidc_endpoint": f"{self.server.url}/oidc",
                                                  "workspace_id": WORKSPACE_ID}, {}
                elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    raise _Error(401, "UNAUTHENTICATED", "Invalid access token.")
                elif any(path.startswith(prefix) for prefix in self.server.state.forbidden):
                    raise _Error(403, "PERMISSION_DENIED", f"User does not have access to {path}")
                else:
                    status, body, headers = self._route(method, path, query)
            except _Error as error:
                status, headers = error.status, {}
                body = {"error_code": error.code, "message": error.message}
        self._reply(method, status, body, headers)

    def _route(self, method: str, path: str,
               query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        state = self.server.state
        if method == "HEAD" and path.startswith(FILES + "/"):
            file_path = path[len(FILES):]
            if file_path not in state.files:
                raise _Error(404, "NOT_FOUND", f"The file {file_path} does not exist")
            return 200, None, {"content-length": str(state.files[file_path]),
                               "content-type": "application/octet-stream",
                               "last-modified": "Sun, 29 Nov 2026 10:00:00 GMT"}
        if method != "GET":
            return self._unexpected(method, path)
        if path == SCIM + "Me":
            return 200, {"userName": state.user_name, "id": "1001",
                         "groups": [{"display": g, "value": f"g-{g}"}
                                    for g in state.user_groups]}, {}
        if path == SCIM + "Groups":
            return 200, self._groups(query), {}
        if path.startswith(UC + "credentials/"):
            name = path[len(UC + "credentials/"):]
            if name not in state.credentials:
                raise _Error(404, "CREDENTIAL_DOES_NOT_EXIST", f"Credential '{name}' does "
                             "not exist.")
            return 200, {"name": name, "full_name": name, **state.credentials[name]}, {}
        if path.startswith(UC + "effective-permissions/"):
            kind, _, full_name = path[len(UC + "effective-permissions/"):].partition("/")
            return 200, self._effective(kind.upper(), full_name, query), {}
        collection, _, full_name = path[len(UC):].partition("/")
        if path.startswith(UC) and collection in OBJECT_KINDS and full_name:
            kind = OBJECT_KINDS[collection]
            found = state.objects.get(f"{kind}:{full_name}")
            if found is None:
                raise _Error(404, f"{kind}_DOES_NOT_EXIST",
                             f"{kind.title()} '{full_name}' does not exist.")
            parts = full_name.split(".")
            body = {"full_name": full_name, "name": parts[-1], "catalog_name": parts[0],
                    "owner": found["owner"]}
            if len(parts) == 3:
                body["schema_name"] = parts[1]
            return 200, body, {}
        return self._unexpected(method, path)

    def _unexpected(self, method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        self.server.unexpected.append(f"{method} {path}")
        raise _Error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    def _groups(self, query: dict[str, str]) -> dict[str, Any]:
        wanted = None
        text = query.get("filter", "")
        if text:
            attribute, operator, value = text.split(" ", 2)
            if attribute != "displayName" or operator != "eq":
                raise _Error(400, "INVALID_PARAMETER_VALUE", f"unsupported filter {text!r}")
            wanted = value.strip('"')
        matches = [
            {"id": f"g-{name}", "displayName": name, "meta": {"resourceType": kind}}
            for name, kind in sorted(self.server.state.groups.items())
            if wanted is None or name.lower() == wanted.lower()
        ]
        start = int(query.get("startIndex", 1))
        count = int(query.get("count", 100))
        page = matches[start - 1:start - 1 + count]
        return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": len(matches), "startIndex": start,
                "itemsPerPage": len(page), "Resources": page}

    def _effective(self, kind: str, full_name: str, query: dict[str, str]) -> dict[str, Any]:
        state = self.server.state
        if kind == "CREDENTIAL":
            exists = full_name in state.credentials
        elif kind == "CATALOG":
            exists = True
        else:
            exists = f"{kind}:{full_name}" in state.objects
        if not exists:
            raise _Error(404, f"{kind}_DOES_NOT_EXIST",
                         f"{kind.title()} '{full_name}' does not exist.")
        assignments = state.effective(kind, full_name)
        if "principal" in query:
            assignments = [a for a in assignments if a["principal"] == query["principal"]]
        if "max_results" not in query:
            return {"privilege_assignments": assignments}
        # Paged like the service: a token is an offset; an empty page may still have a token.
        offset = int(query.get("page_token") or 0)
        page = assignments[offset:offset + PAGE_SIZE]
        body: dict[str, Any] = {"privilege_assignments": page}
        if offset + PAGE_SIZE <= len(assignments):
            body["next_page_token"] = str(offset + PAGE_SIZE)
        return body

    def _reply(self, method: str, status: int, body: Any, headers: dict[str, str]) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if method == "HEAD":
            # Metadata only; an error carries no body either.
            for name, value in headers.items():
                self.send_header(name, value)
            if "content-length" not in headers:
                self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def workspace_server(state: WorkspaceState | None = None) -> Iterator[WorkspaceServer]:
    """A running server on 127.0.0.1 (a free port), stopped on exit."""
    server = WorkspaceServer(state or WorkspaceState())
    # A short poll interval: shutdown() waits for one, and every test stops a server.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name="workspace-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
