"""Run Fast3R over an evaluation set and score camera poses or reconstructions, resumably.

Per sample: load the views, preprocess them to the model size (`fast3r.io.images.preprocess_image`),
run the model, recover cameras with `fast3r.geometry.cameras_from_pointmaps`, and score:
- pose: relative pose errors of the predicted camera-to-world matrices against the ground truth;
  The identity-pose baseline (every camera predicted as view 0's) is scored on the same pairs and
  reported beside the model in summary.json ("identity_baseline") and summary.md (`fast3r.eval.summary`),
  with the pooled figures' 95% intervals over resampled samples;
- recon: predicted points (by default the local pointmaps moved into the global frame by the camera
  alignment) against the ground-truth depth back-projected at the same model pixels, expressed in
  view 0's ground-truth camera frame. Weights of the Sim(3) alignment follow the Fast3R release:
  a pixel's local confidence where it is at or above its view's 85th percentile, 0 elsewhere.

Outputs in `out_dir`: results.jsonl (one JSON record per sample, rewritten atomically after each),
summary.json, summary.md and run_config.json. A rerun with the same settings skips the samples
already in results.jsonl; a rerun with different settings into the same folder is refused.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from fast3r.data.views import View
from fast3r.eval.datasets import (
    DATASET_TASKS,
    POSE,
    RECON,
    SYNTHETIC_IMAGE_HW,
    DatasetOptions,
    EvalDataset,
    EvalSample,
    build_dataset,
)
from fast3r.eval.pose import identity_baseline_errors, metrics_from_errors, relative_pose_errors
from fast3r.eval.recon import ALIGNMENTS, reconstruction_metrics
from fast3r.eval.summary import markdown_table, summarize
from fast3r.io.atomic import write_text_atomic
from fast3r.model import DTYPES
from fast3r.model.pretrained import read_config, resolve_source, weights_source

RESULTS_NAME = "results.jsonl"
SUMMARY_NAME = "summary.json"
TABLE_NAME = "summary.md"
CONFIG_NAME = "run_config.json"
TASKS = (POSE, RECON)
POINT_SOURCES = ("local_aligned", "global")
WEIGHT_PERCENTILE = 85.0


@dataclass
class EvalConfig:
    """One evaluation run. Fields above `out_dir` change the numbers and are recorded in run_config.json."""

    task: str
    dataset: str
    root: str | None = None
    num_views: int | None = None
    weights: str | None = None  # local directory or hub id; None: the published model; "small": the demo model
    size: int | None = None  # model image size; None: the size the weights were trained at
    dtype: str = "fp32"
    alignment: str = "sim3_correspondences"  # recon only; see fast3r.eval.recon
    points: str = "local_aligned"  # recon only: "local_aligned" or "global"
    camera_method: str = "auto"  # cameras_from_pointmaps method: auto | align | pnp
    setting: str = "spann3r"  # frame strides of 7scenes / nrgbd / dtu
    num_samples: int | None = None  # co3d_fast3r / synthetic sample count (default 100 / 20)
    max_points: int | None = None  # recon: random subset of valid pixels per sample (seed 0)
    synthetic_image_hw: tuple[int, int] = SYNTHETIC_IMAGE_HW  # synthetic: rendered (H, W)
    out_dir: str = "eval_out"
    limit: int | None = None  # evaluate only the first `limit` samples
    device: str | None = None  # default: cuda when available, else cpu
    progress: bool = True

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {', '.join(ALIGNMENTS)}, got {self.alignment!r}")
        if self.points not in POINT_SOURCES:
            raise ValueError(f"points must be one of {', '.join(POINT_SOURCES)}, got {self.points!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.num_views is not None and self.num_views < 2:
            raise ValueError(f"views must be at least 2, got {self.num_views}")

    def settings(self) -> dict:
        """What decides the numbers (and so whether earlier results may be reused)."""
        recorded = {key: value for key, value in asdict(self).items() if key not in ("out_dir", "limit", "device", "progress")}
        if recorded["root"] is not None:
            recorded["root"] = str(Path(recorded["root"]).resolve())
        return json.loads(json.dumps(recorded))  # tuples as lists, as run_config.json reads back


# ----------------------------------------------------------------------------------------------
# Model and cameras


@dataclass
class Prediction:
    global_points: list[torch.Tensor]  # per view (H, W, 3) float32, view 0's frame
    confidence: list[torch.Tensor]  # per view (H, W)
    local_points: list[torch.Tensor] | None
    local_confidence: list[torch.Tensor] | None
    seconds: float


def run_model(model: torch.nn.Module, tensors: list[torch.Tensor], device: torch.device, dtype: str) -> Prediction:
    """One forward pass over the (3, H, W) view tensors; outputs moved to the CPU as float32."""
    inputs = [tensor[None].to(device) for tensor in tensors]
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, dtype=DTYPES[dtype], enabled=dtype != "fp32"):
        outputs = model(inputs, image_ids=None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start

    def gather(key: str) -> list[torch.Tensor] | None:
        if key not in outputs[0]:
            return None
        return [view[key][0].detach().float().cpu() for view in outputs]

    return Prediction(gather("pts3d_in_other_view"), gather("conf"), gather("pts3d_local"), gather("conf_local"), seconds)


def estimate_cameras(prediction: Prediction, method: str):
    from fast3r.geometry import cameras_from_pointmaps

    return cameras_from_pointmaps(
        prediction.global_points,
        prediction.confidence,
        local_pointmaps=prediction.local_points,
        local_confidence=prediction.local_confidence,
        method=method,
        progress=False,
    )


# ----------------------------------------------------------------------------------------------
# Ground truth at model pixels


def ground_truth_at_model_pixels(view: View, transform) -> tuple[np.ndarray, np.ndarray]:
    """World points (h, w, 3) float64 and validity (h, w) of the original pixels nearest to each
    model pixel's centre (the model image is a resized crop of the original)."""
    width, height = transform.model_size
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    original = np.rint(transform.pixel_to_original(np.stack([u, v], axis=-1))).astype(np.int64)  # (h, w, 2)
    inside = (
        (original[..., 0] >= 0) & (original[..., 0] < view.width) & (original[..., 1] >= 0) & (original[..., 1] < view.height)
    )
    column = np.clip(original[..., 0], 0, view.width - 1)
    row = np.clip(original[..., 1], 0, view.height - 1)
    points = view.points_world().astype(np.float64)[row, column]
    return points, inside & view.valid[row, column]


def _view_percentile_weights(confidence: torch.Tensor) -> np.ndarray:
    """confidence (H, W) -> weights (H, W): the confidence where at or above the view's 85th percentile."""
    values = confidence.numpy().astype(np.float64)
    threshold = np.percentile(values[np.isfinite(values)], WEIGHT_PERCENTILE) if np.isfinite(values).any() else np.inf
    return np.where(values >= threshold, values, 0.0)


# ----------------------------------------------------------------------------------------------
# Scoring one sample


def _pairs_record(errors) -> dict[str, list[float]]:
    return {"rotation_deg": np.round(errors.rotation_deg, 6).tolist(), "translation_deg": np.round(errors.translation_deg, 6).tolist()}


def score_pose(cameras, views: list[View]) -> dict:
    """The sample's pair errors, and those of the identity-pose baseline on the same cameras."""
    truth = np.stack([view.c2w for view in views])
    errors = relative_pose_errors(cameras.c2w, truth)
    return {
        "metrics": metrics_from_errors(errors.rotation_deg, errors.translation_deg),
        "pairs": _pairs_record(errors),
        "identity_pairs": _pairs_record(identity_baseline_errors(truth)),
    }


def score_recon(config: EvalConfig, dataset: EvalDataset, prediction: Prediction, cameras, views, transforms) -> dict:
    points_used = config.points
    if config.points == "local_aligned" and cameras.aligned_points is None:
        points_used = "global"  # no local head, or PnP cameras: only the global pointmaps exist
    pred_views = cameras.aligned_points if points_used == "local_aligned" else prediction.global_points
    weight_source = prediction.local_confidence if prediction.local_confidence is not None else prediction.confidence
    world_to_view0 = np.linalg.inv(views[0].c2w)
    pred_all, gt_all, weight_all = [], [], []
    for index, (view, transform) in enumerate(zip(views, transforms)):
        gt_world, valid = ground_truth_at_model_pixels(view, transform)
        gt_view0 = gt_world @ world_to_view0[:3, :3].T + world_to_view0[:3, 3]
        pred = torch.as_tensor(pred_views[index]).detach().cpu().numpy().astype(np.float64)  # (h, w, 3)
        keep = valid & np.isfinite(pred).all(axis=-1)
        pred_all.append(pred[keep])
        gt_all.append(gt_view0[keep])
        weight_all.append(_view_percentile_weights(weight_source[index])[keep])
    pred_points, gt_points, weights = np.concatenate(pred_all), np.concatenate(gt_all), np.concatenate(weight_all)
    if pred_points.shape[0] < 3:
        raise ValueError("fewer than 3 pixels have both ground-truth depth and a finite prediction")
    if config.max_points is not None and pred_points.shape[0] > config.max_points:
        keep = np.sort(np.random.default_rng(0).choice(pred_points.shape[0], config.max_points, replace=False))
        pred_points, gt_points, weights = pred_points[keep], gt_points[keep], weights[keep]
    metrics = reconstruction_metrics(
        pred_points, gt_points, alignment=config.alignment, weights=weights, icp_threshold=dataset.icp_threshold
    )
    return {"metrics": metrics, "points_used": points_used}


def evaluate_sample(config: EvalConfig, dataset: EvalDataset, sample: EvalSample, model, device) -> dict:
    from fast3r.io.images import preprocess_image

    views = sample.load()
    loaded = [preprocess_image(Image.fromarray(view.image), size=config.size, name=view.name) for view in views]
    prediction = run_model(model, [image.tensor for image in loaded], device, config.dtype)
    cameras = estimate_cameras(prediction, config.camera_method)
    record = {
        "sample_id": sample.sample_id,
        "category": sample.category,
        "num_views": len(views),
        "inference_seconds": prediction.seconds,
    }
    if config.task == POSE:
        record.update(score_pose(cameras, views))
    else:
        record.update(score_recon(config, dataset, prediction, cameras, views, [image.transform for image in loaded]))
    return record


# ----------------------------------------------------------------------------------------------
# The run


def _read_results(path: Path) -> dict[str, dict]:
    results: dict[str, dict] = {}
    if not path.is_file():
        return results
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON record ({err}); move the file away to start over") from err
        results[record["sample_id"]] = record
    return results


def _check_run_config(out_dir: Path, config: EvalConfig) -> None:
    """Refuse an output folder holding results made with other settings; writes nothing."""
    path = out_dir / CONFIG_NAME
    if not path.is_file():
        return
    settings = config.settings()
    previous = json.loads(path.read_text(encoding="utf-8"))
    if previous != settings:
        changed = sorted(key for key in set(previous) | set(settings) if previous.get(key) != settings.get(key))
        raise ValueError(
            f"{out_dir} holds results made with other settings ({', '.join(changed)} differ); "
            "choose another --out or delete that folder"
        )


def load_model(config: EvalConfig, device: torch.device) -> torch.nn.Module:
    from fast3r.model import Fast3R

    return Fast3R.from_pretrained(weights_source(config.weights)).to(device).eval()


def _with_model_size(config: EvalConfig, model: torch.nn.Module | None) -> EvalConfig:
    """`config` with its size resolved as `fast3r reconstruct` does: the size the weights were trained at."""
    if config.size is not None:
        return config
    model_config = model.config if model is not None else read_config(resolve_source(weights_source(config.weights)))
    return dataclasses.replace(config, size=model_config.encoder.img_size)


def run_evaluation(config: EvalConfig, model: torch.nn.Module | None = None) -> dict:
    """Evaluate, write results.jsonl / summary.json / summary.md into config.out_dir, return the summary."""
    config.validate()
    options = DatasetOptions(
        num_views=config.num_views,
        setting=config.setting,
        num_samples=config.num_samples,
        synthetic_image_hw=tuple(config.synthetic_image_hw),
    )
    tasks = DATASET_TASKS.get(config.dataset, TASKS)
    if config.task not in tasks:
        raise ValueError(f"dataset {config.dataset!r} supports {' and '.join(tasks)}, not {config.task}")
    dataset = build_dataset(config.dataset, config.root, options)
    samples = dataset.samples[: config.limit] if config.limit else dataset.samples
    if not samples:
        raise ValueError(f"dataset {config.dataset!r} at {config.root} has no samples")
    config = _with_model_size(config, model)
    out_dir = Path(config.out_dir)
    _check_run_config(out_dir, config)
    results_path = out_dir / RESULTS_NAME
    results = _read_results(results_path)
    # Pose records from before the identity baseline was recorded are scored again.
    todo = [s for s in samples if s.sample_id not in results or (config.task == POSE and "identity_pairs" not in results[s.sample_id])]

    if todo:
        device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = (model if model is not None else load_model(config, device)).to(device).eval()
        # Inputs and weights are confirmed: only now is anything written.
        write_text_atomic(out_dir / CONFIG_NAME, json.dumps(config.settings(), indent=2) + "\n")
        for sample in tqdm(todo, desc=f"{config.task} {config.dataset}", unit="sample", disable=not config.progress):
            try:
                results[sample.sample_id] = evaluate_sample(config, dataset, sample, model, device)
            except ValueError as err:
                raise ValueError(f"sample {sample.sample_id}: {err}") from err
            write_text_atomic(results_path, "".join(json.dumps(record) + "\n" for record in results.values()))

    summary = summarize(config.task, [results[sample.sample_id] for sample in samples])
    summary["dataset"] = config.dataset
    summary["units"] = dataset.units
    summary["settings"] = config.settings()
    write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    title = f"fast3r eval {config.task} on {config.dataset} ({summary['num_samples']} samples, units: {dataset.units})"
    write_text_atomic(out_dir / TABLE_NAME, markdown_table(summary, title))
    return summary
