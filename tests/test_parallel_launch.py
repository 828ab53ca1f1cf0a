"""`PredictRanks`: ranks started before the views exist, on CPU gloo processes with tiny weights."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from fast3r.model import Fast3R
from fast3r.parallel import PredictRanks

REPO = Path(__file__).resolve().parents[1]
SIZES = [(48, 64), (64, 48), (48, 64), (32, 64)]


def rgb_views(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=generator) for h, w in SIZES]


def test_ranks_start_before_the_views_and_match_one_process(tiny_weights):
    ranks = PredictRanks(tiny_weights, 2, dtype="fp32", device_type="cpu")
    images = rgb_views()  # made while the ranks start
    with ranks:
        outputs = ranks.predict(images, image_ids=[0, 5, 2, 9])
    model = Fast3R.from_pretrained(str(tiny_weights))
    with torch.no_grad():
        reference = model([(image.permute(2, 0, 1).float() / 127.5 - 1) for image in images], image_ids=[0, 5, 2, 9])
    for out, ref in zip(outputs, reference):
        for key in ref:
            assert ((out[key] - ref[key]).abs().max() / ref[key].abs().max()).item() <= 1e-5, key
    events = {(rank, event): seconds for seconds, rank, event in ranks.timeline}
    for rank in (0, 1):
        assert (rank, "group joined") in events and (rank, "weights loaded") in events and (rank, "done") in events
    assert events[(1, "process started")] <= events[(1, "weights loaded")] <= events[(1, "group joined")]
    assert events[(0, "weights loaded")] <= events[(0, "group joined")] <= events[(0, "views sent")]
    assert not dist.is_initialized()
    assert not any(process.is_alive() for process in ranks._workers)


def test_closed_without_a_pass_the_ranks_stop_and_a_second_pass_is_refused(tiny_weights):
    with PredictRanks(tiny_weights, 2, dtype="fp32", device_type="cpu") as ranks:
        ranks.wait_ready()
    assert not dist.is_initialized() and not any(process.is_alive() for process in ranks._workers)
    assert {event for _, rank, event in ranks.timeline if rank == 1} >= {"process started", "weights loaded"}
    with pytest.raises(RuntimeError, match="one pass"):
        ranks._sent = True
        ranks.predict(rgb_views())


def test_a_failure_while_the_ranks_start_stops_them_at_once(tiny_weights):
    """The caller fails (a bad photo) while the ranks are still starting: no wait, no rank left over."""
    ranks = PredictRanks(tiny_weights, 2, dtype="fp32", device_type="cpu")
    began = time.monotonic()
    with pytest.raises(ValueError, match="bad photo"):
        with ranks:
            raise ValueError("bad photo")
    assert time.monotonic() - began < 20
    assert not any(process.is_alive() for process in ranks._workers)


def test_weights_that_do_not_load_give_one_error_naming_the_rank(tiny_weights, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_weights, broken)
    for shard in broken.glob("*.safetensors"):
        shard.write_bytes(b"not a safetensors file")
    with pytest.raises(RuntimeError, match="rank [01]"):
        with PredictRanks(broken, 2, dtype="fp32", device_type="cpu") as ranks:
            ranks.predict(rgb_views())


KILLED_CALLER = """
import sys, time
from fast3r.parallel import PredictRanks
ranks = PredictRanks(sys.argv[1], 2, dtype="fp32", device_type="cpu")
ranks._starting.join()
time.sleep(float(sys.argv[2]))
print(ranks._workers[0].pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("wait_s", [4.0, 0.0], ids=["waiting-to-join", "still-starting"])
def test_ranks_leave_when_the_caller_is_killed(tiny_weights, wait_s):
    """SIGKILL gives the caller no chance to stop its ranks: they notice and exit on their own, quietly,
    whether waiting to join the process group (which would otherwise wait out its 30-minute timeout,
    after 4 s) or still importing and loading (killed at once)."""
    import signal
    import subprocess
    import sys

    caller = subprocess.Popen([sys.executable, "-c", KILLED_CALLER, str(tiny_weights), str(wait_s)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        worker = int(caller.stdout.readline())
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _running(worker):
        time.sleep(0.2)
    if _running(worker):
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("rank 1 outlived its killed caller by 20 s")
    os.set_blocking(caller.stderr.fileno(), False)  # the rank wrote to its caller's stderr; read what is there
    written = b""
    while chunk := _read_some(caller.stderr.fileno()):
        written += chunk
    assert b"Traceback" not in written, written.decode(errors="replace")


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped (PID 1 of a container may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_rank_starts_with_ctrl_c_blocked_even_as_the_first_spawned_process():
    """In a fresh interpreter (no multiprocessing resource tracker running yet, as in `fast3r reconstruct
    --gpus 2`), the process starts with SIGINT blocked: one that raises SIGINT at once exits cleanly,
    where an unblocked one would die of KeyboardInterrupt (a traceback in the user's terminal)."""
    script = (
        "import multiprocessing as mp, signal, threading\n"
        "from fast3r.parallel.ranks import start_with_sigint_blocked\n"
        "process = mp.get_context('spawn').Process(target=signal.raise_signal, args=(signal.SIGINT,))\n"
        "starter = threading.Thread(target=start_with_sigint_blocked, args=(process,))\n"
        "starter.start(); starter.join(); process.join()\n"
        "print(process.exitcode, signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set()))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.stdout.split() == ["0", "False"], result.stdout + result.stderr  # main thread: not blocked
    assert "KeyboardInterrupt" not in result.stderr
