"""Seeded fault injection on loopback: a plan of faults, and an HTTP proxy in front of moto.

:class:`FaultPlan` decides, request by request, whether a call passes or meets a fault:
throttling, a 5xx answer, a slow answer or a dropped connection, each at a set rate drawn
from a seeded ``random.Random`` (the same seed and the same order of requests give the same
faults). A plan is bounded: it injects at most ``max_faults`` faults and only for
``duration`` seconds, then lets everything through by itself. ``outage_after=N`` makes it
refuse every call after N calls have passed (a hard outage), until :meth:`FaultPlan.heal` or
the outage's own time limit.

:class:`FaultProxy` is a reverse proxy on 127.0.0.1 that forwards to moto and applies a plan.
The AWS clients are pointed at it through ``--aws-endpoint-url``; it answers a throttle the
way AWS JSON-protocol services do (status 400, ``{"__type": "ThrottlingException"}``). The
local Key Vault applies the same plan server-side (``KeyVaultServer.fault_plan``), answering
429 with ``Retry-After``.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

PASS = "pass"
THROTTLE = "throttle"
ERROR = "5xx"
SLOW = "slow"
DROP = "drop"
OUTAGE = "outage"
CATEGORIES = (THROTTLE, ERROR, SLOW, DROP)
SERVER_ERRORS = (500, 502, 503, 504)
# Hop-by-hop headers a proxy must not copy (RFC 9110 section 7.6.1), and the body length,
# which the proxy sets itself.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authenticate", "proxy-authorization", "content-length"}


@dataclass(frozen=True)
class Decision:
    """What to do with one request: ``kind`` is one of PASS, CATEGORIES or OUTAGE."""

    kind: str
    status: int = 0  # the 5xx status of an ERROR


@dataclass
class FaultPlan:
    """Rates of each fault (0..1, drawn in this order), bounded in count and in time."""

    seed: int = 0
    throttle: float = 0.0
    error: float = 0.0
    slow: float = 0.0
    drop: float = 0.0
    slow_seconds: float = 0.2
    error_statuses: tuple[int, ...] = SERVER_ERRORS  # the 5xx statuses an ERROR picks from
    max_faults: int = 1_000
    duration: float = 300.0  # seconds from the first request; then everything passes
    outage_after: int | None = None  # refuse every call once this many have passed
    outage_seconds: float = 120.0  # an outage ends by itself after this long
    outage_kind: str = OUTAGE  # OUTAGE: every call answered 503; DROP: every connection dropped
    injected: Counter[str] = field(default_factory=Counter)
    by_operation: Counter[tuple[str, str]] = field(default_factory=Counter)
    passed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._started: float | None = None
        self._outage_started: float | None = None
        self._healed = False

    @property
    def total_injected(self) -> int:
        return sum(count for kind, count in self.injected.items() if kind != OUTAGE)

    @property
    def in_outage(self) -> bool:
        with self._lock:
            return self._outage_started is not None and not self._healed

    def heal(self) -> None:
        """End the outage (the service is back) and stop injecting anything."""
        with self._lock:
            self._healed = True

    def start_outage_after(self, calls: int) -> None:
        """Let ``calls`` more calls pass, then refuse every call (a new outage)."""
        with self._lock:
            self.outage_after = self.passed + calls
            self._outage_started = None
            self._healed = False

    def decide(self, operation: str) -> Decision:
        with self._lock:
            now = time.monotonic()
            if self._started is None:
                self._started = now
            decision = self._outage(now) or self._draw(now)
            if decision.kind == PASS:
                self.passed += 1
            elif self._outage_started is not None and not self._healed:
                self.injected[OUTAGE] += 1
                self.by_operation[(operation, OUTAGE)] += 1
            else:
                self.injected[decision.kind] += 1
                self.by_operation[(operation, decision.kind)] += 1
            return decision

    def _outage(self, now: float) -> Decision | None:
        if self.outage_after is None or self._healed or self.passed < self.outage_after:
            return None
        if self._outage_started is None:
            self._outage_started = now
        if now - self._outage_started > self.outage_seconds:
            self._healed = True  # bounded: the outage ends by itself
            return None
        return Decision(self.outage_kind, 503)

    def _draw(self, now: float) -> Decision:
        # Always draw, so the sequence of decisions depends only on the seed and the order.
        roll = self._rng.random()
        status = self._rng.choice(self.error_statuses)
        if (self._healed or self.total_injected >= self.max_faults
                or now - (self._started or now) > self.duration):
            return Decision(PASS)
        edge = 0.0
        for kind, rate in ((THROTTLE, self.throttle), (ERROR, self.error), (SLOW, self.slow),
                           (DROP, self.drop)):
            edge += rate
            if roll < edge:
                return Decision(kind, status if kind == ERROR else 0)
        return Decision(PASS)


def aws_error_body(kind: str, status: int) -> tuple[int, bytes]:
    """The answer of an AWS JSON-protocol service (KMS, Secrets Manager) to a fault."""
    if kind == THROTTLE:
        return 400, json.dumps({"__type": "ThrottlingException",
                                "message": "Rate exceeded"}).encode()
    return status, json.dumps({"__type": "ServiceUnavailableException",
                               "message": f"Injected fault {status}."}).encode()


def aws_operation(headers: Any) -> str:
    """``Decrypt``, ``GetSecretValue``...: the operation named by ``X-Amz-Target``."""
    target = headers.get("X-Amz-Target") or ""
    return target.rsplit(".", 1)[-1] or "unknown"


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of ``upstream`` (moto), applying ``plan``."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.plan = plan or FaultPlan()
        self.forwarded: Counter[str] = Counter()
        self._httpd = _ProxyServer(("127.0.0.1", 0), _ProxyHandler, self)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="fault-proxy", daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def forward(self, method: str, path: str, headers: Any,
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port,
                                                timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            sent["Content-Length"] = str(len(body))
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, kept, payload
        finally:
            connection.close()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, handler)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # tests read counters, not logs

    def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _serve(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        operation = aws_operation(self.headers)
        if self.path.startswith("/moto-api/"):
            decision = Decision(PASS)  # the test's own controls are never faulted
        else:
            decision = proxy.plan.decide(operation)
        if decision.kind == DROP:
            self.close_connection = True  # no answer at all: the client sees a reset
            return
        if decision.kind in (THROTTLE, ERROR, OUTAGE):
            status, payload = aws_error_body(decision.kind, decision.status)
            self._reply(status, [("Content-Type", "application/x-amz-json-1.1")], payload)
            return
        if decision.kind == SLOW:
            time.sleep(proxy.plan.slow_seconds)
        status, headers, payload = proxy.forward(self.command, self.path, self.headers, body)
        proxy.forwarded[operation] += 1
        self._reply(status, headers, payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


@contextmanager
def fault_proxy(upstream: str, plan: FaultPlan | None = None) -> Iterator[FaultProxy]:
    """A running :class:`FaultProxy` in front of ``upstream`` for the block."""
    proxy = FaultProxy(upstream, plan).start()
    try:
        yield proxy
    finally:
        proxy.stop()
