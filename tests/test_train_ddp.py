"""Two CPU processes (gloo): DDP keeps the ranks' parameters identical while each rank sees its own data."""
import json
import os
import socket

import torch
import torch.multiprocessing as mp

from fast3r.model import Fast3R, Fast3RConfig
from fast3r.train.config import load_train_config
from fast3r.train.data import training_batches
from fast3r.train.distributed import setup_distributed, teardown_distributed
from fast3r.train.trainer import _Run


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, mode: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    config = load_train_config(
        "configs/tiny_cpu.toml",
        [f'distributed="{mode}"', f'out_dir="{out_dir}"', "data.batch_size=1", "data.resolutions=[[32,32]]", "data.num_views=[2]"],
    )
    context = setup_distributed(config.distributed, config.device)
    try:
        run = _Run(config, context)
        initial = [p.detach().clone() for p in run.model.parameters()]
        images = []
        for batch in training_batches(config.data, config.seed, 0, 2, context.rank, context.world_size, context.device):
            images.append(float(batch.views[0]["img"].sum()))
            run.step(batch)
        run.checkpoint(2)
        flat = torch.cat([p.detach().reshape(-1) for p in run.model.state_dict().values()] if mode == "ddp" else [])
        report = {
            "rank": rank,
            "images": images,
            "changed": any(not torch.equal(a, b.detach()) for a, b in zip(initial, run.model.parameters())) if mode == "ddp" else True,
            "params": flat.tolist()[:2000],
            "checksum": float(flat.double().sum()) if mode == "ddp" else 0.0,
        }
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
            json.dump(report, handle)
    finally:
        teardown_distributed(context)


def test_ddp_two_cpu_processes(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), "ddp", str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["images"] != rank1["images"]  # each rank trains on its own scenes
    assert rank0["changed"] and rank1["changed"]
    assert rank0["checksum"] == rank1["checksum"] and rank0["params"] == rank1["params"]
    assert (tmp_path / "checkpoints" / "ckpt_00000002.pt").is_file()  # written once, by rank 0
    payload = torch.load(tmp_path / "checkpoints" / "ckpt_00000002.pt", weights_only=True)
    assert len(payload["rng"]) == 2 and payload["world_size"] == 2


def _slot_worker(rank: int, world_size: int, port: int, out_dir: str, from_slot: str | None) -> None:
    """Two steps under DDP, writing a slot checkpoint; with `from_slot`, continue from one first."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    slot_out = os.path.join(out_dir, "slot")
    config = load_train_config(
        "configs/tiny_cpu.toml",
        ['distributed="ddp"', f'out_dir="{out_dir}"', f'slot_out="{slot_out}"', "data.batch_size=1",
         "data.resolutions=[[32,32]]", "data.num_views=[2]", "steps=6"],
    )
    context = setup_distributed(config.distributed, config.device)
    try:
        run = _Run(config, context)
        start = run.resume_from_slot(from_slot) if from_slot else 0
        for batch in training_batches(config.data, config.seed, start, 2, context.rank, context.world_size, context.device):
            run.step(batch)
        run.save_slot(start + 2)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
            json.dump({"start": start, "checksum": float(sum(p.double().sum() for p in run.model.parameters()))}, handle)
    finally:
        teardown_distributed(context)


def test_ddp_continues_from_a_slot_checkpoint(tmp_path):
    """Every rank restores the slot (weights, factored moments, step): rank 1 too, whose optimiser state
    a rank-0-only state dict would leave empty."""
    first, second = tmp_path / "first", tmp_path / "second"
    mp.spawn(_slot_worker, args=(2, _free_port(), str(first), None), nprocs=2, join=True)
    mp.spawn(_slot_worker, args=(2, _free_port(), str(second), str(first / "slot")), nprocs=2, join=True)
    rank0, rank1 = (json.loads((second / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["start"] == rank1["start"] == 2
    assert rank0["checksum"] == rank1["checksum"]
    first_weights = json.loads((first / "rank0.json").read_text())["checksum"]
    assert rank0["checksum"] != first_weights  # it trained on from the slot


def test_gradients_keep_their_weights_memory_layout():
    """Why wrap_model may silence DDP's stride warning: a weight gradient whose strides differ from its
    weight's (the heads run channels-last; which ones differ depends on the kernels, e.g. 1x1 convolutions
    on several CPU threads or on CUDA) differs only along size-1 dimensions, so the memory layouts match."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the kernels that produced the warning's strides here; one thread gives none
    try:
        model = Fast3R(Fast3RConfig.small())
        outputs = model([torch.randn(1, 3, 64, 64) for _ in range(2)], image_ids=[0.0, 1.0])
        sum(value.float().sum() for view in outputs for value in view.values()).backward()
    finally:
        torch.set_num_threads(threads)
    for name, parameter in model.named_parameters():
        if parameter.grad is not None and parameter.grad.stride() != parameter.stride():
            sizes_over_one = [dim for dim, size in enumerate(parameter.shape) if size > 1]
            assert [parameter.grad.stride(d) for d in sizes_over_one] == [parameter.stride(d) for d in sizes_over_one], name
