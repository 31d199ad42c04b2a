"""Ids and files as the user wrote them (issue 18, point 7).

A small retail-like ``table`` catalogue, written here: zero-padded article and customer ids, repeat purchases (the
same article twice on one day, and again on a later day), and a MovieLens folder without ``tags.csv``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from data_fixtures import MOVIES, RATINGS, write_movielens, write_pipeline

from fusionrec.core import cli
from fusionrec.core.assembly import loading
from fusionrec.core.data import InteractionData
from fusionrec.core.errors import DataError
from fusionrec.plugins.datasets import columns
from fusionrec.registry import get_registry
from fusionrec.registry.data_contracts import check_interaction_data

ITEMS = """article_id,prod_name
0111565001,Tights
0111586001,Socks
0200000003,Cap
0300000004,Scarf
0300000005,Gloves
"""

# customer 000a: Tights twice on day 1 (one basket, two units: a duplicate), again on day 5 (a repeat)
# customers 0007 and 0010: five purchases each, so that the temporal split puts some in valid and test
EVENTS = [
    ("000a", "0111565001", "2024-01-01"),
    ("000a", "0111565001", "2024-01-01"),
    ("000a", "0111586001", "2024-01-02"),
    ("000a", "0111565001", "2024-01-05"),
    ("0007", "0111565001", "2024-01-01"),
    ("0007", "0111586001", "2024-01-02"),
    ("0007", "0200000003", "2024-01-03"),
    ("0007", "0300000004", "2024-01-04"),
    ("0007", "0300000005", "2024-01-05"),
    ("0010", "0300000005", "2024-01-01"),
    ("0010", "0300000004", "2024-01-02"),
    ("0010", "0200000003", "2024-01-03"),
    ("0010", "0111586001", "2024-01-04"),
    ("0010", "0111565001", "2024-01-05"),
]


def write_retail(folder: Path) -> str:
    """items.csv and transactions.csv in ``folder``; returns the dataset block of a pipeline."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_text(ITEMS)
    lines = ["customer_id,article_id,t_dat", *(",".join(event) for event in EVENTS)]
    (folder / "transactions.csv").write_text("\n".join(lines) + "\n")
    return (
        "{type: table, items: items.csv, interactions: transactions.csv, item_id: article_id, "
        "text_columns: [prod_name], user: customer_id, timestamp: t_dat"
    )


def load(folder: Path, **params: Any) -> InteractionData:
    write_retail(folder)
    dataset = get_registry().create(
        "dataset",
        "table",
        items=str(folder / "items.csv"),
        interactions=str(folder / "transactions.csv"),
        item_id="article_id",
        text_columns=["prod_name"],
        user="customer_id",
        timestamp="t_dat",
        **params,
    )
    data = dataset.load()
    check_interaction_data(data)
    return data


def test_zero_padded_ids_keep_their_exact_form(tmp_path: Path) -> None:
    data = load(tmp_path)
    assert data.item_ids.tolist() == ["0111565001", "0111586001", "0200000003", "0300000004", "0300000005"]
    assert data.user_ids.tolist() == ["0007", "000a", "0010"]
    assert data.items["item_id"].tolist() == data.item_ids.tolist()
    rows = data.with_original_ids(data.interactions)
    assert set(rows["itemId"]) == {line.split(",")[0] for line in ITEMS.splitlines()[1:]}
    assert set(rows["userId"]) == {"000a", "0007", "0010"}


def test_split_files_keep_zero_padded_ids_and_read_back_as_the_same_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = write_pipeline(tmp_path, write_retail(tmp_path) + ", split: {type: temporal, valid: 0.2, test: 0.2}}")
    out_dir = tmp_path / "split"
    assert cli.main(["data", "split", str(pipeline), "--out", str(out_dir)]) == 0, capsys.readouterr().err
    written: dict[str, list[list[str]]] = {}
    for part in ("train", "valid", "test"):
        with open(out_dir / f"{part}.csv", newline="") as handle:
            written[part] = list(csv.reader(handle))[1:]
    users = {row[0] for rows in written.values() for row in rows}
    items = {row[1] for rows in written.values() for row in rows}
    assert users == {"000a", "0007", "0010"}
    assert items == {"0111565001", "0111586001", "0200000003", "0300000004", "0300000005"}
    assert written["test"][0][:2] == ["0007", "0300000005"]
    # the files split reads its own output back: same ids, same parts
    again = write_pipeline(
        tmp_path,
        write_retail(tmp_path) + ", split: {type: files, train: split/train.csv, valid: split/valid.csv, "
        "test: split/test.csv}}",
        name="again.yaml",
    )
    loaded = loading.load(again, get_registry())
    result = loading.run_split(loaded)
    assert {k: v["interactions"] for k, v in result.counts().items()} == {
        part: len(rows) for part, rows in written.items()
    }
    assert sorted(loaded.data.with_original_ids(result.test)["itemId"]) == sorted(row[1] for row in written["test"])


@pytest.mark.parametrize(
    ("value", "integer"),
    [("0", True), ("42", True), ("-7", True), ("007", False), ("+5", False), ("-0", False), ("1e3", False)],
)
def test_only_canonical_integers_are_read_as_integers(value: str, integer: bool) -> None:
    ids, ok = columns.int_ids(pa.chunked_array([["1", value]]))
    assert ok.tolist() == [True, integer]
    if integer:
        assert str(ids[1]) == value  # it writes back exactly as it was read


def test_a_single_zero_padded_id_keeps_the_whole_column_as_strings(tmp_path: Path) -> None:
    write_movielens(
        tmp_path / "ml", movies=MOVIES.replace("\n7,Sabrina", "\n007,Sabrina"), ratings=RATINGS.replace(",7,", ",007,")
    )
    data = get_registry().create("dataset", "movielens", path=str(tmp_path / "ml")).load()
    assert data.item_ids.tolist() == ["007", "1", "2", "3", "5"]  # strings, sorted as strings


def test_duplicates_keep_first_is_the_default_and_reported(tmp_path: Path) -> None:
    data = load(tmp_path)
    assert data.report.duplicates == "keep_first"
    assert len(data.interactions) == len(EVENTS) - 1  # the second unit of one basket; the later repeat stays
    found = [i for i in data.report.issues if i.reason == "duplicate interaction"]
    assert len(found) == 1 and found[0].kind == "filter" and found[0].count == 1
    assert found[0].file == str(tmp_path / "transactions.csv")
    assert "row 3: customer_id '000a', article_id '0111565001'" in found[0].examples[0]
    assert "(first at row 2)" in found[0].examples[0]
    tights, a = list(data.item_ids).index("0111565001"), list(data.user_ids).index("000a")
    pairs = data.interactions[(data.interactions["user"] == a) & (data.interactions["item"] == tights)]
    assert len(pairs) == 2  # day 1 and day 5: a repeat at another time is a separate event
    lines = loading.report_lines(data.report)
    assert any("transactions.csv: 1 duplicate interaction (filter)" in line for line in lines)


def test_duplicates_keep_all_keeps_every_row(tmp_path: Path) -> None:
    data = load(tmp_path, duplicates="keep_all")
    assert len(data.interactions) == len(EVENTS)
    found = [i for i in data.report.issues if i.reason == "duplicate interaction"]
    assert found[0].kind == "note" and data.report.dropped() == 0
    counts = data.report.files[str(tmp_path / "transactions.csv")]
    assert counts.rows_read == counts.rows_kept == len(EVENTS)


@pytest.mark.parametrize("on_error", ["raise", "drop"])
def test_duplicates_raise_names_the_interactions_file(tmp_path: Path, on_error: str) -> None:
    with pytest.raises(DataError) as error:
        load(tmp_path, duplicates="raise", on_error=on_error)
    message = str(error.value)
    transactions = str(tmp_path / "transactions.csv")
    assert message.startswith(f"{transactions}: 1 bad row (duplicates: raise):\n  {transactions}: 1 × duplicate")
    assert "items.csv" not in message
    assert "`duplicates: keep_first`" in message and "on_error: drop" not in message
    assert error.value.file == transactions and error.value.row == 3


def test_movielens_without_tags_file_means_no_tags_and_a_note(tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml")
    (root / "tags.csv").unlink()
    data = get_registry().create("dataset", "movielens", path=str(root)).load()
    check_interaction_data(data)
    assert (data.items["tags"] == "").all()
    assert data.items["text"].iloc[0] == "Toy Story (1995). Genres: Adventure, Animation, Children"
    assert any("tags.csv not found" in note for note in data.report.notes)
    assert str(root / "tags.csv") not in data.report.files
    assert any("tags.csv not found" in line for line in loading.report_lines(data.report))
    assert json.dumps(data.report.to_dict())  # the report stays plain data
