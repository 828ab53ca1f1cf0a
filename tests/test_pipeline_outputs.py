"""What the pipeline exports: the same cameras and points as computing them on host arrays, the point
budget, known focal lengths, linked photos and run.json. Tiny random model on CPU."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from fast3r.geometry import cameras_from_pointmaps
from fast3r.geometry.pointcloud import SelectedPoints, budget
from fast3r.pipeline import reconstruct
from test_pipeline import textured  # noqa: E402 (tests/ is on the path under pytest)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(4):
        size = (320, 240) if index != 2 else (240, 320)  # one portrait: two image sizes
        textured(*size, index).save(folder / f"p{index}.jpg", quality=95)
    return folder


def _host_point_cloud(result, conf_percentile):
    """The points as the earlier host implementation chose them: per view, finite points at or above
    numpy's percentile of its confidence, views concatenated in order."""
    points, colors = [], []
    for view_points, conf, image in zip(result.points, result.confidence, result.images):
        finite = np.isfinite(view_points).all(-1)
        keep = finite & (conf >= np.percentile(conf[finite], conf_percentile))
        points.append(view_points[keep])
        colors.append(image.rgb[keep])
    return np.concatenate(points), np.concatenate(colors)


def test_outputs_equal_the_host_computation_where_no_budget_applies(tiny_weights, photos):
    result = reconstruct(photos, None, weights=tiny_weights, size=128, max_points=None, progress=False)
    again = cameras_from_pointmaps(
        result.pointmaps, result.confidence, local_pointmaps=result.local_pointmaps,
        local_confidence=result.local_confidence, progress=False,
    )
    np.testing.assert_allclose(result.cameras.c2w, again.c2w, atol=1e-4)
    np.testing.assert_allclose(result.cameras.K, again.K, rtol=1e-4)
    for aligned, expected in zip(result.points, again.aligned_points):
        np.testing.assert_allclose(aligned, expected, rtol=1e-5, atol=1e-6)

    points, colors = _host_point_cloud(result, 20.0)
    np.testing.assert_array_equal(result.cloud.points, points)
    np.testing.assert_array_equal(result.cloud.colors, colors)
    same, same_colors = result.point_cloud(20.0)
    np.testing.assert_array_equal(same, points)
    np.testing.assert_array_equal(same_colors, colors)


def test_point_budget_keeps_confident_points_spread_over_the_scene(tiny_weights, photos):
    full = reconstruct(photos, None, weights=tiny_weights, size=128, max_points=None, progress=False)
    limited = reconstruct(photos, None, weights=tiny_weights, size=128, max_points=500, progress=False)
    assert len(full.cloud.points) > 2000 and 250 <= len(limited.cloud.points) <= 500
    # every kept point is one of the confident points, with its colour
    index = {tuple(p): tuple(c) for p, c in zip(full.cloud.points.tolist(), full.cloud.colors.tolist())}
    assert all(index.get(tuple(p)) == tuple(c) for p, c in zip(limited.cloud.points.tolist(), limited.cloud.colors.tolist()))
    # spread over the scene: farther apart than the same number of simply most confident points
    from scipy.spatial import cKDTree

    def mean_gap(points):
        return cKDTree(points).query(points, k=2)[0][:, 1].mean()

    most_confident = full.cloud.points[np.argsort(-full.cloud.confidence)[: len(limited.cloud.points)]]
    assert mean_gap(limited.cloud.points) > 1.5 * mean_gap(most_confident)


def test_budget_takes_the_most_confident_point_of_each_voxel():
    # two clusters far apart; in each voxel the most confident point must survive
    points = torch.tensor([[0, 0, 0], [0.01, 0, 0], [10, 10, 10], [10.01, 10, 10]], dtype=torch.float32)
    selected = SelectedPoints(points, torch.zeros(4, 3, dtype=torch.uint8), torch.tensor([1.0, 3.0, 5.0, 2.0]),
                              torch.arange(4))
    kept = budget(selected, 2)
    torch.testing.assert_close(kept.points, points[[1, 2]])
    assert kept.view_index.tolist() == [1, 2]
    assert len(budget(selected, 10)) == 4


def test_known_focal_lengths_are_used(tiny_weights, photos, tmp_path):
    result = reconstruct(photos, None, weights=tiny_weights, size=128, focal=500.0, progress=False)
    assert result.cameras.focal_source == "given"
    for frame in result.frames():  # the given focal, back in pixels of the original photos
        assert frame.K[0, 0] == pytest.approx(500.0, rel=0.01)

    table = tmp_path / "focals.txt"
    table.write_text("# name pixels\np0.jpg 410\np1.jpg 420\np2.jpg 430\np3.jpg 440\n")
    result = reconstruct(photos, None, weights=tiny_weights, size=128, focal=table, progress=False)
    assert [round(f.K[0, 0]) for f in result.frames()] == [410, 420, 430, 440]


def test_exif_focal_is_used_where_present(tiny_weights, photos):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28  # FocalLengthIn35mmFilm: 28 mm
    textured(320, 240, 9).save(photos / "p0.jpg", exif=exif, quality=95)
    with pytest.warns(UserWarning, match="no focal length in the EXIF of p1.jpg, p2.jpg, p3.jpg"):
        result = reconstruct(photos, None, weights=tiny_weights, size=128, focal="exif", progress=False)
    expected = 28 * np.hypot(320, 240) / np.hypot(36, 24)
    assert result.frames()[0].K[0, 0] == pytest.approx(expected, rel=0.01)
    assert result.cameras.focal_source.startswith("given+")


def test_images_are_linked_or_copied_and_run_json_records_the_run(tiny_weights, photos, tmp_path):
    out = tmp_path / "out"
    reconstruct(photos, out, weights=tiny_weights, size=128, exports=["images", "cameras"], progress=False)
    linked = out / "images" / "p0.jpg"
    assert linked.is_symlink() and linked.resolve() == (photos / "p0.jpg").resolve()
    info = json.loads((out / "run.json").read_text())
    assert info["views"] == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert info["exports"] == {"images": "images", "cameras": "cameras.json"}
    assert info["weights"] == str(tiny_weights) and info["options"]["size"] == 128
    assert info["model"]["encoder"]["img_size"] > 0

    reconstruct(photos, out, weights=tiny_weights, size=128, exports=["images"], copy_images=True, overwrite=True,
                progress=False)
    copied = out / "images" / "p0.jpg"
    assert not copied.is_symlink() and copied.read_bytes() == (photos / "p0.jpg").read_bytes()
    assert sorted(os.listdir(out)) == ["images", "run.json"]


def test_max_views_is_applied_before_decoding(tiny_weights, photos, monkeypatch):
    from fast3r.io import loader

    decoded = []
    real = loader.decode_image
    monkeypatch.setattr(loader, "decode_image", lambda path, **kw: decoded.append(path.name) or real(path, **kw))
    with pytest.warns(UserWarning, match="keeping 2"):
        result = reconstruct(photos, None, weights=tiny_weights, size=128, max_views=2, progress=False)
    assert [image.name for image in result.images] == ["p0.jpg", "p3.jpg"] and sorted(decoded) == ["p0.jpg", "p3.jpg"]


def test_two_processes_give_the_single_process_reconstruction(tiny_weights, photos):
    """--gpus 2 on the CPU: two gloo ranks split views and tokens; every output within 1e-5 of one rank."""
    one = reconstruct(photos, None, weights=tiny_weights, size=128, device="cpu", progress=False)
    two = reconstruct(photos, None, weights=tiny_weights, size=128, device="cpu", gpus=2, progress=False)
    for name in ("pointmaps", "confidence", "local_pointmaps", "local_confidence"):
        for a, b in zip(getattr(one, name), getattr(two, name)):
            assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(a), name
    np.testing.assert_allclose(two.cameras.c2w, one.cameras.c2w, atol=1e-4)
    assert len(two.cloud.points) == len(one.cloud.points)


def test_an_interrupted_export_waits_for_the_writers_still_running(tiny_weights, photos, tmp_path, monkeypatch):
    """Ctrl-C, twice, during the export: no writer is left writing into a folder about to be removed."""
    import signal
    import threading
    import time

    from fast3r import export
    from fast3r.io import cameras_json, ply

    result = reconstruct(photos, None, weights=tiny_weights, size=128, progress=False)
    finished, ply_started = [], threading.Event()

    def slow_ply(*args, **kwargs):
        ply_started.set()
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C while the run waits for this writer
        time.sleep(0.4)
        finished.append("ply")

    def interrupted(*args, **kwargs):
        ply_started.wait(5)
        raise KeyboardInterrupt

    monkeypatch.setattr(ply, "write_ply", slow_ply)
    monkeypatch.setattr(cameras_json, "write_cameras_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.write_exports(result, tmp_path / "out", ["cameras", "ply"])
    assert finished == ["ply"]  # the Ctrl-C was raised only once the running writer had stopped


def test_the_command_keeps_only_the_per_view_arrays_its_exports_read(tiny_weights, photos, tmp_path):
    result = reconstruct(photos, tmp_path / "out", weights=tiny_weights, size=128, exports=["ply", "preview"],
                         keep_arrays=False, progress=False)
    assert set(result.views) == {"confidence", "depth"}  # the preview's grid
    assert (tmp_path / "out" / "preview.png").is_file() and len(result.depth) == 4
    with pytest.raises(ValueError, match="pointmaps were not kept.*keep_arrays=True"):
        result.pointmaps
    kept_none = reconstruct(photos, None, weights=tiny_weights, size=128, keep_arrays=False, progress=False)
    assert kept_none.views == {} and len(kept_none.cloud.points) > 0


def test_files_written_before_the_commit_arrive_with_the_run_or_not_at_all(tiny_weights, photos, tmp_path):
    """before_commit adds files to the staging folder; if it fails, no folder appears (the demo's demo.json)."""
    out = tmp_path / "runs" / "out"

    def add_note(result, folder):
        assert not out.exists()  # not yet swapped in
        (folder / "note.txt").write_text(f"{len(result.names)} views")

    reconstruct(photos, out, weights=tiny_weights, size=128, exports=["cameras"], before_commit=add_note, progress=False)
    assert (out / "note.txt").read_text() == f"{len(list(photos.iterdir()))} views" and (out / "run.json").is_file()

    def fail(result, folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("scoring failed")

    failed = tmp_path / "runs" / "failed"
    with pytest.raises(RuntimeError, match="scoring failed"):
        reconstruct(photos, failed, weights=tiny_weights, size=128, exports=["cameras"], before_commit=fail, progress=False)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["out"]
