"""The output-folder transaction (fast3r.io.outdir): refusal, replacement, the lock, kills, abort."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fast3r.io.outdir import OutputFolder, OutputFolderError

# A second process that opens OUT, writes a file into its staging folder, says where, and waits.
HOLD_OPEN = """
import sys
import time
from fast3r.io.outdir import OutputFolder
staging = OutputFolder(sys.argv[1], overwrite=True).open()
(staging / "points.ply").write_text("half written")
print(staging, flush=True)
sys.stdin.read()
"""


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def write_run(out, files: dict[str, str], overwrite: bool = False, info: dict | None = None) -> None:
    folder = OutputFolder(out, overwrite)
    with folder as staging:
        for name, text in files.items():
            (staging / name).write_text(text)
        folder.commit(info or {"files": sorted(files)})


@pytest.fixture
def holder(tmp_path):
    """A live process holding tmp_path/out open, and its staging folder."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(tmp_path / "out")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    staging = process.stdout.readline().strip()
    assert staging, "the holding process did not open the folder"
    yield process, staging
    if process.poll() is None:
        process.kill()
    process.wait()


def test_commit_swaps_the_staging_folder_in_and_leaves_nothing_beside_it(tmp_path):
    folder = OutputFolder(tmp_path / "out", overwrite=False)
    with folder as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".out.partial-") and names(staging) == []
        (staging / "points.ply").write_text("points")
        assert not (tmp_path / "out").exists()  # nothing visible until the run is complete
        folder.commit({"inputs": ["a.jpg"], "weights": tmp_path / "w"})
    assert names(tmp_path) == ["out"]  # no staging folder, no lock file
    assert names(tmp_path / "out") == ["points.ply", "run.json"]
    assert json.loads((tmp_path / "out" / "run.json").read_text()) == {"inputs": ["a.jpg"], "weights": str(tmp_path / "w")}


def test_existing_non_empty_folder_is_refused_without_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(OutputFolderError, match=r"out exists and is not empty; pass --overwrite") as caught:
        OutputFolder(tmp_path / "out", overwrite=False).open()
    assert str(tmp_path / "out") in str(caught.value)
    assert names(tmp_path) == ["out"] and names(tmp_path / "out") == ["mine.txt"]


def test_existing_empty_folder_is_used(tmp_path):
    (tmp_path / "out").mkdir()
    write_run(tmp_path / "out", {"a.txt": "a"})
    assert names(tmp_path / "out") == ["a.txt", "run.json"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_in_the_folders_place_is_refused(tmp_path, overwrite):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(OutputFolderError, match=r"out is a file, not a folder"):
        OutputFolder(tmp_path / "out", overwrite).open()
    assert names(tmp_path) == ["out"] and (tmp_path / "out").read_text() == "not a folder"


def test_overwrite_replaces_the_old_run_and_never_merges(tmp_path):
    write_run(tmp_path / "out", {"points.ply": "old", "depth.npy": "old"})
    write_run(tmp_path / "out", {"cameras.json": "new"}, overwrite=True)
    assert names(tmp_path) == ["out"]
    assert names(tmp_path / "out") == ["cameras.json", "run.json"]
    assert json.loads((tmp_path / "out" / "run.json").read_text()) == {"files": ["cameras.json"]}


def test_a_failed_run_leaves_the_old_folder_as_it_was(tmp_path):
    write_run(tmp_path / "out", {"points.ply": "old"})
    with pytest.raises(RuntimeError, match="export failed"):
        with OutputFolder(tmp_path / "out", overwrite=True) as staging:
            (staging / "points.ply").write_text("new, half written")
            raise RuntimeError("export failed")
    assert names(tmp_path) == ["out"]
    assert (tmp_path / "out" / "points.ply").read_text() == "old"


def test_abort_leaves_nothing_and_can_be_called_again(tmp_path):
    folder = OutputFolder(tmp_path / "out", overwrite=False)
    staging = folder.open()
    (staging / "depth").mkdir()
    (staging / "depth" / "0.npy").write_text("x")
    folder.abort()
    folder.abort()
    assert names(tmp_path) == []


def test_abort_after_commit_keeps_the_committed_folder(tmp_path):
    folder = OutputFolder(tmp_path / "out", overwrite=False)
    (folder.open() / "points.ply").write_text("done")
    folder.commit({})
    folder.abort()
    assert names(tmp_path) == ["out"] and names(tmp_path / "out") == ["points.ply", "run.json"]


def test_a_second_process_is_refused_while_the_first_writes(tmp_path, holder):
    process, staging = holder
    message = rf"another fast3r run is writing to .*out \(pid {process.pid}\); wait for it or choose another -o"
    with pytest.raises(OutputFolderError, match=message):
        OutputFolder(tmp_path / "out", overwrite=True).open()
    assert os.path.isdir(staging)  # the refused run touched nothing of the first one's
    process.stdin.close()  # the first run ends without committing; its lock ends with it
    process.wait(timeout=30)
    write_run(tmp_path / "out", {"a.txt": "a"})
    assert names(tmp_path) == ["out"]  # the first run's staging folder and lock file are gone


def test_after_sigkill_the_next_run_cleans_up_and_is_not_blocked(tmp_path, holder):
    process, staging = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert {".out.lock", os.path.basename(staging)} <= set(names(tmp_path))  # what a kill leaves
    write_run(tmp_path / "out", {"a.txt": "a"}, overwrite=True)
    assert names(tmp_path) == ["out"] and names(tmp_path / "out") == ["a.txt", "run.json"]


def test_a_refused_run_still_removes_what_killed_runs_left(tmp_path):
    write_run(tmp_path / "out", {"points.ply": "old"})
    (tmp_path / ".out.partial-99999999").mkdir()
    (tmp_path / ".out.partial-99999999" / ".points.ply.x.tmp").write_text("half")
    (tmp_path / ".out.lock").write_text("99999999\n")
    with pytest.raises(OutputFolderError, match="--overwrite"):
        OutputFolder(tmp_path / "out", overwrite=False).open()
    assert names(tmp_path) == ["out"]


def test_a_swap_killed_half_way_is_undone_by_the_next_run(tmp_path):
    """Killed between its two renames: OUT is missing, the old run is moved aside, the new one complete."""
    write_run(tmp_path / "out", {"points.ply": "old"})
    (tmp_path / "out").rename(tmp_path / ".out.old-99999998")
    (tmp_path / ".out.partial-99999998").mkdir()
    (tmp_path / ".out.partial-99999998" / "points.ply").write_text("new")
    with pytest.raises(OutputFolderError, match="not empty"):  # the old run is back, so it is refused
        OutputFolder(tmp_path / "out", overwrite=False).open()
    assert names(tmp_path) == ["out"] and (tmp_path / "out" / "points.ply").read_text() == "old"


def test_a_swap_killed_while_deleting_the_old_run_keeps_the_new_one(tmp_path):
    write_run(tmp_path / "out", {"points.ply": "new"})
    (tmp_path / ".out.old-99999997").mkdir()
    (tmp_path / ".out.old-99999997" / "depth.npy").write_text("old")
    folder = OutputFolder(tmp_path / "out", overwrite=True)
    folder.open()
    folder.abort()
    assert names(tmp_path) == ["out"] and (tmp_path / "out" / "points.ply").read_text() == "new"


def test_other_folders_hidden_siblings_are_left_alone(tmp_path):
    others = [".out2.partial-1", ".out.partial-1.keep", ".out.old-", "out.partial-3"]
    for name in others:
        (tmp_path / name).mkdir()
    write_run(tmp_path / "out", {"a.txt": "a"})
    assert names(tmp_path) == sorted(["out", *others])


def test_a_folder_filled_by_someone_else_during_the_run_is_not_replaced(tmp_path):
    folder = OutputFolder(tmp_path / "out", overwrite=False)
    with pytest.raises(OutputFolderError, match="not empty; pass --overwrite"):
        with folder as staging:
            (staging / "points.ply").write_text("ours")
            (tmp_path / "out").mkdir()
            (tmp_path / "out" / "theirs.txt").write_text("theirs")
            folder.commit({})
    assert names(tmp_path) == ["out"] and names(tmp_path / "out") == ["theirs.txt"]


def test_ctrl_c_during_the_swap_lands_after_it(tmp_path, monkeypatch):
    write_run(tmp_path / "out", {"points.ply": "old"})
    real_rename = os.rename

    def rename_then_ctrl_c(source, target):
        real_rename(source, target)
        os.kill(os.getpid(), signal.SIGINT)  # between the swap's two renames
        time.sleep(0.05)  # the handler would run here

    monkeypatch.setattr(os, "rename", rename_then_ctrl_c)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    folder = OutputFolder(tmp_path / "out", overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        with folder as staging:
            (staging / "points.ply").write_text("new")
            folder.commit({})
    assert names(tmp_path) == ["out"] and (tmp_path / "out" / "points.ply").read_text() == "new"
