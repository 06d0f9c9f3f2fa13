"""The viewer's HTTP API without a browser: uploads, renders, stale requests, exports, errors and request limits."""

import io
import math
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http import HTTPStatus
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from pix2nerf.inference import INPUT_ERROR_EXIT_CODE, save_bundle
from pix2nerf.inference.mesh import density_grid
from pix2nerf.viewer import ViewerOptions, ViewerServer, ViewerSession, make_server
from pix2nerf.viewer.server import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS
from tests.factories import tiny_face_model
from tests.viewer.client import TIMEOUT_S, Response, fetch, send
from tests.viewer.conftest import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
MIN_PIXEL_STD = 1.0
"""A rendered image whose pixel values vary less than this (0..255) counts as blank."""
MIN_MEAN_DIFFERENCE = 0.5
"""Two renders differ when their mean absolute pixel difference (0..255) is above this."""
POLL_S = 0.01
TOOL_TIMEOUT_S = 120
"""Longest a tool started by a test may run (Python and torch start slowly on a busy machine)."""
CLOSE_WAIT_S = 5.0
"""Closing a server with an idle keep-alive connection takes well under this (no wait for the client)."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALLOWED_HOST = "viewer.lan"


def upload(server: ViewerServer, data: bytes, name: str, route: str = "face"):
    return fetch(f"{server.url}api/{route}?name={name}", data)


def render(server: ViewerServer, **view) -> np.ndarray:
    query = "&".join(f"{key}={value}" for key, value in view.items())
    response = fetch(f"{server.url}api/render?{query}")
    assert response.status == 200 and response.content_type == "image/png", response.body[:300]
    return response.image().astype(np.float32)


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape != b.shape or float(np.abs(a - b).mean()) > MIN_MEAN_DIFFERENCE


def host(server: ViewerServer) -> str:
    """The Host header a browser sends for ``server.url`` (``127.0.0.1:PORT``)."""
    return urlsplit(server.url).netloc


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and header without pixels: its size is readable, its pixels are not."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))  # 8-bit RGB
    return PNG_SIGNATURE + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def assert_refused(server: ViewerServer, response: Response, status: HTTPStatus, message: str) -> None:
    """``response`` is a JSON error with ``status`` and ``message``, and the server still renders."""
    assert response.status == status and message in response.json()["error"], response.body
    assert render(server).shape == (16, 16, 3)


@contextmanager
def serving(server: ViewerServer) -> Iterator[ViewerServer]:
    """Serve ``server`` in a thread for the block."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def loaded_viewer(viewer, head_png) -> ViewerServer:
    """The viewer with a face loaded, so renders work."""
    assert upload(viewer, head_png.read_bytes(), "head.png").status == HTTPStatus.OK
    return viewer


def test_page_and_info(viewer):
    page = fetch(viewer.url)
    assert page.status == 200 and b'<canvas id="view"' in page.body
    info = fetch(f"{viewer.url}api/info").json()
    assert info["image_resolution"] == 16 and info["full_resolution"] == 8 and info["preview_resolution"] == 4
    assert info["semantics"] is False and info["appearance_swap"] is False
    assert fetch(f"{viewer.url}nothing").status == 404


def test_upload_then_renders_at_two_poses_differ(viewer, head_png):
    response = upload(viewer, head_png.read_bytes(), "head.png")
    assert response.status == 200
    face = response.json()["face"]
    assert face["name"] == "head.png" and np.isfinite([face["yaw"], face["pitch"]]).all()
    front, side = render(viewer, yaw=0, pitch=0), render(viewer, yaw=0.6, pitch=0.2)
    assert front.shape == (16, 16, 3) and front.std() > MIN_PIXEL_STD and side.std() > MIN_PIXEL_STD
    assert differ(front, side)
    assert differ(render(viewer, zoom=1), render(viewer, zoom=2))


def test_previews_render_fewer_rays(viewer, head_png):
    upload(viewer, head_png.read_bytes(), "head.png")
    assert render(viewer, quality="preview").shape == (16, 16, 3)  # super-resolved to the image size
    assert render(viewer, mode="depth", quality="preview").shape == (4, 4, 3)
    assert render(viewer, mode="depth").shape == (8, 8, 3)  # (black: an untrained field is nowhere opaque)


def test_bad_uploads_and_queries_get_400_with_a_message(viewer, tmp_path):
    cases = {
        "cannot decode image notes.png": upload(viewer, b"not an image", "notes.png"),
        "at least 32x32": upload(
            viewer, iio.imwrite("<bytes>", np.zeros((8, 8, 3), np.uint8), extension=".png"), "a.png"
        ),
        "not a readable PyTorch file": upload(viewer, b"junk", "latent.pt"),
        "upload is empty": upload(viewer, b"", "head.png"),
        "mode must be one of": fetch(f"{viewer.url}api/render?mode=normals"),
        "yaw must be finite": fetch(f"{viewer.url}api/render?yaw=nan"),
        "renders no semantic maps": fetch(f"{viewer.url}api/render?mode=semantics"),
        "appearance cannot be swapped": upload(viewer, b"x", "head.png", route="appearance"),
    }
    for message, response in cases.items():
        assert response.status == 400 and message in response.json()["error"], (message, response.body)


@pytest.mark.parametrize(
    ("lengths", "status", "message"),
    [
        ((), HTTPStatus.LENGTH_REQUIRED, "the upload has no Content-Length header"),
        (("-1",), HTTPStatus.BAD_REQUEST, "bad Content-Length '-1'; expected one number of bytes"),
        (("abc",), HTTPStatus.BAD_REQUEST, "bad Content-Length 'abc'; expected one number of bytes"),
        (("5", "6"), HTTPStatus.BAD_REQUEST, "bad Content-Length '5, 6'; expected one number of bytes"),
        ((str(MAX_UPLOAD_BYTES + 1),), HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "upload is over the 32 MiB limit"),
    ],
    ids=["missing", "negative", "not-a-number", "twice", "over-the-cap"],
)
def test_bad_content_lengths_are_refused(loaded_viewer, lengths, status, message):
    headers = [("Host", host(loaded_viewer)), *(("Content-Length", length) for length in lengths)]
    response = send(f"{loaded_viewer.url}api/face?name=head.png", headers, b"x" * 5)  # the connection stays open
    assert_refused(loaded_viewer, response, status, message)


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (math.isqrt(MAX_UPLOAD_PIXELS) + 1, "is 4097x4097 pixels;"),
        (math.isqrt(2 * Image.MAX_IMAGE_PIXELS) + 1, "is far too large;"),  # Pillow refuses to open it
    ],
    ids=["over-the-limit", "decompression-bomb"],
)
def test_images_over_the_pixel_limit_are_refused_before_decoding(loaded_viewer, side, message):
    response = upload(loaded_viewer, png_header(side, side), "big.png")  # decoding would fail: it has no pixels
    assert_refused(loaded_viewer, response, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"image big.png {message}")
    assert "the viewer accepts at most 16.8 megapixels; downscale or crop it" in response.json()["error"]


@pytest.mark.parametrize(
    ("host_header", "status", "message"),
    [
        ("evil.example:{port}", HTTPStatus.FORBIDDEN, "host 'evil.example:{port}' is not served here"),
        ("127.0.0.1.evil.example", HTTPStatus.FORBIDDEN, "host '127.0.0.1.evil.example' is not served here"),
        ("localhost@evil.example", HTTPStatus.FORBIDDEN, "host 'localhost@evil.example' is not served here"),
        (None, HTTPStatus.BAD_REQUEST, "the request has no Host header"),
    ],
    ids=["rebound-name", "lookalike-name", "malformed", "missing"],
)
def test_requests_for_foreign_host_names_are_refused(loaded_viewer, host_header, status, message):
    port = urlsplit(loaded_viewer.url).port
    headers = [] if host_header is None else [("Host", host_header.format(port=port))]
    response = send(f"{loaded_viewer.url}api/info", headers, method="GET")
    assert_refused(loaded_viewer, response, status, message.format(port=port))


def test_local_and_allowed_host_names_are_served(viewer):
    with serving(make_server(viewer.session, "127.0.0.1", 0, [ALLOWED_HOST.upper()])) as server:
        port = urlsplit(server.url).port
        for name in ("127.0.0.1", "localhost", "LocalHost", "[::1]", ALLOWED_HOST):
            response = send(f"{server.url}api/info", [("Host", f"{name}:{port}")], method="GET")
            assert response.status == HTTPStatus.OK and "image_resolution" in response.json(), (name, response.body)
    assert send(f"{viewer.url}api/info", [("Host", ALLOWED_HOST)], method="GET").status == HTTPStatus.FORBIDDEN


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "http://127.0.0.1:1", "https://{host}", "http://{host}.evil.example", "null"],
    ids=["other-site", "other-port", "other-scheme", "lookalike", "opaque"],
)
def test_cross_site_uploads_are_refused(loaded_viewer, head_png, origin):
    body = head_png.read_bytes()
    origin = origin.format(host=host(loaded_viewer))
    headers = [("Host", host(loaded_viewer)), ("Origin", origin), ("Content-Length", str(len(body)))]
    response = send(f"{loaded_viewer.url}api/face?name=other.png", headers, body)
    assert_refused(loaded_viewer, response, HTTPStatus.FORBIDDEN, f"upload from another site ({origin!r}) refused")
    assert fetch(f"{loaded_viewer.url}api/info").json()["face"]["name"] != "other.png"


def test_same_origin_uploads_are_accepted(loaded_viewer, head_png):
    body = head_png.read_bytes()
    headers = [("Host", host(loaded_viewer)), ("Origin", f"http://{host(loaded_viewer)}")]
    response = send(f"{loaded_viewer.url}api/face?name=same.png", [*headers, ("Content-Length", str(len(body)))], body)
    assert response.status == HTTPStatus.OK and response.json()["face"]["name"] == "same.png", response.body


def test_latent_uploads_are_loaded_safely_and_truncation_reaches_the_average(viewer):
    model = viewer.session.model
    shape = (1, model.generator.num_ws, model.w_avg.shape[0])
    renders = []
    for seed in (1, 2):
        buffer = io.BytesIO()
        torch.save(
            {"w": torch.randn(shape, generator=torch.Generator().manual_seed(seed)), "yaw_pitch": torch.zeros(1, 2)},
            buffer,
        )
        assert upload(viewer, buffer.getvalue(), "latent.pt").status == 200
        renders.append((render(viewer), render(viewer, truncation=0)))
    (own_a, average_a), (own_b, average_b) = renders
    assert differ(own_a, own_b) and np.array_equal(average_a, average_b)  # psi = 0 is the average face
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1, 2)}, buffer)
    wrong = upload(viewer, buffer.getvalue(), "latent.pt")
    assert wrong.status == 400 and "no latent 'w' of shape" in wrong.json()["error"]
    buffer = io.BytesIO()
    torch.save({"w": threading.Lock}, buffer)  # a pickled global: refused by weights_only loading
    assert "safe loading" in upload(viewer, buffer.getvalue(), "latent.pt").json()["error"]


def test_superseded_render_requests_are_dropped(viewer, head_png):
    upload(viewer, head_png.read_bytes(), "head.png")
    statuses = {}

    def request(seq: int) -> None:
        statuses[seq] = fetch(f"{viewer.url}api/render?seq={seq}&client=stale-test").status

    threads = [threading.Thread(target=request, args=(seq,)) for seq in (1, 2)]
    with viewer.session.lock:  # the model is busy: both requests wait for it
        for thread in threads:
            thread.start()
        while viewer.requests.is_latest("stale-test", 1):
            time.sleep(POLL_S)
    for thread in threads:
        thread.join()
    assert statuses == {1: 204, 2: 200}


def test_exports(viewer, head_png, monkeypatch):
    upload(viewer, head_png.read_bytes(), "head.png")
    png = fetch(f"{viewer.url}api/export/view.png?yaw=0.2&quality=preview")
    assert png.status == 200 and png.image().shape == (16, 16, 3)
    video = fetch(f"{viewer.url}api/export/orbit.mp4?mode=depth")
    assert video.status == 200 and video.content_type == "video/mp4"
    assert iio.imread(video.body, extension=".mp4").shape[0] == viewer.session.options.video_frames
    fallback = fetch(f"{viewer.url}api/export/mesh.ply")  # an untrained field never reaches EG3D's level
    assert fallback.status == 200 and fallback.body.startswith(b"ply\nformat binary_little_endian")
    generator = viewer.session.model.generator
    grid, _ = density_grid(generator, generator.field_params(viewer.session.face.w, noise_mode="const"), 16)
    level = (float(grid.min()) + float(grid.max())) / 2  # the middle of the field's range: where the fallback cuts
    monkeypatch.setattr(viewer.session, "options", replace(viewer.session.options, mesh_level=level))
    mesh = fetch(f"{viewer.url}api/export/mesh.ply")
    header = mesh.body.split(b"end_header")[0]
    assert mesh.status == 200 and header == fallback.body.split(b"end_header")[0]  # same vertex and face counts


def test_semantics_and_appearance_swap(editing_viewer, head_png):
    info = fetch(f"{editing_viewer.url}api/info").json()
    assert info["semantics"] and info["appearance_swap"] and not info["appearance_source"]
    assert upload(editing_viewer, head_png.read_bytes(), "head.png").status == 200
    semantics = render(editing_viewer, mode="semantics")
    assert semantics.shape == (8, 8, 3)
    buffer = io.BytesIO()
    model = editing_viewer.session.model
    source = torch.randn(1, model.generator.num_ws, model.w_avg.shape[0], generator=torch.Generator().manual_seed(3))
    torch.save({"w": source}, buffer)
    assert upload(editing_viewer, buffer.getvalue(), "other.pt", route="appearance").json()["appearance_source"]
    assert differ(render(editing_viewer), render(editing_viewer, appearance=1))
    for mode in ("depth", "semantics"):  # the swap keeps the geometry
        assert np.array_equal(render(editing_viewer, mode=mode), render(editing_viewer, mode=mode, appearance=1))


def test_tool_refuses_a_bad_checkpoint_with_exit_code_2(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00" * 64)
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "viewer.py"), f"checkpoint={bad}", "port=0"],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        cwd=tmp_path,
    )
    assert result.returncode == INPUT_ERROR_EXIT_CODE, result.stderr
    assert "viewer: error:" in result.stderr and "not a readable safetensors" in result.stderr


def test_refinement_after_the_encoder_changes_the_latent(head_png):
    model = tiny_face_model()
    encoder_only, refined = ViewerSession(model), ViewerSession(model, ViewerOptions(refine_steps=2))
    for session in (encoder_only, refined):
        session.set_face(head_png.read_bytes(), head_png.name)
    assert not torch.equal(encoder_only.face.w, refined.face.w)


def test_tool_serves_the_input_it_was_started_with(viewer, head_png, tmp_path):
    bundle = save_bundle(viewer.session.model, tmp_path / "model.safetensors")
    command = [sys.executable, str(ROOT / "tools" / "viewer.py"), f"checkpoint={bundle}", f"input={head_png}", "port=0"]
    command.append(f"allowed_hosts=[{ALLOWED_HOST}]")
    # A child inherits an ignored SIGINT (something earlier in a full test run ignores it), and then Ctrl-C could
    # not stop the tool: start it with Python's own handler in place, as a terminal would.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, inherited)
    watchdog = threading.Timer(TOOL_TIMEOUT_S, process.kill)
    watchdog.start()
    try:
        lines = iter(process.stdout.readline, "")
        url = next(line.split("open ")[1].split()[0] for line in lines if "viewer: open" in line)
        assert fetch(f"{url}api/info").json()["face"]["name"] == head_png.name
        port = urlsplit(url).port
        assert send(f"{url}api/info", [("Host", f"{ALLOWED_HOST}:{port}")], method="GET").status == HTTPStatus.OK
        process.send_signal(signal.SIGINT)
        assert process.wait() == 0, process.stderr.read()
    finally:
        watchdog.cancel()
        process.kill()


def test_closing_ends_open_keep_alive_connections_and_joins_their_threads():
    """A browser keeps connections open; closing must end their threads (a daemon thread left running while the
    interpreter exits can abort the process) and must not wait for the browser's next request."""
    server = make_server(ViewerSession(tiny_face_model(), OPTIONS), "127.0.0.1", 0)
    before = set(threading.enumerate())
    with serving(server):
        parts = urlsplit(server.url)
        connection = HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
        connection.request("GET", "/api/info")
        assert connection.getresponse().read() and connection.sock is not None  # kept alive
        start = time.perf_counter()
    assert time.perf_counter() - start < CLOSE_WAIT_S
    assert not [thread for thread in set(threading.enumerate()) - before if thread.is_alive()]
    connection.close()


def test_viewer_config_defaults_come_from_viewer_options():
    from hydra import compose, initialize_config_dir

    from tests.inference.test_novel_view import load_tool

    root = Path(__file__).resolve().parents[2]
    tool = load_tool(root / "tools" / "viewer.py")
    with initialize_config_dir(config_dir=str(root / "configs" / "infer"), version_base=None):
        cfg = compose("viewer", overrides=["checkpoint=b", "refine_steps=50", "allowed_hosts=[gpu-box.lan]"])
    assert cfg.port == 8765 and list(cfg.allowed_hosts) == ["gpu-box.lan"]
    assert tool.options_from_config(cfg) == ViewerOptions(refine_steps=50)
