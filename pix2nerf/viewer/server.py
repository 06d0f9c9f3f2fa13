"""The viewer's HTTP side: a standard-library threaded server for the page and a small API.

Routes (``VIEW`` is the query of :meth:`pix2nerf.viewer.session.View.from_query`: yaw, pitch, zoom, mode,
quality, truncation, appearance):

* ``GET /``: the page. ``GET /api/info``: the model's capabilities and the current face (JSON).
* ``GET /api/render?VIEW&seq=N&client=ID``: the view as a PNG; ``204 No Content`` when a newer request of the
  same client arrived while this one waited for the model (stale requests are dropped, not rendered).
* ``GET /api/export/view.png|orbit.mp4|mesh.ply?VIEW``: downloads (full resolution).
* ``POST /api/face?name=FILE`` and ``POST /api/appearance?name=FILE``: the body is an image or a ``latent.pt``;
  they set the face being explored and the appearance source (JSON info back).

Errors come back as JSON ``{"error": message}``: 400 for bad input (the page shows the message), 404, 413, 500.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pix2nerf.inference import InputError
from pix2nerf.viewer.session import View, ViewerSession

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 32 * 2**20
"""Largest accepted upload (an image or a latent)."""

Export = Callable[[ViewerSession, View], bytes]
EXPORTS: dict[str, tuple[str, Export]] = {
    "/api/export/view.png": ("image/png", lambda session, view: session.render(replace(view, quality="full"))),
    "/api/export/orbit.mp4": ("video/mp4", ViewerSession.export_video),
    "/api/export/mesh.ply": ("application/octet-stream", ViewerSession.export_mesh),
}
UPLOADS: dict[str, Callable[[ViewerSession, bytes, str], dict[str, Any]]] = {
    "/api/face": ViewerSession.set_face,
    "/api/appearance": ViewerSession.set_appearance_source,
}


def page() -> bytes:
    """The viewer's single HTML page (HTML, CSS and JS in one file)."""
    return resources.files("pix2nerf.viewer").joinpath("static/index.html").read_bytes()


class LatestRequests:
    """The newest render sequence number seen from each client, so superseded requests can be dropped."""

    def __init__(self) -> None:
        self._latest: dict[str, int] = {}
        self._lock = threading.Lock()

    def note(self, client: str, seq: int) -> None:
        with self._lock:
            self._latest[client] = max(seq, self._latest.get(client, seq))

    def is_latest(self, client: str, seq: int) -> bool:
        with self._lock:
            return seq >= self._latest.get(client, seq)


class ViewerServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the session (renders are serialised by the session's lock)."""

    daemon_threads = True

    def __init__(self, session: ViewerSession, address: tuple[str, int]) -> None:
        super().__init__(address, ViewerHandler)
        self.session = session
        self.requests = LatestRequests()
        self.page = page()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class ViewerHandler(BaseHTTPRequestHandler):
    """One request: routes to the session and turns :class:`InputError` into ``400`` with its message."""

    server: ViewerServer
    protocol_version = "HTTP/1.1"  # keep-alive: successive renders reuse the connection

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._handle(self._post)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug(format, *args)

    def _handle(self, route: Callable[[str, dict[str, list[str]]], None]) -> None:
        url = urlsplit(self.path)
        try:
            route(url.path, parse_qs(url.query))
        except InputError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        except Exception:
            log.exception("viewer request %s failed", self.path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; see the server's log"})

    def _get(self, path: str, query: dict[str, list[str]]) -> None:
        session = self.server.session
        if path == "/":
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif path == "/api/info":
            self._json(HTTPStatus.OK, session.info())
        elif path == "/api/render":
            self._render(query)
        elif path in EXPORTS:
            content_type, export = EXPORTS[path]
            name = "pix2nerf_" + path.rsplit("/", 1)[-1]
            headers = {"Content-Disposition": f'attachment; filename="{name}"'}
            self._send(HTTPStatus.OK, export(session, View.from_query(query)), content_type, headers)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

    def _render(self, query: dict[str, list[str]]) -> None:
        text = query.get("seq", ["0"])[0]
        try:
            seq = int(text)
        except ValueError:
            raise InputError(f"seq must be an integer; got {text!r}") from None
        client = query.get("client", [""])[0]
        view = View.from_query(query)
        requests = self.server.requests
        requests.note(client, seq)
        image = self.server.session.render(view, lambda: requests.is_latest(client, seq))
        if image is None:
            self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")
        else:
            self._send(HTTPStatus.OK, image, "image/png", {"X-Seq": str(seq)})

    def _post(self, path: str, query: dict[str, list[str]]) -> None:
        if path not in UPLOADS:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such upload: {path}"})
            return
        size = int(self.headers.get("Content-Length") or 0)
        if size > MAX_UPLOAD_BYTES:
            self.close_connection = True  # the body is not read
            limit = MAX_UPLOAD_BYTES // 2**20
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"upload is over the {limit} MiB limit"})
            return
        data = self.rfile.read(size)
        if not data:
            raise InputError("the upload is empty; choose an image or a latent.pt")
        name = query.get("name", ["upload"])[0]
        self._json(HTTPStatus.OK, UPLOADS[path](self.server.session, data, name))

    def _json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(body)


def make_server(session: ViewerSession, host: str = "127.0.0.1", port: int = 8765) -> ViewerServer:
    """A bound (not yet serving) viewer server; port 0 picks a free one (see ``server.url``)."""
    return ViewerServer(session, (host, port))
