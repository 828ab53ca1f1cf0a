"""Training curves (loss and normalised point error against step) from train_log.csv files, as a PNG."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from fast3r.io.atomic import atomic_path

from .logs import read_log


class CurvesUnavailable(RuntimeError):
    """matplotlib is missing."""


def _column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(row[key]) if row.get(key) not in (None, "") else math.nan for row in rows]


def plot_training_curves(logs: Mapping[str, str | os.PathLike], png_path: str | os.PathLike) -> Path:
    """One figure: total loss (left) and mean normalised point distance of both heads (right, log
    scale) against step, one line per log. `logs` maps a label to a train_log.csv path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise CurvesUnavailable("plotting needs matplotlib (pip install matplotlib); the CSV logs hold the same numbers") from err
    if not logs:
        raise ValueError("no training log given")
    figure, (loss_axis, dist_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, path in logs.items():
        rows = read_log(path)
        if not rows:
            raise ValueError(f"{path} has no logged steps")
        steps = _column(rows, "step")
        (line,) = loss_axis.plot(steps, _column(rows, "loss"), label=label)
        colour = line.get_color()
        dist_axis.plot(steps, _column(rows, "dist_global"), color=colour, label=f"{label}: global head")
        dist_axis.plot(steps, _column(rows, "dist_local"), color=colour, linestyle="--", label=f"{label}: local head")
    loss_axis.set(xlabel="step", ylabel="loss (conf-weighted, alpha 0.2)", title="training loss")
    dist_axis.set(xlabel="step", ylabel="mean normalised point distance", title="point error (no confidence)", yscale="log")
    for axis in (loss_axis, dist_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return png_path
