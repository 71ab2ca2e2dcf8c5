"""Instrumentation of moto's KMS server, applied in-process to the ThreadedMotoServer.

moto runs its server in a thread of the test process, so patching the classes of its KMS
service changes what the server answers over HTTP; the client side (boto3, our provider) is
untouched and still talks HTTP to 127.0.0.1.

:func:`strict_kms` makes moto behave like AWS KMS where it does not (see
docs/aws-kms.md, "Testing against moto"):

- a **disabled** key refuses cryptographic operations with ``DisabledException``; a key
  **pending deletion** with ``KMSInvalidStateException`` ("... is pending deletion"). moto
  happily encrypts and decrypts with both.
- ``Decrypt`` / ``ReEncrypt`` with a ``KeyId`` / ``SourceKeyId`` that is not the key that
  made the ciphertext fail with ``IncorrectKeyException`` (moto: ``AccessDeniedException``;
  and moto's ReEncrypt ignores ``SourceKeyId`` altogether).
- ``deny={"kms:Decrypt", ...}`` simulates an IAM policy without those actions: the server
  answers ``AccessDeniedException`` with AWS's wording ("User: ... is not authorized to
  perform: kms:Decrypt on resource: ... because no identity-based policy allows the
  kms:Decrypt action").
- ``throttle={"kms:Decrypt", ...}`` answers ``ThrottlingException`` ("Rate exceeded") for
  those actions, as KMS does when the account's request quota is used up.

The key state is read from moto's own model (``DisableKey``, ``ScheduleKeyDeletion`` set
it), so tests change it through the ordinary KMS API.

:func:`count_kms_requests` counts the KMS requests the server handles, by action, which is
how the tests show that calls scale with DEK versions, not rows.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from moto.core.exceptions import JsonRESTError
from moto.kms import utils as kms_utils
from moto.kms.responses import KmsResponse

_TEST_PRINCIPAL = "arn:aws:iam::123456789012:user/envelope-encryption-tests"


class DisabledException(JsonRESTError):
    code = 400

    def __init__(self, arn: str) -> None:
        super().__init__("DisabledException", f"{arn} is disabled.")


class KMSInvalidStateException(JsonRESTError):
    code = 400

    def __init__(self, arn: str, state: str) -> None:
        message = (f"{arn} is pending deletion." if state == "PendingDeletion"
                   else f"{arn} is in state {state}.")
        super().__init__("KMSInvalidStateException", message)


class IncorrectKeyException(JsonRESTError):
    code = 400

    def __init__(self) -> None:
        super().__init__(
            "IncorrectKeyException",
            "The key ID in the request does not identify a CMK that can perform this "
            "operation.",
        )


class AccessDeniedException(JsonRESTError):
    code = 400

    def __init__(self, action: str, resource: str) -> None:
        super().__init__(
            "AccessDeniedException",
            f"User: {_TEST_PRINCIPAL} is not authorized to perform: {action} on resource: "
            f"{resource} because no identity-based policy allows the {action} action",
        )


class ThrottlingException(JsonRESTError):
    code = 400

    def __init__(self) -> None:
        super().__init__("ThrottlingException", "Rate exceeded")


# Operations that use a key's material, and where the key's id is found in the request.
_REQUEST_KEY = {
    "encrypt": "KeyId",
    "generate_data_key": "KeyId",
    "generate_data_key_without_plaintext": "KeyId",
    "rotate_key_on_demand": "KeyId",
    "decrypt": None,  # the key is the one named inside the ciphertext
    "re_encrypt": None,
}
_IAM_ACTION = {
    "encrypt": "kms:Encrypt",
    "decrypt": "kms:Decrypt",
    "generate_data_key": "kms:GenerateDataKey",
    "generate_data_key_without_plaintext": "kms:GenerateDataKeyWithoutPlaintext",
    "re_encrypt": "kms:ReEncryptFrom",
    "rotate_key_on_demand": "kms:RotateKeyOnDemand",
    "describe_key": "kms:DescribeKey",
    "create_key": "kms:CreateKey",
    "create_alias": "kms:CreateAlias",
    "update_alias": "kms:UpdateAlias",
    "enable_key_rotation": "kms:EnableKeyRotation",
    "get_key_rotation_status": "kms:GetKeyRotationStatus",
}


def _key(response: KmsResponse, key_ref: str):
    backend = response.kms_backend
    try:
        return backend.keys.get(backend.any_id_to_key_id(key_ref))
    except Exception:
        return None  # unknown: moto's own validation answers NotFoundException


def _ciphertext_key(response: KmsResponse):
    try:
        blob = response._get_param("CiphertextBlob")
        key_id = kms_utils._deserialize_ciphertext_blob(blob).key_id
    except Exception:
        return None  # malformed: moto's own code answers InvalidCiphertextException
    return response.kms_backend.keys.get(key_id)


def _check_state(key) -> None:
    if key is None or key.key_state == "Enabled":
        return
    if key.key_state == "Disabled":
        raise DisabledException(key.arn)
    raise KMSInvalidStateException(key.arn, key.key_state)


class _Rules:
    def __init__(self) -> None:
        self.deny: set[str] = set()
        self.throttle: set[str] = set()


def _strict(name: str, original, rules: _Rules):
    @functools.wraps(original)
    def handler(self: KmsResponse):
        action = _IAM_ACTION.get(name, f"kms:{name}")
        if action in rules.throttle:
            raise ThrottlingException()
        if action in rules.deny:
            ref = self._get_param("KeyId") or self._get_param("SourceKeyId") or "*"
            key = _key(self, ref) if ref != "*" else _ciphertext_key(self)
            raise AccessDeniedException(action, key.arn if key is not None else ref)
        if name in ("decrypt", "re_encrypt"):
            actual = _ciphertext_key(self)
            pinned = self._get_param("KeyId" if name == "decrypt" else "SourceKeyId")
            if actual is not None and pinned:
                requested = _key(self, pinned)
                if requested is not None and requested.id != actual.id:
                    raise IncorrectKeyException()
            _check_state(actual)
            if name == "re_encrypt":
                _check_state(_key(self, self._get_param("DestinationKeyId") or ""))
        elif name in _REQUEST_KEY:
            _check_state(_key(self, self._get_param("KeyId") or ""))
        return original(self)

    return handler


_patch_lock = threading.Lock()


@contextmanager
def strict_kms(
    *, deny: set[str] | frozenset[str] = frozenset(),
    throttle: set[str] | frozenset[str] = frozenset(),
) -> Iterator[_Rules]:
    """Make the in-process moto KMS server enforce key states, key pinning and the given rules.

    Yields the rules object; tests may change ``rules.deny`` / ``rules.throttle`` inside.
    """
    rules = _Rules()
    rules.deny = set(deny)
    rules.throttle = set(throttle)
    names = sorted(set(_REQUEST_KEY) | set(_IAM_ACTION))
    with _patch_lock:
        originals = {name: KmsResponse.__dict__[name] for name in names}
        for name, original in originals.items():
            setattr(KmsResponse, name, _strict(name, original, rules))
    try:
        yield rules
    finally:
        with _patch_lock:
            for name, original in originals.items():
                setattr(KmsResponse, name, original)


@contextmanager
def count_kms_requests() -> Iterator[Counter]:
    """Count the KMS requests the moto server handles, by action (``Decrypt``, ...)."""
    counts: Counter = Counter()
    lock = threading.Lock()
    # call_action is inherited from moto's BaseResponse: shadow it on KmsResponse only, so
    # only KMS requests are counted, and remove the shadow afterwards.
    original = KmsResponse.call_action

    @functools.wraps(original)
    def counting(self: KmsResponse):
        with lock:
            counts[self._get_action()] += 1
        return original(self)

    KmsResponse.call_action = counting
    try:
        yield counts
    finally:
        del KmsResponse.call_action
