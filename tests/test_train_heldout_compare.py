"""Two models on the same held-out scenes: the paired difference finds the better one, and only where it is."""
import importlib.util

import pytest

from fast3r.train.heldout import HeldoutConfig, evaluate_heldout
from fast3r.train.heldout_compare import compare_heldout
from test_train_heldout import Oracle


def test_compare_finds_where_the_second_model_is_better():
    config = HeldoutConfig(view_counts=[3], scenes=8, trajectories=["arc", "handheld"], resolution=(48, 64))
    blind, exact = Oracle(config, blind_to="handheld"), Oracle(config)  # identity poses on handheld scenes
    exact.eval()
    results = compare_heldout(blind, exact, config, "cpu", bf16=False, progress=False)
    assert blind.training and not exact.training, "each model's mode is restored"
    metrics = results["3"]
    arc, handheld = metrics["by_trajectory"]["arc"], metrics["by_trajectory"]["handheld"]
    assert arc["scenes"] == handheld["scenes"] == 4 and metrics["scenes"] == 8
    for key in ("RRA@15_pct", "RTA@15_pct", "mAA30_fast3r_31bin_pct"):
        assert arc[key]["difference"] == 0.0 and arc[key]["ci95"] == [0.0, 0.0], key  # the same cameras
        assert handheld[key]["second"] == 100.0 or key == "mAA30_fast3r_31bin_pct"
        assert handheld[key]["ci95"][0] > 0.0, key  # better in every resampling of the scenes
    # Each model's side is what evaluating it alone gives on the same scenes.
    alone = evaluate_heldout(Oracle(config, blind_to="handheld"), config, "cpu", bf16=False, progress=False)["3"]
    assert metrics["RRA@15_pct"]["first"] == pytest.approx(alone["RRA@15_pct"])
    assert metrics["identity_baseline"]["RRA@15_pct"] == pytest.approx(alone["identity_baseline"]["RRA@15_pct"])
    assert results["settings"]["trajectories"] == ["arc", "handheld"]
    spec = importlib.util.spec_from_file_location("heldout_compare", "benchmarks/heldout_compare.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    table = script.format_table(results, [3])
    assert "| 3 | arc (4) | " in table and "+0.0 [+0.0, +0.0]" in table and "| 3 | kind: room (" in table
