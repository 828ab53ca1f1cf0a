import socket
import sys
import urllib.request

import numpy as np
import pytest

from fast3r.viz import viewer as viewer_module
from test_preview import make_frames, stacked_squares


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_viewer_starts_on_localhost_and_stops():
    pytest.importorskip("viser")
    points, colors = stacked_squares()
    images = [np.full((480, 640, 3), 90, np.uint8) for _ in range(4)]
    server = viewer_module.start_viewer(points, colors, make_frames(), images=images, port=free_port())
    try:
        assert server.get_host() == "127.0.0.1"
        page = urllib.request.urlopen(f"http://127.0.0.1:{server.get_port()}/", timeout=10).read()
        assert b"<html" in page.lower()
    finally:
        server.stop()
    assert not port_open(server.get_port())


def test_serve_returns_and_frees_the_port_on_ctrl_c(monkeypatch):
    viser = pytest.importorskip("viser")
    started = []

    def interrupt(self):
        started.append(self.get_port())
        assert port_open(self.get_port())
        raise KeyboardInterrupt

    monkeypatch.setattr(viser.ViserServer, "sleep_forever", interrupt)
    points, colors = stacked_squares()
    viewer_module.serve(points, colors, make_frames(), port=free_port())
    assert started and not port_open(started[0])


def test_viewer_input_errors(monkeypatch):
    pytest.importorskip("viser")
    points, colors = stacked_squares()
    with pytest.raises(ValueError, match="4 frames but 1 images"):
        viewer_module.start_viewer(points, colors, make_frames(), images=[np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(ValueError, match="image for 'cam_0.jpg' must be"):
        viewer_module.start_viewer(points, colors, make_frames(1), images=[np.zeros((4, 4), np.float32)])
    monkeypatch.setitem(sys.modules, "viser", None)
    with pytest.raises(ImportError, match=r"pip install 'fast3r\[viewer\]'"):
        viewer_module.start_viewer(points, colors, make_frames())
