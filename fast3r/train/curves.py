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


SMOOTHING_POINTS = 40  # a curve's trailing mean spans 1/40 of its logged points (single batches are noisy)


def _column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(row[key]) if row.get(key) not in (None, "") else math.nan for row in rows]


def trailing_mean(values: list[float], window: int) -> list[float]:
    """Mean of each value and the window - 1 before it, skipping NaN (NaN where all of them are)."""
    means = []
    for index in range(len(values)):
        finite = [v for v in values[max(0, index - window + 1) : index + 1] if not math.isnan(v)]
        means.append(sum(finite) / len(finite) if finite else math.nan)
    return means


def plot_training_curves(logs: Mapping[str, str | os.PathLike], png_path: str | os.PathLike) -> Path:
    """One figure: total loss (left) and mean normalised point distance of both heads (right, log
    scale) against step, one line per log: each logged batch faint, a trailing mean over 1/40 of the
    log's points solid. `logs` maps a label to a train_log.csv path."""
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
        window = max(1, len(rows) // SMOOTHING_POINTS)

        def draw(axis, key: str, **style):
            values = _column(rows, key)
            (line,) = axis.plot(steps, trailing_mean(values, window), **style)
            if window > 1:
                axis.plot(steps, values, color=line.get_color(), linestyle=style.get("linestyle", "-"), alpha=0.2, linewidth=0.7)
            return line.get_color()

        colour = draw(loss_axis, "loss", label=label)
        draw(dist_axis, "dist_global", color=colour, label=f"{label}: global head")
        draw(dist_axis, "dist_local", color=colour, linestyle="--", label=f"{label}: local head")
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
