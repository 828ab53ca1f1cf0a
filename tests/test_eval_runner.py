import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_co3d import write_dust3r_co3d

from fast3r.data.synthetic import render_scene
from fast3r.data.views import View
from fast3r.eval import runner
from fast3r.eval.command import add_eval_parser
from fast3r.eval.datasets import DatasetOptions, build_dataset
from fast3r.eval.pose import identity_baseline_errors, metrics_from_errors
from fast3r.eval.runner import EvalConfig, ground_truth_at_model_pixels, run_evaluation
from fast3r.io.images import preprocess_image
from fast3r.model import Fast3R
from fast3r.model.config import Fast3RConfig

SMALL = dict(size=64, synthetic_image_hw=(48, 64), device="cpu", progress=False)


class CountingModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inner = Fast3R(Fast3RConfig.tiny())
        self.calls = 0

    def forward(self, views, image_ids=None):
        self.calls += 1
        return self.inner(views, image_ids=image_ids)


def test_synthetic_run_writes_results_and_resumes(tmp_path):
    model = CountingModel()
    config = EvalConfig(task="pose", dataset="synthetic", num_views=3, num_samples=3, limit=1, out_dir=str(tmp_path), **SMALL)
    run_evaluation(config, model=model)
    assert model.calls == 1
    config.limit = 2
    summary = run_evaluation(config, model=model)
    assert model.calls == 2  # the first sample was read back, not recomputed
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["sample_id"] for r in records] == ["scene_10000000", "scene_10000001"]
    assert all(len(r["pairs"]["rotation_deg"]) == 3 for r in records)
    assert summary["num_samples"] == 2 and summary["pooled"]["num_pairs"] == 6
    assert set(summary["per_category"]) == {"room", "orbit"}
    assert json.loads((tmp_path / "summary.json").read_text())["pooled"] == summary["pooled"]
    table = (tmp_path / "summary.md").read_text()
    assert "| pooled pairs |" in table and "mAA30_fast3r_31bin_pct" in table and "AUC30_vggt_30bin_pct" in table
    scenes = build_dataset("synthetic", None, DatasetOptions(num_views=3, num_samples=3, synthetic_image_hw=(48, 64))).samples[:2]
    truth = [identity_baseline_errors(np.stack([view.c2w for view in scene.load()])) for scene in scenes]
    baseline = summary["identity_baseline"]["pooled"]  # the baseline of exactly the evaluated scenes
    expected = metrics_from_errors(np.concatenate([e.rotation_deg for e in truth]), np.concatenate([e.translation_deg for e in truth]))
    assert baseline == pytest.approx(expected, abs=1e-5)  # the records keep 6 decimals
    assert "| identity poses (baseline), pooled pairs | " + f"{baseline['RRA@5_pct']:.4f} |" in table
    low, high = summary["pooled_ci95_over_samples"]["RRA@15_pct"]
    assert low <= summary["pooled"]["RRA@15_pct"] <= high
    assert f"over resampled samples: RRA@15 [{low:.1f}, {high:.1f}]" in table
    run_evaluation(config, model=model)
    assert model.calls == 2
    config.size = 128
    with pytest.raises(ValueError, match="size differ"):
        run_evaluation(config, model=model)


def test_oracle_predictions_score_perfectly_end_to_end(tmp_path, monkeypatch):
    """Ground-truth pointmaps fed through cameras, metrics and the ground-truth resampling give zero error."""
    current: dict[str, list[View]] = {}
    real_build = runner.build_dataset

    def remembering_build(name, root, options):
        dataset = real_build(name, root, options)
        for sample in dataset.samples:
            def load(original=sample.load):
                current["views"] = original()
                return current["views"]
            sample.load = load
        return dataset

    def oracle(model, tensors, device, dtype):
        views = current["views"]
        assert [tuple(t.shape[1:]) for t in tensors] == [(v.height, v.width) for v in views]  # identity preprocessing
        world_to_view0 = np.linalg.inv(views[0].c2w)
        def masked(points, view):
            return torch.from_numpy(np.where(view.valid[..., None], points, np.nan).astype(np.float32))
        local = [masked(v.points_camera(), v) for v in views]
        world = [v.points_world().astype(np.float64) @ world_to_view0[:3, :3].T + world_to_view0[:3, 3] for v in views]
        global_points = [masked(points, v) for points, v in zip(world, views)]
        conf = [torch.ones(v.height, v.width) for v in views]
        return runner.Prediction(global_points, conf, local, conf, 0.0)

    monkeypatch.setattr(runner, "build_dataset", remembering_build)
    monkeypatch.setattr(runner, "run_model", oracle)
    common = dict(dataset="synthetic", num_views=4, num_samples=1, camera_method="align", **SMALL)
    pose = run_evaluation(EvalConfig(task="pose", out_dir=str(tmp_path / "pose"), **common), model=torch.nn.Identity())
    assert pose["pooled"]["RRA@5_pct"] == 100.0 and pose["pooled"]["RTA@5_pct"] == 100.0
    assert pose["pooled"]["rotation_error_mean_deg"] < 1e-3
    recon = run_evaluation(EvalConfig(task="recon", out_dir=str(tmp_path / "recon"), **common), model=torch.nn.Identity())
    assert recon["mean_over_samples"]["accuracy_mean"] < 1e-4
    assert recon["mean_over_samples"]["completion_mean"] < 1e-4
    assert recon["mean_over_samples"]["alignment_scale"] == pytest.approx(1.0, abs=1e-4)


def test_ground_truth_is_taken_at_the_original_pixel_under_each_model_pixel():
    height, width = 96, 128
    v, u = np.mgrid[0:height, 0:width]
    depth = (2.0 + 0.01 * u + 0.02 * v).astype(np.float32)
    K = np.array([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])
    view = View(image=np.zeros((height, width, 3), np.uint8), K=K, c2w=np.eye(4), depth=depth)
    transform = preprocess_image(Image.fromarray(view.image), size=64).transform  # halves the image
    points, valid = ground_truth_at_model_pixels(view, transform)
    assert points.shape == (48, 64, 3) and valid.all()
    # model pixel (x, y) covers original pixels 2x..2x+1; its centre 2x + 0.5 rounds (to even) to 2x
    np.testing.assert_allclose(points[10, 20], view.points_world()[20, 40], rtol=1e-6)
    np.testing.assert_allclose(points[:, :, 2], depth[::2, ::2], rtol=1e-6)


def test_build_dataset_rejects_bad_requests(tmp_path):
    with pytest.raises(ValueError, match="needs --root"):
        build_dataset("7scenes", None)
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("kitti", tmp_path)
    with pytest.raises(ValueError, match="10 views per sample"):
        build_dataset("re10k", tmp_path, DatasetOptions(num_views=5))
    with pytest.raises(ValueError, match="needs --views"):
        build_dataset("co3d_fast3r", tmp_path)
    with pytest.raises(ValueError, match="supports pose"):
        run_evaluation(EvalConfig(task="recon", dataset="re10k", root=str(tmp_path), out_dir=str(tmp_path / "o")))


def test_cli_runs_pose_and_recon_on_a_co3d_fixture_with_saved_weights(tmp_path, capsys):
    scenes = {"apple": {"seq1": render_scene(20_000_000, 4, 48, 64, trajectory="orbit")},
              "bench": {"seq2": render_scene(20_000_001, 4, 48, 64, trajectory="orbit")}}  # fmt: skip
    write_dust3r_co3d(tmp_path / "co3d", scenes)
    torch.manual_seed(0)
    Fast3R(Fast3RConfig.tiny()).save_pretrained(str(tmp_path / "weights"))
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    common = ["--dataset", "co3d_fast3r", "--root", str(tmp_path / "co3d"), "--views", "3", "--num-samples", "2",
              "--weights", str(tmp_path / "weights"), "--size", "224", "--device", "cpu", "--no-progress"]  # fmt: skip
    args = parser.parse_args(["eval", "pose", *common, "--out", str(tmp_path / "pose")])
    assert args.handler(args) == 0
    pose = json.loads((tmp_path / "pose" / "summary.json").read_text())
    assert pose["num_samples"] == 2 and pose["pooled"]["num_pairs"] == 6
    assert set(pose["per_category"]) == {"apple", "bench"}
    args = parser.parse_args(["eval", "recon", *common, "--out", str(tmp_path / "recon"),
                              "--alignment", "sim3_icp", "--max-points", "3000", "--limit", "1"])  # fmt: skip
    assert args.handler(args) == 0
    recon = json.loads((tmp_path / "recon" / "summary.json").read_text())["mean_over_samples"]
    assert recon["num_pred_points"] == 3000 and np.isfinite(recon["accuracy_mean"])
    assert "accuracy_mean" in capsys.readouterr().out


@pytest.mark.parametrize("weights", ["missing_dir", "nobody/no-such-model"])
def test_bad_weights_fail_before_anything_is_written(tmp_path, monkeypatch, capsys, weights):
    from fast3r.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    code = main(["eval", "pose", "--dataset", "synthetic", "--views", "2", "--num-samples", "1", "--size", "224",
                 "--weights", weights, "--out", "eval_out", "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code == 1 and "fast3r eval: error:" in capsys.readouterr().err
    assert not (tmp_path / "eval_out").exists()


def test_eval_size_defaults_to_the_weights_training_size(tmp_path):
    from fast3r.eval.runner import _with_model_size
    from fast3r.model import Fast3R, Fast3RConfig

    config = Fast3RConfig.tiny()
    Fast3R(config).save_pretrained(str(tmp_path / "weights"))
    resolved = _with_model_size(EvalConfig(task="pose", dataset="synthetic", weights=str(tmp_path / "weights")), None)
    assert resolved.size == config.encoder.img_size
    assert _with_model_size(EvalConfig(task="pose", dataset="synthetic", size=224), None).size == 224
    small = _with_model_size(EvalConfig(task="pose", dataset="synthetic", weights="small"), None)
    assert small.size == 224  # the demo model was trained at 224, as `fast3r reconstruct --weights small` uses
