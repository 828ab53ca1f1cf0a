"""The numerics under the camera alignment: Umeyama similarity fits and masked percentiles."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fast3r.geometry import umeyama, umeyama_batched
from fast3r.geometry.masks import masked_percentile


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    rotation, _ = cv2.Rodrigues(rng.normal(size=3))
    return rotation


def test_umeyama_recovers_similarity_and_ignores_zero_weight_outliers():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(200, 3))
    rotation, scale, translation = random_rotation(rng), 2.5, np.array([1.0, -2.0, 0.5])
    target = scale * source @ rotation.T + translation
    weights = np.ones(200)
    target[:20] += rng.normal(scale=5.0, size=(20, 3))  # outliers, weighted out
    weights[:20] = 0.0
    got_scale, got_rotation, got_translation = umeyama(source, target, weights)
    assert got_scale == pytest.approx(scale, rel=1e-9)
    np.testing.assert_allclose(got_rotation, rotation, atol=1e-9)
    np.testing.assert_allclose(got_translation, translation, atol=1e-9)


def test_umeyama_returns_a_proper_rotation_for_mirrored_points():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(50, 3))
    mirrored = source * np.array([1.0, 1.0, -1.0])
    _, rotation, _ = umeyama(source, mirrored)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_umeyama_degenerate_inputs_give_identity():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(2, 3))
    for source, target in [(points, points + 1.0), (np.ones((10, 3)), rng.normal(size=(10, 3)))]:
        scale, rotation, translation = umeyama(source, target)
        assert scale == 1.0
        np.testing.assert_array_equal(rotation, np.eye(3))
        np.testing.assert_array_equal(translation, np.zeros(3))


def test_umeyama_batched_matches_numpy_with_masks_and_nan():
    rng = np.random.default_rng(3)
    source = rng.normal(size=(4, 30, 3))
    target = np.stack([1.7 * s @ random_rotation(rng).T + rng.normal(size=3) for s in source])
    target += rng.normal(scale=0.01, size=target.shape)
    mask = rng.random((4, 30)) > 0.3
    mask[3, 2:] = False  # two points only: identity
    source[0, 0] = np.nan  # ignored
    scale, rotation, translation = umeyama_batched(
        torch.from_numpy(source), torch.from_numpy(target), torch.from_numpy(mask)
    )
    for index in range(4):
        keep = mask[index] & np.isfinite(source[index]).all(axis=1)
        expected = umeyama(source[index][keep], target[index][keep])
        assert float(scale[index]) == pytest.approx(expected[0], rel=1e-9)
        np.testing.assert_allclose(rotation[index].numpy(), expected[1], atol=1e-9)
        np.testing.assert_allclose(translation[index].numpy(), expected[2], atol=1e-9)
    np.testing.assert_array_equal(rotation[3].numpy(), np.eye(3))


def test_masked_percentile_matches_numpy():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(3, 101))
    mask = rng.random((3, 101)) > 0.4
    got = masked_percentile(torch.from_numpy(values), torch.from_numpy(mask), 85.0).numpy()
    expected = [np.percentile(row[keep], 85.0) for row, keep in zip(values, mask)]
    np.testing.assert_allclose(got, expected)
