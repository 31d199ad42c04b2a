"""Trainable encoders (cnn, rnn) trained end to end with the two towers: weights change, are saved in the run, are
seeded, survive --resume; a frozen encoder goes through the feature cache and keeps its weights."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from train_fixtures import GENRES, write_catalogue

from fusionrec.core.api import Pipeline
from fusionrec.core.assembly.config import FeaturesConfig
from fusionrec.core.engine import features as fe
from fusionrec.core.engine.context import Prepared
from fusionrec.core.engine.encoder_inputs import Coded, EncoderInputs, compact, expand, prepare_inputs
from fusionrec.core.engine.rundir import RunDir
from fusionrec.core.engine.two_tower import ItemTower
from fusionrec.plugins.encoders.cnn_impl import CnnEncoder
from fusionrec.plugins.encoders.rnn_impl import RNNEncoder
from fusionrec.registry import get_registry

COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40))
CNN = "{type: cnn, dim: 8, channels: [4, 8], image_size: 16, trainable: %s}"
RNN = "{type: rnn, embedding_dim: 8, hidden: 8, dim: 8, max_length: 8}"


def write_posters(data: Path) -> None:
    """Add a `poster` column to the catalogue: a noisy 20×20 PNG tinted by the item's genre, one file that is not
    an image (unreadable: counted, never fatal) and one item without a poster (missing)."""
    rng = random.Random(0)
    (data / "posters").mkdir()
    lines = (data / "items.csv").read_text().splitlines()
    out = [lines[0] + ",poster"]
    for n, line in enumerate(lines[1:]):
        item = line.split(",", 1)[0]
        genre = next(g for g, name in enumerate(GENRES) if line.endswith(name))
        if n == 0:
            out.append(line + ",")
            continue
        name = f"posters/{item}.png"
        if n == 1:
            (data / name).write_bytes(b"not a png at all")
        else:
            pixels = np.array(COLOURS[genre], dtype=np.int16) + np.array(
                [[[rng.randrange(-30, 30) for _ in range(3)] for _ in range(20)] for _ in range(20)], dtype=np.int16
            )
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(data / name)
        out.append(f"{line},{name}")
    (data / "items.csv").write_text("\n".join(out) + "\n")


def write_pipeline(folder: Path, *, cnn_trainable: bool = True, rnn: bool = True, epochs: int = 2) -> Path:
    data = folder / "data"
    if not (data / "items.csv").exists():
        write_catalogue(data, users=40, items_per_genre=8, length=10)
        write_posters(data)
    text = f"""fusionrec: 1
data:
  type: table
  items: data/items.csv
  interactions: data/interactions.csv
  text_columns: [title, genre]
  image: poster
  check_images: none
  split: {{type: temporal}}
encoders:
  image: {CNN % str(cnn_trainable).lower()}
{"  text: " + RNN if rnn else ""}
features: {{cache: {folder / "cache"}, num_workers: 0}}
fuser: {{type: concat, dim: 16}}
user: {{type: mean}}
train: {{epochs: {epochs}, batch_size: 64, lr: 0.01, seed: 0}}
evaluate: {{bootstrap: 50}}
"""
    path = folder / f"pipeline-{cnn_trainable}-{rnn}.yaml"
    path.write_text(text)
    return path


def train(pipeline: Path, out: Path, **kwargs: Any) -> tuple[Any, list[Prepared]]:
    seen: list[Prepared] = []
    resume = kwargs.pop("resume", False)

    def on_event(name: str, facts: dict[str, Any]) -> None:
        if name == "features":
            seen.append(facts["prepared"])

    outcome = Pipeline.load(pipeline, get_registry()).train(out, resume=resume, on_event=on_event, **kwargs)
    return outcome, seen


def weights(module: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    assert module is not None
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Equal up to float rounding: with several CPU threads a convolution's backward pass sums in an order that can
    change between runs, so two runs' trained weights agree to ~1e-7, not bit for bit (one thread: bit for bit)."""
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)


def test_trainable_encoders_are_trained_end_to_end_and_saved(tmp_path: Path) -> None:
    outcome, (prepared,) = train(write_pipeline(tmp_path), tmp_path / "run")
    assert set(prepared.inputs) == {"image", "text"} and prepared.features == {}
    initial = {key: weights(inputs.encoder.module) for key, inputs in prepared.inputs.items()}
    image = prepared.inputs["image"]
    # one item names no poster (missing), one names a file that is not an image (unreadable): both not present
    assert image.report.missing == 1 and image.report.unreadable == {"UnidentifiedImageError": 1}
    assert int(image.present.sum()) == image.report.present == len(image.present) - 2
    lines = "\n".join(fe.summary_lines(prepared.features_run))
    assert lines.count("trained end to end with the towers") == 2 and "1 unreadable" in lines

    run = RunDir.open(tmp_path / "run")
    assert run.verify() == [] and (tmp_path / "run" / "metrics.json").exists()
    artifacts = set(run.manifest["artifacts"])
    assert {"encoders/image/state.pt", "encoders/image/encoder.json", "encoders/text/state.pt"} <= artifacts
    assert outcome.summary["encoders"] == {"image": "encoders/image", "text": "encoders/text"}
    trained = {
        "image": CnnEncoder.load(tmp_path / "run" / "encoders" / "image"),
        "text": RNNEncoder.load(tmp_path / "run" / "encoders" / "text"),
    }
    for key, encoder in trained.items():
        after = weights(encoder.module)
        assert after.keys() == initial[key].keys()
        assert not same(after, initial[key]), f"{key}: training did not change the encoder's weights"
    # the saved encoders are the selected epoch's, the ones the final item vectors came from
    best = torch.load(tmp_path / "run" / f"best-{outcome.summary['best_epoch']}.pt", weights_only=True)
    for i, key in enumerate(("image", "text")):
        tower = {name.split(".", 2)[2]: value for name, value in best.items() if name.startswith(f"item.e{i}.")}
        assert same(tower, weights(trained[key].module))
    assert outcome.metrics["test"]["metrics"]["recall@20"] > 0


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path)
    first, (prepared_a,) = train(pipeline, tmp_path / "a")
    second, (prepared_b,) = train(pipeline, tmp_path / "b")
    for key in ("image", "text"):  # the initial weights are seeded from train.seed
        assert same(weights(prepared_a.inputs[key].encoder.module), weights(prepared_b.inputs[key].encoder.module))
    assert first.metrics["valid"]["metrics"] == second.metrics["valid"]["metrics"]
    assert first.metrics["test"]["metrics"] == second.metrics["test"]["metrics"]


def test_resume_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, rnn=False)
    whole, _ = train(pipeline, tmp_path / "whole")
    part, _ = train(pipeline, tmp_path / "part", stop_after=1)
    assert part.metrics == {} and RunDir.open(tmp_path / "part").stage("train")["status"] == "interrupted"
    resumed, _ = train(pipeline, tmp_path / "part", resume=True)
    assert resumed.metrics["valid"]["metrics"] == whole.metrics["valid"]["metrics"]
    assert resumed.metrics["test"]["metrics"] == whole.metrics["test"]["metrics"]
    a = CnnEncoder.load(tmp_path / "whole" / "encoders" / "image")
    b = CnnEncoder.load(tmp_path / "part" / "encoders" / "image")
    assert close(weights(a.module), weights(b.module))
    assert RunDir.open(tmp_path / "part").verify() == []


def test_a_frozen_encoder_reads_the_cache_and_keeps_its_weights(tmp_path: Path) -> None:
    outcome, (prepared,) = train(write_pipeline(tmp_path, cnn_trainable=False, rnn=False), tmp_path / "run")
    assert prepared.inputs == {} and set(prepared.features) == {"image"}
    (named,) = prepared.features_run.encoders
    before = weights(named.encoder.module)
    (report,) = prepared.features_run.reports
    assert report.store is not None and not report.end_to_end and report.encoded > 0
    assert not any(a.startswith("encoders/") for a in RunDir.open(tmp_path / "run").manifest["artifacts"])
    assert "encoders" not in outcome.summary
    assert same(weights(named.encoder.module), before)
    # a second run builds the same seeded random network, so its features come from the cache
    _, (again,) = train(write_pipeline(tmp_path, cnn_trainable=False, rnn=False), tmp_path / "again")
    (cached,) = again.features_run.reports
    assert cached.encoded == 0 and cached.cached == report.encoded
    assert same(weights(again.features_run.encoders[0].encoder.module), before)


def test_the_item_tower_runs_a_trainable_encoder_on_the_items_asked_for(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = RNNEncoder(embedding_dim=4, hidden=4, dim=3)
    texts = ["a red film", "", "blue", "a green and blue film", "red"]
    named = fe.NamedEncoder("text", "rnn", encoder)
    report, candidates = fe.fit_encoder(named, texts)
    present = np.array([bool(t) for t in texts])
    values = [encoder.preprocess(t) if t else None for t in texts]
    inputs = EncoderInputs("text", encoder, values, present, report)
    tower = ItemTower({"text": inputs}, _Identity(), len(texts), 3, item_ids=False).eval()
    assert any(p is q for p in tower.parameters() for q in encoder.module.parameters())  # type: ignore[union-attr]
    with torch.no_grad():
        everything, _ = tower()
        subset, _ = tower(torch.tensor([3, 1, 0]))
    assert torch.allclose(subset, everything[[3, 1, 0]]) and torch.equal(everything[1], torch.zeros(3))
    tower.train()
    tower(torch.tensor([0, 2]))[0].sum().backward()
    assert encoder.module is not None and encoder.module.embedding.weight.grad is not None  # type: ignore[union-attr]
    assert candidates == [0, 2, 3, 4]


def test_images_are_kept_compact_and_exact(tmp_path: Path) -> None:
    path = tmp_path / "poster.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)).save(path)
    tensor = CnnEncoder(dim=4, channels=(4,), image_size=16).preprocess(str(path))
    coded = compact(tensor)
    assert isinstance(coded, Coded) and coded.codes.dtype == torch.uint8
    assert torch.equal(expand(coded), tensor)
    ids = torch.tensor([3, 1, 4])
    assert compact(ids) is ids  # token ids stay as they are


class _Identity(torch.nn.Module):
    """A fuser stand-in that passes its one modality through."""

    out_dim = 3

    def forward(self, feats: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> Any:
        class Out:
            fused = feats["text"]
            weights = torch.ones(feats["text"].shape[0], 1)

        return Out()


def test_inputs_from_worker_processes_do_not_hold_file_descriptors(tmp_path: Path) -> None:
    # a tensor that comes back from a DataLoader worker lives in shared memory and holds a file descriptor while it
    # is alive: a catalogue's worth of kept inputs must be copied out, or the process runs out of descriptors
    import resource

    rng = np.random.default_rng(0)
    paths = []
    for i in range(400):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    encoder = CnnEncoder(dim=4, channels=(4,), image_size=8)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        inputs = prepare_inputs(fe.NamedEncoder("image", "cnn", encoder), paths, FeaturesConfig(num_workers=2))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert inputs.report.present == 400 and torch.equal(expand(inputs.values[7]), encoder.preprocess(paths[7]))
