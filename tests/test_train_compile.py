"""`compile`: the trainer's forward pass and loss run through torch.compile and give the eager losses."""
import pytest
import torch

from fast3r.train.config import TrainConfigError, load_train_config
from fast3r.train.logs import read_log
from fast3r.train.trainer import train


def losses(out_dir, *extra) -> list[float]:
    # one resolution and view count: a single graph to trace
    config = load_train_config("configs/tiny_cpu.toml", [f'out_dir="{out_dir}"', "steps=3", "ckpt_every=0",
                                                         "data.num_views=[2]", "data.resolutions=[[32,32]]", *extra])  # fmt: skip
    assert train(config).steps_done == 3
    return [float(row["loss"]) for row in read_log(out_dir / "train_log.csv")]


def test_compiled_training_steps_give_the_eager_losses(tmp_path, monkeypatch):
    eager = losses(tmp_path / "eager")
    modes, real_compile = [], torch.compile

    def traced_without_codegen(function, mode=None):  # dynamo traces all of it (graph breaks too); no C++ build
        modes.append(mode)
        return real_compile(function, mode=mode, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", traced_without_codegen)
    compiled = losses(tmp_path / "compiled", 'compile="reduce-overhead"')
    assert modes == ["reduce-overhead"]
    assert compiled == pytest.approx(eager, rel=1e-5)


def test_an_unknown_compile_mode_is_refused():
    with pytest.raises(TrainConfigError, match="compile must be one of"):
        load_train_config("configs/tiny_cpu.toml", ['compile="fast"'])
