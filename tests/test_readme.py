from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_starts_with_exactly_two_setup_lines():
    lines = setup_lines()
    assert len(lines) == 2
    assert lines[0].endswith("&& fast3r demo"), "the first line installs fast3r and runs the offline demo"
    assert "pytest" in lines[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert setup_lines()[1] in ci


def test_ci_installs_chromium_for_the_viewer_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install -y chromium" in ci
