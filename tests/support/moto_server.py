"""moto as a real HTTP server on 127.0.0.1, for the AWS back ends.

Clients reach it through ``endpoint_url`` exactly as production reaches AWS; only the
endpoint differs. ``reset()`` clears its state between tests.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager


class MotoEndpoint:
    def __init__(self, server) -> None:
        self._server = server
        host, port = server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


@contextmanager
def moto_endpoint() -> Iterator[MotoEndpoint]:
    from moto.server import ThreadedMotoServer

    # Fake credentials: boto3 must sign requests, and must never find real ones here.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.pop("AWS_PROFILE", None)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield MotoEndpoint(server)
    finally:
        server.stop()
