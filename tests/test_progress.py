"""The run's one progress line: stages in order, each timed once, shown with [i/n]."""
import io
import time

from fast3r.progress import RunProgress


def test_stages_are_timed_and_shown_in_turn(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    progress = RunProgress(("load", "work"))
    progress.start("load")
    time.sleep(0.05)
    progress.start("work", total=4, unit="file")
    assert progress.stage == "work"
    progress.advance(4)
    progress.close()
    assert list(progress.timings) == ["load", "work"] and progress.timings["load"] >= 0.05
    shown = stream.getvalue()
    assert "[1/2] load" in shown and "[2/2] work: " in shown and "/4 " in shown
    assert progress.stage is None


def test_a_disabled_display_still_times_the_stages(capsys):
    progress = RunProgress(("a",), enabled=False)
    progress.start("a", total=2)
    progress.advance(2)
    progress.close()
    assert "a" in progress.timings and capsys.readouterr().err == ""


def test_a_stage_without_a_total_does_not_show_the_last_ones(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    progress = RunProgress(("images", "wait"))
    progress.start("images", total=8, unit="file")
    progress.advance(8)
    progress.start("wait")
    progress.close()
    waiting = stream.getvalue().split("[2/2] wait")[1]
    assert "/8" not in waiting
