"""benchmarks/bench_synthetic.py --pool-workers: the pool's scenes, timed as they arrive from the workers."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_synthetic import pool_throughput  # noqa: E402  (a script beside the other benchmarks, not a package)

TINY = str(ROOT / "configs" / "tiny_cpu.toml")


def test_pool_throughput_times_the_scenes_after_every_workers_first() -> None:
    row = pool_throughput(TINY, workers=2, repeats=2)  # 6 scenes rendered, from the arrival of the 2nd
    assert (row["pool_workers"], row["scenes"]) == (2, 4)
    assert (row["views"], row["height"], row["width"]) == (16, 64, 64)  # the pool's views, largest resolution
    assert row["scenes_per_second"] == row["scenes"] / row["seconds"] and row["seconds"] > 0


def test_pool_workers_needs_a_recipe() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_synthetic.py"), "--pool-workers", "2"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2 and "--pool-workers needs --train-config" in result.stderr
