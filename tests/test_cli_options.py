"""Option errors name the option as the command spells it; warnings are one clean line (fast3r.cli)."""
import sys
import warnings

import pytest

from fast3r import cli


@pytest.mark.parametrize(
    ("option", "value", "rule"),
    [
        ("--video-fps", "0", "must be > 0"),
        ("--video-fps", "-2", "must be > 0"),
        ("--video-fps", "inf", "must be a finite number"),
        ("--max-frames", "0", "must be > 0"),
        ("--max-frames", "2.5", "must be an integer"),
        ("--max-views", "1", "must be >= 2"),
        ("--max-views", "0", "must be >= 2"),
        ("--conf-percentile", "100", "must be in [0, 100)"),
        ("--conf-percentile", "-1", "must be in [0, 100)"),
        ("--conf-percentile", "nan", "must be a finite number"),
        ("--voxel-size", "0", "must be > 0"),
        ("--voxel-size", "abc", "must be a number"),
    ],
)
def test_bad_reconstruct_option_is_named(option, value, rule, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["reconstruct", "photos", "-o", "out", option, value])
    assert exit_.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line == f"fast3r reconstruct: error: argument {option}: {rule}, got {value}"


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_bad_port_is_named(port, capsys):
    with pytest.raises(SystemExit):
        cli.main(["view", "out", "--port", port])
    assert capsys.readouterr().err.strip().endswith(f"argument --port: must be in [1, 65535], got {port}")


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [("--video-fps", "0.5", 0.5), ("--max-frames", "1", 1), ("--max-views", "2", 2), ("--conf-percentile", "0", 0.0),
     ("--conf-percentile", "99.9", 99.9), ("--voxel-size", "1e-3", 1e-3)],
)  # fmt: skip
def test_good_values_at_the_bounds_pass(option, value, expected):
    args = cli.build_parser().parse_args(["reconstruct", "photos", "-o", "out", option, value])
    assert getattr(args, option[2:].replace("-", "_")) == expected


def test_port_bounds_pass():
    assert cli.build_parser().parse_args(["view", "out", "--port", "65535"]).port == 65535
    assert cli.build_parser().parse_args(["view", "out", "--port", "1"]).port == 1


def warn_twice(args) -> None:
    warnings.warn("views [1] gave no usable focal length;\n  using the median focal", stacklevel=2)
    warnings.warn("views [1] gave no usable focal length;\n  using the median focal", stacklevel=2)


def test_a_warning_is_one_clean_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli, "run_convert", warn_twice)
    monkeypatch.setattr(sys, "warnoptions", [])
    assert cli.main(["convert", "a.pth", "config.json", str(tmp_path)]) == 0
    assert capsys.readouterr().err == "fast3r: warning: views [1] gave no usable focal length; using the median focal\n"
    assert warnings.showwarning is not None and "fast3r" not in warnings.showwarning.__module__  # put back


def test_python_w_error_makes_a_warning_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli, "run_convert", warn_twice)
    monkeypatch.setattr(sys, "warnoptions", ["error"])  # as `python -W error` sets it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main(["convert", "a.pth", "config.json", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fast3r convert: error: views [1] gave no usable focal length") and "Traceback" not in err


def test_an_error_before_the_command_is_known_is_one_line(monkeypatch, capsys):
    def failing_imports():
        raise DeprecationWarning("a dependency's import warned under python -W error")

    monkeypatch.setattr(cli, "build_parser", failing_imports)
    assert cli.main(["reconstruct", "photos", "-o", "out"]) == 1
    assert capsys.readouterr().err == "fast3r: error: a dependency's import warned under python -W error\n"


def test_warnings_show_as_one_line_and_library_noise_stays_hidden(capsys, monkeypatch):
    """An interrupted import can leave a .pyc unclosed: its ResourceWarning must not add a line to Ctrl-C's."""
    monkeypatch.setattr("sys.warnoptions", [])
    with warnings.catch_warnings():
        cli._one_line_warnings()
        warnings.warn("unclosed file <_io.BufferedReader name='x.pyc'>", ResourceWarning)
        warnings.warn("old API", DeprecationWarning)
        warnings.warn("2 photos skipped")
    assert capsys.readouterr().err == "fast3r: warning: 2 photos skipped\n"
