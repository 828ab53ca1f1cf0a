"""benchmarks/heldout_variants.py: each variant changes the part of the trajectory it names, and only that."""
import sys
from pathlib import Path

import numpy as np

from fast3r.data.synthetic import cameras
from fast3r.data.synthetic.scene import SceneConfig, build_scene

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import heldout_variants as variants  # noqa: E402  (a script beside heldout_eval.py, not a package)


def sample(sampler, seed=3, num_views=8):
    scene = build_scene(seed, SceneConfig(kind="room"))
    return scene, *sampler(scene, np.random.default_rng(seed + 100), num_views)


def test_orbit_variants_keep_the_orbit_eyes_and_change_heights_or_targets():
    scene, eyes, targets = sample(cameras._orbit)
    _, varied_eyes, varied_targets = sample(variants.orbit_varied_heights)
    assert np.allclose(varied_eyes[:, :2], eyes[:, :2])  # same circle
    assert np.ptp(eyes[:, 2]) == 0.0 and np.ptp(varied_eyes[:, 2]) > 0.1  # one height, then each its own
    assert np.all((varied_targets[:, 2] >= 0.3) & (varied_targets[:, 2] <= 1.5))
    _, own_eyes, own_targets = sample(variants.orbit_own_targets)
    assert np.allclose(own_eyes, eyes)
    spread = np.linalg.norm(own_targets - own_targets.mean(0), axis=1).max()
    assert spread > 3 * np.linalg.norm(targets - targets.mean(0), axis=1).max()
    assert np.all(own_targets[:, :2] >= 0.3 * scene.room[:2]) and np.all(own_targets[:, :2] <= 0.7 * scene.room[:2])


def test_random_one_target_keeps_random_eyes_and_aims_them_at_one_point():
    _, eyes, targets = sample(cameras._random)
    _, one_eyes, one_targets = sample(variants.random_one_target)
    assert np.allclose(one_eyes, eyes)
    assert np.linalg.norm(one_targets - targets[0], axis=1).max() < 0.5
    assert np.linalg.norm(targets - targets[0], axis=1).max() > 1.0
    assert set(variants.VARIANTS) == {"orbit", "orbit_varied_heights", "orbit_own_targets", "random_one_target", "random"}
