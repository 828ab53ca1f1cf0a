import base64
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest

from fast3r.io.cameras_json import write_cameras_json
from fast3r.io.ply import write_ply
from fast3r.viz import viewer as viewer_module
from fast3r.viz.command import GLOBAL, LOCAL_ALIGNED, POINTS, load_scene
from fast3r.viz.viewer import ViewerScene, confidence_rank, start_viewer
from fast3r.viz.viewer_data import write_viewer_data
from test_preview import make_frames, stacked_squares

MAGENTA = (255, 0, 255)  # no camera colour comes near it


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


def magenta_scene(num_points: int = 40_000) -> ViewerScene:
    """A magenta square seen by 4 cameras, points split between them, confidence rising with x."""
    points, _ = stacked_squares()
    points = points[: len(points) // 2]  # the upper square
    colors = np.tile(np.array(MAGENTA, np.uint8), (len(points), 1))
    view_index = (np.arange(len(points)) % 4).astype(np.int32)
    confidence = (points[:, 0] + 2).astype(np.float32)
    images = [np.full((480, 640, 3), 90, np.uint8) for _ in range(4)]
    estimates = {LOCAL_ALIGNED: points, GLOBAL: points + np.float32(0.5)}
    return ViewerScene(estimates, colors, make_frames(), confidence, view_index, images)


def magenta_pixels(rgb: np.ndarray) -> int:
    rgb = rgb.astype(int)
    return int(((rgb[..., 0] > 120) & (rgb[..., 2] > 120) & (rgb[..., 1] < 0.5 * rgb[..., 0])).sum())


def test_confidence_rank_is_per_view():
    confidence = np.array([5.0, 1.0, 3.0, 100.0, 0.0], np.float32)
    view_index = np.array([0, 0, 0, 1, 1], np.int32)
    ranks = confidence_rank(confidence, view_index)
    np.testing.assert_allclose(ranks, [200 / 3, 0, 100 / 3, 50, 0])


def test_controls_filter_switch_and_hide(tmp_path):
    pytest.importorskip("viser")
    viewer = start_viewer(magenta_scene(), port=free_port(), screenshot_dir=tmp_path)
    try:
        controls = viewer.controls
        assert viewer.server.get_host() == "127.0.0.1"
        shown = lambda: sum(len(cloud.points) for cloud in controls.clouds.values())  # noqa: E731
        total = 150 * 150
        assert abs(shown() - 0.8 * total) <= 4, "each view's least confident 20% hidden by default"
        controls.confidence.value = 50
        assert abs(shown() - 0.5 * total) <= 4
        kept = np.concatenate([cloud.points for cloud in controls.clouds.values()])
        assert kept[:, 0].min() > -0.05, "the hidden half is the less confident (x < 0) one"
        controls.estimate.value = GLOBAL
        np.testing.assert_allclose(controls.clouds[0].points.min(axis=0)[1], 0.5)
        controls.view_boxes[2].value = False
        assert not controls.clouds[2].visible and not controls.frusta[2].visible and controls.frusta[1].visible
        controls.set_all_views(False)  # the "Hide all" button
        assert not any(cloud.visible for cloud in controls.clouds.values())
        controls.set_all_views(True)
        assert all(cloud.visible for cloud in controls.clouds.values()) and controls.frusta[2].visible
        controls.show_cameras.value = False
        assert not any(frustum.visible for frustum in controls.frusta)
        controls.size.value = controls.size.max
        assert controls.clouds[0].point_size == controls.size.max
    finally:
        viewer.stop()
    assert not port_open(viewer.server.get_port())


def test_large_scenes_are_subsampled_for_the_browser():
    pytest.importorskip("viser")
    viewer = start_viewer(magenta_scene(), port=free_port(), max_points=1000)
    try:
        viewer.controls.confidence.value = 0
        assert sum(len(cloud.points) for cloud in viewer.controls.clouds.values()) == 1000
    finally:
        viewer.stop()


def reconstruction_folder(tmp_path, with_viewer_data: bool):
    tmp_path.mkdir(parents=True, exist_ok=True)
    scene = magenta_scene()
    write_cameras_json(tmp_path / "cameras.json", scene.frames)
    write_ply(tmp_path / "points.ply", scene.estimates[LOCAL_ALIGNED][:100], scene.colors[:100])
    if with_viewer_data:
        write_viewer_data(tmp_path / "viewer.npz", points_global=scene.estimates[GLOBAL],
                          points_local=scene.estimates[LOCAL_ALIGNED], colors=scene.colors,
                          confidence=scene.confidence, view_index=scene.view_index)  # fmt: skip
    (tmp_path / "images").mkdir()
    for frame in scene.frames:
        cv2.imwrite(str(tmp_path / "images" / frame.file_name), np.full((480, 640, 3), 90, np.uint8))
    return tmp_path


def test_load_scene_prefers_viewer_data_and_falls_back_to_the_ply(tmp_path):
    folder = reconstruction_folder(tmp_path, with_viewer_data=True)
    scene = load_scene(folder)
    assert list(scene.estimates) == [LOCAL_ALIGNED, GLOBAL] and len(scene.colors) == 150 * 150
    assert scene.confidence is not None and len(scene.images) == 4 and scene.images[0].shape == (192, 256, 3)
    (folder / "viewer.npz").unlink()
    scene = load_scene(folder)
    assert list(scene.estimates) == [POINTS] and len(scene.colors) == 100 and scene.confidence is None
    (folder / "points.ply").unlink()
    with pytest.raises(FileNotFoundError, match="fast3r reconstruct"):
        load_scene(folder)


def test_view_command_serves_the_folder_on_localhost_and_explains_a_missing_one(tmp_path, monkeypatch):
    from fast3r.cli import main

    folder = reconstruction_folder(tmp_path / "out", with_viewer_data=True)
    served = {}
    monkeypatch.setattr(viewer_module, "serve", lambda scene, **options: served.update(scene=scene, **options))
    assert main(["view", str(folder), "--port", "8123"]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 8123 and served["screenshot_dir"] == str(folder)
    assert list(served["scene"].estimates) == [LOCAL_ALIGNED, GLOBAL] and len(served["scene"].images) == 4
    assert main(["view", str(tmp_path / "missing")]) == 1


def test_serve_returns_and_frees_the_port_on_ctrl_c(monkeypatch):
    viser = pytest.importorskip("viser")
    started = []

    def interrupt(self):
        started.append(self.get_port())
        assert port_open(self.get_port())
        raise KeyboardInterrupt

    monkeypatch.setattr(viser.ViserServer, "sleep_forever", interrupt)
    viewer_module.serve(magenta_scene(), port=free_port())
    assert started and not port_open(started[0])


def test_viewer_input_errors(monkeypatch):
    scene = magenta_scene()
    with pytest.raises(ValueError, match="4 frames but 1 images"):
        ViewerScene(scene.estimates, scene.colors, scene.frames, images=scene.images[:1])
    with pytest.raises(ValueError, match="view_index must lie in"):
        ViewerScene(scene.estimates, scene.colors, scene.frames[:2], view_index=scene.view_index)
    monkeypatch.setitem(sys.modules, "viser", None)
    with pytest.raises(ImportError, match=r"pip install 'fast3r\[viewer\]'"):
        start_viewer(scene)


class Chromium:
    """Headless Chromium driven over the DevTools protocol: open a page, take screenshots."""

    def __init__(self, profile) -> None:
        from websockets.sync.client import connect

        self.process = subprocess.Popen(
            [shutil.which("chromium"), "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
             "--window-size=1280,800", "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            assert time.monotonic() < deadline and self.process.poll() is None, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10).read())
        self.socket = connect(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"], max_size=None)
        self.calls = 0

    def call(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == self.calls:
                return message.get("result", {})

    def screenshot(self) -> np.ndarray:
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=10)


def wait_for_client(viewer, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while not viewer.server.get_clients():
        assert time.monotonic() < deadline, "the page never connected to the viewer"
        time.sleep(0.1)
    return next(iter(viewer.server.get_clients().values()))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install chromium)")
def test_the_page_draws_the_points_and_the_button_saves_a_screenshot(tmp_path):
    pytest.importorskip("viser")
    pytest.importorskip("websockets")
    scene = magenta_scene()
    empty = ViewerScene({LOCAL_ALIGNED: np.zeros((0, 3), np.float32)}, np.zeros((0, 3), np.uint8), scene.frames)
    viewers = [start_viewer(s, port=free_port(), screenshot_dir=tmp_path) for s in (scene, empty)]
    browser = Chromium(tmp_path / "profile")
    try:
        browser.call("Page.navigate", url=viewers[0].url)
        client = wait_for_client(viewers[0])
        start, deadline = time.monotonic(), time.monotonic() + 40
        while magenta_pixels(drawn := browser.screenshot()) < 5000:
            assert time.monotonic() < deadline, "no points drawn within 40 s"
            time.sleep(0.5)
        cv2.imwrite(str(tmp_path / "page.png"), drawn[:, :, ::-1])
        saved = viewers[0].controls.save_screenshot(client)
        assert saved.parent == tmp_path and magenta_pixels(cv2.imread(str(saved))[:, :, ::-1]) > 5000

        browser.call("Page.navigate", url=viewers[1].url)
        wait_for_client(viewers[1])
        time.sleep(time.monotonic() - start + 1)  # as long as the points took to appear, and a second
        assert magenta_pixels(browser.screenshot()) < 50, "the empty page shows no points"
    finally:
        browser.close()
        for viewer in viewers:
            viewer.stop()
