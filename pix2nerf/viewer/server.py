"""The viewer's HTTP side: a standard-library threaded server for the page and a small API.

Routes (``VIEW`` is the query of :meth:`pix2nerf.viewer.session.View.from_query`: yaw, pitch, zoom, mode,
quality, truncation, appearance):

* ``GET /``: the page. ``GET /api/info``: the model's capabilities and the current face (JSON).
* ``GET /api/render?VIEW&seq=N&client=ID``: the view as a PNG; ``204 No Content`` when a newer request of the
  same client arrived while this one waited for the model (stale requests are dropped, not rendered).
* ``GET /api/export/view.png|orbit.mp4|mesh.ply?VIEW``: downloads (full resolution).
* ``POST /api/face?name=FILE`` and ``POST /api/appearance?name=FILE``: the body is an image or a ``latent.pt``;
  they set the face being explored and the appearance source (JSON info back).

Limits: a request's Host header must name this machine as the viewer knows it (the bound host, ``LOCAL_HOSTS`` or
an allowed host; against DNS rebinding), and a POST's Origin header, when sent, must be the page's own (against
cross-site uploads). Uploads need a ``Content-Length`` of at most ``MAX_UPLOAD_BYTES``, and images at most
``MAX_UPLOAD_PIXELS`` (read from the header, before decoding).

Errors come back as JSON ``{"error": message}``: 400 for bad input (the page shows the message), 403 (a foreign
host or origin), 404, 411 (no length), 413 (too large), 500.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from pix2nerf.inference import InputError
from pix2nerf.viewer.session import LATENT_SUFFIXES, View, ViewerSession

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 32 * 2**20
"""Largest accepted upload (an image or a latent)."""
MAX_UPLOAD_PIXELS = 4096 * 4096
"""Largest accepted image upload, width x height (a 12-megapixel photo fits). Checked from the image's header
before the session decodes it (holding the model's lock, so renders wait): ``pix2nerf.data.images`` accepts far
larger images (``MAX_INPUT_PIXELS``) for offline use."""
CLOSE_TIMEOUT_S = 10.0
"""Longest :meth:`ViewerServer.server_close` waits for request threads (a render in progress finishes)."""
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Host names always served, besides the bound host and the server's ``allowed_hosts``."""
HOST_HEADER = re.compile(r"(?P<name>[a-z0-9._-]+|\[(?P<ipv6>[0-9a-f:.]+)\])(:[0-9]{1,5})?", re.IGNORECASE)
"""A Host header: a name, an IPv4 address or a bracketed IPv6 address, then an optional port."""

Export = Callable[[ViewerSession, View], bytes]


def _export_view(session: ViewerSession, view: View) -> bytes:
    png = session.render(replace(view, quality="full"))
    assert png is not None  # render returns None only when its still_wanted says so; by default it is always wanted
    return png


EXPORTS: dict[str, tuple[str, Export]] = {
    "/api/export/view.png": ("image/png", _export_view),
    "/api/export/orbit.mp4": ("video/mp4", ViewerSession.export_video),
    "/api/export/mesh.ply": ("application/octet-stream", ViewerSession.export_mesh),
}
UPLOADS: dict[str, Callable[[ViewerSession, bytes, str], dict[str, Any]]] = {
    "/api/face": ViewerSession.set_face,
    "/api/appearance": ViewerSession.set_appearance_source,
}


class RequestError(Exception):
    """A request refused before it reaches the session: answered with ``status`` and the message, after which the
    connection is closed (the request's body may be unread)."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def host_name(host: str) -> str | None:
    """The lower-case name in a Host header (an IPv6 address without brackets); None when it is malformed."""
    match = HOST_HEADER.fullmatch(host)
    return (match["ipv6"] or match["name"]).lower() if match else None


def check_image_size(data: bytes, name: str) -> None:
    """Refuse an image upload of more than ``MAX_UPLOAD_PIXELS``; only its header is read (Pillow, like the
    decoder). Data Pillow cannot open is left to the decoder, which refuses it with its own message."""
    too_large = f"the viewer accepts at most {MAX_UPLOAD_PIXELS / 1e6:.1f} megapixels; downscale or crop it"
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # over Pillow's own limit, so over ours
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"image {name} is far too large; {too_large}") from None
    except Exception:  # not an image Pillow reads: decoding fails too, with the decoder's message
        return
    if width * height > MAX_UPLOAD_PIXELS:
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"image {name} is {width}x{height} pixels; {too_large}")


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
    """A threaded HTTP server holding the session (renders are serialised by the session's lock).

    :meth:`server_close` shuts the open keep-alive connections down (so their threads end at once instead of
    waiting for the browser's next request) and waits up to ``CLOSE_TIMEOUT_S`` for the request threads: a
    thread still freeing tensors while the interpreter exits aborts the process (``terminate called without an
    active exception``). The threads are daemons, so one that does not end in time cannot hold the exit up.

    Args:
        session: the model and face being explored.
        address: (host, port) to bind.
        allowed_hosts: Host header names served besides ``address``'s host and ``LOCAL_HOSTS``.
    """

    daemon_threads = True

    def __init__(self, session: ViewerSession, address: tuple[str, int], allowed_hosts: Iterable[str] = ()) -> None:
        super().__init__(address, ViewerHandler)
        self.session = session
        extra = [allowed_hosts] if isinstance(allowed_hosts, str) else list(allowed_hosts)  # one name, not letters
        self.allowed_hosts = frozenset(name.lower() for name in (address[0], *LOCAL_HOSTS, *extra))
        self.requests = LatestRequests()
        self.page = page()
        self._connections: set[socket.socket] = set()
        self._request_threads: set[threading.Thread] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        if isinstance(request, socket.socket):  # always, for a TCP server (datagram servers get tuples)
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        thread = threading.current_thread()
        with self._connections_lock:
            self._request_threads.add(thread)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._request_threads.discard(thread)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening, end the open connections and wait (at most ``CLOSE_TIMEOUT_S``) for their threads."""
        super().server_close()
        with self._connections_lock:
            connections, threads = list(self._connections), list(self._request_threads)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client already closed it
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes | bytearray) else host
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
            self._check_host_and_origin()
            route(url.path, parse_qs(url.query))
        except RequestError as error:
            self.close_connection = True
            self._json(error.status, {"error": str(error)})
        except InputError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        except Exception:
            log.exception("viewer request %s failed", self.path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; see the server's log"})

    def _check_host_and_origin(self) -> None:
        """Refuse other host names (DNS rebinding) and POSTs from other sites' pages (their Origin is not ours)."""
        host = self.headers.get("Host")
        if host is None:
            raise RequestError(HTTPStatus.BAD_REQUEST, "the request has no Host header")
        if host_name(host) not in self.server.allowed_hosts:
            raise RequestError(
                HTTPStatus.FORBIDDEN,
                f"host {host!r} is not served here; open {self.server.url} or add the name to allowed_hosts",
            )
        origin = self.headers.get("Origin")
        if self.command == "POST" and origin is not None and origin.lower() != f"http://{host}".lower():
            raise RequestError(
                HTTPStatus.FORBIDDEN, f"upload from another site ({origin!r}) refused; upload from the viewer's page"
            )

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
            raise RequestError(HTTPStatus.NOT_FOUND, f"no such upload: {path}")
        data = self.rfile.read(self._content_length())
        if not data:
            raise InputError("the upload is empty; choose an image or a latent.pt")
        name = query.get("name", ["upload"])[0]
        if Path(name).suffix.lower() not in LATENT_SUFFIXES:
            check_image_size(data, name)
        self._json(HTTPStatus.OK, UPLOADS[path](self.server.session, data, name))

    def _content_length(self) -> int:
        """The upload's size: one ``Content-Length`` of digits, at most ``MAX_UPLOAD_BYTES``."""
        values = self.headers.get_all("Content-Length", [])
        if not values:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "the upload has no Content-Length header")
        text = values[0].strip()
        if len(values) > 1 or not (text.isascii() and text.isdigit()):
            raise RequestError(
                HTTPStatus.BAD_REQUEST, f"bad Content-Length {', '.join(values)!r}; expected one number of bytes"
            )
        size = int(text)
        if size > MAX_UPLOAD_BYTES:
            limit = MAX_UPLOAD_BYTES // 2**20
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"upload is over the {limit} MiB limit")
        return size

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


def make_server(
    session: ViewerSession, host: str = "127.0.0.1", port: int = 8765, allowed_hosts: Iterable[str] = ()
) -> ViewerServer:
    """A bound (not yet serving) viewer server; port 0 picks a free one (see ``server.url``). ``allowed_hosts``:
    Host header names served besides ``host`` and ``LOCAL_HOSTS`` (e.g. the machine's name when ``host`` is
    0.0.0.0)."""
    return ViewerServer(session, (host, port), allowed_hosts)
