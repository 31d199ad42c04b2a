"""The modality-weight histogram shows a collapse and refuses weights that are not weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusionrec.core.engine.weights_plot import modality_weight_histogram, weight_summary
from fusionrec.core.errors import DataError


def test_a_collapse_is_in_the_summary_and_the_png_is_written(tmp_path: Path) -> None:
    image = np.concatenate([np.full(90, 0.0002), np.full(10, 0.5)])
    weights = np.stack([image, 1.0 - image], axis=1)
    summary = modality_weight_histogram(weights, ["image", "text"], tmp_path / "weights.png")
    assert summary["image"]["below_0.01"] == pytest.approx(0.9)
    assert summary["text"]["above_0.99"] == pytest.approx(0.9)
    assert summary["image"]["mean"] == pytest.approx(0.9 * 0.0002 + 0.1 * 0.5)
    assert summary["text"]["median"] == pytest.approx(0.9998)
    with Image.open(tmp_path / "weights.png") as png:
        assert png.format == "PNG" and png.size[0] > png.size[1]
    assert [p.name for p in tmp_path.iterdir()] == ["weights.png"]  # no temporary file left


def test_one_modality_and_no_items_still_work(tmp_path: Path) -> None:
    assert modality_weight_histogram(np.ones((4, 1)), ["text"], tmp_path / "one.png")["text"]["mean"] == 1.0
    assert np.isnan(weight_summary(np.zeros((0, 2)), ["a", "b"])["a"]["mean"])


@pytest.mark.parametrize(
    ("weights", "names", "message"),
    [
        (np.ones((3, 2)), ["image"], r"must be an \(n_items, 1\) array, one column per modality \['image'\]"),
        (np.ones(3), ["image"], r"got shape \(3,\)"),
        (np.array([[0.5, np.nan]]), ["a", "b"], "finite and in"),
        (np.array([[1.5, -0.5]]), ["a", "b"], "finite and in"),
    ],
)
def test_bad_weights_are_data_errors(weights: np.ndarray, names: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=message):
        modality_weight_histogram(weights, names, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
