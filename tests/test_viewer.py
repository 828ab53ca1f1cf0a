import socket
import sys
import urllib.request

import cv2
import numpy as np
import pytest

from fast3r.io.frames import ExportFrame, camera_colors
from fast3r.viz import preview as preview_module
from fast3r.viz import viewer as viewer_module
from fast3r.viz.preview import BACKGROUND, render_preview


def make_frames(num_cameras: int = 4) -> list[ExportFrame]:
    """Upright cameras (OpenCV y down = world +y) in a row at height y = -0.5, looking along +z."""
    frames = []
    for index in range(num_cameras):
        c2w = np.eye(4)
        c2w[:3, 3] = [index - (num_cameras - 1) / 2, -0.5, -3.0]
        frames.append(ExportFrame(f"cam_{index}.jpg", 640, 480, [[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]], c2w))
    return frames


def stacked_squares() -> tuple[np.ndarray, np.ndarray]:
    """A red square at height y = 0 exactly above a blue square of the same size on the floor y = 1."""
    x, z = np.meshgrid(np.linspace(-1, 1, 150), np.linspace(-1, 1, 150))
    square = np.stack([x.ravel(), np.zeros(x.size), z.ravel()], axis=1)
    points = np.concatenate([square, square + [0, 1, 0]]).astype(np.float32)
    colors = np.concatenate([np.tile([255, 0, 0], (len(square), 1)), np.tile([0, 0, 255], (len(square), 1))])
    return points, colors.astype(np.uint8)


def count_pixels(image: np.ndarray, rgb) -> int:
    return int((np.abs(image.astype(int) - rgb).sum(axis=-1) <= 30).sum())


def test_preview_written_and_nearest_points_win(tmp_path):
    points, colors = stacked_squares()
    picture = render_preview(points, colors, make_frames(), tmp_path / "preview.png", panel_size=(320, 240))
    assert picture.shape == (240, 640, 3)
    on_disk = cv2.imread(str(tmp_path / "preview.png"))[:, :, ::-1]
    np.testing.assert_array_equal(on_disk, picture)
    top_view = picture[:, 320:]
    red, blue = count_pixels(top_view, [255, 0, 0]), count_pixels(top_view, [0, 0, 255])
    assert red > 2000, "the upper square must be seen from above"
    assert blue < 0.02 * red, "the floor square lies behind the upper one and must be hidden"
    oblique = picture[:, :320]
    assert count_pixels(oblique, [255, 0, 0]) > 1000


def test_preview_draws_cameras_in_their_colours(tmp_path):
    no_points = np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    picture = render_preview(*no_points, make_frames(), tmp_path / "cameras.png", panel_size=(320, 240))
    for colour in camera_colors(4):
        assert count_pixels(picture, colour) > 10
    assert count_pixels(picture, BACKGROUND) > 0.8 * picture.shape[0] * picture.shape[1]


def test_preview_errors_and_atomicity(tmp_path, monkeypatch):
    points, colors = stacked_squares()
    empty = np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    with pytest.raises(ValueError, match="nothing to draw"):
        render_preview(*empty, [], tmp_path / "a.png")
    with pytest.raises(ValueError, match="panel_size"):
        render_preview(points, colors, make_frames(), tmp_path / "b.png", panel_size=(8, 8))
    monkeypatch.setattr(preview_module.cv2, "imencode", lambda *args: (False, None))
    with pytest.raises(RuntimeError, match="could not encode"):
        render_preview(points, colors, make_frames(), tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []


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
