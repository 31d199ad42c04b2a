"""`fusionrec data info` and `fusionrec data split`: what users see, the files written, the exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from data_fixtures import MOVIELENS_SMALL, RATINGS, write_movielens, write_pipeline

from fusionrec.core import cli


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    write_movielens(tmp_path / "ml")
    return write_pipeline(tmp_path, "{type: movielens, path: ml}")


def test_data_info_prints_figures_and_the_report(pipeline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "data", "info", str(pipeline))
    assert code == 0, err
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert "users 3" in lines and "interactions 13" in lines
    assert "items 5 (0 without interactions)" in lines
    assert "items with image 3 (60.0%)" in lines and "items with text 5 (100.0%)" in lines
    assert "per user min 2, median 5, mean 4.33, max 6" in lines
    assert "time range 1970-01-01 00:00:05 UTC … 1970-01-01 00:05:00 UTC" in lines
    assert any(
        line.startswith("data report (movielens, on_error: raise): movies.csv 5 read / 5 kept") for line in lines
    )
    assert (
        "images (header check): 3 of 5 items have one; 1 missing (0 with no image named, 1 file absent), "
        "1 unreadable (file present, cannot be decoded)"
    ) in lines


def test_data_info_json_and_report_file(pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "reports" / "data.json"
    code, out, err = run(capsys, "data", "info", str(pipeline), "--json", "--report", str(report))
    assert code == 0, err
    figures = json.loads(out)
    assert (figures["users"], figures["items"], figures["interactions"]) == (3, 5, 13)
    assert figures["items_with_image"] == 3 and figures["share_items_with_image"] == 0.6
    assert figures["sparsity"] == round(1 - 12 / 15, 6)  # 12 distinct (user, item) pairs
    assert figures["duplicate_pairs"] == 1
    assert figures["interactions_per_item"]["min"] == 2
    saved = json.loads(report.read_text())
    assert saved == figures["report"]
    assert saved["images"]["unreadable"] == 1 and saved["issues"][0]["reason"] == "empty tag"


def test_bad_data_is_one_error_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_movielens(tmp_path / "ml", ratings=RATINGS + "10,99,4.0,7\n")
    pipeline = write_pipeline(tmp_path, "{type: movielens, path: ml}")
    code, out, err = run(capsys, "data", "info", str(pipeline))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {tmp_path}/ml/ratings.csv: 1 bad row (on_error: raise):\n")
    assert "1 × unknown item (movieId not in movies.csv), e.g. row 15: movieId '99'" in err
    assert "Traceback" not in err


def test_missing_data_section_and_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nodata.yaml"
    path.write_text("fusionrec: 1\nfuser: concat\n")
    code, _, err = run(capsys, "data", "info", str(path))
    assert code == 2 and "nodata.yaml: data: the pipeline has no `data` section" in err
    code, _, err = run(
        capsys,
        "data",
        "split",
        str(write_pipeline(tmp_path, "{type: movielens, path: gone}")),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2 and err.startswith(
        f"error: {tmp_path}/pipeline.yaml:2: data.path: {tmp_path}/gone does not exist; expected an existing folder."
    )
    assert not (tmp_path / "o").exists()


def test_data_split_writes_original_ids_and_a_manifest(
    pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "split"
    code, out, err = run(capsys, "data", "split", str(pipeline), "--out", str(out_dir))
    assert code == 0, err
    assert "split temporal (valid 0.1, test 0.1, min_interactions 5, tie_break file_order) → " in out
    assert "  train          9 interactions        3 users        5 items" in out
    assert "  test           2 interactions        2 users        1 items" in out
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "data_report.json",
        "split.json",
        "test.csv",
        "train.csv",
        "valid.csv",
    ]
    with open(out_dir / "test.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["userId", "itemId", "timestamp", "rating"], ["10", "7", "300", "4.5"], ["20", "7", "50", "1.0"]]
    manifest = json.loads((out_dir / "split.json").read_text())
    assert manifest["split"] == {
        "type": "temporal",
        "valid": 0.1,
        "test": 0.1,
        "min_interactions": 5,
        "tie_break": "file_order",
    }
    assert manifest["dataset"]["type"] == "movielens" and "split" not in manifest["dataset"]
    assert {k: v["interactions"] for k, v in manifest["counts"].items()} == {"train": 9, "valid": 2, "test": 2}
    assert manifest["ids"] == "original" and manifest["columns"] == ["userId", "itemId", "timestamp", "rating"]
    assert manifest["protocol"].startswith("Per user, chronological")
    assert "gives the last max(1, ⌊test·n⌋) to test, the max(1, ⌊valid·n⌋) before them" in manifest["protocol"]
    assert json.loads((out_dir / "data_report.json").read_text())["dataset"] == "movielens"


def test_data_split_candidates_come_and_go_with_the_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_movielens(tmp_path / "ml")
    out_dir = tmp_path / "split"
    cold = write_pipeline(tmp_path, "{type: movielens, path: ml, split: {type: cold_items, test: 0.4}}", "cold.yaml")
    code, out, err = run(capsys, "data", "split", str(cold), "--out", str(out_dir))
    assert code == 0, err
    assert "test ranks among 2 candidate items" in out
    with open(out_dir / "test_candidates.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["item"]
    temporal = write_pipeline(tmp_path, "{type: movielens, path: ml}", "temporal.yaml")
    assert run(capsys, "data", "split", str(temporal), "--out", str(out_dir))[0] == 0
    assert not (out_dir / "test_candidates.csv").exists() and not (out_dir / "valid_candidates.csv").exists()


def test_on_error_drop_prints_what_was_dropped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_movielens(tmp_path / "ml", ratings=RATINGS + "10,99,4.0,7\n10,1,x,8\n")
    pipeline = write_pipeline(tmp_path, "{type: movielens, path: ml, on_error: drop}")
    code, out, err = run(capsys, "data", "split", str(pipeline), "--out", str(tmp_path / "s"))
    assert code == 0, err
    assert "  dropped 3 rows:" in out
    assert "    ratings.csv: 1 unknown item, e.g. row 15: movieId '99'" in out
    assert "    ratings.csv: 1 bad rating, e.g. row 16: rating 'x'" in out
    assert "    tags.csv: 1 empty tag (filter), e.g. row 7: tag ''" in out
    saved = json.loads((tmp_path / "s" / "data_report.json").read_text())
    assert saved["dropped"] == 3 and saved["on_error"] == "drop"


@pytest.mark.skipif(not (MOVIELENS_SMALL / "ratings.csv").is_file(), reason="../shared/data is not available")
def test_movielens_small_done_when_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # check_images: none keeps these two loads at about 0.15 s each; test_datasets.py checks the posters themselves
    pipeline = write_pipeline(tmp_path, f"{{type: movielens, path: {MOVIELENS_SMALL.resolve()}, check_images: none}}")
    code, out, err = run(capsys, "data", "info", str(pipeline), "--json")
    assert code == 0, err
    figures = json.loads(out)
    assert (figures["users"], figures["items"], figures["interactions"]) == (610, 9742, 100_836)
    assert figures["items_with_image"] == 9198
    code, out, err = run(capsys, "data", "split", str(pipeline), "--out", str(tmp_path / "split"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "split" / "split.json").read_text())
    assert {k: v["interactions"] for k, v in manifest["counts"].items()} == {
        "train": 81_200,
        "valid": 9_818,
        "test": 9_818,
    }
