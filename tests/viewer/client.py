"""A minimal HTTP client for the viewer tests (standard library; proxies disabled: only 127.0.0.1 is contacted)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPConnection
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import ProxyHandler, Request, build_opener

import imageio.v3 as iio
import numpy as np

TIMEOUT_S = 30
_opener = build_opener(ProxyHandler({}))


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)

    def image(self) -> np.ndarray:
        """The body decoded as an image (H, W, C) uint8."""
        return iio.imread(self.body)


def fetch(url: str, data: bytes | None = None) -> Response:
    """GET ``url``, or POST ``data`` to it; HTTP errors come back as responses too."""
    request = Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with _opener.open(request, timeout=TIMEOUT_S) as response:
            return Response(response.status, response.read(), response.headers.get("Content-Type", ""))
    except HTTPError as error:
        return Response(error.code, error.read(), error.headers.get("Content-Type", ""))


def send(url: str, headers: Sequence[tuple[str, str]], body: bytes = b"", method: str = "POST") -> Response:
    """A request with exactly ``headers`` (none added, not even Host or Content-Length), then ``body``."""
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
    try:
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for key, value in headers:
            connection.putheader(key, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        return Response(response.status, response.read(), response.getheader("Content-Type", ""))
    finally:
        connection.close()
