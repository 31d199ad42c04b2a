"""benchmarks/peers/score.py and peer_io.py: peers' lists scored by fusionrec's metric code (no peer venv needed)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from fusionrec.core.data import SplitData

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_peers_{name}", PEERS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


score = _module("score")
peer_io = _module("peer_io")

USER_IDS = np.array([10, 20, 30])
ITEM_IDS = np.array([100, 101, 102, 103, 104, 105])


def _frame(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": [u for u, _ in pairs],
            "item": [i for _, i in pairs],
            "timestamp": np.arange(len(pairs), dtype=np.int64),
            "rating": 4.0,
        }
    )


# internal ids: user 0 trained on items 0,1 and has 3 in valid; user 1 trained on 0 and has 2 in valid;
# user 2 trained on 1 and has 4 in valid (and no list)
SPLIT = SplitData(
    train=_frame([(0, 0), (0, 1), (1, 0), (2, 1)]),
    valid=_frame([(0, 3), (1, 2), (2, 4)]),
    test=_frame([(0, 5)]),
)


def _recs(tmp_path: Path, rows: list[tuple[int, int, int]]) -> Path:
    path = tmp_path / "recs.csv"
    pd.DataFrame(rows, columns=["userId", "itemId", "rank"]).to_csv(path, index=False)
    return path


def test_lists_are_scored_by_rank_with_fusionrec_metrics(tmp_path: Path) -> None:
    # user 10: relevant 103 at rank 2 (after the known item 101, which the engine masks); user 20: a miss
    path = _recs(tmp_path, [(10, 101, 1), (10, 103, 2), (10, 104, 3), (20, 104, 1), (20, 105, 2)])
    recs = score.read_recs(path, USER_IDS, ITEM_IDS)
    assert recs.k == 3 and recs.rows == 5 and set(recs.lists) == {0, 1}
    out = score.score_recs(recs, SPLIT, "valid", len(ITEM_IDS), bootstrap=50, seed=0, protocol={"dataset": "toy"})
    assert out["protocol"]["n_users"] == 3 and out["protocol"]["masked"] == "train"
    # user 0 hits at rank 1 once 101 is masked; user 1 misses; user 2 has no list
    assert out["metrics"]["recall@20"] == pytest.approx(1 / 3)
    assert out["metrics"]["ndcg@20"] == pytest.approx(1 / 3)
    assert out["lists"]["listed_known"] == 1
    assert out["lists"]["evaluated_users_without_list"] == 1
    low, high = out["ci"]["recall@20"]
    assert 0.0 <= low <= 1 / 3 <= high <= 1.0


def test_rank_order_decides_ndcg(tmp_path: Path) -> None:
    path = _recs(tmp_path, [(10, 104, 1), (10, 103, 2), (20, 102, 1), (30, 104, 1)])
    out = score.score_recs(score.read_recs(path, USER_IDS, ITEM_IDS), SPLIT, "valid", len(ITEM_IDS), bootstrap=0)
    assert out["metrics"]["recall@20"] == pytest.approx(1.0)
    assert out["metrics"]["ndcg@20"] == pytest.approx((1 / math.log2(3) + 1 + 1) / 3)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(10, 999, 1)], "itemId '999' is not in the data"),
        ([(99, 100, 1)], "userId '99' is not in the data"),
        ([(10, 103, 1), (10, 103, 2)], "lists an item twice"),
        ([(10, 103, 0)], "ranks must be integers"),
    ],
)
def test_bad_recs_are_refused(tmp_path: Path, rows: list[tuple[int, int, int]], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        score.read_recs(_recs(tmp_path, rows), USER_IDS, ITEM_IDS)


class _Data:
    def with_original_ids(self, rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "userId": USER_IDS[rows["user"].to_numpy()],
                "itemId": ITEM_IDS[rows["item"].to_numpy()],
                "timestamp": rows["timestamp"].to_numpy(),
                "rating": rows["rating"].to_numpy(),
            }
        )


def test_exported_split_must_match_the_pipeline_split(tmp_path: Path) -> None:
    expected = score.expected_parts(_Data(), SPLIT)
    for name, frame in expected.items():
        frame.sample(frac=1.0, random_state=0).to_csv(tmp_path / f"{name}.csv", index=False)  # order is free
    assert score.compare_parts(tmp_path, expected) == {"train": 4, "valid": 3, "test": 1}
    valid = pd.read_csv(tmp_path / "valid.csv")
    valid.loc[0, "itemId"] = 105
    valid.to_csv(tmp_path / "valid.csv", index=False)
    with pytest.raises(SystemExit, match="does not match the pipeline's split"):
        score.compare_parts(tmp_path, expected)
    expected["valid"].to_csv(tmp_path / "valid.csv", index=False)
    (tmp_path / "test.csv").unlink()
    with pytest.raises(SystemExit, match="missing"):
        score.compare_parts(tmp_path, expected)


def test_peer_top_k_masks_known_and_pads() -> None:
    scores = np.array([[0.1, 0.9, 0.5, -np.inf], [3.0, 2.0, 1.0, 0.0]])
    best = peer_io.top_k(scores, [np.array([1]), np.array([], dtype=np.int64)], 4)
    assert best.tolist() == [[2, 0, -1, -1], [0, 1, 2, 3]]


def _write_parts(folder: Path, tie_break: str | None) -> None:
    """A split whose user 1 bought items 9, 3, 5 on one day (in that file order), then 7 a day later (valid)."""
    folder.mkdir()
    train = pd.DataFrame({"userId": [1, 1, 1, 2], "itemId": [9, 3, 5, 3], "timestamp": [86400] * 3 + [0]})
    train.to_csv(folder / "train.csv", index=False)
    valid = pd.DataFrame({"userId": [1, 2], "itemId": [7, 9], "timestamp": [86400, 86400]})
    valid.to_csv(folder / "valid.csv", index=False)
    valid.to_csv(folder / "test.csv", index=False)
    if tie_break is not None:
        spec = {"type": "temporal", "valid": 0.1, "test": 0.1, "tie_break": tie_break}
        (folder / "split.json").write_text(json.dumps({"fusionrec_split": 1, "split": spec}))


@pytest.mark.parametrize(
    ("tie_break", "expected"),
    [(None, ["9", "3", "5", "7"]), ("file_order", ["9", "3", "5", "7"]), ("item_id", ["3", "5", "7", "9"])],
)
def test_phase_data_orders_equal_timestamps_as_the_split_does(
    tmp_path: Path, tie_break: str | None, expected: list[str]
) -> None:
    """The peers' sequences keep the split's tie-break: file order by default (train before valid), item id on
    request; an item-id sort under file order would hand RecBole's SASRec other sequences than fusionrec's."""
    _write_parts(tmp_path / "split", tie_break)
    data = peer_io.phase_data(tmp_path / "split", "test")
    assert data.train[data.train["userId"] == "1"]["itemId"].tolist() == expected
    assert data.train[data.train["userId"] == "2"]["itemId"].tolist() == ["3", "9"]


def test_paired_with_a_run_scores_its_own_lists_as_no_difference(tmp_path: Path) -> None:
    """score.py --paired RUN: the run's own --as-of test lists against the run, user by user, differ by exactly 0
    (the same users, the same per-user values); a folder that is no run is a clear message, not a traceback."""
    from train_fixtures import write_pipeline

    from fusionrec.core import cli

    pipeline = write_pipeline(tmp_path, train="{epochs: 2, batch_size: 64, lr: 0.01, seed: 0}")
    run, split, recs, out = tmp_path / "run", tmp_path / "split", tmp_path / "recs.csv", tmp_path / "scored.json"
    assert cli.main(["train", str(pipeline), "--out", str(run)]) == 0
    assert cli.main(["data", "split", str(pipeline), "--out", str(split)]) == 0
    args = ["recommend", str(run), "--as-of", "test", "--users", "all", "-k", "50", "--out", str(recs)]
    assert cli.main(args) == 0
    common = [str(pipeline), "--split", str(split), "--recs", str(recs), "--part", "test", "--bootstrap", "200"]
    assert score.main([*common, "--paired", str(run), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["paired"]["rows"]
    assert set(rows) == {"recall@20", "ndcg@20"}
    for row in rows.values():
        assert row["a"] == pytest.approx(row["b"], abs=1e-12) and row["a"] > 0
        assert row["difference_low"] == row["difference_high"] == 0.0 and row["p_not_better"] == 1.0
    with pytest.raises(SystemExit, match=r"--paired: .*not a run directory"):
        score.main([*common, "--paired", str(tmp_path / "nothing")])
