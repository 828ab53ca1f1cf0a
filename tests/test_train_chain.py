"""benchmarks/train_chain.sh: the repository holds a chain that a clean clone can continue (the bundled
weights are the last kept slot's, and its optimiser file and log sit beside them)."""
import csv
import os
import subprocess
from pathlib import Path

from fast3r.model import Fast3R
from fast3r.train.slot import read_slot

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "fast3r" / "weights" / "fast3r-small-224"


def test_the_slot_assembles_from_the_bundled_weights_and_continues_the_log(tmp_path):
    slot = tmp_path / "slot"
    env = {**os.environ, "OUT": str(tmp_path / "out"), "SLOT_DIR": str(slot), "ASSEMBLE_ONLY": "1"}
    run = subprocess.run(["bash", "benchmarks/train_chain.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    for shard in BUNDLED.glob("model*.safetensors*"):
        assert (slot / shard.name).read_bytes() == shard.read_bytes()
    metadata, moments = read_slot(slot)
    with open(slot / "train_log.csv") as f:
        last_logged = int(list(csv.DictReader(f))[-1]["step"])
    assert last_logged <= metadata["step"] < last_logged + 10, "the optimiser file and the log are of one slot"
    model = Fast3R.from_pretrained(str(slot))
    names = {key.rsplit("/exp_avg_sq.", 1)[0] for key in moments}
    unused = {name for name, _ in model.named_parameters() if ".refinenet4.resConfUnit1." in name}  # no skip input
    trained = {name for name, _ in model.named_parameters()} - unused
    assert names == trained, "second moments for every trained parameter"
