"""`compile`: the trainer's forward pass and loss run through torch.compile and give the eager losses."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from fast3r.train.config import TrainConfigError, load_train_config
from fast3r.train.data import training_batches
from fast3r.train.distributed import setup_distributed, teardown_distributed
from fast3r.train.logs import read_log
from fast3r.train.trainer import _Run, train
from test_train_ddp import _free_port


def losses(out_dir, *extra) -> list[float]:
    # one resolution and view count: a single graph to trace
    config = load_train_config("configs/tiny_cpu.toml", [f'out_dir="{out_dir}"', "steps=3", "ckpt_every=0",
                                                         "data.num_views=[2]", "data.resolutions=[[32,32]]", *extra])  # fmt: skip
    assert train(config).steps_done == 3
    return [float(row["loss"]) for row in read_log(out_dir / "train_log.csv")]


def test_compiled_training_steps_give_the_eager_losses(tmp_path, monkeypatch):
    eager = losses(tmp_path / "eager")
    modes, real_compile = [], torch.compile

    def traced_without_codegen(target, mode=None):  # dynamo traces all of it (graph breaks too); no C++ build
        modes.append(mode)
        return real_compile(target, mode=mode, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", traced_without_codegen)
    compiled = losses(tmp_path / "compiled", 'compile="reduce-overhead"')
    assert modes == ["reduce-overhead"] * 2  # the model and the loss
    assert compiled == pytest.approx(eager, rel=1e-5)


def test_an_unknown_compile_mode_is_refused():
    with pytest.raises(TrainConfigError, match="compile must be one of"):
        load_train_config("configs/tiny_cpu.toml", ['compile="fast"'])


def _ddp_worker(rank: int, port: int, compile_mode: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    config = load_train_config("configs/tiny_cpu.toml", ['distributed="ddp"', f'out_dir="{out_dir}"', f'compile="{compile_mode}"',
                                                         "data.batch_size=1", "data.resolutions=[[32,32]]", "data.num_views=[2]"])  # fmt: skip
    context = setup_distributed(config.distributed, config.device)
    try:
        run = _Run(config, context)
        norms = [float(run.step(batch)[2]) for batch in training_batches(config.data, config.seed, 0, 2, rank, 2, context.device)]
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(norms))
    finally:
        teardown_distributed(context)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor builds C++ on the CPU")
def test_compiled_steps_under_ddp_give_the_eager_gradients(tmp_path):
    """Inductor under DDP (2 gloo ranks): dynamo's DDP graph splitting once gave gradient norms 1.4% off."""
    norms = {}
    for mode in ("", "default"):
        out_dir = tmp_path / (mode or "eager")
        out_dir.mkdir()
        mp.spawn(_ddp_worker, args=(_free_port(), mode, str(out_dir)), nprocs=2, join=True)
        norms[mode] = json.loads((out_dir / "rank0.json").read_text())
    assert norms["default"] == pytest.approx(norms[""], rel=1e-5)
