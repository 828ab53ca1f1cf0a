"""The training loop: data, bf16 autocast, clipping, logs, atomic checkpoints, exact resume, export.

Outputs in `out_dir`: config.json (the run's settings), train_log.csv, checkpoints/ckpt_<step>.pt,
model/ (fp32 `save_pretrained`), model_fp16/ (optional, sharded), heldout.json, summary.json; with
`slot_out`, a compact slot checkpoint there too (fast3r.train.slot).
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from fast3r.io.atomic import write_text_atomic
from fast3r.model import Fast3R
from fast3r.model.pretrained import alias_keys, load_state

from .activation_checkpointing import enable_activation_checkpointing
from .config import TrainConfig
from .data import Batch, training_batches
from .distributed import (
    DistributedContext,
    freeze_unused_parameters,
    full_model_state,
    full_optimizer_state,
    load_full_state,
    setup_distributed,
    teardown_distributed,
    wrap_model,
)
from .heldout import evaluate_heldout
from .logs import LOG_NAME, TrainLog
from .loss import pointmap_loss
from .optim import build_optimizer, build_scheduler, optimiser_step
from .slot import read_slot, restored_optimizer_state, save_slot
from .state import capture_rng_state, latest_checkpoint, load_checkpoint, restore_rng_state, save_checkpoint

FP16_SHARD_BYTES = 16_000_000
COMPONENTS = ("global", "local", "dist_global", "dist_local", "conf_global", "conf_local")


@dataclass
class TrainResult:
    out_dir: Path
    steps_done: int
    stopped_early: bool
    final_loss: float | None
    heldout: dict | None
    seconds: float


def compile_forward_and_loss(model: torch.nn.Module, mode: str) -> tuple[Callable, Callable]:
    """The model and `pointmap_loss` as a training step calls them: through `torch.compile(mode=...)`
    ("default": torch's default mode), or as they are for mode ""."""
    if not mode:
        return model, pointmap_loss
    compile_mode = None if mode == "default" else mode
    return torch.compile(model, mode=compile_mode), torch.compile(pointmap_loss, mode=compile_mode)


class _Run:
    """The live objects of one training process."""

    def __init__(self, config: TrainConfig, context: DistributedContext):
        self.config, self.context = config, context
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        model = config.model.build()
        if config.model.activation_checkpointing:
            enable_activation_checkpointing(model)
        model.to(context.device)
        self.frozen = freeze_unused_parameters(model, context.device)
        self.model = model
        self.wrapped = wrap_model(model, context)
        fused = context.device.type == "cuda" and context.mode != "fsdp2"
        self.optimizer = build_optimizer(self.wrapped, config.optim, fused=fused)
        self.scheduler = build_scheduler(self.optimizer, config.optim, config.steps)
        self.bf16 = config.bf16 and context.device.type == "cuda"  # autocast
        if config.compile and context.mode == "ddp":
            # Dynamo's DDP graph splitting gave gradients 1.4% off eager's with inductor (torch 2.13, CPU,
            # gloo; not with aot_eager): compile whole graphs and let DDP reduce after the backward.
            torch._dynamo.config.optimize_ddp = False
        self.forward, self.loss = compile_forward_and_loss(self.wrapped, config.compile)

    def step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, float]:
        """One optimiser step; returns the loss, its components, the gradient norm and the lr used."""
        device = self.context.device
        images = [view["img"].to(device, non_blocking=True) for view in batch.views]
        targets = [
            {key: view[key].to(device, non_blocking=True) for key in ("pts3d", "valid", "camera_pose")}
            for view in batch.views
        ]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            preds = self.forward(images, image_ids=batch.image_ids)
        loss, parts = self.loss(preds, targets)
        grad_norm, lr = optimiser_step(loss, self.wrapped, self.optimizer, self.scheduler, self.config.optim.grad_clip)
        return loss.detach(), parts, grad_norm, lr

    def checkpoint(self, step: int) -> None:
        """Every rank takes part (state gathering is collective); rank 0 writes."""
        model_state = full_model_state(self.wrapped)
        optimizer_state = full_optimizer_state(self.wrapped, self.optimizer)
        rng_states = self.context.gather_objects(capture_rng_state())
        if self.context.is_main:
            payload = {
                "model": model_state,
                "optimizer": optimizer_state,
                "scheduler": self.scheduler.state_dict(),
                "data_position": step,
                "rng": rng_states,
                "world_size": self.context.world_size,
                "config": json.dumps(self.config.to_dict()),
            }
            save_checkpoint(self.config.out_dir, step, payload, self.config.keep_checkpoints)
        self.context.barrier()

    def resume(self) -> int:
        """Load the newest checkpoint of out_dir; returns its step (0 when there is none)."""
        path = latest_checkpoint(self.config.out_dir)
        if path is None:
            return 0
        payload = load_checkpoint(path)
        self._check_schedule(payload["scheduler"], path)
        load_full_state(self.wrapped, self.optimizer, payload["model"], payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload["world_size"] == self.context.world_size:
            restore_rng_state(payload["rng"][self.context.rank])
        elif self.context.is_main:
            print(f"resuming {payload['world_size']}-process checkpoint on {self.context.world_size}: RNG states not restored")
        return int(payload["data_position"])

    def _check_schedule(self, scheduler_state: dict, source: Path) -> None:
        planned = scheduler_state["lr_lambdas"][0]["total_steps"]
        if planned != self.config.steps:
            raise ValueError(
                f"{source} belongs to a {planned}-step schedule but the config asks for {self.config.steps} steps; "
                "resume with the same steps (the learning-rate schedule depends on them)"
            )

    def save_slot(self, step: int) -> None:
        """Write the compact slot checkpoint (fast3r.train.slot) into config.slot_out (collective)."""
        model = self.export_model()
        optimizer_state = full_optimizer_state(self.wrapped, self.optimizer)
        if self.context.is_main:
            log_path = Path(self.config.out_dir) / LOG_NAME
            save_slot(self.config.slot_out, model, optimizer_state, self.scheduler.state_dict(), step, self.config.to_dict(), log_path)
        self.context.barrier()

    def resume_from_slot(self, folder: str) -> int:
        """Load a slot checkpoint (weights, factored moments, schedule) and return its step. Not exact:
        see fast3r.train.slot."""
        metadata, moments = read_slot(folder)
        self._check_schedule(metadata["scheduler"], Path(folder))
        stored = Fast3R.from_pretrained(folder)
        aliases = alias_keys(stored)  # as full_model_state writes it: DDP's wrapper names no aliases
        weights = {key: value.float() for key, value in stored.state_dict().items() if key not in aliases}
        fresh = full_optimizer_state(self.wrapped, self.optimizer, every_rank=True)  # each rank rebuilds its own
        load_full_state(self.wrapped, self.optimizer, weights, restored_optimizer_state(fresh, moments, metadata["step"]))
        self.scheduler.load_state_dict(metadata["scheduler"])
        return int(metadata["step"])

    def export_model(self) -> Fast3R | None:
        """A plain fp32 copy of the trained model on rank 0's device; None on the other ranks (collective)."""
        state = full_model_state(self.wrapped)
        if not self.context.is_main:
            return None
        model = Fast3R(self.model.config)
        load_state(model, state, "the trained weights")
        return model.to(self.context.device).eval()


def _check_out_dir(config: TrainConfig, resume: bool, from_slot: str | None) -> None:
    out_dir = Path(config.out_dir)
    if resume and from_slot:
        raise ValueError("--resume continues from out_dir's checkpoints, --from-slot from a slot checkpoint: pass one")
    if from_slot and config.slot_out and Path(from_slot).resolve() == Path(config.slot_out).resolve():
        raise ValueError(f"--from-slot {from_slot} is also slot_out: the run would overwrite what it starts from")
    if not resume and latest_checkpoint(out_dir) is not None:
        raise ValueError(f"{out_dir} already holds checkpoints: pass --resume to continue, or choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} exists and is not a directory")


def train(config: TrainConfig, resume: bool = False, from_slot: str | None = None) -> TrainResult:
    """Run the training described by `config`, or continue it: `resume` from out_dir's newest
    checkpoint (exactly), `from_slot` from a compact slot checkpoint folder (see fast3r.train.slot; its
    log is continued). See the module docstring for the outputs."""
    config.validate()
    _check_out_dir(config, resume, from_slot)
    context = setup_distributed(config.distributed, config.device)
    try:
        return _train(config, context, resume, from_slot)
    finally:
        teardown_distributed(context)


def _train(config: TrainConfig, context: DistributedContext, resume: bool, from_slot: str | None) -> TrainResult:
    out_dir = Path(config.out_dir)
    main = context.is_main
    run = _Run(config, context)
    start_step = run.resume() if resume else run.resume_from_slot(from_slot) if from_slot else 0
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "config.json", json.dumps(config.to_dict(), indent=2))
        if from_slot and (Path(from_slot) / LOG_NAME).is_file():
            shutil.copyfile(Path(from_slot) / LOG_NAME, out_dir / LOG_NAME)
    continuing = resume or bool(from_slot)
    log = TrainLog(out_dir, start_step if continuing else None, config.tensorboard) if main else None
    batches = training_batches(
        config.data, config.seed, start_step, config.steps, context.rank, context.world_size, context.device, bool(from_slot)
    )

    began = time.perf_counter()
    window_start, window_views = began, 0
    step, stopped_early, last_loss = start_step, False, None
    bar = tqdm(total=config.steps, initial=start_step, desc="train", disable=not (main and config.progress), dynamic_ncols=True)
    for batch in batches:
        loss, parts, grad_norm, lr = run.step(batch)
        step = batch.step + 1
        window_views += batch.views[0]["img"].shape[0] * len(batch.views) * context.world_size
        bar.update(1)
        if step % config.log_every == 0 or step == config.steps:
            values = context.mean(torch.stack([loss, grad_norm.float(), *(parts[k] for k in COMPONENTS if k in parts)]))
            values = values.tolist()
            now = time.perf_counter()
            last_loss = values[0]
            if main:
                row = {"step": step, "loss": values[0], "grad_norm": values[1]}
                row.update(zip([k for k in COMPONENTS if k in parts], values[2:]))
                row.update(
                    lr=lr,
                    num_views=len(batch.views),
                    height=batch.views[0]["img"].shape[-2],
                    width=batch.views[0]["img"].shape[-1],
                    time_s=now - began,
                    views_per_s=window_views / max(now - window_start, 1e-9),
                )
                log.write(row)
                bar.set_postfix(loss=f"{values[0]:.4f}", lr=f"{row['lr']:.2e}")
            window_start, window_views = now, 0
        if config.time_limit_minutes and step < config.steps:
            over_time = time.perf_counter() - began > 60 * config.time_limit_minutes
            stopped_early = bool(context.gather_objects(over_time)[0])  # rank 0 decides for all
        if stopped_early or step == config.steps or (config.ckpt_every and step % config.ckpt_every == 0):
            run.checkpoint(step)
            if config.slot_out:
                run.save_slot(step)
        if stopped_early:
            break
    bar.close()
    del batches
    if log is not None:
        log.close()
    train_seconds = time.perf_counter() - began

    exported = run.export_model()
    heldout = None
    if main:
        exported.save_pretrained(str(out_dir / "model"))
        if config.export_fp16:
            exported.save_pretrained(str(out_dir / "model_fp16"), dtype=torch.float16, max_shard_bytes=FP16_SHARD_BYTES)
        if config.heldout_at_end and config.heldout.scenes:
            heldout = evaluate_heldout(exported, config.heldout, context.device, config.bf16 and context.device.type == "cuda", config.progress)
            write_text_atomic(out_dir / "heldout.json", json.dumps(heldout, indent=2))
        summary = {
            "steps_done": step,
            "steps_planned": config.steps,
            "stopped_early": stopped_early,
            "final_loss": last_loss,
            "train_seconds": train_seconds,
            "frozen_unused_parameters": run.frozen,
            "world_size": context.world_size,
            "device": str(context.device),
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(context.device) / 2**30 if context.device.type == "cuda" else None,
        }
        write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
    context.barrier()
    return TrainResult(out_dir, step, stopped_early, last_loss, heldout, train_seconds)
