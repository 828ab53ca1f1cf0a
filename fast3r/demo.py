"""`fast3r demo`: render a synthetic room with known cameras, reconstruct it with the bundled demo model
on the CPU, write every export, and score the cameras against the truth beside the identity-pose baseline.

Needs no GPU, no internet and no photos; deterministic (a fixed scene seed, fp32 on the CPU). The figures
it prints are in the bundled model card's "The demo scene" section, and tests/test_demo.py holds them equal.
"""
from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fast3r.io.atomic import write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:  # numpy, torch and the rest load when the demo runs, not when the command line is parsed
    import numpy as np

DEFAULT_OUTPUT = "fast3r-demo"
SCENE_SEED = 4
SCENE_TRAJECTORY = "arc"  # part of an orbit inside the room: capture-like, as the demo model trained on
NUM_VIEWS = 8
IMAGE_SIZE = 224  # the demo model's training size: the renders go in unchanged
WEIGHTS = "small"  # the bundled demo model
# (printed label, key in fast3r.eval.pose_metrics); the model card's table uses the same labels
METRICS = (("RRA@15", "RRA@15_pct"), ("RTA@15", "RTA@15_pct"), ("mAA(30)", "mAA30_fast3r_31bin_pct"))
MODEL_ROW, IDENTITY_ROW = "fast3r-small-224 (demo model)", "identity poses (baseline)"
SUMMARY_FILE = "demo.json"


@dataclass
class DemoResult:
    """What `run_demo` did: the output folder, metrics (percent) of the model and of the baseline, time."""

    output: Path
    model_metrics: dict[str, float]
    identity_metrics: dict[str, float]
    seconds: float
    files: list[Path] = field(default_factory=list)


def render_demo_scene(folder: Path) -> np.ndarray:
    """Write the demo scene's views as view_000.png ... into `folder`; return their true (N, 4, 4) c2w."""
    import numpy as np
    from PIL import Image

    from fast3r.data.synthetic import SceneConfig, render_scene

    views = render_scene(SCENE_SEED, NUM_VIEWS, IMAGE_SIZE, IMAGE_SIZE, SCENE_TRAJECTORY, config=SceneConfig(kind="room"))
    for view in views:
        buffer = io.BytesIO()
        Image.fromarray(view.image).save(buffer, format="PNG")
        write_bytes_atomic(folder / f"{view.name}.png", buffer.getvalue())
    return np.stack([view.c2w for view in views])


def run_demo(output: str | Path = DEFAULT_OUTPUT, overwrite: bool = False, progress: bool = True) -> DemoResult:
    """Render, reconstruct into `output` (refused if it holds files, unless `overwrite`), and score."""
    from fast3r.eval.pose import identity_baseline_metrics, pose_metrics
    from fast3r.export import FULL_DENSITY_EXPORTS, choose_exports
    from fast3r.pipeline import reconstruct

    start = time.perf_counter()
    metrics: dict[str, dict[str, float]] = {}

    def write_summary(result, folder: Path) -> None:  # inside the run, before it is swapped in
        metrics[MODEL_ROW] = pose_metrics(result.cameras.c2w, c2w_true)
        metrics[IDENTITY_ROW] = identity_baseline_metrics(c2w_true)
        summary = {
            "scene": {"seed": SCENE_SEED, "kind": "room", "trajectory": SCENE_TRAJECTORY, "views": NUM_VIEWS, "size": IMAGE_SIZE},
            "c2w_true": c2w_true.tolist(),
            "metrics_pct": metrics,
        }
        write_text_atomic(folder / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="fast3r-demo-") as scene:
        c2w_true = render_demo_scene(Path(scene))
        result = reconstruct(
            scene, output, weights=WEIGHTS, device="cpu", dtype="fp32", progress=progress, overwrite=overwrite,
            exports=[*choose_exports(None), *FULL_DENSITY_EXPORTS], copy_images=True,  # every export; the scene folder goes
            before_commit=write_summary,
        )
    return DemoResult(
        output=Path(output),
        model_metrics=metrics[MODEL_ROW],
        identity_metrics=metrics[IDENTITY_ROW],
        seconds=time.perf_counter() - start,
        files=[*result.files, Path(output) / SUMMARY_FILE],
    )


def accuracy_table(model_metrics: dict[str, float], identity_metrics: dict[str, float]) -> str:
    """A Markdown table of the demo's camera accuracy (percent, one decimal), as the model card holds it."""
    lines = ["| cameras | " + " | ".join(label for label, _ in METRICS) + " |", "| --- |" + " --- |" * len(METRICS)]
    for row, metrics in ((MODEL_ROW, model_metrics), (IDENTITY_ROW, identity_metrics)):
        lines.append(f"| {row} | " + " | ".join(f"{metrics[key]:.1f}" for _, key in METRICS) + " |")
    return "\n".join(lines)


def add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="reconstruct a synthetic scene with the bundled demo model and score it (CPU, offline)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT, help=f"output directory (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> None:
    demo = run_demo(args.output, overwrite=args.overwrite, progress=not args.quiet)
    pairs = int(demo.model_metrics["num_pairs"])
    print(
        f"\nfast3r demo: a synthetic room (seed {SCENE_SEED}, {NUM_VIEWS} views, {IMAGE_SIZE}x{IMAGE_SIZE}) "
        f"reconstructed by the bundled demo model on the CPU in {demo.seconds:.1f} s"
    )
    print(f"camera accuracy against the true cameras, percent of the {pairs} view pairs:\n")
    print(accuracy_table(demo.model_metrics, demo.identity_metrics))
    print(f"\nwritten to {demo.output}/: " + ", ".join(path.name for path in demo.files))
    print(f"look: {demo.output}/preview.png, {demo.output}/scene.glb, or `fast3r view {demo.output}`")
