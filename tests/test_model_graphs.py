"""CUDA-graph replay of the forward pass: the eager fallback here; capture and replay need CUDA."""
import pytest
import torch

from fast3r.model import Fast3R, Fast3RConfig, RunOptions
from fast3r.model.graphs import GraphedFast3R


def views(sizes, device="cpu", seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.rand(1, 3, h, w, generator=generator) * 2 - 1).to(device) for h, w in sizes]


@pytest.fixture(scope="module")
def model() -> Fast3R:
    torch.manual_seed(0)
    return Fast3R(Fast3RConfig.tiny()).eval()


def test_off_cuda_the_call_is_the_eager_forward(model):
    graphed = GraphedFast3R(model)
    inputs = views([(32, 48), (48, 32)])
    with torch.no_grad():
        assert not graphed.applies(inputs)
        out = graphed(inputs, image_ids=[0, 500])
        ref = model(inputs, image_ids=[0, 500])
    assert all(torch.equal(o[key], r[key]) for o, r in zip(out, ref) for key in r)
    assert graphed.graphs == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_replay_equals_eager_and_follows_new_inputs(model):
    cuda_model = Fast3R(Fast3RConfig.tiny()).eval().cuda()
    cuda_model.load_state_dict(model.state_dict())
    graphed = GraphedFast3R(cuda_model, max_graphs=1)
    with torch.no_grad():
        for seed, ids in ((0, [0, 500]), (1, [0, 999]), (2, [3, 7])):  # capture, then two replays
            inputs = views([(32, 48), (48, 32)], "cuda", seed)
            out = graphed(inputs, image_ids=ids, options=RunOptions(output_device="cpu"))
            ref = cuda_model(inputs, image_ids=ids)
            assert all(torch.equal(o[key], r[key].cpu()) for o, r in zip(out, ref) for key in r)
        graphed(views([(32, 32), (32, 32)], "cuda"))  # another shape: a second graph evicts the first
    assert len(graphed.graphs) == 1
    with torch.enable_grad():
        assert not graphed.applies(inputs)
