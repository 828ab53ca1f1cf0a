from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_starts_with_exactly_two_setup_lines():
    lines = setup_lines()
    assert len(lines) == 2
    assert "fast3r reconstruct examples/" in lines[0]
    assert "pytest" in lines[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert setup_lines()[1] in ci
