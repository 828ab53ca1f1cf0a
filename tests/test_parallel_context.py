"""Context-parallel inference on CPU: two gloo processes against the single-process forward pass."""
import pytest
import torch
import torch.distributed as dist

from fast3r.io.images import to_model_range
from fast3r.model import Fast3R, Fast3RConfig
from fast3r.parallel import ContextParallelFast3R, predict_multi_gpu, split_views
from fast3r.parallel.context import replace_modules
from rank_harness import run_on_ranks

SIZES = [(48, 64), (64, 48), (48, 64), (32, 64), (48, 64)]  # 12, 12, 12, 8, 12 tokens: 24 | 32 on 2 ranks
IDS = [0, 10.5, 3, 999, 7]


def views(sizes, batch=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 3, h, w, generator=generator) * 2 - 1 for h, w in sizes]


def relative_errors(outputs, reference):
    return {
        (index, key): ((out[key] - ref[key]).abs().max() / ref[key].abs().max()).item()
        for index, (out, ref) in enumerate(zip(outputs, reference))
        for key in ref
    }


@pytest.mark.parametrize(
    "tokens, ranks, expected",
    [
        ([12, 12, 12, 8, 12], 2, [range(0, 2), range(2, 5)]),
        ([5] * 7, 3, [range(0, 2), range(2, 5), range(5, 7)]),
        ([100, 1, 1], 3, [range(0, 1), range(1, 2), range(2, 3)]),  # every rank gets a view
        ([1, 1, 1, 100], 2, [range(0, 3), range(3, 4)]),
    ],
)
def test_split_views_is_contiguous_balanced_and_never_empty(tokens, ranks, expected):
    assert split_views(tokens, ranks) == expected


def test_split_views_needs_a_view_per_rank():
    with pytest.raises(ValueError, match="at least one view per rank"):
        split_views([4], 2)


def test_replace_modules_shares_weights_and_leaves_the_original():
    block = Fast3R(Fast3RConfig.tiny()).decoder.dec_blocks[0]
    other = torch.nn.Identity()
    clone = replace_modules(block, attn=other)
    assert clone.attn is other and block.attn is not other
    assert clone.mlp.fc1.weight is block.mlp.fc1.weight
    with pytest.raises(KeyError):
        replace_modules(block, nothing=other)


def test_two_processes_match_one_uneven_split_mixed_sizes(tiny_weights):
    inputs = views(SIZES)
    generator = torch.Generator().manual_seed(1)
    inputs[1] = torch.randint(0, 256, (64, 48, 3), dtype=torch.uint8, generator=generator)  # rank 0, as loaded
    inputs[3] = torch.randint(0, 256, (1, 32, 64, 3), dtype=torch.uint8, generator=generator)  # rank 1
    model = Fast3R.from_pretrained(tiny_weights).eval()
    with torch.no_grad():
        reference = model([to_model_range(v) if v.dtype == torch.uint8 else v for v in inputs], image_ids=IDS)
    outputs = predict_multi_gpu(tiny_weights, inputs, image_ids=IDS, num_gpus=2, dtype="fp32", device_type="cpu")
    assert len(outputs) == len(SIZES)
    assert all(out.keys() == ref.keys() for out, ref in zip(outputs, reference))
    assert all(out[key].shape == ref[key].shape for out, ref in zip(outputs, reference) for key in ref)
    errors = relative_errors(outputs, reference)
    assert max(errors.values()) <= 1e-5, max(errors.items(), key=lambda item: item[1])


def _outputs_left_per_rank(device, weights, inputs):
    """On each rank: gather=False leaves exactly this rank's views, equal to one process's outputs."""
    model = Fast3R.from_pretrained(weights, device=device).eval()
    with torch.no_grad():
        reference = model(inputs)
        parallel = ContextParallelFast3R(model)
        outputs = parallel(inputs, gather=False)
    own = parallel.split(inputs)[dist.get_rank()]
    assert [index for index, out in enumerate(outputs) if out is not None] == list(own)
    errors = relative_errors([outputs[i] for i in own], [reference[i] for i in own])
    assert max(errors.values()) <= 1e-5, errors
    return list(own)


def test_outputs_can_stay_on_their_rank_batch_of_two(tiny_weights):
    inputs = views([(32, 32), (32, 48), (48, 32)], batch=2)
    assert run_on_ranks(_outputs_left_per_rank, [(tiny_weights, inputs)] * 2, device_type="cpu") == [0, 1]


def _bad_view_on_rank_1(device, weights, inputs):
    model = Fast3R.from_pretrained(weights, device=device).eval()
    with torch.no_grad():
        ContextParallelFast3R(model)(inputs)


def test_a_bad_view_on_one_rank_stops_every_rank(tiny_weights):
    inputs = views([(32, 32), (32, 32)]) + [torch.zeros(1, 3, 30, 32)]  # rank 1 rejects view 2
    with pytest.raises(RuntimeError, match="another rank failed while checking and encoding"):
        run_on_ranks(_bad_view_on_rank_1, [(tiny_weights, inputs)] * 2, device_type="cpu")


TORCHRUN_SCRIPT = """
import sys, torch
from fast3r.parallel import predict_multi_gpu
weights, out = sys.argv[1], sys.argv[2]
generator = torch.Generator().manual_seed(0)
views = [torch.rand(3, h, w, generator=generator) * 2 - 1 for h, w in {sizes}]
outputs = predict_multi_gpu(weights, views, image_ids={ids}, dtype="fp32", device_type="cpu")
if outputs is not None:  # rank 0
    torch.save(outputs, out)
"""


def test_under_torchrun_every_process_calls_the_same_function(tiny_weights, tmp_path):
    """Several machines: torchrun starts one process per device; rank 0 gets the single-process outputs."""
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(TORCHRUN_SCRIPT.format(sizes=SIZES, ids=IDS))
    out = tmp_path / "outputs.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(script), str(tiny_weights), str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    model = Fast3R.from_pretrained(str(tiny_weights))
    with torch.no_grad():
        reference = model([v[0] for v in views(SIZES)], image_ids=IDS)
    errors = relative_errors(torch.load(out, weights_only=True), reference)
    assert max(errors.values()) <= 1e-5
