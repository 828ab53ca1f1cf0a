"""Gather the two demo runs of train_small.sh into a few files: results.json, train_log.csv, curves.png.

    python benchmarks/train_small_report.py OUT_DIR pool1000=RUN_DIR sequential=RUN_DIR [...]
Missing pieces (a failed run) are reported in results.json instead of stopping the report.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from fast3r.io.atomic import write_text_atomic
from fast3r.train.logs import COLUMNS, read_log


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def main(out_dir: str, runs: list[str]) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    named = dict(item.split("=", 1) for item in runs)
    results: dict = {"runs": {}}
    rows: list[dict] = []
    logs = {}
    for name, run_dir in named.items():
        run = Path(run_dir)
        log = run / "train_log.csv"
        record = {
            "summary": _read_json(run / "summary.json"),
            "heldout": _read_json(run / "heldout.json"),
            "config": _read_json(run / "config.json"),
        }
        if log.is_file():
            run_rows = read_log(log)
            rows += [{"run": name, **row} for row in run_rows]
            if run_rows:
                logs[name] = log
                last = run_rows[-1]
                record["last_logged"] = {k: last[k] for k in ("step", "loss", "dist_global", "dist_local", "views_per_s")}
        record["missing"] = [k for k in ("summary", "heldout", "config") if record[k] is None] + ([] if log.is_file() else ["train_log"])
        results["runs"][name] = record
    if rows:
        with (out / "train_log.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["run", *COLUMNS], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    if logs:
        try:
            from fast3r.train.curves import plot_training_curves

            plot_training_curves(logs, out / "curves.png")
        except Exception as err:  # the report must still be written
            results["curves_error"] = f"{type(err).__name__}: {err}"
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="folder for results.json, train_log.csv and curves.png")
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR", help="each run's name and output folder")
    args = parser.parse_args()
    bad = [item for item in args.runs if "=" not in item]
    if bad:
        parser.error(f"runs must be NAME=RUN_DIR, got {bad[0]!r}")
    main(args.out_dir, args.runs)
