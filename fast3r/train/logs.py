"""Training logs: a CSV row per logged step (always) and TensorBoard scalars (when installed and asked for)."""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from fast3r.io.atomic import write_text_atomic

LOG_NAME = "train_log.csv"
COLUMNS = (
    "step",
    "loss",
    "global",
    "local",
    "dist_global",
    "dist_local",
    "conf_global",
    "conf_local",
    "grad_norm",
    "lr",
    "num_views",
    "height",
    "width",
    "time_s",
    "views_per_s",
)


class TrainLog:
    """Appends rows to `out_dir/train_log.csv`. On resume from step S, rows after S are dropped first
    (rewritten atomically), so the log of a resumed run equals that of an uninterrupted one."""

    def __init__(self, out_dir: str | Path, resume_step: int | None, tensorboard: bool):
        self.path = Path(out_dir) / LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [row for row in read_log(self.path) if int(row["step"]) <= resume_step] if resume_step is not None and self.path.exists() else []
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        write_text_atomic(self.path, text.getvalue())
        self.file = self.path.open("a", encoding="utf-8", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS, lineterminator="\n")
        self.tensorboard = _tensorboard_writer(Path(out_dir) / "tensorboard") if tensorboard else None

    def write(self, row: dict[str, float]) -> None:
        self.writer.writerow({key: _format(row.get(key, "")) for key in COLUMNS})
        self.file.flush()
        if self.tensorboard is not None:
            step = int(row["step"])
            for key in COLUMNS[1:]:
                if key in row:
                    self.tensorboard.add_scalar(f"train/{key}", row[key], step)

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _format(value) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest exact round trip
    return str(value)


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("tensorboard is not installed: logging to CSV only (pip install fast3r[train])", file=sys.stderr)
        return None
    return SummaryWriter(str(folder))


def read_log(path: str | Path) -> list[dict[str, str]]:
    """The rows of a training CSV log, as strings."""
    with Path(path).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
