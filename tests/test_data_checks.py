"""Smaller data checks of issue 18 (point 6): a data path that does not exist is a validation error at its key,
a header-only interactions file fails early, and a huge image is downscaled while decoding, in fusionrec's words."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import write_movielens, write_pipeline
from PIL import Image

from fusionrec.core import cli
from fusionrec.core.assembly import loading
from fusionrec.core.errors import DataError
from fusionrec.plugins.datasets import images as image_check
from fusionrec.plugins.encoders import image_io
from fusionrec.registry import get_registry


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- a data path that does not exist ------------------------------------------------------------------------------


def test_validate_reports_a_missing_data_path_at_its_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "fusionrec: 1\n\ndata:\n  type: movielens\n  path: data/ml-1m\nuser: {type: mean}\ntrain: {item_ids: true}\n"
    )
    code, _, err = run(capsys, "validate", str(pipeline))
    assert code == 2
    assert err.startswith(f"error: {pipeline}:5: data.path: {tmp_path}/data/ml-1m does not exist (nor does its folder ")
    assert "got 'data/ml-1m'" in err
    write_movielens(tmp_path / "data" / "ml-1m")
    code, _, err = run(capsys, "validate", str(pipeline))
    assert code == 0, err


def test_validate_reports_missing_table_files_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "items.csv").write_text("item_id\n1\n")
    pipeline = write_pipeline(tmp_path, "{type: table, items: items.csv, interactions: events.csv}")
    code, _, err = run(capsys, "validate", str(pipeline))
    assert code == 2 and "data.interactions: " in err and f"{tmp_path}/events.csv does not exist" in err
    assert "data.items" not in err
    (tmp_path / "events.csv").mkdir()
    code, _, err = run(capsys, "validate", str(pipeline))
    assert code == 2 and f"{tmp_path}/events.csv is not a file; expected an existing file" in err


# --- a header-only interactions file ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["info", "split"])
def test_a_header_only_ratings_file_fails_early(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    write_movielens(tmp_path / "ml", ratings="userId,movieId,rating,timestamp\n")
    pipeline = write_pipeline(tmp_path, "{type: movielens, path: ml}")
    extra = ["--out", str(tmp_path / "split")] if command == "split" else []
    code, _, err = run(capsys, "data", command, str(pipeline), *extra)
    assert code == 2
    assert err.startswith(f"error: {tmp_path}/ml/ratings.csv: no interactions: the file has a header and no rows.")
    assert not (tmp_path / "split").exists()


def test_no_interaction_left_after_filters_is_an_error(tmp_path: Path) -> None:
    write_movielens(tmp_path / "ml")
    dataset = get_registry().create("dataset", "movielens", path=str(tmp_path / "ml"), min_rating=9)
    with pytest.raises(DataError, match=r"no interactions are left after dropping bad rows and applying filters"):
        dataset.load()


# --- a 10000×10000 image ------------------------------------------------------------------------------------------

SIDE = 10_000


def big_image(path: Path, fmt: str) -> Path:
    """A 10000×10000 image (100 megapixels: over Pillow's bomb warning limit), cheap to write: mostly flat."""
    image = Image.new("RGB", (SIDE, SIDE), (200, 30, 30))
    image.paste((20, 20, 220), (0, 0, SIDE // 2, SIDE // 2))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 70} if fmt == "JPEG" else {"compress_level": 1}))
    del image
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return big_image(tmp_path_factory.mktemp("big") / "huge.jpg", "JPEG")


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return big_image(tmp_path_factory.mktemp("big") / "huge.png", "PNG")


def test_a_huge_jpeg_is_drafted_small_without_pillows_warning(big_jpeg: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail the test
        image = image_io.open_rgb(str(big_jpeg))
    assert image.mode == "RGB" and max(image.size) <= 2 * image_io.MAX_SIDE
    assert min(image.size) >= image_io.MAX_SIDE  # downscaled to what a model can use, not below
    pixels = np.asarray(image)
    assert [int(v) for v in pixels[10, 10]] == pytest.approx([20, 20, 220], abs=12)  # the content survives


PEAK = """
import sys
from PIL import Image
from fusionrec.plugins.encoders.image_io import open_rgb

def high_water_mb():  # VmHWM starts afresh at exec (ru_maxrss is inherited from the parent: pytest's own peak)
    line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

Image.MAX_IMAGE_PIXELS = None
base = high_water_mb()
if sys.argv[2] == "fusionrec":
    open_rgb(sys.argv[1])
else:
    Image.open(sys.argv[1]).convert("RGB").load()
print(high_water_mb() - base)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
def test_decoding_a_huge_jpeg_takes_a_fraction_of_the_memory(big_jpeg: Path) -> None:
    """Peak memory of open_rgb against a plain full decode, each in a fresh process (ru_maxrss is a peak)."""

    def peak(how: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", PEAK, str(big_jpeg), how], capture_output=True, text=True, check=True
        )
        return float(done.stdout.strip())

    full, drafted = peak("pillow"), peak("fusionrec")
    assert full > 200  # 10000×10000 RGB is 300 MB
    assert drafted < full / 10, (drafted, full)


def test_a_huge_png_is_reduced_right_after_decoding(big_png: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = image_io.open_rgb(str(big_png))
    assert max(image.size) <= 2 * image_io.MAX_SIDE and min(image.size) >= image_io.MAX_SIDE


@pytest.mark.parametrize("mode", ["header", "decode"])
def test_the_data_report_says_so_in_fusionrecs_words(big_jpeg: Path, mode: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        usable, report = image_check.check([str(big_jpeg)], mode)  # type: ignore[arg-type]
    assert usable.tolist() == [str(big_jpeg)] and report.found == 1 and report.unreadable == 0
    assert len(report.notes) == 1
    note = report.notes[0]
    assert note.startswith("1 image over Pillow's 89-megapixel safety limit is downscaled while decoding")
    assert f"{big_jpeg} (10000×10000)" in note and "DecompressionBomb" not in note


def test_the_data_report_line_shows_the_note(tmp_path: Path, big_jpeg: Path) -> None:
    root = write_movielens(tmp_path / "ml")
    (root / "posters" / "1.jpg").write_bytes(big_jpeg.read_bytes())
    loaded = loading.load(write_pipeline(tmp_path, "{type: movielens, path: ml}"), get_registry())
    lines = loading.report_lines(loaded.data.report)
    assert any(line.startswith("  note: 1 image over Pillow's 89-megapixel safety limit") for line in lines)
