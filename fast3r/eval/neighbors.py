"""Exact nearest neighbours in 3D and PCA normals, on OpenCV's FLANN single k-d tree.

FLANN's `KDTreeSingleIndex` (algorithm 4) answers exact k-nearest-neighbour queries; on 100k x 100k
points it builds in ~0.02 s and answers 1-NN in ~0.06 s and 30-NN in ~0.4 s on one CPU core.
FLANN works in float32, so points are moved by the reference set's centroid before the search and
the returned distances are recomputed in float64 from the matched indices. Large queries are split
into chunks searched on all CPU cores (FLANN releases the GIL); normals are fitted chunk by chunk,
so memory stays bounded for clouds of millions of points.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import cv2
import numpy as np

_KDTREE_SINGLE_INDEX = 4
_LEAF_MAX_SIZE = 10
CHUNK_POINTS = 65_536  # query points per parallel chunk


def _map_chunks(function: Callable[[np.ndarray], np.ndarray], points: np.ndarray) -> np.ndarray:
    """function over row chunks of `points` on all cores, results concatenated in order."""
    if points.shape[0] <= CHUNK_POINTS:
        return function(points)
    chunks = [points[start : start + CHUNK_POINTS] for start in range(0, points.shape[0], CHUNK_POINTS)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.concatenate(list(pool.map(function, chunks)))


def _as_points(points: np.ndarray, what: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{what} must be (M, 3) points, got shape {points.shape}")
    if points.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(points).all():
        raise ValueError(f"{what} contains non-finite points")
    return points


class NearestNeighbors:
    """An exact k-NN index over a fixed (M, 3) reference set, queried many times (as ICP does)."""

    def __init__(self, reference: np.ndarray):
        self.reference = _as_points(reference, "reference points")  # (M, 3) float64
        self.origin = self.reference.mean(axis=0)
        # FLANN keeps a pointer into this array: it must live as long as the index
        self._data = np.ascontiguousarray(self.reference - self.origin, dtype=np.float32)
        self._index = cv2.flann_Index(
            self._data, dict(algorithm=_KDTREE_SINGLE_INDEX, leaf_max_size=_LEAF_MAX_SIZE)
        )

    def query_indices(self, points: np.ndarray, k: int = 1) -> np.ndarray:
        """Indices (Q, k) int64 of the k nearest reference points, in float32 search order."""
        points = _as_points(points, "query points")
        if not 1 <= k <= self.reference.shape[0]:
            raise ValueError(f"k must be in [1, {self.reference.shape[0]}], got {k}")

        def search(chunk: np.ndarray) -> np.ndarray:
            query = np.ascontiguousarray(chunk - self.origin, dtype=np.float32)
            indices, _ = self._index.knnSearch(query, k, params=dict(checks=-1, eps=0.0))
            return indices.astype(np.int64)

        return _map_chunks(search, points)

    def query(self, points: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Distances (Q, k) float64 and indices (Q, k) int64 of the k nearest reference points,
        nearest first. k may not exceed the number of reference points."""
        indices = self.query_indices(points, k)  # (Q, k)
        points = np.asarray(points, dtype=np.float64)
        if k == 1:
            return np.linalg.norm(self.reference[indices[:, 0]] - points, axis=-1)[:, None], indices
        distances = np.linalg.norm(self.reference[indices] - points[:, None, :], axis=-1)
        # float32 search may swap near-ties; order by the exact distances
        order = np.argsort(distances, axis=1, kind="stable")
        return np.take_along_axis(distances, order, 1), np.take_along_axis(indices, order, 1)


def nearest_neighbor(query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query point: distance (Q,) to and index (Q,) of its nearest reference point."""
    distances, indices = NearestNeighbors(reference).query(query, k=1)
    return distances[:, 0], indices[:, 0]


def estimate_normals(points: np.ndarray, num_neighbors: int = 30) -> np.ndarray:
    """Unit normals from a plane fit (smallest principal axis) to each point's `num_neighbors`
    nearest points, the point itself included (Open3D's default KNN(30) fit). Signs are arbitrary."""
    points = _as_points(points, "points")
    count = min(num_neighbors, points.shape[0])
    if count < 3:
        raise ValueError(f"normals need at least 3 points, got {points.shape[0]}")
    index = NearestNeighbors(points)

    def fit(chunk: np.ndarray) -> np.ndarray:
        neighbours = points[index.query_indices(chunk, k=count)]  # (C, k, 3)
        centred = neighbours - neighbours.mean(axis=1, keepdims=True)
        covariance = np.einsum("cki,ckj->cij", centred, centred) / count  # (C, 3, 3)
        _, eigenvectors = np.linalg.eigh(covariance)  # ascending eigenvalues
        normals = eigenvectors[:, :, 0]
        return normals / np.linalg.norm(normals, axis=-1, keepdims=True)

    return _map_chunks(fit, points)  # (M, 3)
