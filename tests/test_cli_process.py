"""A real `fast3r reconstruct` process, interrupted and killed at several moments (Linux: moments are
read from /proc). Ctrl-C: exit 130, one line; the output folder's parent then holds nothing, or
exactly one complete run and no hidden leftovers once a later run has gone through."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="moments are read from Linux's /proc")

REPO = Path(__file__).resolve().parents[1]
ENTRY = "import sys; from fast3r.cli import main; sys.exit(main())"  # what the `fast3r` console script runs
# glb (its `import trimesh` once swallowed Ctrl-C) keeps the export busy a while after points.ply is written.
EXPORTS = ["ply", "glb", "cameras"] if importlib.util.find_spec("trimesh") else ["ply", "npz", "cameras"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for index in range(2):
        pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((256, 192), Image.BICUBIC).save(folder / f"photo_{index}.png")
    return folder


def start_reconstruct(photos: Path, out: Path, weights: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-c", ENTRY, "reconstruct", str(photos), "-o", str(out), "--weights", str(weights),
               "--size", "224", "--quiet", "--export", *EXPORTS, *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a shared CPU: one thread is quicker here
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def loaded(library: str):
    return lambda process, out: library in Path(f"/proc/{process.pid}/maps").read_text()


def written(name: str):
    """The run has written `name`, in the output folder or the staging folder beside it."""
    return lambda process, out: any(out.parent.glob(f"*/{name}"))  # pathlib's * matches hidden names too


MOMENTS = {
    "importing torch": loaded("libtorch"),
    "loading the model": loaded("_safetensors_rust"),
    "exporting": written("points.ply"),  # in the staging folder
    "holding the folder": lambda process, out: any(out.parent.glob(f".{out.name}.partial-*")),
}


def signal_at(process: subprocess.Popen, out: Path, moment: str, signum: int) -> None:
    """Send `signum` once `moment` is reached; fail if the run ends first."""
    reached = MOMENTS[moment]
    deadline = time.monotonic() + 120
    while not reached(process, out):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run ended before {moment}: {process.communicate()[1]}")
        time.sleep(0.005)
    process.send_signal(signum)


def assert_one_complete_run_or_nothing(parent: Path) -> None:
    entries = sorted(p.name for p in parent.iterdir())
    assert entries in ([], ["out"]), f"stray files beside the output folder: {entries}"
    if entries:
        out = parent / "out"
        assert (out / "run.json").is_file(), f"an incomplete run in the output folder: {sorted(out.iterdir())}"
        written = json.loads((out / "run.json").read_text())["exports"]
        assert sorted(written) == sorted(EXPORTS) and all((out / name).exists() for name in written.values())
        assert sorted(p.name for p in out.iterdir()) == sorted(["run.json", *written.values()])


@pytest.mark.parametrize("moment", ["importing torch", "loading the model", "exporting"])
def test_ctrl_c_exits_130_with_one_line_and_leaves_nothing(moment, photos, tiny_weights, tmp_path):
    out = tmp_path / "runs" / "out"
    process = start_reconstruct(photos, out, tiny_weights)
    signal_at(process, out, moment, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert (process.returncode, stderr) == (130, "fast3r: interrupted\n")
    if moment == "exporting":  # the swap may just have happened: then the run is there, whole
        assert_one_complete_run_or_nothing(tmp_path / "runs")
    elif (tmp_path / "runs").exists():
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == []


def test_sigkill_at_any_moment_leaves_the_folder_whole(photos, tiny_weights, tmp_path):
    """Killed before its first run, then a run that completes (and cleans up), then killed while replacing it."""
    runs, out = tmp_path / "runs", tmp_path / "runs" / "out"
    killed = start_reconstruct(photos, out, tiny_weights)
    signal_at(killed, out, "loading the model", signal.SIGKILL)
    killed.communicate(timeout=120)
    assert not out.exists() and all(p.name.startswith(".out.") for p in runs.iterdir())  # hidden leftovers only

    complete = start_reconstruct(photos, out, tiny_weights)
    stdout, stderr = complete.communicate(timeout=120)
    assert complete.returncode == 0, stderr
    assert_one_complete_run_or_nothing(runs)  # the killed run's staging folder and lock are gone
    first_run = (out / "run.json").read_text()

    replacing = start_reconstruct(photos, out, tiny_weights, "--overwrite")
    signal_at(replacing, out, "exporting", signal.SIGKILL)
    replacing.communicate(timeout=120)
    assert (out / "run.json").read_text() == first_run  # the complete run stays until a new one is complete
    assert all(p.name.startswith(".out.") for p in runs.iterdir() if p.name != "out")


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_writes(photos, tiny_weights, tmp_path):
    out = tmp_path / "runs" / "out"
    first = start_reconstruct(photos, out, tiny_weights)
    signal_at(first, out, "holding the folder", signal.SIGSTOP)  # held still until the second is refused
    try:
        second = start_reconstruct(photos, out, tiny_weights, "--overwrite")
        stdout, stderr = second.communicate(timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 1
    assert stderr == f"fast3r reconstruct: error: another fast3r run is writing to {out} (pid {first.pid}); wait for it or choose another -o\n"
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert_one_complete_run_or_nothing(tmp_path / "runs")


def test_ctrl_c_to_a_run_over_two_ranks_stops_them_all(photos, tiny_weights, tmp_path):
    """--gpus 2 (gloo ranks on the CPU): Ctrl-C from a terminal reaches the whole process group; the
    command exits 130 with one line and no rank outlives it."""
    out = tmp_path / "runs" / "out"
    command = [sys.executable, "-c", ENTRY, "reconstruct", str(photos), "-o", str(out), "--weights", str(tiny_weights),
               "--size", "224", "--quiet", "--device", "cpu", "--gpus", "2"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    children_file = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 120
    while not (ranks := children_file.read_text().split()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert (process.returncode, stderr) == (130, "fast3r: interrupted\n")
    time.sleep(1)
    alive = [pid for pid in ranks if Path(f"/proc/{pid}/stat").is_file()
             and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]  # fmt: skip
    assert ranks and not alive
    assert not (tmp_path / "runs").exists() or sorted(p.name for p in (tmp_path / "runs").iterdir()) == []
