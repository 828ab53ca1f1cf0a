"""`fast3r demo` end to end: the figures it prints are the ones the bundled model card states."""
import re

from fast3r.cli import main
from fast3r.demo import accuracy_table
from fast3r.pipeline import BUNDLED_WEIGHTS


def table_rows(text: str) -> dict[str, list[str]]:
    """{first cell: other cells} of every Markdown table row in `text` whose cells after the first are numbers."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) > 1 and all(re.fullmatch(r"\d+\.\d", cell) for cell in cells[1:]):
            rows[cells[0]] = cells[1:]
    return rows


def test_demo_writes_every_export_and_prints_the_model_cards_figures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    card = (BUNDLED_WEIGHTS / "README.md").read_text().split("## The demo scene", 1)[1]
    expected = table_rows(card)
    assert len(expected) == 2, "the card's demo section holds the model row and the identity row"
    assert table_rows(printed) == expected
    for name in ("points.ply", "scene.glb", "cameras.json", "transforms.json", "predictions.npz", "preview.png",
                 "viewer.npz", "demo.json", "run.json", "sparse/0/cameras.bin"):
        assert (out / name).is_file(), name
    assert len(list((out / "images").glob("view_*.png"))) == len(list((out / "depth").glob("view_*_conf.npy"))) == 8

    assert main(["demo", "-o", str(out), "--quiet"]) == 1, "a full folder is refused without --overwrite"
    assert "--overwrite" in capsys.readouterr().err


def test_accuracy_table_rounds_to_one_decimal():
    model = {"RRA@15_pct": 82.14, "RTA@15_pct": 60.71, "mAA30_fast3r_31bin_pct": 50.95}
    identity = {"RRA@15_pct": 28.57, "RTA@15_pct": 0.0, "mAA30_fast3r_31bin_pct": 0.0}
    rows = table_rows(accuracy_table(model, identity))
    assert list(rows.values()) == [["82.1", "60.7", "51.0"], ["28.6", "0.0", "0.0"]]
