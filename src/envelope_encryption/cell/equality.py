"""Equality on encrypted values: deterministic cells and blind indexes (``docs/equality.md``).

Both are computed under the key of an *equality domain*: a named, versioned key shared by
every column whose values must compare equal (``ssn`` of ``hr.employees`` and of
``finance.payroll``). From one domain key version three sub-keys are derived with
HKDF-SHA256, each with its own label, so no key is used for two purposes:

- ``K_enc``: the AES-256-GCM key of deterministic cells (the key a native ``aes_decrypt``
  is given);
- ``K_iv``: the HMAC-SHA256 key that derives a deterministic cell's IV from its associated
  data and plaintext (a synthetic IV, as in AES-GCM-SIV and RFC 5297's S2V);
- ``K_idx``: the HMAC-SHA256 key of blind indexes.

A deterministic cell is::

    ed1:<version>:<type>:<payload>

``ed1`` marks it deterministic (a reader of ``ee1`` cells refuses it as not a cell), the
version is the domain key's, and ``payload`` is standard base64 of ``IV(12) || ciphertext ||
tag(16)`` with ``IV = HMAC-SHA256(K_iv, len(AAD) || AAD || plaintext)[:12]`` (``len`` as 8
bytes big-endian) and ``AAD = UTF-8(header || "domain=" || domain)``: Spark's
``aes_decrypt(payload, K_enc, 'GCM', 'DEFAULT', AAD)`` opens it. The same plaintext of the
same type in the same domain and version gives the same cell; a cell moved to another
domain, or read with another version's key, does not authenticate.

A blind index is ``bi1:<version>:<hex>``: ``HMAC-SHA256(K_idx, UTF-8(domain) || 0x00 ||
UTF-8(normalised plaintext))`` truncated to the configured number of bits. The version makes
a comparison across versions fail visibly instead of silently matching nothing.

Nothing here logs, and no error message contains a value, a plaintext or a key.
"""

from __future__ import annotations

import base64
import hmac
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, DecryptionError, FormatError, UnknownKeyVersion
from ..identifiers import validate_identifier
from ..secret import SecretKey
from .format import IV_BYTES, _strict_b64decode, decode_plaintext
from .types import TAG_PATTERN

DETERMINISTIC_MARKER = "ed1"
BLIND_INDEX_MARKER = "bi1"
_DETERMINISTIC = re.compile(
    rf"{DETERMINISTIC_MARKER}:([1-9][0-9]{{0,9}}):({TAG_PATTERN}):([A-Za-z0-9+/]+={{0,2}})")
# The deterministic cell grammar for whole-column engines (Arrow's RE2), anchored.
DETERMINISTIC_CELL_REGEX = rf"\A{_DETERMINISTIC.pattern}\z"
_BLIND_INDEX = re.compile(rf"{BLIND_INDEX_MARKER}:([1-9][0-9]{{0,9}}):([0-9a-f]{{2,64}})")

# HKDF labels of the three sub-keys of a domain key version.
_LABEL_ENC = b"ee equality v1: deterministic cell encryption"
_LABEL_IV = b"ee equality v1: deterministic cell synthetic IV"
_LABEL_IDX = b"ee equality v1: blind index"

MIN_INDEX_BITS = 8
MAX_INDEX_BITS = 256
DEFAULT_INDEX_BITS = 32


def _derive(domain_key: SecretKey, label: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if len(domain_key) != 32:
        raise ConfigError("an equality domain key must be 32 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(
        domain_key.reveal())


@dataclass(frozen=True)
class DomainKeys:
    """The sub-keys of one version of one equality domain (never shown: see SecretKey)."""

    domain: str
    version: int
    enc: SecretKey
    iv: SecretKey
    index: SecretKey

    @classmethod
    def derive(cls, domain: str, version: int, domain_key: SecretKey) -> DomainKeys:
        validate_identifier(domain, "equality domain")
        if version < 1:
            raise ConfigError("an equality domain key version is a positive integer")
        return cls(domain, version,
                   SecretKey(_derive(domain_key, _LABEL_ENC), f"{domain} v{version} enc"),
                   SecretKey(_derive(domain_key, _LABEL_IV), f"{domain} v{version} iv"),
                   SecretKey(_derive(domain_key, _LABEL_IDX), f"{domain} v{version} index"))


def deterministic_header(version: int, type_tag: str) -> str:
    return f"{DETERMINISTIC_MARKER}:{version}:{type_tag}:"


def deterministic_aad(header: str, domain: str) -> bytes:
    """The associated data of a deterministic cell: its header and its domain."""
    return (header + "domain=" + domain).encode("utf-8")


def is_deterministic_cell(value: object) -> bool:
    return isinstance(value, str) and bool(_DETERMINISTIC.fullmatch(value))


class DeterministicSealer:
    """Seals canonical strings of one domain version into deterministic cells.

    One AES-GCM object and one HMAC key for a whole batch; the header and AAD are made once
    per type tag.
    """

    def __init__(self, keys: DomainKeys) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.keys = keys
        self._cipher = AESGCM(keys.enc.reveal())
        self._iv_key = keys.iv.reveal()
        self._prefixes: dict[str, tuple[str, bytes, bytes]] = {}

    def _prefix(self, type_tag: str) -> tuple[str, bytes, bytes]:
        found = self._prefixes.get(type_tag)
        if found is None:
            header = deterministic_header(self.keys.version, type_tag)
            aad = deterministic_aad(header, self.keys.domain)
            found = self._prefixes[type_tag] = (header, aad, len(aad).to_bytes(8, "big") + aad)
        return found

    def seal(self, plaintext: str, type_tag: str) -> str:
        header, aad, iv_prefix = self._prefix(type_tag)
        data = plaintext.encode("utf-8")
        iv = hmac.digest(self._iv_key, iv_prefix + data, "sha256")[:IV_BYTES]
        payload = iv + self._cipher.encrypt(iv, data, aad)
        return header + base64.b64encode(payload).decode("ascii")


def parse_deterministic_cell(cell: str) -> tuple[int, str, bytes]:
    """(version, type tag, payload) of a deterministic cell, or :class:`FormatError`."""
    match = _DETERMINISTIC.fullmatch(cell) if isinstance(cell, str) else None
    if match is None:
        raise FormatError(
            "not a deterministic cell (expected 'ed1:<version>:<type>:<base64>')")
    return int(match.group(1)), match.group(2), _strict_b64decode(match.group(3))


class DeterministicOpener:
    """Opens deterministic cells of one domain with the versions it is given."""

    def __init__(self, domain: str, keys: Sequence[DomainKeys]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        validate_identifier(domain, "equality domain")
        if any(k.domain != domain for k in keys):
            raise ConfigError(f"keys of another domain given to open cells of {domain}")
        self.domain = domain
        self._ciphers = {k.version: AESGCM(k.enc.reveal()) for k in keys}

    def open(self, cell: str) -> tuple[str, int, str]:
        """(plaintext, version, type tag) of an authentic cell of this domain, else an error."""
        from cryptography.exceptions import InvalidTag

        version, type_tag, payload = parse_deterministic_cell(cell)
        cipher = self._ciphers.get(version)
        if cipher is None:
            raise UnknownKeyVersion(
                f"deterministic cell names key version {version} of domain {self.domain}, "
                "which is not available")
        aad = deterministic_aad(deterministic_header(version, type_tag), self.domain)
        try:
            plain = cipher.decrypt(payload[:IV_BYTES], payload[IV_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError(
                f"deterministic cell (key version {version}) does not authenticate in domain "
                f"{self.domain}: wrong key, another domain, or tampered") from None
        return decode_plaintext(plain), version, type_tag


# -- blind indexes ---------------------------------------------------------------------------

def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _casefolded(value: str) -> str:
    return unicodedata.normalize("NFC", value.strip()).casefold()


# Named normal forms: what counts as "the same value" for an index. Each is documented in
# docs/equality.md; "exact" indexes the canonical plaintext as it is.
NORMALISERS: dict[str, Callable[[str], str]] = {
    "exact": lambda value: value,
    "trim": str.strip,
    "casefold": _casefolded,  # e-mail addresses, names: trimmed, NFC, case-folded
    "digits": _digits,  # SSNs, phone numbers: digits only
}


def normaliser(name: str) -> Callable[[str], str]:
    try:
        return NORMALISERS[name]
    except KeyError:
        raise ConfigError(f"unknown blind index normal form {name!r}: one of "
                          f"{', '.join(sorted(NORMALISERS))}") from None


def check_index_bits(bits: int) -> int:
    if not MIN_INDEX_BITS <= bits <= MAX_INDEX_BITS or bits % 8:
        raise ConfigError(f"blind index bits must be a multiple of 8 from {MIN_INDEX_BITS} to "
                          f"{MAX_INDEX_BITS} (got {bits})")
    return bits


class BlindIndexer:
    """Blind indexes of one domain version, truncated to ``bits``, on one normal form."""

    def __init__(self, keys: DomainKeys, bits: int = DEFAULT_INDEX_BITS,
                 normal_form: str = "exact") -> None:
        self.keys = keys
        self._bytes = check_index_bits(bits) // 8
        self._normalise = normaliser(normal_form)
        self._key = keys.index.reveal()
        self._prefix = f"{BLIND_INDEX_MARKER}:{keys.version}:"
        self._domain = keys.domain.encode("utf-8") + b"\x00"

    def index(self, plaintext: str) -> str:
        digest = hmac.digest(self._key, self._domain + self._normalise(plaintext).encode(
            "utf-8"), "sha256")
        return self._prefix + digest[:self._bytes].hex()

    def index_many(self, values: Sequence[str | None]) -> list[str | None]:
        """Each value's index (NULL stays NULL)."""
        return [None if value is None else self.index(value) for value in values]


def parse_blind_index(value: str) -> tuple[int, str]:
    """(version, hex digest) of a blind index, or :class:`FormatError`."""
    match = _BLIND_INDEX.fullmatch(value) if isinstance(value, str) else None
    if match is None or len(match.group(2)) % 2:
        raise FormatError("not a blind index (expected 'bi1:<version>:<hex>')")
    return int(match.group(1)), match.group(2)


# -- configuration of domains and columns -----------------------------------------------------

@dataclass(frozen=True)
class DomainSpec:
    """How one equality domain indexes its values: the normal form and the index length.

    Every column of a domain, and the SQL lookup function of the domain, must use the same
    spec, or equal values get different indexes and joins silently match nothing: so the
    spec belongs to the domain (``--equality-domains``), not to each column.
    """

    name: str
    normal_form: str = "exact"
    bits: int = DEFAULT_INDEX_BITS

    def __post_init__(self) -> None:
        validate_identifier(self.name, "equality domain")
        normaliser(self.normal_form)
        check_index_bits(self.bits)


def parse_domain_specs(text: str) -> dict[str, DomainSpec]:
    """``--equality-domains``: ``name[:normal_form[:bits]]``, comma-separated, e.g.
    ``ssn:digits:64,email:casefold``. Defaults: ``exact``, 32 bits. A domain named twice is
    refused."""
    specs: dict[str, DomainSpec] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) > 3:
            raise ConfigError(f"equality domain {item!r}: expected name[:normal_form[:bits]]")
        name = parts[0]
        normal_form = parts[1] if len(parts) > 1 and parts[1] else "exact"
        try:
            bits = int(parts[2]) if len(parts) > 2 and parts[2] else DEFAULT_INDEX_BITS
        except ValueError:
            raise ConfigError(f"equality domain {name!r}: bits must be a number") from None
        if name in specs:
            raise ConfigError(f"equality domain {name!r} is named twice")
        specs[name] = DomainSpec(name, normal_form, bits)
    return specs


def parse_column_domains(text: str, domains: dict[str, DomainSpec],
                         what: str) -> dict[str, DomainSpec]:
    """``--deterministic-columns`` / ``--blind-index-columns``: ``column=domain``,
    comma-separated. Every domain must be declared in ``domains``: a misspelt domain would
    otherwise create a new key, and joins across the two spellings would match nothing."""
    columns: dict[str, DomainSpec] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        column, sep, domain = (piece.strip() for piece in item.partition("="))
        if not sep or not column or not domain:
            raise ConfigError(f"{what}: expected column=domain, got {item!r}")
        validate_identifier(column, "column")
        if column in columns:
            raise ConfigError(f"{what}: column {column!r} is named twice")
        if domain not in domains:
            declared = ", ".join(sorted(domains)) or "none"
            raise ConfigError(f"{what}: domain {domain!r} of column {column!r} is not declared "
                              f"in --equality-domains (declared: {declared})")
        columns[column] = domains[domain]
    return columns
