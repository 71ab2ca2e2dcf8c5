"""Helpers of the aws-sm tests: a call-counting client and a pausing client (real moto calls)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any


class CountingClient:
    """Passes every call to the real client and counts them by operation name."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return target(*args, **kwargs)

        return call


class PausingClient(CountingClient):
    """Runs ``before_put`` once, just before the first PutSecretValue reaches the service.

    That is the window between a writer's read and its write: whatever ``before_put`` does
    (another writer's whole append) happens exactly there, deterministically.
    """

    def __init__(self, client: Any, before_put: Callable[[], None]) -> None:
        super().__init__(client)
        self._before_put: Callable[[], None] | None = before_put

    def put_secret_value(self, **kwargs: Any) -> Any:
        if self._before_put is not None:
            hook, self._before_put = self._before_put, None
            hook()
        self.calls["put_secret_value"] += 1
        return self._client.put_secret_value(**kwargs)
