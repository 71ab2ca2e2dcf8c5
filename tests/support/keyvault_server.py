"""A small local Azure Key Vault: HTTPS on 127.0.0.1, the Keys REST API the SDK uses.

No Key Vault emulator can be installed here, so the Azure tests run the real
``azure-keyvault-keys`` SDK against this server. It speaks the part of the Keys REST API
(api-version 7.4 and later, JSON, base64url without padding) that the SDK sends:

- ``POST /keys/{name}/create``, ``POST /keys/{name}/rotate``, ``GET /keys/{name}/`` (latest),
  ``GET /keys/{name}/{version}``, ``GET /keys/{name}/versions``, ``PATCH /keys/{name}/{version}``
  (enable/disable, key_ops, tags), ``DELETE /keys/{name}``, ``GET|DELETE /deletedkeys/{name}``,
  ``POST /deletedkeys/{name}/recover``;
- ``POST /keys/{name}/{version}/{wrapkey,unwrapkey,encrypt,decrypt,sign}`` with RSA-OAEP-256
  (SHA-256, MGF1-SHA-256) and RSA-OAEP for RSA keys, A256KW for ``oct-HSM`` keys (only when
  the server plays a Managed HSM); ``sign`` with RS256 for RSA keys;
- the bearer challenge: a request without a valid token gets **401** with
  ``WWW-Authenticate: Bearer authorization=..., resource="https://vault.azure.net"``;
- JSON errors ``{"error": {"code", "message"}}``: 404 unknown key or version, 403 disabled
  key (inner code ``KeyDisabled``) or operation not in the key's ``key_ops``, 400 bad
  parameter or undecryptable value, 409 name of a deleted key, and injected faults (429 with
  ``Retry-After``, 403, ...).

It is also a tiny Microsoft Entra authority for one tenant (OpenID configuration and the
client-credentials token endpoint), so production code can use a real
``ClientSecretCredential`` pointed at it; tokens it issues are the only ones the vault
accepts. The TLS certificate is self-signed, made at start-up with ``cryptography`` (SAN
``localhost`` and ``127.0.0.1``) into a temporary directory removed on stop.

Requests are counted per operation (``counts``) so tests can assert how often the key
service was called. Keep-alive HTTP/1.1, a thread per connection, Nagle disabled: a call
costs about a millisecond on loopback.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from cryptography.x509.oid import NameOID

VAULT_RESOURCE = "https://vault.azure.net"
VAULT_SCOPE = f"{VAULT_RESOURCE}/.default"
DEFAULT_TENANT = "72f988bf-0000-4000-8000-00000000cafe"
KEY_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)
OPERATIONS = ("wrapkey", "unwrapkey", "encrypt", "decrypt", "sign")
# REST operation -> the key_ops entry that permits it.
KEY_OP_NAMES = {"wrapkey": "wrapKey", "unwrapkey": "unwrapKey", "encrypt": "encrypt",
                "decrypt": "decrypt", "sign": "sign"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


class ServiceError(Exception):
    """An error answer: HTTP status, Key Vault error code and message."""

    def __init__(self, status: int, code: str, message: str, inner: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


class DropConnection(Exception):
    """Close the connection without an answer (an injected dropped connection)."""


@dataclass
class Fault:
    """An injected error for the next ``remaining`` matching requests."""

    status: int
    remaining: int
    operations: frozenset[str] | None
    code: str
    message: str
    retry_after: str | None
    skip: int = 0  # matching requests to let through before the fault starts

    def matches(self, operation: str) -> bool:
        return self.remaining > 0 and (self.operations is None or operation in self.operations)


@dataclass
class KeyVersion:
    name: str
    version: str
    kty: str
    key_size: int
    key_ops: list[str]
    material: Any  # RSAPrivateKey, or bytes for oct keys
    enabled: bool = True
    created: int = field(default_factory=lambda: int(time.time()))
    updated: int = field(default_factory=lambda: int(time.time()))
    not_before: int | None = None
    expires: int | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_rsa(self) -> bool:
        return self.kty in ("RSA", "RSA-HSM")


def _make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed CA certificate for localhost / 127.0.0.1 (it is its own trust anchor)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local key vault")])
    now = dt.datetime.now(dt.timezone.utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_path, key_path


class StaticTokenCredential:
    """The tiniest credential: ``get_token`` returns a token the server issued."""

    def __init__(self, token: str) -> None:
        self._token = token
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        self.calls += 1
        return AccessToken(self._token, int(time.time()) + 3600)


class KeyVaultServer:
    """The local Key Vault (and Entra authority). Use :func:`keyvault_server` to run one."""

    def __init__(self, *, managed_hsm: bool = False, tenant_id: str = DEFAULT_TENANT) -> None:
        self.managed_hsm = managed_hsm
        self.tenant_id = tenant_id
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._keys: dict[str, list[KeyVersion]] = {}
        self._deleted: dict[str, tuple[list[KeyVersion], int]] = {}
        self._faults: list[Fault] = []
        # A rate-based, seeded plan (tests/support/fault_proxy.FaultPlan) applied to every
        # authenticated vault request; None: no such faults. Its throttles carry this
        # Retry-After (seconds).
        self.fault_plan: Any = None
        self.fault_retry_after = "1"
        self._tokens: set[str] = set()
        self._clients: dict[str, str] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="keyvault-"))
        self.ca_file, self._key_file = _make_certificate(self._dir)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> KeyVaultServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.ca_file, self._key_file)
        httpd = _TlsServer(("127.0.0.1", 0), _Handler, context, self)
        self._httpd = httpd
        self.url = f"https://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(target=httpd.serve_forever, name="keyvault-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def vault_url(self) -> str:
        return self.url + "/"

    @property
    def authority(self) -> str:
        """The authority host (``ClientSecretCredential(authority=...)``)."""
        return self.url

    # -- test controls -------------------------------------------------------------------

    def reset(self) -> None:
        """Forget keys, faults and counts (issued tokens and clients stay valid)."""
        with self._lock:
            self._keys.clear()
            self._deleted.clear()
            self._faults.clear()
            self.counts.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        return token

    def credential(self) -> StaticTokenCredential:
        """A credential holding a token this server accepts."""
        return StaticTokenCredential(self.issue_token())

    def register_client(self, client_id: str, secret: str) -> None:
        """An app registration the token endpoint accepts (client credentials flow)."""
        with self._lock:
            self._clients[client_id] = secret

    def inject(self, status: int, *, count: int = 1, operations: Iterable[str] | None = None,
               code: str = "", message: str = "", retry_after: str | None = None,
               after: int = 0) -> None:
        """Answer ``count`` authenticated requests of ``operations`` with an error.

        The fault starts after ``after`` matching requests have been served normally, which
        lets a test break a multi-step job part-way.
        """
        default_codes = {429: "Throttled", 403: "Forbidden", 500: "InternalServerError",
                         503: "ServiceUnavailable"}
        fault = Fault(
            status=status, remaining=count,
            operations=frozenset(operations) if operations is not None else None,
            code=code or default_codes.get(status, "Error"),
            message=message or f"Injected fault {status}.",
            retry_after=retry_after, skip=after,
        )
        with self._lock:
            self._faults.append(fault)

    def key_versions(self, name: str) -> list[str]:
        with self._lock:
            return [k.version for k in self._keys.get(name, [])]

    def purge_version(self, name: str, version: str) -> None:
        """Remove one version outright (the effect of a key deleted and purged long ago)."""
        with self._lock:
            self._keys[name] = [k for k in self._keys.get(name, []) if k.version != version]

    # -- request handling (called from handler threads) ----------------------------------

    def _count(self, operation: str) -> None:
        with self._lock:
            self.counts[operation] += 1

    def _take_fault(self, operation: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(operation):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.remaining -= 1
                    return fault
        return None

    def _apply_plan(self, operation: str) -> None:
        """Apply :attr:`fault_plan` to one request: raise its error, sleep, or drop."""
        from tests.support.fault_proxy import DROP, ERROR, OUTAGE, SLOW, THROTTLE

        if self.fault_plan is None:
            return
        decision = self.fault_plan.decide(operation)
        if decision.kind == THROTTLE:
            raise ServiceError(429, "Throttled", "Injected throttling: too many requests.",
                               headers={"Retry-After": self.fault_retry_after})
        if decision.kind in (ERROR, OUTAGE):
            raise ServiceError(decision.status or 503, "ServiceUnavailable",
                               f"Injected fault {decision.kind}.")
        if decision.kind == SLOW:
            time.sleep(self.fault_plan.slow_seconds)
        if decision.kind == DROP:
            raise DropConnection()

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        with self._lock:
            return header[len("Bearer "):].strip() in self._tokens

    def challenge_header(self) -> str:
        return (f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
                f'resource="{VAULT_RESOURCE}"')

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = path.split("/")[1:]
        if parts and parts[0] == self.tenant_id:
            return self._authority(method, parts[1:], body)
        operation, handler, args = self._route(method, parts)
        if not self._authorized(headers.get("Authorization")):
            self._count("challenge")
            return _json(401, {"error": {"code": "Unauthorized",
                                         "message": "AKV10000: Request is missing a Bearer or "
                                                    "PoP token."}},
                         {"WWW-Authenticate": self.challenge_header()})
        self._count(operation)
        try:
            if not query.get("api-version"):
                raise ServiceError(400, "BadParameter", "The api-version parameter is missing.")
            self._apply_plan(operation)
            fault = self._take_fault(operation)
            if fault is not None:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                raise ServiceError(fault.status, fault.code, fault.message, headers=extra)
            if handler is None:
                raise ServiceError(404, "NotFound", f"No route for {method} {path}.")
            payload = json.loads(body) if body else {}
            if not isinstance(payload, dict):
                raise ServiceError(400, "BadParameter", "The request body must be a JSON object.")
            with self._lock:
                status, result = handler(payload, *args)
        except ServiceError as error:
            return _json(error.status, error.body(), error.headers)
        except (ValueError, KeyError, TypeError) as error:
            return _json(400, {"error": {"code": "BadParameter", "message": str(error)}})
        if status == 204:
            return 204, {}, b""
        return _json(status, result)

    def _route(self, method: str, parts: list[str]) -> tuple[str, Any, tuple]:
        n = len(parts)
        if n >= 2 and parts[0] == "keys":
            name = parts[1]
            if n == 3 and parts[2] == "create" and method == "POST":
                return "create", self._create, (name,)
            if n == 3 and parts[2] == "rotate" and method == "POST":
                return "rotate", self._rotate, (name,)
            if n == 3 and parts[2] == "versions" and method == "GET":
                return "versions", self._versions, (name,)
            if n == 2 and method == "DELETE":
                return "delete", self._delete, (name,)
            if n in (2, 3) and method == "GET":
                return "get", self._get, (name, parts[2] if n == 3 else "")
            if n in (2, 3) and method == "PATCH":
                return "update", self._update, (name, parts[2] if n == 3 else "")
            if n == 4 and method == "POST" and parts[3] in OPERATIONS:
                return parts[3], self._crypto, (name, parts[2], parts[3])
        if n >= 2 and parts[0] == "deletedkeys":
            if n == 2 and method == "GET":
                return "get_deleted", self._get_deleted, (parts[1],)
            if n == 2 and method == "DELETE":
                return "purge", self._purge, (parts[1],)
            if n == 3 and parts[2] == "recover" and method == "POST":
                return "recover", self._recover, (parts[1],)
        return "unknown", None, ()

    # -- the authority -------------------------------------------------------------------

    def _authority(self, method: str, parts: list[str], body: bytes):
        base = f"{self.url}/{self.tenant_id}"
        if method == "GET" and parts == ["v2.0", ".well-known", "openid-configuration"]:
            self._count("openid")
            return _json(200, {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "response_types_supported": ["code", "id_token", "token"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
            })
        if method == "POST" and parts == ["oauth2", "v2.0", "token"]:
            self._count("token")
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            with self._lock:
                known = self._clients.get(form.get("client_id", ""))
            if form.get("grant_type") != "client_credentials":
                return _json(400, {"error": "unsupported_grant_type",
                                   "error_description": "AADSTS70003: unsupported grant."})
            if known is None or not secrets.compare_digest(known, form.get("client_secret", "")):
                return _json(401, {"error": "invalid_client",
                                   "error_description": "AADSTS7000215: Invalid client secret "
                                                        "provided."})
            if VAULT_SCOPE not in form.get("scope", "").split():
                return _json(400, {"error": "invalid_scope",
                                   "error_description": "AADSTS70011: invalid scope."})
            return _json(200, {"token_type": "Bearer", "expires_in": 3599,
                               "ext_expires_in": 3599, "access_token": self.issue_token()})
        return _json(404, {"error": "not_found", "error_description": "unknown endpoint"})

    # -- keys (called with the lock held) ------------------------------------------------

    def _kid(self, key: KeyVersion) -> str:
        return f"{self.url}/keys/{key.name}/{key.version}"

    def _attributes(self, key: KeyVersion) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "enabled": key.enabled, "created": key.created, "updated": key.updated,
            "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90,
            "exportable": False,
        }
        if key.not_before is not None:
            attributes["nbf"] = key.not_before
        if key.expires is not None:
            attributes["exp"] = key.expires
        return attributes

    def _bundle(self, key: KeyVersion) -> dict[str, Any]:
        jwk: dict[str, Any] = {"kid": self._kid(key), "kty": key.kty, "key_ops": key.key_ops}
        if key.is_rsa:
            numbers = key.material.public_key().public_numbers()
            jwk["n"] = b64url(_int_bytes(numbers.n))
            jwk["e"] = b64url(_int_bytes(numbers.e))
        # Symmetric key material never leaves the HSM: oct keys come back without "k".
        return {"key": jwk, "attributes": self._attributes(key), "tags": dict(key.tags)}

    def _find(self, name: str, version: str) -> KeyVersion:
        versions = self._keys.get(name)
        if not versions:
            raise ServiceError(404, "KeyNotFound",
                               f"A key with (name/id) {name} was not found in this key vault.")
        if not version:
            return versions[-1]
        for key in versions:
            if key.version == version:
                return key
        raise ServiceError(404, "KeyNotFound",
                           f"A key with (name/id) {name}/{version} was not found in this key "
                           "vault.")

    @staticmethod
    def _usable(key: KeyVersion, operation: str) -> None:
        if not key.enabled:
            raise ServiceError(403, "Forbidden",
                               f"Operation {operation} is not allowed on a disabled key.",
                               inner="KeyDisabled")
        now = time.time()
        if (key.not_before and now < key.not_before) or (key.expires and now > key.expires):
            raise ServiceError(403, "Forbidden",
                               f"Operation {operation} is not allowed on an expired or "
                               "not-yet-valid key.", inner="KeyExpired")

    def _new_version(self, name: str, kty: str, size: int | None, key_ops: list[str],
                     tags: dict[str, str], attributes: dict[str, Any]) -> KeyVersion:
        if not KEY_NAME.match(name):
            raise ServiceError(400, "BadParameter",
                               "The key name must be 1-127 letters, digits or dashes.")
        if name in self._deleted:
            raise ServiceError(409, "Conflict",
                               f"Key {name} is currently in a deleted but recoverable state, "
                               "and its name cannot be reused; in this state, the key can be "
                               "recovered or purged.")
        if kty in ("RSA", "RSA-HSM"):
            size = size or 2048
            if size not in RSA_SIZES:
                raise ServiceError(400, "BadParameter", f"Unsupported RSA key size {size}.")
            material: Any = rsa.generate_private_key(public_exponent=65537, key_size=size)
        elif kty == "oct-HSM":
            if not self.managed_hsm:
                raise ServiceError(400, "BadParameter",
                                   "Key type oct-HSM is only supported by a Managed HSM.")
            size = size or 256
            if size not in OCT_SIZES:
                raise ServiceError(400, "BadParameter", f"Unsupported AES key size {size}.")
            material = os.urandom(size // 8)
        else:
            raise ServiceError(400, "BadParameter", f"Unsupported key type {kty!r}.")
        key = KeyVersion(
            name=name, version=uuid.uuid4().hex, kty=kty, key_size=size,
            key_ops=list(key_ops) or ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
            material=material, tags=dict(tags or {}),
            enabled=bool(attributes.get("enabled", True)),
            not_before=attributes.get("nbf"), expires=attributes.get("exp"),
        )
        self._keys.setdefault(name, []).append(key)
        return key

    def _create(self, body: dict[str, Any], name: str):
        key = self._new_version(name, body.get("kty", ""), body.get("key_size"),
                                body.get("key_ops") or [], body.get("tags") or {},
                                body.get("attributes") or {})
        return 200, self._bundle(key)

    def _rotate(self, body: dict[str, Any], name: str):
        current = self._find(name, "")
        key = self._new_version(name, current.kty, current.key_size, current.key_ops,
                                current.tags, {})
        return 200, self._bundle(key)

    def _get(self, body: dict[str, Any], name: str, version: str):
        key = self._find(name, version)
        self._usable(key, "get")
        return 200, self._bundle(key)

    def _versions(self, body: dict[str, Any], name: str):
        self._find(name, "")
        items = [{"kid": self._kid(k), "attributes": self._attributes(k), "tags": dict(k.tags)}
                 for k in self._keys[name]]
        return 200, {"value": items, "nextLink": None}

    def _update(self, body: dict[str, Any], name: str, version: str):
        key = self._find(name, version)
        attributes = body.get("attributes") or {}
        if "enabled" in attributes:
            key.enabled = bool(attributes["enabled"])
        if "nbf" in attributes:
            key.not_before = attributes["nbf"]
        if "exp" in attributes:
            key.expires = attributes["exp"]
        if body.get("key_ops") is not None:
            key.key_ops = list(body["key_ops"])
        if body.get("tags") is not None:
            key.tags = dict(body["tags"])
        key.updated = int(time.time())
        return 200, self._bundle(key)

    def _deleted_bundle(self, name: str) -> dict[str, Any]:
        versions, deleted_at = self._deleted[name]
        bundle = self._bundle(versions[-1])
        bundle.update({"recoveryId": f"{self.url}/deletedkeys/{name}",
                       "deletedDate": deleted_at, "scheduledPurgeDate": deleted_at + 90 * 86400})
        return bundle

    def _delete(self, body: dict[str, Any], name: str):
        self._find(name, "")
        self._deleted[name] = (self._keys.pop(name), int(time.time()))
        return 200, self._deleted_bundle(name)

    def _get_deleted(self, body: dict[str, Any], name: str):
        if name not in self._deleted:
            raise ServiceError(404, "KeyNotFound", f"Deleted Key not found: {name}")
        return 200, self._deleted_bundle(name)

    def _purge(self, body: dict[str, Any], name: str):
        if self._deleted.pop(name, None) is None:
            raise ServiceError(404, "KeyNotFound", f"Deleted Key not found: {name}")
        return 204, None

    def _recover(self, body: dict[str, Any], name: str):
        if name not in self._deleted:
            raise ServiceError(404, "KeyNotFound", f"Deleted Key not found: {name}")
        self._keys[name] = self._deleted.pop(name)[0]
        return 200, self._bundle(self._keys[name][-1])

    def _crypto(self, body: dict[str, Any], name: str, version: str, operation: str):
        key = self._find(name, version)
        self._usable(key, KEY_OP_NAMES[operation])
        if KEY_OP_NAMES[operation] not in key.key_ops:
            raise ServiceError(403, "Forbidden",
                               f"Operation {KEY_OP_NAMES[operation]} is not permitted on this "
                               "key.", inner="KeyOperationForbidden")
        alg = body.get("alg", "")
        value = b64url_decode(body.get("value", ""))
        return 200, {"kid": self._kid(key), "value": b64url(_apply(key, operation, alg, value))}


def _apply(key: KeyVersion, operation: str, alg: str, value: bytes) -> bytes:
    """The cryptography of one wrap/unwrap/encrypt/decrypt/sign."""
    if operation == "sign":
        if not (key.is_rsa and alg == "RS256" and len(value) == 32):
            raise ServiceError(400, "BadParameter",
                               f"Algorithm {alg!r} with a {len(value)}-byte digest is not "
                               f"supported for sign on a {key.kty} key.")
        # RS256 (PKCS#1 v1.5 over a SHA-256 digest), deterministic as on Key Vault.
        return key.material.sign(value, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    forward = operation in ("wrapkey", "encrypt")
    if key.is_rsa and alg in ("RSA-OAEP-256", "RSA-OAEP"):
        digest = hashes.SHA256() if alg == "RSA-OAEP-256" else hashes.SHA1()
        pad = padding.OAEP(mgf=padding.MGF1(algorithm=digest), algorithm=digest, label=None)
        if forward:
            try:
                return key.material.public_key().encrypt(value, pad)
            except ValueError:
                raise ServiceError(400, "BadParameter", "The value is too long for this key.") \
                    from None
        try:
            return key.material.decrypt(value, pad)
        except ValueError:
            raise ServiceError(400, "BadParameter", "Unable to decrypt specified value.") \
                from None
    if key.kty == "oct-HSM" and alg == f"A{key.key_size}KW" and operation in ("wrapkey",
                                                                               "unwrapkey"):
        if forward:
            if len(value) < 16 or len(value) % 8:
                raise ServiceError(400, "BadParameter",
                                   "AES key wrap needs a multiple of 8 bytes, at least 16.")
            return aes_key_wrap(key.material, value)
        try:
            return aes_key_unwrap(key.material, value)
        except (InvalidUnwrap, ValueError):
            raise ServiceError(400, "BadParameter", "Unable to unwrap specified value.") \
                from None
    raise ServiceError(400, "BadParameter",
                       f"Algorithm {alg!r} is not supported for {operation} on a {key.kty} key.")


def _json(status: int, body: Any, headers: dict[str, str] | None = None):
    payload = json.dumps(body).encode()
    out = {"Content-Type": "application/json; charset=utf-8"}
    out.update(headers or {})
    return status, out, payload


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, context: ssl.SSLContext,
                 vault: KeyVaultServer) -> None:
        self.context = context
        self.vault = vault
        super().__init__(address, handler)

    def get_request(self):
        sock, address = self.socket.accept()
        # The TLS handshake runs in the connection's own thread (see _Handler.setup), so a
        # slow client never blocks the accept loop.
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), address


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one TLS session serves many calls
    disable_nagle_algorithm = True  # else every response waits ~40 ms for a delayed ACK
    timeout = 60
    server: _TlsServer

    def setup(self) -> None:
        self.server.vault._count("connection")
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self.request.close()
            raise
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read counts, not logs

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parsed = urlsplit(self.path)
        try:
            status, headers, payload = self.server.vault.handle(
                self.command, parsed.path, parse_qs(parsed.query), self.headers, body)
        except DropConnection:
            self.close_connection = True  # no answer: the client sees the connection reset
            return
        self.send_response(status)
        headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        headers["x-ms-keyvault-service-version"] = "1.9.0.0"
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve


@contextmanager
def keyvault_server(*, managed_hsm: bool = False) -> Iterator[KeyVaultServer]:
    """Run a local Key Vault on 127.0.0.1 for the duration of the block."""
    server = KeyVaultServer(managed_hsm=managed_hsm).start()
    try:
        yield server
    finally:
        server.stop()

