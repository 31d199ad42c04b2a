"""The feature engine and cache: what gets encoded, what comes from the cache, and `fusionrec features`."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import jpeg
from PIL import Image
from pydantic import Field

from fusionrec.core import cli
from fusionrec.core.assembly.config import FeaturesConfig
from fusionrec.core.data import InteractionData
from fusionrec.core.encoder import Encoder
from fusionrec.core.engine import feature_cache
from fusionrec.core.engine import features as fe
from fusionrec.core.engine.feature_cache import FeatureStore
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.params import Params
from fusionrec.registry import Registry, hookimpl
from fusionrec.registry.testing import PluginInstaller, make_registry

# --- toy encoders: deterministic, fast, no model ------------------------------------------------------------------


class HashTextParams(Params):
    dim: int = Field(8, ge=1, description="Vector size.")
    salt: str = Field("", description="Mixed into the hash: another salt, other vectors.")
    trainable: bool = Field(False, description="Pretend to be trainable (not cached).")


class HashText(Encoder):
    """Each text → a pseudo-random vector seeded by a hash of the text."""

    modality = "text"

    def __init__(self, dim: int = 8, salt: str = "", trainable: bool = False) -> None:
        self._dim, self.salt, self._trainable = dim, salt, trainable

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def trainable(self) -> bool:
        return self._trainable

    def embed(self, batch: Any) -> torch.Tensor:
        return torch.stack([torch.from_numpy(text_vector(text, self._dim, self.salt)) for text in batch])

    def fingerprint(self) -> str:
        return f"test.hash_text/dim={self._dim}/salt={self.salt}"

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "params.json").write_text(json.dumps([self._dim, self.salt, self._trainable]))

    @classmethod
    def load(cls, directory: Path) -> HashText:
        return cls(*json.loads((directory / "params.json").read_text()))


def text_vector(text: str, dim: int = 8, salt: str = "") -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b((salt + "\0" + text).encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


class PixelMean(Encoder):
    """Each image → its per-channel mean and maximum on an 8×8 thumbnail (decoded in preprocess)."""

    modality = "image"

    @property
    def dim(self) -> int:
        return 6

    def preprocess(self, raw: Any) -> torch.Tensor:
        with Image.open(raw) as image:
            pixels = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32) / 255
        return torch.from_numpy(pixels).permute(2, 0, 1)

    def embed(self, batch: Any) -> torch.Tensor:
        return torch.cat([batch.mean(dim=(2, 3)), batch.amax(dim=(2, 3))], dim=1)

    def fingerprint(self) -> str:
        return "test.pixel_mean/1"

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def load(cls, directory: Path) -> PixelMean:
        return cls()


class ToyEncoders:
    @hookimpl
    def register_encoders(self, register):  # type: ignore[no-untyped-def]
        register("test.hash_text", HashText, params=HashTextParams)
        register("test.pixel_mean", PixelMean)
        register("test.unbuildable", unbuildable)


def unbuildable() -> Encoder:
    raise RuntimeError("weights not found")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return make_registry(("test", ToyEncoders()))


# --- a small catalogue --------------------------------------------------------------------------------------------

TITLES = ["Toy Story", "Jumanji", "Heat", "Sabrina", "Casino"]


def write_catalogue(
    folder: Path,
    titles: Sequence[str] = TITLES,
    images: Sequence[bytes | None] | None = None,
    encoders: str = "{text: {type: test.hash_text}, image: {type: test.pixel_mean}}",
    features: str = "{cache: cache, batch_size: 2, num_workers: 0}",
) -> Path:
    """items.csv (+ posters), interactions.csv and pipeline.yaml in ``folder``; returns the pipeline file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "posters").mkdir(exist_ok=True)
    if images is None:
        images = [jpeg(seed=i) for i in range(len(titles))]
    lines = ["item_id,title,image"]
    for i, (title, image) in enumerate(zip(titles, images, strict=True)):
        path = ""
        if image is not None:
            path = f"posters/{i}.jpg"
            (folder / path).write_bytes(image)
        lines.append(f'{i},"{title}",{path}')
    (folder / "items.csv").write_text("\n".join(lines) + "\n")
    events = ["user_id,item_id,timestamp", *(f"{u},{i},{10 * u + i}" for u in range(3) for i in range(len(titles)))]
    (folder / "interactions.csv").write_text("\n".join(events) + "\n")
    pipeline = folder / "pipeline.yaml"
    pipeline.write_text(
        "fusionrec: 1\n"
        "data: {type: table, items: items.csv, interactions: interactions.csv, text_columns: [title], image: image,"
        " check_images: none}\n"
        f"encoders: {encoders}\n"
        f"features: {features}\n"
    )
    return pipeline


def features(pipeline: Path, registry: Registry) -> fe.FeaturesRun:
    return fe.run_features(pipeline, registry)


def report(run: fe.FeaturesRun, key: str) -> fe.FeatureReport:
    return next(r for r in run.reports if r.key == key)


def pixel_vector(path: Path) -> np.ndarray:
    encoder = PixelMean()
    return encoder.encode([str(path)])[0].numpy()


# --- the engine and the cache -------------------------------------------------------------------------------------


def test_second_run_encodes_nothing_and_returns_the_same_vectors(tmp_path: Path, registry: Registry) -> None:
    pipeline = write_catalogue(tmp_path)
    first = features(pipeline, registry)
    text, image = report(first, "text"), report(first, "image")
    assert (text.encoded, text.cached, text.present, text.missing) == (5, 0, 5, 0)
    assert (image.encoded, image.cached, image.present) == (5, 0, 5)
    expected = np.stack([text_vector(title) for title in TITLES])
    np.testing.assert_array_equal(first.matrices["text"].vectors, expected)
    np.testing.assert_allclose(
        first.matrices["image"].vectors[2], pixel_vector(tmp_path / "posters" / "2.jpg"), rtol=1e-6
    )
    assert text.store is not None and Path(text.store).parent == tmp_path / "cache"

    second = features(pipeline, registry)
    for key in ("text", "image"):
        again = report(second, key)
        assert (again.encoded, again.cached, again.present) == (0, 5, 5)
        assert again.store == report(first, key).store
        np.testing.assert_array_equal(second.matrices[key].vectors, first.matrices[key].vectors)
        assert isinstance(second.matrices[key].vectors, np.memmap)  # straight from the store, nothing copied
        assert second.matrices[key].present.all()


def test_changing_one_text_reencodes_exactly_that_item(tmp_path: Path, registry: Registry) -> None:
    pipeline = write_catalogue(tmp_path)
    features(pipeline, registry)
    changed = [*TITLES[:3], "Sabrina (1995)", TITLES[4]]
    write_catalogue(tmp_path, titles=changed)
    run = features(pipeline, registry)
    assert (report(run, "text").encoded, report(run, "text").cached) == (1, 4)
    assert report(run, "image").encoded == 0
    np.testing.assert_array_equal(run.matrices["text"].vectors[3], text_vector("Sabrina (1995)"))
    # the old row stays in the store, so going back costs nothing
    write_catalogue(tmp_path)
    back = features(pipeline, registry)
    assert report(back, "text").encoded == 0
    np.testing.assert_array_equal(back.matrices["text"].vectors[3], text_vector("Sabrina"))


def test_changing_an_image_file_reencodes_it(tmp_path: Path, registry: Registry) -> None:
    pipeline = write_catalogue(tmp_path)
    features(pipeline, registry)
    (tmp_path / "posters" / "1.jpg").write_bytes(jpeg(size=(20, 20), seed=99))
    run = features(pipeline, registry)
    assert (report(run, "image").encoded, report(run, "image").cached) == (1, 4)
    np.testing.assert_allclose(
        run.matrices["image"].vectors[1], pixel_vector(tmp_path / "posters" / "1.jpg"), rtol=1e-6
    )


def test_another_encoder_parameter_uses_another_store(tmp_path: Path, registry: Registry) -> None:
    pipeline = write_catalogue(tmp_path)
    first = features(pipeline, registry)
    write_catalogue(tmp_path, encoders="{text: {type: test.hash_text, salt: x}, image: {type: test.pixel_mean}}")
    second = features(pipeline, registry)
    old, new = report(first, "text"), report(second, "text")
    assert new.store != old.store and new.fingerprint != old.fingerprint
    assert (new.encoded, new.cached) == (5, 0)
    assert report(second, "image").encoded == 0
    np.testing.assert_array_equal(second.matrices["text"].vectors[0], text_vector(TITLES[0], salt="x"))
    assert old.store is not None and (Path(old.store) / "CURRENT").is_file()  # the other store is left alone


def test_missing_and_unreadable_inputs_are_counted_not_fatal(tmp_path: Path, registry: Registry) -> None:
    good = jpeg()
    images = [good, None, b"not an image", good[: len(good) // 3], good]
    pipeline = write_catalogue(tmp_path, titles=["Toy Story", "Jumanji", "  ", "Sabrina", "Casino"], images=images)
    run = features(pipeline, registry)
    image, text = report(run, "image"), report(run, "text")
    assert (image.items, image.present, image.missing, image.unreadable_count) == (5, 2, 1, 2)
    assert image.unreadable == {"UnidentifiedImageError": 1, "OSError": 1}
    assert any("posters/2.jpg: UnidentifiedImageError" in example for example in image.examples)
    assert run.matrices["image"].present.tolist() == [True, False, False, False, True]
    assert not run.matrices["image"].vectors[1:4].any()
    assert (text.present, text.missing) == (4, 1) and not run.matrices["text"].present[2]
    # same content twice (items 0 and 4 share a poster): one row in the store
    assert json.loads(next(Path(image.store or "").glob("g*/meta.json")).read_text())["count"] == 1
    lines = fe.summary_lines(run)
    assert (
        "  image: test.pixel_mean (image, dim 6): 5 items: 2 present, 1 missing (no image named, or the file is "
        "absent), 2 unreadable" in lines
    )
    assert any(line.startswith("    unreadable: 1 OSError, 1 UnidentifiedImageError; e.g.") for line in lines)
    again = features(pipeline, registry)
    assert (report(again, "image").encoded, report(again, "image").unreadable_count) == (0, 2)


def test_a_file_that_vanished_after_loading_is_unreadable(tmp_path: Path, registry: Registry) -> None:
    named = fe.NamedEncoder("image", "test.pixel_mean", PixelMean())
    matrix = fe.extract_modality(named, [str(tmp_path / "gone.jpg")], FeaturesConfig(), root=tmp_path / "cache")
    assert matrix.report.unreadable == {"FileNotFoundError": 1} and not matrix.present.any()


def test_zero_and_one_worker_give_identical_vectors(tmp_path: Path) -> None:
    paths = []
    for i in range(7):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(jpeg(size=(16 + i, 24), seed=i))
        paths.append(str(path))
    paths.insert(3, str(tmp_path / "broken.jpg"))
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    named = fe.NamedEncoder("image", "test.pixel_mean", PixelMean())
    results = [
        fe.extract_modality(named, paths, FeaturesConfig(batch_size=3, num_workers=workers), cache=False)
        for workers in (0, 1)
    ]
    np.testing.assert_array_equal(results[0].vectors, results[1].vectors)
    assert results[0].present.tolist() == results[1].present.tolist() == [True] * 3 + [False] + [True] * 4
    assert results[1].report.unreadable == {"UnidentifiedImageError": 1}


def test_threads_are_set_while_encoding_and_restored(tmp_path: Path) -> None:
    seen: list[int] = []

    class Spy(HashText):
        def embed(self, batch: Any) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return super().embed(batch)

    before = torch.get_num_threads()
    named = fe.NamedEncoder("text", "spy", Spy())
    fe.extract_modality(named, ["a", "b"], FeaturesConfig(threads=1), cache=False)
    assert seen == [1] and torch.get_num_threads() == before


def test_an_interrupted_write_leaves_the_previous_store(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = write_catalogue(tmp_path)
    first = features(pipeline, registry)
    store = Path(report(first, "text").store or "")
    current = (store / "CURRENT").read_text()

    def crash(target: Path, meta: dict[str, Any]) -> None:
        raise RuntimeError("disk pulled out mid-write")

    monkeypatch.setattr(feature_cache, "_write_meta", crash)
    write_catalogue(tmp_path, titles=[*TITLES[:4], "Casino Royale"])
    with pytest.raises(RuntimeError, match="mid-write"):
        features(pipeline, registry)
    assert (store / "CURRENT").read_text() == current
    assert sorted(p.name for p in store.iterdir() if p.name != "CURRENT") == [current.strip()]  # no leftovers
    contents = FeatureStore(store.parent, "text", report(first, "text").fingerprint or "").load()
    assert contents is not None and sorted(contents.keys.tolist()) == sorted(
        feature_cache.text_key(title) for title in TITLES
    )
    monkeypatch.undo()
    run = features(pipeline, registry)
    assert (report(run, "text").encoded, report(run, "text").cached) == (1, 4)


def test_a_damaged_store_is_rewritten(tmp_path: Path, registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    pipeline = write_catalogue(tmp_path)
    store = Path(report(features(pipeline, registry), "text").store or "")
    generation = store / (store / "CURRENT").read_text().strip()
    (generation / "vectors.npy").write_bytes(b"\x93NUMPY garbage")
    run = features(pipeline, registry)
    assert report(run, "text").encoded == 5
    assert "damaged" in caplog.text
    assert report(features(pipeline, registry), "text").encoded == 0


def test_trainable_encoders_are_encoded_on_demand_never_cached(tmp_path: Path, registry: Registry) -> None:
    pipeline = write_catalogue(tmp_path, encoders="{text: {type: test.hash_text, trainable: true}}")
    skipped = report(features(pipeline, registry), "text")  # fusionrec features: training computes them
    assert skipped.skipped and skipped.encoded == 0
    from fusionrec.core.assembly import loading

    loaded = loading.load(pipeline, registry)
    matrices, reports = fe.extract(loaded.data, fe.build_encoders(loaded.spec, registry), loaded.spec.features)
    assert reports[0].encoded == 5 and reports[0].store is None
    np.testing.assert_array_equal(matrices["text"].vectors[0], text_vector(TITLES[0]))
    assert not (tmp_path / "cache").exists()


def test_the_cache_folder_comes_from_the_config_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSIONREC_CACHE", str(tmp_path / "env"))
    assert feature_cache.cache_root(None) == tmp_path / "env"
    assert feature_cache.cache_root(tmp_path / "configured") == tmp_path / "configured"
    monkeypatch.delenv("FUSIONREC_CACHE")
    assert feature_cache.cache_root(None) == Path.home() / ".cache" / "fusionrec" / "features"


def test_an_encoder_with_the_wrong_output_shape_is_named(tmp_path: Path) -> None:
    class Wrong(HashText):
        def embed(self, batch: Any) -> torch.Tensor:
            return torch.zeros(len(batch), 3)

    with pytest.raises(FusionrecError, match=r"encoders.text \(wrong\): embed returned \(2, 3\).*expected \(2, 8\)"):
        fe.extract_modality(fe.NamedEncoder("text", "wrong", Wrong()), ["a", "b"], FeaturesConfig(), cache=False)


def test_an_encoder_that_cannot_be_built_names_the_pipeline_file(tmp_path: Path, registry: Registry) -> None:
    pipeline = write_catalogue(tmp_path, encoders="{image: {type: test.unbuildable}}")
    with pytest.raises(ConfigError) as caught:
        features(pipeline, registry)
    assert str(caught.value) == (
        f"{pipeline}: encoders.image: encoder 'test.unbuildable' could not be built: RuntimeError: weights not found"
    )


def test_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    named = fe.NamedEncoder("text", "test.hash_text", HashText())
    data = InteractionData(pd.DataFrame({"text": TITLES}), pd.DataFrame(), np.array([]), np.arange(len(TITLES)))
    fe.extract(data, [named], FeaturesConfig(cache=tmp_path), progress=True, console=console)
    assert "text (test.hash_text)" in screen.getvalue() and "5/5" in screen.getvalue()
    assert "items/s" in screen.getvalue()


# --- the command line ---------------------------------------------------------------------------------------------


@pytest.fixture
def toy_plugins(fusionrec_plugins: PluginInstaller) -> PluginInstaller:
    fusionrec_plugins.add(ToyEncoders(), "test")
    return fusionrec_plugins


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_features_command_prints_the_summary(
    tmp_path: Path, toy_plugins: PluginInstaller, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = write_catalogue(tmp_path)
    code, out, err = run_cli(capsys, "features", str(pipeline), "--quiet")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"features (cache {tmp_path / 'cache'}):"
    assert "  text: test.hash_text (text, dim 8): 5 items: 5 present, 0 missing (no text), 0 unreadable" in lines
    assert any(line.startswith("    5 encoded now, 0 from cache; ") and "items/s" in line for line in lines)
    assert any(line.startswith(f"    store: {tmp_path / 'cache' / 'image-'}") for line in lines)

    code, out, err = run_cli(capsys, "features", str(pipeline), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["cache"] == str(tmp_path / "cache")
    assert [(m["key"], m["encoded"], m["cached"]) for m in data["modalities"]] == [("text", 0, 5), ("image", 0, 5)]


def test_features_command_without_encoders_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write_catalogue(tmp_path)
    pipeline.write_text("\n".join(line for line in pipeline.read_text().splitlines() if "encoders" not in line))
    code, _, err = run_cli(capsys, "features", str(pipeline))
    assert code == 2
    assert "encoders: the pipeline has no `encoders` section" in err and "Traceback" not in err


def test_run_refuses_a_pipeline_without_a_user_tower_before_it_starts(
    tmp_path: Path, toy_plugins: PluginInstaller, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = write_catalogue(tmp_path)
    pipeline.write_text(pipeline.read_text() + "fuser: {type: concat}\n")
    code, _, err = run_cli(capsys, "run", str(pipeline), "--out", str(tmp_path / "run"), "-q")
    assert code == 2 and "user: the pipeline has no `user` section" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was computed or written


# --- the cache checks its bytes (issue 18, point 5) ---------------------------------------------------------------


def _generation(run: fe.FeaturesRun, key: str) -> Path:
    store = Path(report(run, key).store or "")
    return store / (store / "CURRENT").read_text().strip()


def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # a byte of the last vector, same size
    path.write_bytes(bytes(raw))


def _nans(path: Path) -> None:
    vectors = np.load(path, mmap_mode="r+")
    vectors[2] = np.nan
    vectors.flush()


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(100)


@pytest.mark.parametrize(
    ("damage", "why"),
    [(_truncate, "is 100 bytes"), (_flip, "checksum mismatch in vectors.npy"), (_nans, "checksum mismatch")],
    ids=["truncated", "bytes flipped", "NaNs written"],
)
def test_a_damaged_store_is_reported_with_its_path_rebuilt_and_never_served(
    tmp_path: Path, registry: Registry, damage: Any, why: str
) -> None:
    pipeline = write_catalogue(tmp_path)
    first = features(pipeline, registry)
    expected = np.array(first.matrices["text"].vectors)
    generation = _generation(first, "text")
    damage(generation / "vectors.npy")
    run = features(pipeline, registry)
    text = report(run, "text")
    assert text.encoded == 5 and text.cached == 0  # nothing came from the damaged store
    assert text.store_problem is not None and text.store_problem.startswith(f"{generation}: ")
    assert why in text.store_problem
    assert np.isfinite(run.matrices["text"].vectors).all()
    np.testing.assert_array_equal(run.matrices["text"].vectors, expected)
    assert f"    the store on disk was damaged and was rebuilt: {text.store_problem}" in fe.summary_lines(run)
    again = report(features(pipeline, registry), "text")
    assert (again.encoded, again.cached, again.store_problem) == (0, 5, None)


def test_a_store_without_checksums_is_rebuilt(tmp_path: Path, registry: Registry) -> None:
    pipeline = write_catalogue(tmp_path)
    meta_file = _generation(features(pipeline, registry), "text") / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["checksums"]
    meta_file.write_text(json.dumps(meta))
    text = report(features(pipeline, registry), "text")
    assert text.encoded == 5 and "no checksums" in (text.store_problem or "")


class NanText(HashText):
    """HashText, except that one title comes out as NaN (a model overflowing in half precision, say)."""

    def embed(self, batch: Any) -> torch.Tensor:
        out = super().embed(batch)
        for row, text in enumerate(batch):
            if text == "Heat":
                out[row] = float("nan")
        return out


def test_a_non_finite_vector_is_refused_naming_the_encoder_and_the_item(tmp_path: Path) -> None:
    named = fe.NamedEncoder("text", "test.nan_text", NanText())
    with pytest.raises(FusionrecError) as error:
        fe.extract_modality(
            named, TITLES, FeaturesConfig(), root=tmp_path / "cache", item_ids=["a", "b", "c", "d", "e"]
        )
    assert str(error.value).startswith(
        "encoders.text (test.nan_text): the encoder returned a vector with NaN or infinity for item 'c' ('Heat'); "
        "nothing was cached."
    )
    assert not (tmp_path / "cache").exists()
    with pytest.raises(FusionrecError, match="for item 'c'"):  # uncached encoding refuses it too
        fe.extract_modality(named, TITLES, FeaturesConfig(), cache=False, item_ids=["a", "b", "c", "d", "e"])


def test_the_store_itself_refuses_non_finite_vectors(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, "text", "test/1")
    vectors = np.ones((2, 3), dtype=np.float32)
    vectors[1, 2] = np.inf
    keys = np.array([feature_cache.text_key("a"), feature_cache.text_key("b")], dtype="S32")
    with pytest.raises(feature_cache.NonFiniteVectorError, match="1 vector with NaN or infinity") as error:
        store.write([(keys, vectors)], 3)
    assert error.value.rows == [1] and store.load() is None


# --- one vocabulary for images: the data report's counts are the feature step's (issue 18, point 5) ------------


def test_missing_and_unreadable_images_have_the_same_counts_in_the_data_report_and_features(
    tmp_path: Path, registry: Registry
) -> None:
    good = jpeg()
    images = [good, None, b"not an image", good[: len(good) // 2], jpeg(seed=3)]
    pipeline = write_catalogue(tmp_path, images=images)
    (tmp_path / "posters" / "4.jpg").unlink()  # named, file absent
    pipeline.write_text(pipeline.read_text().replace("check_images: none", "check_images: header"))
    from fusionrec.core.assembly import loading

    loaded = loading.load(pipeline, registry)
    checked = loaded.data.report.images
    assert checked is not None
    assert (checked.missing_total, checked.unreadable) == (2, 2)  # no path + file absent; not an image + truncated
    image = report(fe.run_features(pipeline, registry), "image")
    assert (image.missing, image.unreadable_count, image.present) == (2, 2, 1)
    assert image.unreadable == {"data check (header)": 2}
    assert any(
        e.endswith("posters/3.jpg: data check (header): truncated JPEG (no end-of-image marker)")
        for e in image.examples
    )
    line = next(line for line in loading.report_lines(loaded.data.report) if "images (header check)" in line)
    assert "2 missing (1 with no image named, 1 file absent), 2 unreadable (file present, cannot be decoded)" in line


def test_quickstart_posters_have_one_vocabulary(tmp_path: Path, registry: Registry) -> None:
    """The issue's reproduction: four broken posters in the quickstart data were 'unreadable' in the data report
    and 'missing (no image), 0 unusable' in the feature step."""
    import shutil

    from fusionrec.core.assembly import loading

    root = tmp_path / "quickstart"
    source = Path(__file__).resolve().parents[1] / "examples" / "data" / "quickstart"
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("links.csv", "README.txt", "NOTICE.md"))
    posters = sorted((root / "posters").glob("*.jpg"))
    for poster in posters[:4]:
        poster.write_bytes(poster.read_bytes()[:200])  # truncated downloads
    posters[4].unlink()
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "fusionrec: 1\ndata: {type: movielens, path: quickstart}\nencoders: {image: {type: test.pixel_mean}}\n"
        "features: {cache: cache, num_workers: 0}\n"
    )
    loaded = loading.load(pipeline, registry)
    checked = loaded.data.report.images
    assert checked is not None and (checked.missing_total, checked.unreadable) == (1, 4)
    run = fe.run_features(pipeline, registry)
    image = report(run, "image")
    assert (image.missing, image.unreadable_count, image.present) == (1, 4, len(posters) - 5)
    assert any(
        line.endswith(
            f"{len(posters):,} items: {len(posters) - 5:,} present, 1 missing (no image named, or the file "
            "is absent), 4 unreadable"
        )
        for line in fe.summary_lines(run)
    )
