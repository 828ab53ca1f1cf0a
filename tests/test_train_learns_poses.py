"""A small Fast3R fits wide-baseline relative poses on two scenes: the global head, the loss's frames
and the camera recovery together can represent rotations of about 100 degrees (benchmarks/memorize_poses.py).
A failure here is a bug, not a lack of data or compute."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_two_orbit_scenes_are_learned_far_beyond_the_identity_baseline():
    command = [sys.executable, "benchmarks/memorize_poses.py", "--scenes", "2", "--views", "4", "--steps", "400", "--lr", "2e-3"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["identity_baseline"]["rotation_error_median_deg"] > 90  # the views really are wide apart
    assert result["model"]["rotation_error_median_deg"] < 25, result
    assert result["model"]["RRA@15_pct"] >= 50 and result["model"]["RTA@15_pct"] >= 50, result
