"""Ctrl-C is never lost (fast3r.interrupt) and ends `fast3r` with 130 and one line (fast3r.cli.main)."""
import os
import signal
import time

import pytest

from fast3r import cli, interrupt


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """These tests install fast3r's handler in the test process; put Python's back afterwards."""
    yield
    interrupt.install()  # forget the interrupts sent here
    signal.signal(signal.SIGINT, signal.default_int_handler)


def send_sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs in the main thread at its next step; sleeping is one


def test_a_swallowed_interrupt_is_raised_again_by_check_interrupted():
    interrupt.install()
    interrupt.check_interrupted()  # nothing yet
    try:
        send_sigint()
    except KeyboardInterrupt:
        pass  # what `except BaseException` inside a third-party import does
    assert interrupt.interrupted()
    with pytest.raises(KeyboardInterrupt):
        interrupt.check_interrupted()
    interrupt.install()
    assert not interrupt.interrupted()  # a new command starts clean


def frame_in(filename: str):
    namespace = {}
    exec(compile("import sys\nframe = sys._getframe()", filename, "exec"), namespace)
    return namespace["frame"]


def test_ctrl_c_inside_the_import_machinery_waits_for_the_next_check():
    """Raised there, it can leave the global import lock held (a module lock's weakref callback) and
    hang every later import; it must instead come out of the next check_interrupted()."""
    interrupt.install()
    interrupt.on_sigint(signal.SIGINT, frame_in("<frozen importlib._bootstrap>"))  # returns: no raise
    assert interrupt.interrupted()
    with pytest.raises(KeyboardInterrupt):
        interrupt.check_interrupted()
    with pytest.raises(KeyboardInterrupt):  # anywhere else it is raised at once
        interrupt.on_sigint(signal.SIGINT, frame_in(__file__))


def test_a_deferred_interrupt_arrives_after_the_block():
    interrupt.install()
    finished = False
    with pytest.raises(KeyboardInterrupt):
        with interrupt.interrupts_deferred():
            send_sigint()
            finished = True
    assert finished and interrupt.interrupted()
    assert signal.getsignal(signal.SIGINT) is interrupt.on_sigint


def test_main_exits_130_with_one_line_when_a_command_swallows_ctrl_c(monkeypatch, capsys, tmp_path):
    ran_on = []

    def swallowing_command(args):
        try:
            send_sigint()
        except KeyboardInterrupt:
            ran_on.append("swallowed")  # the run goes on, as it did inside `import trimesh`
        return 0

    monkeypatch.setattr(cli, "run_convert", swallowing_command)
    assert cli.main(["convert", "a.pth", "config.json", str(tmp_path / "out")]) == 130
    assert ran_on == ["swallowed"]
    assert capsys.readouterr().err == "fast3r: interrupted\n"
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # a second Ctrl-C while exiting prints nothing


def test_main_exits_130_when_ctrl_c_turns_into_another_error(monkeypatch, capsys, tmp_path):
    def command_failing_after_ctrl_c(args):
        try:
            send_sigint()
        except KeyboardInterrupt:
            pass
        raise RuntimeError("half-imported module")  # what a swallowed interrupt often leads to

    monkeypatch.setattr(cli, "run_convert", command_failing_after_ctrl_c)
    assert cli.main(["convert", "a.pth", "config.json", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err == "fast3r: interrupted\n"


def test_main_puts_the_previous_handler_back_when_not_interrupted(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "run_convert", lambda args: None)
    assert cli.main(["convert", "a.pth", "config.json", str(tmp_path / "out")]) == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
