"""The encoders' fast runtimes (``runtime:``, ``quantize:``): fidelity on the bundled data, choice, fallback, cache.

Fidelity is the contract: on the bundled posters (32) and movie texts (64), every runtime's vectors agree with the
eager torch vectors to cosine >= 0.999 per item, int8 to >= 0.99. The exported models go to one cache folder per
module, so each is exported once.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.plugins.encoders import runtime_impl
from fusionrec.plugins.encoders.runtime_impl import cosine_per_row, missing_packages
from fusionrec.plugins.encoders.sentence_transformer import SentenceTransformerParams
from fusionrec.plugins.encoders.sentence_transformer_impl import SentenceTransformerEncoder
from fusionrec.plugins.encoders.timm import TimmParams
from fusionrec.plugins.encoders.timm_impl import TimmEncoder

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "data" / "quickstart"
FAST = [name for name in ("onnx", "openvino") if not missing_packages(name)]
needs_fast = pytest.mark.skipif(not FAST, reason="no fast runtime installed (pip install 'fusionrec[fast]')")


def posters(n: int = 32) -> list[str]:
    return [str(path) for path in sorted((QUICKSTART / "posters").glob("*.jpg"))[:n]]


def texts(n: int = 64) -> list[str]:
    """Movie texts as the movielens dataset writes them (title, genres)."""
    with open(QUICKSTART / "movies.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:n]
    return [f"{row['title']}. Genres: {row['genres'].replace('|', ', ')}" for row in rows]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime-cache")


@pytest.fixture(scope="module")
def image_reference() -> np.ndarray:
    return TimmEncoder(runtime="torch").encode(posters()).numpy()


@pytest.fixture(scope="module")
def text_reference() -> np.ndarray:
    return SentenceTransformerEncoder(runtime="torch").encode(texts()).numpy()


def encode_twice(encoder: Any, raws: list[str], cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first batch (which chooses and checks the runtime) and a second one through the chosen runtime."""
    encoder.set_cache_folder(cache)
    return encoder.encode(raws).numpy(), encoder.encode(raws).numpy()


@needs_fast
@pytest.mark.parametrize("runtime", FAST)
def test_image_runtime_fidelity_on_bundled_posters(runtime: str, cache: Path, image_reference: np.ndarray) -> None:
    encoder = TimmEncoder(runtime=runtime)
    first, second = encode_twice(encoder, posters(), cache)
    assert encoder.runtime == runtime
    assert cosine_per_row(second, image_reference).min() >= 0.999
    assert cosine_per_row(first, image_reference).min() >= 0.999
    assert not np.array_equal(second, image_reference)  # really another runtime, not torch again


@needs_fast
@pytest.mark.parametrize("runtime", FAST)
def test_text_runtime_fidelity_on_bundled_texts(runtime: str, cache: Path, text_reference: np.ndarray) -> None:
    encoder = SentenceTransformerEncoder(runtime=runtime)
    _, second = encode_twice(encoder, texts(), cache)
    assert encoder.runtime == runtime
    assert cosine_per_row(second, text_reference).min() >= 0.999
    assert np.allclose(np.linalg.norm(second, axis=1), 1.0, atol=1e-5)  # normalize: true holds


@pytest.mark.skipif(bool(missing_packages("int8")), reason="int8 needs onnxruntime and onnx")
def test_text_int8_fidelity_and_cache_key(cache: Path, text_reference: np.ndarray) -> None:
    encoder = SentenceTransformerEncoder(quantize="int8")
    _, second = encode_twice(encoder, texts(), cache)
    assert encoder.runtime == "onnx"
    cosines = cosine_per_row(second, text_reference)
    assert cosines.min() >= 0.99
    assert cosines.min() < 0.9999  # quantised for real: measurably different vectors
    plain = SentenceTransformerEncoder(runtime="torch")
    assert encoder.fingerprint() != plain.fingerprint()  # int8 is part of the feature-cache key
    assert (cache / "exported").is_dir() and any((cache / "exported").glob("*/model.int8.onnx"))


def test_runtime_is_not_part_of_the_cache_key() -> None:
    torch_fp = TimmEncoder(runtime="torch").fingerprint()
    assert TimmEncoder(runtime="auto").fingerprint() == torch_fp
    assert TimmEncoder(runtime="compile").fingerprint() == torch_fp
    text_fp = SentenceTransformerEncoder(runtime="torch").fingerprint()
    assert SentenceTransformerEncoder(runtime="auto").fingerprint() == text_fp


@needs_fast
def test_auto_picks_the_fastest_installed(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    encoder = TimmEncoder()
    with caplog.at_level(logging.INFO, logger="fusionrec.encoders.runtime"):
        encode_twice(encoder, posters(4), cache)
    assert encoder.runtime == ("openvino" if "openvino" in FAST else "onnx")
    assert f"runtime {encoder.runtime} (least cosine" in caplog.text


def test_auto_falls_back_to_torch_when_fidelity_fails(
    cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, image_reference: np.ndarray
) -> None:
    if not FAST:
        pytest.skip("no fast runtime installed")
    monkeypatch.setitem(runtime_impl.COSINE_BOUND, "none", 1.5)  # no runtime can pass this
    encoder = TimmEncoder()
    with caplog.at_level(logging.WARNING, logger="fusionrec.encoders.runtime"):
        first, second = encode_twice(encoder, posters(), cache)
    assert encoder.runtime == "torch"
    assert "falls back to torch" in caplog.text and "below 1.5" in caplog.text
    assert np.allclose(first, image_reference, atol=1e-5) and np.allclose(second, image_reference, atol=1e-5)


def test_auto_falls_back_to_torch_when_nothing_is_installed(
    cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime_impl, "missing_packages", lambda runtime, quantize="none": ["onnxruntime"])
    encoder = SentenceTransformerEncoder()
    with caplog.at_level(logging.WARNING, logger="fusionrec.encoders.runtime"):
        encode_twice(encoder, texts(8), cache)
    assert encoder.runtime == "torch"
    assert "not installed (pip install 'fusionrec[fast]')" in caplog.text


def test_explicit_runtime_not_installed_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_impl, "missing_packages", lambda runtime, quantize="none": ["openvino"])
    with pytest.raises(ConfigError, match=r"runtime 'openvino' needs openvino.*fusionrec\[fast\]"):
        TimmEncoder(runtime="openvino")


@needs_fast
def test_explicit_runtime_failing_fidelity_raises(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runtime_impl.COSINE_BOUND, "none", 1.5)
    encoder = TimmEncoder(runtime=FAST[0])
    encoder.set_cache_folder(cache)
    with pytest.raises(FusionrecError, match=r"fidelity check failed.*set runtime: torch"):
        encoder.encode(posters(2))


@needs_fast
def test_the_export_is_cached_and_reused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = TimmEncoder(runtime=FAST[0])
    encoder.set_cache_folder(cache)
    encoder.encode(posters(2))
    exported = encoder._fast.export_folder() / "model.onnx"  # type: ignore[union-attr]
    assert exported.is_file() and not list(exported.parent.glob(".tmp-*"))
    stamp = exported.stat().st_mtime_ns

    def no_export(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = TimmEncoder(runtime=FAST[0])
    again.set_cache_folder(cache)
    again.encode(posters(2))
    assert again.runtime == FAST[0] and exported.stat().st_mtime_ns == stamp


def test_failed_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(module: Any, args: Any, target: str, **kwargs: Any) -> None:
        Path(target).write_bytes(b"half")
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(torch.onnx, "export", broken)
    monkeypatch.setattr(runtime_impl, "missing_packages", lambda runtime, quantize="none": [])
    encoder = TimmEncoder(runtime="onnx")
    encoder.set_cache_folder(tmp_path)
    with pytest.raises(FusionrecError, match="runtime 'onnx' failed: RuntimeError: exporter broke"):
        encoder.encode(posters(2))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        (TimmParams, {"runtime": "onnx", "trainable": True, "weights": "none"}, "serves frozen models only"),
        (SentenceTransformerParams, {"runtime": "openvino", "quantize": "int8"}, "int8 runs on ONNX Runtime"),
        (SentenceTransformerParams, {"runtime": "tensorrt"}, "runtime"),
    ],
)
def test_bad_runtime_parameters(model: Any, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        model(**params)


def test_workers_get_the_encoder_without_the_compiled_model(cache: Path) -> None:
    import pickle

    encoder = TimmEncoder()
    encoder.set_cache_folder(cache)
    encoder.encode(posters(2))
    copy = pickle.loads(pickle.dumps(encoder))
    assert copy._fast is not None and copy._fast._backend is None
    assert copy.preprocess(posters(1)[0]).shape == (3, 224, 224)


@pytest.fixture(autouse=True)
def _torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_preprocess_equals_timms_transform_bit_for_bit() -> None:
    """The to-tensor and normalise steps run in numpy (fast under load) and give exactly timm's tensors."""
    from fusionrec.plugins.encoders.image_io import open_rgb

    encoder = TimmEncoder(runtime="torch")
    assert encoder._scale is not None  # the numpy path is in use for EfficientNet-Lite0
    for path in posters(16):
        mine = encoder.preprocess(path)
        timms = encoder._transform(open_rgb(path))
        assert mine.dtype == timms.dtype == torch.float32 and mine.is_contiguous()
        assert torch.equal(mine, timms)
