"""benchmarks/check_render_devices.py: a recipe's pool scenes compared across devices (here CPU with CPU)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny_cpu.toml")


def check(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "check_render_devices.py"), "--train-config", TINY, *arguments],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_the_same_device_draws_the_same_scenes() -> None:
    result = check("--device", "cpu", "--scenes", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["scene 0", "scene 1"]
    assert all("off by >1 0.00e+00, by any 0.00e+00" in line for line in lines[:2])
    assert "cpu against the CPU: worst share off by >1 0.00e+00" in lines[-1]


def test_a_share_over_the_limit_fails() -> None:
    result = check("--device", "cpu", "--scenes", "1", "--max-share", "-1")
    assert result.returncode == 1
