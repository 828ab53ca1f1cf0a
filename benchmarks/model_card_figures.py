"""Score demo-model candidates on the scenes with true cameras that the model card reports, each beside
the identity-pose baseline: `examples/room`, the demo's scene and, when `--shared-data` holds them, the
real templeRing photos (47 views around a plaster temple) and a real dining room (5 RGB-D frames).

    python benchmarks/model_card_figures.py fast3r/weights/fast3r-small-224 runs/slot --out figures.json

Runs `fast3r.pipeline.reconstruct` as a user would (the folder of photos in, cameras out; fp32 on the
CPU, cameras by the default method) and scores every view pair: RRA@15 / RTA@15 / mAA(30) in percent
and the median rotation error in degrees. The held-out synthetic sets have their own scripts
(`benchmarks/heldout_eval.py`, `fast3r eval pose --dataset synthetic`).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fast3r.demo import render_demo_scene
from fast3r.eval.pose import identity_baseline_metrics, pose_metrics
from fast3r.geometry.groundtruth import centred_crop
from fast3r.io.atomic import write_text_atomic
from fast3r.io.cameras_json import read_cameras_json
from fast3r.pipeline import reconstruct

COLUMNS = (("RRA@15", "RRA@15_pct"), ("RTA@15", "RTA@15_pct"), ("mAA(30)", "mAA30_fast3r_31bin_pct"),
           ("median rotation error", "rotation_error_median_deg"))  # fmt: skip


def room_scene() -> tuple[list[Path], np.ndarray]:
    """examples/room's 8 photos and their true camera-to-world matrices."""
    folder = Path(__file__).resolve().parent.parent / "examples" / "room"
    frames, _ = read_cameras_json(folder / "cameras.json")
    return [folder / frame.file_name for frame in frames], np.stack([frame.c2w for frame in frames])


def templering_scene(shared_data: Path) -> tuple[list[Path], np.ndarray] | None:
    """templeRing's photos and true c2w (OpenCV axes), or None when the shared data is absent."""
    meta = shared_data / "templering" / "cameras_opencv.json"
    if not meta.exists():
        return None
    frames = json.loads(meta.read_text())["frames"]
    return [meta.parent / frame["file"] for frame in frames], np.array([frame["c2w"] for frame in frames], dtype=np.float64)


def rgbd_dining_scene(shared_data: Path, folder: Path) -> tuple[list[Path], np.ndarray] | None:
    """The real dining-room photos (5 views, Kinect-style camera), each cropped around its off-centre
    principal point into `folder`, and their c2w (OpenCV axes); None when the shared data is absent."""
    meta = shared_data / "rgbd_dining" / "cameras_opencv.json"
    if not meta.exists():
        return None
    photos, frames = [], json.loads(meta.read_text())["frames"]
    for index, frame in enumerate(frames):
        rows, cols = centred_crop(np.array(frame["K"], dtype=np.float64), frame["height"], frame["width"])
        photos.append(folder / f"dining_{index}.png")
        Image.open(meta.parent / frame["file"]).crop((cols.start, rows.start, cols.stop, rows.stop)).save(photos[-1])
    return photos, np.array([frame["c2w"] for frame in frames], dtype=np.float64)


def score(weights: str, photos: list[Path], c2w_true: np.ndarray) -> dict[str, float]:
    result = reconstruct([str(p) for p in photos], weights=weights, device="cpu", dtype="fp32", progress=False)
    return pose_metrics(result.cameras.c2w, c2w_true)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+", help="model directories (or 'small', the bundled model)")
    parser.add_argument("--shared-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fast3r-card-") as demo_folder:
        demo_c2w = render_demo_scene(Path(demo_folder))
        scenes = {"examples/room (8 views)": room_scene(),
                  "demo scene (8 views)": (sorted(Path(demo_folder).glob("*.png")), demo_c2w)}  # fmt: skip
        temple = templering_scene(Path(args.shared_data))
        if temple is None:
            print(f"templeRing skipped: no {args.shared_data}/templering")
        else:
            scenes[f"templeRing (real, {len(temple[0])} views)"] = temple
        (Path(demo_folder) / "dining").mkdir()
        dining = rgbd_dining_scene(Path(args.shared_data), Path(demo_folder) / "dining")
        if dining is None:
            print(f"rgbd_dining skipped: no {args.shared_data}/rgbd_dining")
        else:
            scenes[f"dining room (real, {len(dining[0])} views)"] = dining
        figures = {name: {"identity poses": identity_baseline_metrics(c2w)} for name, (_, c2w) in scenes.items()}
        for weights in args.weights:
            for name, (photos, c2w) in scenes.items():
                figures[name][weights] = score(weights, photos, c2w)

    print("| scene | cameras | " + " | ".join(label for label, _ in COLUMNS) + " |")
    print("| --- | --- |" + " --- |" * len(COLUMNS))
    for name, rows in figures.items():
        for who, metrics in rows.items():
            print(f"| {name} | {who} | " + " | ".join(f"{metrics[key]:.1f}" for _, key in COLUMNS) + " |")
    if args.out:
        write_text_atomic(args.out, json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
