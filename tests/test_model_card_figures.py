"""benchmarks/model_card_figures.py: the scenes it scores pair each photo with its own true camera."""
import importlib.util

import numpy as np
from PIL import Image

spec = importlib.util.spec_from_file_location("model_card_figures", "benchmarks/model_card_figures.py")
figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(figures)  # the script is not a package


def test_room_scene_pairs_the_eight_photos_with_their_cameras():
    photos, c2w = figures.room_scene()
    assert [p.name for p in photos] == [f"view_{i:03d}.png" for i in range(8)]
    assert all(p.is_file() for p in photos) and c2w.shape == (8, 4, 4)
    assert np.allclose(c2w[:, :3, :3] @ c2w[:, :3, :3].transpose(0, 2, 1), np.eye(3), atol=1e-6)
    assert len({tuple(np.round(m[:3, 3], 6)) for m in c2w}) == 8, "every view has its own camera centre"


def test_templering_scene_is_skipped_without_the_shared_data(tmp_path):
    assert figures.templering_scene(tmp_path) is None


def test_templering_scene_reads_the_shared_photos_and_cameras(shared_data):
    photos, c2w = figures.templering_scene(shared_data)
    assert len(photos) == len(c2w) == 47 and all(p.is_file() for p in photos)
    assert Image.open(photos[0]).size == (640, 480)
    centres = c2w[:, :3, 3]  # a ring around the temple, about 0.57 m away from its centre
    assert np.ptp(np.linalg.norm(centres - centres.mean(0), axis=1)) < 0.1


def test_rgbd_dining_scene_crops_the_shared_photos(shared_data, tmp_path):
    photos, c2w = figures.rgbd_dining_scene(shared_data, tmp_path)
    assert len(photos) == len(c2w) == 5 and all(p.parent == tmp_path for p in photos)
    assert {Image.open(p).size for p in photos} == {(629, 453)}  # columns 11-639, rows 27-479: the data README's crop
    assert np.allclose(c2w[:, :3, :3] @ c2w[:, :3, :3].transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert figures.rgbd_dining_scene(tmp_path, tmp_path) is None
