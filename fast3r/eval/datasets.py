"""The named evaluation sets: which samples each holds, lazily loadable as lists of `View`.

    name         task         root layout                              views per sample
    co3d_vggt    pose         native CO3D v2 (fast3r.data.co3d)         10 (VGGT protocol)
    co3d_fast3r  pose, recon  DUSt3R's preprocessed CO3D               --views (paper: 3/5/10/20), 100 samples
    re10k        pose         RealEstate10K cameras + frames           10
    7scenes      recon        Spann3R's 7-Scenes                       every 20th frame (pi3_dense: 40th)
    nrgbd        recon        Neural RGB-D                             every 40th frame (pi3_dense: 100th)
    dtu          recon        Spann3R's DTU                            every 5th frame
    synthetic    pose, recon  none: held-out procedural scenes         --views (default 8), 20 scenes

For the scene-level sets (7scenes, nrgbd, dtu), `num_views` (when given) keeps that many of the
strided frames, evenly spaced. The synthetic set renders scenes with seeds 10_000_000 + i, kept out
of training's seed range, alternating room / orbit scenes and cycling the wide-baseline trajectories
(orbit, walk, random: the harder set, kept fixed so that results stay comparable; training's held-out
check in `fast3r.train.heldout` follows the training data's trajectories instead).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from fast3r.data import co3d, re10k, spann3r
from fast3r.data.views import View

POSE, RECON = "pose", "recon"
SYNTHETIC_SEED_BASE = 10_000_000
SYNTHETIC_NUM_SCENES = 20
SYNTHETIC_DEFAULT_VIEWS = 8
SYNTHETIC_IMAGE_HW = (288, 384)


@dataclass
class EvalSample:
    sample_id: str
    category: str  # CO3D category or scene name: the unit of per-category averaging
    load: Callable[[], list[View]]


@dataclass
class EvalDataset:
    name: str
    tasks: tuple[str, ...]
    samples: list[EvalSample]
    units: str
    icp_threshold: float  # in the dataset's units (Spann3R: 0.1 m; 100 mm on DTU)


@dataclass(frozen=True)
class DatasetOptions:
    num_views: int | None = None
    setting: str = "spann3r"  # frame strides of the scene-level sets
    num_samples: int | None = None  # co3d_fast3r / synthetic: how many samples (default 100 / 20)
    synthetic_image_hw: tuple[int, int] = SYNTHETIC_IMAGE_HW


DATASET_TASKS = {
    "co3d_vggt": (POSE,),
    "co3d_fast3r": (POSE, RECON),
    "re10k": (POSE,),
    "7scenes": (RECON,),
    "nrgbd": (RECON,),
    "dtu": (RECON,),
    "synthetic": (POSE, RECON),
}
DATASETS = tuple(DATASET_TASKS)


def _require_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise ValueError(f"dataset {name!r} needs --root, the folder holding it")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: dataset folder not found")
    return root


def _fixed_views(name: str, requested: int | None, fixed: int) -> int:
    if requested not in (None, fixed):
        raise ValueError(f"dataset {name!r} uses {fixed} views per sample by protocol, got --views {requested}")
    return fixed


def _evenly_spaced(frames: list[str], count: int | None) -> list[str]:
    if count is None or count >= len(frames):
        return frames
    if count < 2:
        raise ValueError(f"--views must be at least 2, got {count}")
    return [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]


def _render_synthetic(index: int, num_views: int, image_hw: tuple[int, int]) -> list[View]:
    from fast3r.data.synthetic import WIDE_BASELINE, SceneConfig, render_scene

    kind = ("room", "orbit")[index % 2]
    trajectory = WIDE_BASELINE[(index // 2) % len(WIDE_BASELINE)]
    height, width = image_hw
    return render_scene(
        SYNTHETIC_SEED_BASE + index, num_views, height, width, trajectory=trajectory, config=SceneConfig(kind=kind)
    )


def build_dataset(name: str, root: str | Path | None, options: DatasetOptions = DatasetOptions()) -> EvalDataset:
    """The samples of the named set (see the module docstring), each loading its views on demand."""
    if name == "co3d_vggt":
        base = _require_root(name, root)
        selection = co3d.VggtSelection(num_frames=_fixed_views(name, options.num_views, 10))
        samples = [
            EvalSample(s.sample_id, s.category, partial(co3d.load_co3d_native, base, s))
            for s in co3d.select_co3d_vggt(base, selection=selection)
        ]
        return EvalDataset(name, DATASET_TASKS[name], samples, units="CO3D units (arbitrary scale)", icp_threshold=0.1)
    if name == "co3d_fast3r":
        base = _require_root(name, root)
        if options.num_views is None:
            raise ValueError("dataset 'co3d_fast3r' needs --views (the paper uses 3, 5, 10 and 20)")
        chosen = co3d.select_co3d_fast3r(base, options.num_views, num_samples=options.num_samples or 100)
        samples = [
            EvalSample(f"{i:03d}/{s.sample_id}", s.category, partial(co3d.load_co3d_dust3r, base, s))
            for i, s in enumerate(chosen)
        ]
        return EvalDataset(name, DATASET_TASKS[name], samples, units="CO3D units (arbitrary scale)", icp_threshold=0.1)
    if name == "re10k":
        base = _require_root(name, root)
        chosen = re10k.select_re10k(base, num_frames=_fixed_views(name, options.num_views, 10))
        samples = [EvalSample(s.sample_id, s.video_id, partial(re10k.load_re10k, base, s)) for s in chosen]
        return EvalDataset(name, DATASET_TASKS[name], samples, units="RealEstate10K units (arbitrary scale)", icp_threshold=0.1)
    if name in ("7scenes", "nrgbd", "dtu"):
        base = _require_root(name, root)
        stride = spann3r.stride_for(name, options.setting)
        select, load = {
            "7scenes": (spann3r.select_seven_scenes, spann3r.load_seven_scenes),
            "nrgbd": (spann3r.select_nrgbd, spann3r.load_nrgbd),
            "dtu": (spann3r.select_dtu, spann3r.load_dtu),
        }[name]
        samples = []
        for scene in select(base, stride):
            scene.frames = _evenly_spaced(scene.frames, options.num_views)
            samples.append(EvalSample(scene.sample_id, scene.scene, partial(load, base, scene)))
        if name == "dtu":
            return EvalDataset(name, DATASET_TASKS[name], samples, units="millimetres", icp_threshold=100.0)
        return EvalDataset(name, DATASET_TASKS[name], samples, units="metres", icp_threshold=0.1)
    if name == "synthetic":
        num_views = options.num_views or SYNTHETIC_DEFAULT_VIEWS
        samples = [
            EvalSample(
                f"scene_{SYNTHETIC_SEED_BASE + i}",
                ("room", "orbit")[i % 2],
                partial(_render_synthetic, i, num_views, options.synthetic_image_hw),
            )
            for i in range(options.num_samples or SYNTHETIC_NUM_SCENES)
        ]
        return EvalDataset(name, DATASET_TASKS[name], samples, units="metres", icp_threshold=0.1)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
