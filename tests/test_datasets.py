"""The movielens and table datasets: what they load, and every fault they report (never a silent drop)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from data_fixtures import MOVIELENS_SMALL, MOVIES, RATINGS, jpeg, write_movielens

from fusionrec.core.data import InteractionData
from fusionrec.core.errors import ConfigError, DataError
from fusionrec.registry import get_registry
from fusionrec.registry.data_contracts import check_interaction_data


def movielens(path: Path, **params: Any) -> InteractionData:
    data = get_registry().create("dataset", "movielens", path=str(path), **params).load()
    check_interaction_data(data)
    return data


def table(**params: Any) -> InteractionData:
    data = (
        get_registry()
        .create("dataset", "table", **{k: str(v) if isinstance(v, Path) else v for k, v in params.items()})
        .load()
    )
    check_interaction_data(data)
    return data


def issue(data: InteractionData, reason: str) -> dict[str, Any]:
    found = [i.to_dict() for i in data.report.issues if i.reason == reason]
    assert len(found) == 1, f"expected one {reason!r} issue, got {data.report.to_dict()['issues']}"
    return found[0]


# --- movielens: a good folder ---------------------------------------------------------------------------------


def test_movielens_loads_ids_text_and_images(tmp_path: Path) -> None:
    data = movielens(write_movielens(tmp_path / "ml"))
    assert data.n_users == 3 and data.n_items == 5 and len(data.interactions) == 13
    assert data.user_ids.tolist() == [10, 20, 30]
    assert data.item_ids.tolist() == [1, 2, 3, 5, 7]
    items = data.items.set_index("item_id")
    # genres pipe-split into ", "; '(no genres listed)' is empty; tags deduplicated case-insensitively, most used first
    assert items.loc[1, "text"] == "Toy Story (1995). Genres: Adventure, Animation, Children. Tags: pixar, fun, toys"
    assert items.loc[3, "text"] == "Grumpier Old Men, The (1995). Genres: Comedy, Romance"  # no tags: no 'Tags:'
    assert items.loc[5, "text"] == "Father of the Bride Part II (1995)"
    assert items.loc[2, "tags"] == "board game"  # the blank tag is dropped, and reported
    assert data.text_fields == ("title", "genres", "tags")
    # posters: 1, 2, 3 good; 5 truncated; 7 missing
    assert [p is not None for p in items["image"]] == [True, True, True, False, False]
    assert Path(items.loc[1, "image"]).name == "1.jpg"
    images = data.report.images
    assert images is not None
    assert (images.found, images.missing, images.unreadable) == (3, 1, 1)
    assert images.examples["unreadable"][0].endswith("5.jpg: truncated JPEG (no end-of-image marker)")
    assert images.examples["missing"][0].endswith("7.jpg")
    assert issue(data, "empty tag")["kind"] == "filter"
    # interactions: sorted by user and timestamp, equal timestamps in file order; ratings kept; all positives
    first = data.interactions[data.interactions.user == 0]
    assert data.item_ids[first.item].tolist() == [7, 5, 3, 2, 1, 7]
    assert first.timestamp.tolist() == [50, 100, 100, 200, 200, 300]
    assert data.interactions.rating.tolist()[:3] == [5.0, 4.0, 3.5]


def test_movielens_text_template_and_max_tags(tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml")
    data = movielens(root, text="{title} | {tags}", max_tags=1)
    assert data.items.text.tolist()[:2] == ["Toy Story (1995) | pixar", "Jumanji (1995) | board game"]
    data = movielens(root, text="{title}[ ({genres})]", images=None)
    assert data.items.text.tolist()[3:] == ["Father of the Bride Part II (1995)", "Sabrina (1995) (Comedy)"]
    assert data.items.image.isna().all() and data.report.images is None


def test_movielens_text_template_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"data.text: the text template uses \{plot\}, which is not available"):
        get_registry().spec("dataset", {"type": "movielens", "path": "x", "text": "{title} {plot}"}, path=("data",))
    with pytest.raises(ConfigError, match="optional part opened with"):
        get_registry().spec("dataset", {"type": "movielens", "path": "x", "text": "{title}[ {tags}"})


def test_movielens_min_rating_is_a_reported_filter(tmp_path: Path) -> None:
    data = movielens(write_movielens(tmp_path / "ml"), min_rating=4.0)
    assert (data.interactions.rating >= 4.0).all() and len(data.interactions) == 7
    low = issue(data, "below min_rating")
    assert (low["kind"], low["count"]) == ("filter", 6)
    assert low["examples"][0] == "row 3: rating '3.5'"


@pytest.mark.parametrize(
    ("mode", "found", "unreadable", "why"),
    [("none", 4, 0, None), ("header", 3, 1, "truncated JPEG (no end-of-image marker)"), ("decode", 3, 1, "truncated")],
)
def test_check_images_modes(tmp_path: Path, mode: str, found: int, unreadable: int, why: str | None) -> None:
    data = movielens(write_movielens(tmp_path / "ml"), check_images=mode)
    images = data.report.images
    assert images is not None and (images.check, images.found, images.unreadable) == (mode, found, unreadable)
    if why is not None:
        assert images.examples["unreadable"][0].startswith(f"{tmp_path}/ml/posters/5.jpg: ")
        assert why in images.examples["unreadable"][0]


def test_non_image_and_empty_poster_files_never_fail(tmp_path: Path) -> None:
    posters = {"1.jpg": b"<html>not found</html>", "2.jpg": b"", "3.jpg": jpeg()}
    data = movielens(write_movielens(tmp_path / "ml", posters=posters), check_images="decode")
    images = data.report.images
    assert images is not None and (images.found, images.missing, images.unreadable) == (1, 2, 2)
    assert any("not an image" in e for e in images.examples["unreadable"])
    assert data.items.image.notna().tolist() == [False, False, True, False, False]


def test_movielens_reads_the_poster_folder_named_by_images(tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml")
    (root / "posters").rename(root / "thumbs")
    with pytest.raises(DataError, match=r"ml/posters: poster folder not found \(images: 'posters'\)"):
        movielens(root)
    assert movielens(root, images="thumbs").report.images.found == 3  # type: ignore[union-attr]


# --- movielens: faults ----------------------------------------------------------------------------------------


def test_missing_folder_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"path: .*nowhere does not exist; expected an existing folder"):
        movielens(tmp_path / "nowhere")  # the parameters check it, so `fusionrec validate` reports it
    dataset = get_registry().create("dataset", "movielens", path=str(tmp_path))
    tmp_path.joinpath("gone").mkdir()
    dataset.path = tmp_path / "gone"
    tmp_path.joinpath("gone").rmdir()  # removed after validation: load still says what is wrong
    with pytest.raises(DataError, match=r"gone: folder not found"):
        dataset.load()
    root = write_movielens(tmp_path / "ml")
    (root / "ratings.csv").unlink()
    with pytest.raises(DataError) as error:
        movielens(root)
    assert str(error.value) == (
        f"{root}/ratings.csv: not found. The movielens dataset reads ratings.csv, movies.csv and (when present) "
        f"tags.csv from {root}."
    )
    assert error.value.file == str(root / "ratings.csv")


def test_missing_column_names_file_column_and_columns_found(tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml", ratings=RATINGS.replace("rating,", "score,", 1))
    with pytest.raises(DataError) as error:
        movielens(root)
    assert str(error.value) == (
        f"{root}/ratings.csv: no column 'rating' (the rating). "
        "Columns found: 'userId', 'movieId', 'score', 'timestamp'."
    )


FAULTS = [
    # (reason, file, rows to append, example the report gives)
    ("unknown item", "ratings.csv", "10,99,4.0,7\n", "row 15: movieId '99'"),
    ("bad timestamp", "ratings.csv", "10,1,4.0,yesterday\n", "row 15: timestamp 'yesterday'"),
    ("bad rating", "ratings.csv", "10,1,four,7\n", "row 15: rating 'four'"),
    ("bad rating", "ratings.csv", "10,1,,7\n", "row 15: rating (empty)"),
    ("missing id", "ratings.csv", ",1,4.0,7\n", "row 15: userId (empty), movieId '1'"),
    ("malformed row", "ratings.csv", "10,1,4.0\n", "row 15: 3 fields instead of 4: '10,1,4.0'"),
    ("duplicate item id", "movies.csv", "3,Another Title (2000),Drama\n", "row 7: movieId 3 (first at row 4)"),
    ("unknown item", "tags.csv", "10,99,lost,1\n", "row 8: movieId '99'"),
]


@pytest.mark.parametrize(("reason", "file", "extra", "example"), FAULTS, ids=[f"{f[1]}:{f[0]}" for f in FAULTS])
def test_each_fault_raises_with_counts_and_examples(
    tmp_path: Path, reason: str, file: str, extra: str, example: str
) -> None:
    root = write_movielens(tmp_path / "ml")
    with open(root / file, "a") as handle:
        handle.write(extra)
    with pytest.raises(DataError) as error:
        movielens(root)
    message = str(error.value)
    assert message.startswith(f"{root}/{file}: 1 bad row (on_error: raise):\n  {root}/{file}: 1 × {reason} (")
    assert example in message
    assert message.endswith("set `on_error: drop` to drop these rows (the data report lists every drop).")
    assert error.value.file == str(root / file)


@pytest.mark.parametrize(("reason", "file", "extra", "example"), FAULTS, ids=[f"{f[1]}:{f[0]}" for f in FAULTS])
def test_each_fault_is_dropped_and_reported_with_on_error_drop(
    tmp_path: Path, reason: str, file: str, extra: str, example: str
) -> None:
    root = write_movielens(tmp_path / "ml")
    with open(root / file, "a") as handle:
        handle.write(extra)
    data = movielens(root, on_error="drop")
    found = issue(data, reason)
    assert found["count"] == 1 and found["file"] == str(root / file) and example in found["examples"][0]
    assert len(data.interactions) == 13 and data.n_items == 5  # the good rows are all there
    counts = data.report.files[str(root / file)]
    assert counts.rows_read - counts.rows_kept == data.report.dropped(str(root / file))


def test_all_faults_are_listed_in_one_error(tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml", ratings=RATINGS + "10,99,4.0,7\n10,98,4.0,8\n10,1,x,9\n")
    with pytest.raises(DataError) as error:
        movielens(root)
    lines = str(error.value).splitlines()
    assert lines[0] == f"{root}/ratings.csv: 3 bad rows (on_error: raise):"  # the file holding them
    assert lines[1] == f"  {root}/ratings.csv: 1 × bad rating (not a finite number), e.g. row 17: rating 'x'"
    assert lines[2] == (
        f"  {root}/ratings.csv: 2 × unknown item (movieId not in movies.csv), "
        "e.g. row 15: movieId '99'; row 16: movieId '98'"
    )


def test_row_numbers_count_lines_across_blank_and_malformed_lines(tmp_path: Path) -> None:
    ratings = RATINGS.replace("10,2,2.0,200\n", "10,2,2.0,200\n\n10,1\n") + "10,77,1.0,1\n"
    data = movielens(write_movielens(tmp_path / "ml", ratings=ratings), on_error="drop")
    assert issue(data, "malformed row")["examples"] == ["row 7: 2 fields instead of 4: '10,1'"]
    assert issue(data, "unknown item")["examples"] == ["row 17: movieId '77'"]
    assert issue(data, "blank line")["kind"] == "note"
    assert data.report.files[str(tmp_path / "ml" / "ratings.csv")].rows_read == 15


def test_string_ids_in_movies_are_kept_as_strings(tmp_path: Path) -> None:
    movies = MOVIES + "tt9,Extra (2001),Drama\n"
    data = movielens(write_movielens(tmp_path / "ml", movies=movies), images=None)
    assert data.item_ids.tolist() == ["1", "2", "3", "5", "7", "tt9"]
    assert len(data.interactions) == 13


# --- table ----------------------------------------------------------------------------------------------------


ITEMS = pd.DataFrame(
    {
        "sku": ["b-2", "a-1", "c-3"],
        "name": ["Boots", "Anorak", "Cap"],
        "blurb": ["Warm.", None, "Red."],
        "picture": ["img/b.jpg", "img/a.jpg", ""],
    }
)
EVENTS = pd.DataFrame(
    {
        "customer": ["u1", "u1", "u2", "u2", "u2"],
        "sku": ["a-1", "b-2", "a-1", "c-3", "b-2"],
        "when": ["2024-01-01T00:00:00Z", "2024-01-02", "1704067200", "2024-01-03 12:00", "2024-01-04T00:00:00+01:00"],
        "stars": [5, 4, 3, 2, 1],
    }
)
TABLE_PARAMS = {
    "item_id": "sku",
    "text_columns": ["name", "blurb"],
    "image": "picture",
    "user": "customer",
    "timestamp": "when",
    "rating": "stars",
}


def write_table(folder: Path, fmt: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    (folder / "img" / "a.jpg").write_bytes(jpeg())
    items, events = folder / f"items.{fmt}", folder / f"events.{fmt}"
    for frame, path in ((ITEMS, items), (EVENTS, events)):
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_json(path, orient="records", lines=True)
    return items, events


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_table_reads_every_format_the_same_way(tmp_path: Path, fmt: str) -> None:
    items, events = write_table(tmp_path / fmt, fmt)
    data = table(items=items, interactions=events, **TABLE_PARAMS)
    assert data.item_ids.tolist() == ["a-1", "b-2", "c-3"] and data.user_ids.tolist() == ["u1", "u2"]
    assert data.items.text.tolist() == ["Anorak", "Boots. Warm.", "Cap. Red."]
    assert data.text_fields == ("name", "blurb")
    # relative image paths resolve against the items file's folder; b.jpg is missing, c-3 names no image
    assert data.items.image.tolist() == [str(tmp_path / fmt / "img" / "a.jpg"), None, None]
    images = data.report.images
    assert images is not None and (images.found, images.missing, images.no_path) == (1, 1, 1)
    # ISO dates, plain dates, naive date-times (UTC) and epoch seconds all become seconds
    day = 1704067200  # 2024-01-01T00:00:00Z
    assert sorted(data.interactions.timestamp.tolist()) == [
        day,
        day,
        day + 86400,
        day + 2 * 86400 + 43200,
        day + 3 * 86400 - 3600,
    ]
    assert sorted(data.interactions.rating.tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_table_template_and_format_override(tmp_path: Path) -> None:
    items, events = write_table(tmp_path, "csv")
    renamed = tmp_path / "items.data"
    items.rename(renamed)
    with pytest.raises(DataError, match=r"items.data: cannot tell the format from the extension .data"):
        table(items=renamed, interactions=events, **TABLE_PARAMS)
    data = table(items=renamed, items_format="csv", interactions=events, **TABLE_PARAMS, text="{name}[: {blurb}]")
    assert data.items.text.tolist() == ["Anorak", "Boots: Warm.", "Cap: Red."]


def test_table_missing_column_lists_the_columns_found(tmp_path: Path) -> None:
    items, events = write_table(tmp_path, "parquet")
    with pytest.raises(DataError) as error:
        table(items=items, interactions=events, **{**TABLE_PARAMS, "user": "user_id"})
    assert str(error.value) == (
        f"{events}: no column 'user_id' (user, the user id). Columns found: 'customer', 'sku', 'when', 'stars'."
    )


def test_table_params_are_checked_before_loading(tmp_path: Path) -> None:
    registry = get_registry()
    files = {"items": str(tmp_path / "i.csv"), "interactions": str(tmp_path / "e.csv")}
    with pytest.raises(ConfigError, match=r"i\.csv does not exist; expected an existing file") as error:
        registry.spec("dataset", {"type": "table", **files})
    assert len(error.value.problems) == 2 and "items" in str(error.value) and "interactions" in str(error.value)
    for name in files.values():
        Path(name).write_text("id\n")
    with pytest.raises(ConfigError, match="min_rating needs a rating column"):
        registry.spec("dataset", {"type": "table", **files, "min_rating": 3})
    with pytest.raises(ConfigError, match=r"uses \{title\}, which is not available; fields: \{name\}"):
        registry.spec("dataset", {"type": "table", **files, "text_columns": ["name"], "text": "{title}"})


def test_table_jsonl_with_bad_lines_reports_them(tmp_path: Path) -> None:
    items, _ = write_table(tmp_path, "jsonl")
    events = tmp_path / "bad.jsonl"
    events.write_text(
        '{"customer": "u1", "sku": "a-1", "when": 1}\n'
        "\n"
        '{"customer": "u1", "sku": "a-1", "when": \n'
        '["not", "an", "object"]\n'
        '{"customer": 7, "sku": "zz", "when": 2}\n'
    )
    data = table(items=items, interactions=events, **{**TABLE_PARAMS, "rating": None}, on_error="drop")
    assert issue(data, "malformed row")["examples"][0].startswith("row 3: ")
    assert issue(data, "unknown item")["examples"] == ["row 5: sku 'zz'"]
    assert len(data.interactions) == 1


def test_load_time_of_100k_interactions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    pd.DataFrame({"item_id": np.arange(5000), "title": [f"item {i}" for i in range(5000)]}).to_csv(
        tmp_path / "items.csv", index=False
    )
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 2000, n),
            "item_id": rng.integers(0, 5000, n),
            "timestamp": rng.integers(10**9, 2 * 10**9, n),
            "rating": rng.integers(1, 6, n).astype(float),
        }
    ).drop_duplicates(["user_id", "item_id", "timestamp"])
    frame.to_csv(tmp_path / "events.csv", index=False)
    start = time.perf_counter()
    data = table(
        items=tmp_path / "items.csv", interactions=tmp_path / "events.csv", text_columns=["title"], rating="rating"
    )
    elapsed = time.perf_counter() - start
    assert len(data.interactions) == len(frame)
    assert elapsed < 2.0, f"loading {len(frame):,} interactions took {elapsed:.2f} s"  # about 0.15 s on 2 cores


# --- the real MovieLens small release, and the bundled subset -------------------------------------------------


@pytest.mark.skipif(
    not (Path(__file__).resolve().parents[1] / "examples" / "data" / "quickstart" / "ratings.csv").is_file(),
    reason="the bundled quickstart data is not there",
)
def test_the_bundled_quickstart_subset_loads() -> None:
    root = Path(__file__).resolve().parents[1] / "examples" / "data" / "quickstart"
    data = movielens(root, check_images="decode")
    assert data.report.dropped() == 0
    images = data.report.images
    assert images is not None and images.unreadable == 0 and images.found > 0
    assert len(get_registry().create("split", "temporal").split(data).test) > 0


@pytest.fixture(scope="module")
def real() -> InteractionData:
    if not (MOVIELENS_SMALL / "ratings.csv").is_file():
        pytest.skip("../shared/data/movielens-small is not available")
    return movielens(MOVIELENS_SMALL)


def test_movielens_small_figures(real: InteractionData) -> None:
    assert (real.n_users, real.n_items, len(real.interactions)) == (610, 9742, 100_836)
    images = real.report.images
    assert images is not None and (images.found, images.missing, images.unreadable) == (9198, 544, 0)
    assert int(real.items.image.notna().sum()) == 9198
    assert real.report.dropped() == 0
    assert [c.rows_read for c in real.report.files.values()] == [9742, 100_836, 3683]
    assert (real.interactions.groupby("user").size() >= 20).all()
    json.dumps(real.report.to_dict())  # the report is JSON-ready


def test_movielens_small_temporal_split(real: InteractionData) -> None:
    split = get_registry().create("split", "temporal").split(real)
    assert (len(split.train), len(split.valid), len(split.test)) == (81_200, 9_818, 9_818)
