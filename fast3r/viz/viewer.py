"""Interactive 3D viewer in the browser (viser): coloured points and every camera's frustum with its photo.

Binds 127.0.0.1 unless another host is asked for: the viewer has no authentication, so exposing it on a
network (host="0.0.0.0") is the caller's explicit choice. The scene stays in the reconstruction's world
frame (viser frusta use OpenCV camera axes like the project); up is minus the cameras' mean y axis and
the view opens from behind and above the cameras, framing the scene (as preview.png's left panel).

Controls: which point estimate to show (local pointmaps aligned into the global frame, or the global
head's), a confidence slider (hide each view's least confident N%), point size, per-view visibility,
frusta on / off, and a button that saves what the browser shows as a PNG. The browser gets at most
`max_points` points (a fixed-seed uniform subset); the full cloud stays on disk.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from fast3r.io.atomic import write_bytes_atomic
from fast3r.io.frames import ExportFrame, camera_colors, check_frames, default_frustum_scale, scene_bounds
from fast3r.io.ply import validate_point_cloud
from fast3r.viz.preview import oblique_viewpoint

DEFAULT_MAX_POINTS = 1_000_000  # more makes browsers slow
THUMBNAIL_SIZE = 256  # longest side, pixels, of the photo shown in each frustum
DEFAULT_CONF_PERCENTILE = 20  # as `fast3r reconstruct --conf-percentile`
FIELD_OF_VIEW_DEG = 50.0
BACKGROUND_RGB = (32, 32, 32)  # as preview.png


@dataclass
class ViewerScene:
    """What the viewer shows. estimates: {label: (M, 3) float32 points}, the first shown first, all
    matching `colors` (M, 3) uint8; confidence (M,) and view_index (M,) (into `frames`) when known;
    images: an (H, W, 3) uint8 photo per frame, or None."""

    estimates: dict[str, np.ndarray]
    colors: np.ndarray
    frames: list[ExportFrame]
    confidence: np.ndarray | None = None
    view_index: np.ndarray | None = None
    images: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not self.estimates:
            raise ValueError("viewer: no point estimates")
        for label, points in self.estimates.items():
            self.estimates[label], self.colors = validate_point_cloud(points, self.colors, f"viewer {label}")
        self.frames = check_frames(self.frames, "viewer")
        count = len(self.colors)
        for name in ("confidence", "view_index"):
            value = getattr(self, name)
            if value is not None and np.shape(value) != (count,):
                raise ValueError(f"viewer: {name} must have shape ({count},), got {np.shape(value)}")
        views = self.view_index
        if views is not None and len(views) and not (0 <= views.min() and views.max() < len(self.frames)):
            raise ValueError(f"viewer: view_index must lie in [0, {len(self.frames)})")
        if self.images is not None and len(self.images) != len(self.frames):
            raise ValueError(f"viewer: {len(self.frames)} frames but {len(self.images)} images")


def _import_viser():
    try:
        import viser
        import viser.transforms
    except ImportError as error:
        raise ImportError("the 3D viewer needs viser: pip install 'fast3r[viewer]'") from error
    return viser


def _thumbnail(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"viewer: image for {name!r} must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    factor = THUMBNAIL_SIZE / max(image.shape[:2])
    if factor >= 1:
        return image
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def confidence_rank(confidence: np.ndarray, view_index: np.ndarray) -> np.ndarray:
    """(M,) float32 percent of its view's points that are less confident than each point, in [0, 100)."""
    order = np.lexsort((confidence, view_index))
    views_sorted = view_index[order]
    starts = np.searchsorted(views_sorted, views_sorted, side="left")
    sizes = np.searchsorted(views_sorted, views_sorted, side="right") - starts
    rank = np.empty(len(order), dtype=np.float32)
    rank[order] = 100.0 * (np.arange(len(order)) - starts) / sizes
    return rank


def _subsample(scene: ViewerScene, max_points: int) -> ViewerScene:
    """A fixed-seed uniform subset of at most `max_points` points (in their original order)."""
    if len(scene.colors) <= max_points:
        return scene
    keep = np.sort(np.random.default_rng(0).choice(len(scene.colors), max_points, replace=False))
    estimates = {label: points[keep] for label, points in scene.estimates.items()}
    confidence = None if scene.confidence is None else scene.confidence[keep]
    view_index = None if scene.view_index is None else scene.view_index[keep]
    return ViewerScene(estimates, scene.colors[keep], scene.frames, confidence, view_index, scene.images)


def default_point_size(points: np.ndarray, frames: Sequence[ExportFrame]) -> float:
    """A world-space point size that closes the gaps between neighbours: 1.5 times the spacing of
    len(points) points spread over a square as wide as the scene's robust diagonal, within [1/2000, 1/50]
    of that diagonal."""
    lower, upper = scene_bounds(points, frames)
    diagonal = max(float(np.linalg.norm(upper - lower)), 1e-6)
    return float(np.clip(1.5 * diagonal / np.sqrt(max(len(points), 1)), diagonal / 2000, diagonal / 50))


def _points_by_view(scene: ViewerScene) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{view: (point indices, their confidence ranks)}, by rising rank; one group (view 0) holds every
    point when views are unknown, and ranks are 0 when confidence is."""
    count = len(scene.colors)
    view_index = scene.view_index if scene.view_index is not None else np.zeros(count, np.int64)
    rank = np.zeros(count, np.float32) if scene.confidence is None else confidence_rank(scene.confidence, view_index)
    order = np.lexsort((rank, view_index))
    bounds = np.searchsorted(view_index[order], np.arange(view_index.max(initial=0) + 2))
    return {
        view: (order[start:end], rank[order[start:end]])
        for view, (start, end) in enumerate(itertools.pairwise(bounds))
        if end > start
    }


class SceneControls:
    """The scene nodes and GUI of one viewer: every control rewrites only the nodes it affects."""

    def __init__(self, server, scene: ViewerScene, screenshot_dir: Path | None) -> None:
        viser = _import_viser()
        self.server, self.scene, self.screenshot_dir = server, scene, screenshot_dir
        self.groups = _points_by_view(scene)
        first = next(iter(scene.estimates.values()))
        self.point_size = default_point_size(first, scene.frames)

        gui = server.gui
        self.estimate = gui.add_dropdown("Points", tuple(scene.estimates), initial_value=next(iter(scene.estimates)))
        self.confidence = gui.add_slider("Hide least confident %", 0, 99, 1, DEFAULT_CONF_PERCENTILE,
                                         disabled=scene.confidence is None)  # fmt: skip
        size = self.point_size
        self.size = gui.add_slider("Point size", size / 10, size * 5, size / 10, size)
        self.show_cameras = gui.add_checkbox("Cameras", True)
        screenshot = gui.add_button("Save screenshot", disabled=screenshot_dir is None)
        with gui.add_folder("Views", expand_by_default=len(scene.frames) <= 16):
            show_all, hide_all = gui.add_button("Show all"), gui.add_button("Hide all")
            self.view_boxes = [gui.add_checkbox(frame.file_name, True) for frame in scene.frames]
        self._setting_all = False

        self.clouds = {
            view: server.scene.add_point_cloud(
                f"/points/{view:05d}", first[:0], scene.colors[:0], point_size=size, point_shape="rounded", precision="float32"
            )
            for view in self.groups
        }
        self.frusta = self._add_frusta(viser)
        self._update_points()
        self.estimate.on_update(lambda _: self._update_points())
        self.confidence.on_update(lambda _: self._update_points())
        self.size.on_update(lambda _: self._update_point_size())
        self.show_cameras.on_update(lambda _: self._update_visibility())
        for box in self.view_boxes:
            box.on_update(lambda _: None if self._setting_all else self._update_visibility())
        show_all.on_click(lambda _: self.set_all_views(True))
        hide_all.on_click(lambda _: self.set_all_views(False))
        screenshot.on_click(lambda event: self.save_screenshot(event.client))

    def _add_frusta(self, viser) -> list:
        scene = self.scene
        thumbnails = [_thumbnail(image, f.file_name) for image, f in zip(scene.images, scene.frames)] if scene.images else None
        scale = default_frustum_scale(next(iter(scene.estimates.values())), scene.frames)
        frusta = []
        for index, (frame, color) in enumerate(zip(scene.frames, camera_colors(len(scene.frames)))):
            frusta.append(self.server.scene.add_camera_frustum(
                f"/cameras/{index:05d}",
                fov=2 * np.arctan2(frame.height / 2, frame.K[1, 1]),
                aspect=frame.width / frame.height,
                scale=scale,
                thickness=scale / 40,
                color=tuple(int(c) for c in color),
                image=None if thumbnails is None else thumbnails[index],
                wxyz=viser.transforms.SO3.from_matrix(frame.c2w[:3, :3]).wxyz,
                position=frame.center,
            ))  # fmt: skip
        return frusta

    def _update_points(self) -> None:
        points = self.scene.estimates[self.estimate.value]
        for view, cloud in self.clouds.items():
            indices, ranks = self.groups[view]
            shown = indices[np.searchsorted(ranks, self.confidence.value, side="left") :]
            cloud.points, cloud.colors = points[shown], self.scene.colors[shown]

    def _update_point_size(self) -> None:
        for cloud in self.clouds.values():
            cloud.point_size = self.size.value

    def set_all_views(self, visible: bool) -> None:
        """Tick or untick every view's box, then update the scene once (not once per box)."""
        self._setting_all = True
        try:
            for box in self.view_boxes:
                box.value = visible
        finally:
            self._setting_all = False
        self._update_visibility()

    def _update_visibility(self) -> None:
        known_views = self.scene.view_index is not None
        for index, (box, frustum) in enumerate(zip(self.view_boxes, self.frusta)):
            frustum.visible = box.value and self.show_cameras.value
            if known_views and index in self.clouds:
                self.clouds[index].visible = box.value

    def save_screenshot(self, client) -> Path:
        """Save what `client` shows, at its window size, as screenshot-NNN.png in the screenshot folder."""
        height, width = client.camera.image_height or 720, client.camera.image_width or 1280
        rgba = client.get_render(height, width, transport_format="png", timeout=30)
        alpha = rgba[..., 3:].astype(np.float32) / 255
        rgb = (rgba[..., :3] * alpha + np.array(BACKGROUND_RGB) * (1 - alpha)).round().astype(np.uint8)
        path = next(p for n in itertools.count(1) if not (p := self.screenshot_dir / f"screenshot-{n:03d}.png").exists())
        write_bytes_atomic(path, cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes())
        client.add_notification("Screenshot saved", str(path), auto_close_seconds=5.0)
        return path


@dataclass
class RunningViewer:
    """A viewer being served: the viser server and its controls."""

    server: object  # viser.ViserServer
    controls: SceneControls

    @property
    def url(self) -> str:
        return f"http://{self.server.get_host()}:{self.server.get_port()}"

    def stop(self) -> None:
        self.server.stop()


def start_viewer(
    scene: ViewerScene,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_points: int = DEFAULT_MAX_POINTS,
    screenshot_dir: str | os.PathLike | None = None,
) -> RunningViewer:
    """Serve `scene` without blocking; call `.stop()` when done.

    If `port` is taken, viser picks the next free one (`.url` tells which). The screenshot button saves
    into `screenshot_dir` (disabled when None).
    """
    viser = _import_viser()
    scene = _subsample(scene, max_points)
    first = next(iter(scene.estimates.values()))
    server = viser.ViserServer(host=host, port=port, verbose=False)
    server.gui.configure_theme(dark_mode=True, show_share_button=False)
    view = oblique_viewpoint(first, scene.frames, FIELD_OF_VIEW_DEG)
    diagonal = float(np.linalg.norm(np.subtract(*scene_bounds(first, scene.frames)))) or 1.0
    server.scene.set_up_direction(tuple(view.up))
    server.initial_camera.fov = np.radians(FIELD_OF_VIEW_DEG)
    server.initial_camera.near, server.initial_camera.far = diagonal / 1000, diagonal * 100
    server.initial_camera.position, server.initial_camera.look_at = view.eye, view.target
    server.initial_camera.up = view.up
    return RunningViewer(server, SceneControls(server, scene, None if screenshot_dir is None else Path(screenshot_dir)))


def serve(scene: ViewerScene, host: str = "127.0.0.1", port: int = 8080, screenshot_dir: str | os.PathLike | None = None) -> None:
    """Show the scene at http://host:port until interrupted (Ctrl-C), then stop the server."""
    viewer = start_viewer(scene, host=host, port=port, screenshot_dir=screenshot_dir)
    print(f"fast3r viewer: {viewer.url}  (Ctrl-C to stop)", flush=True)
    try:
        viewer.server.sleep_forever()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
