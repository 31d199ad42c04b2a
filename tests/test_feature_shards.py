"""Sharded feature extraction: ``fusionrec features --shard I/N`` workers fill one cache at once, losing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusionrec.core import cli
from fusionrec.core.engine.feature_cache import FeatureStore
from fusionrec.core.engine.feature_shards import Shard, parse_shard, resolve_shard, shard_from_env
from fusionrec.core.errors import FusionrecError

REPO = Path(__file__).resolve().parents[1]


IMAGE = "  image: {type: cnn, trainable: false, dim: 16, channels: [4, 8], image_size: 32}\n"


def pipeline(tmp_path: Path, cache: Path, image: bool = True) -> Path:
    """The quickstart data with cheap encoders: TF-IDF texts and a small frozen (random, seeded) CNN on posters."""
    path = tmp_path / f"features-{cache.name}.yaml"
    path.write_text(
        f"""fusionrec: 1
data: {{type: movielens, path: {REPO / "examples" / "data" / "quickstart"}}}
encoders:
  text: {{type: bow, max_features: 128}}
{IMAGE if image else ""}features: {{cache: {cache}, num_workers: 0, batch_size: 64}}
train: {{seed: 3}}
"""
    )
    return path


def features(path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "fusionrec.core.cli", "features", str(path), "--json", "--quiet", *args]
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})},
    )


def finish(process: subprocess.Popen[str]) -> dict[str, object]:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return dict(json.loads(out))


def stores(cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each store's vectors by content key: {modality store name: (sorted keys, their vectors)}."""
    found = {}
    for folder in sorted(p for p in cache.iterdir() if p.is_dir()):
        modality, _, _ = folder.name.partition("-")
        meta = json.loads(next(folder.glob("g*/meta.json")).read_text())
        contents = FeatureStore(cache, modality, meta["fingerprint"]).load()
        assert contents is not None
        order = np.argsort(contents.keys)
        found[folder.name] = (contents.keys[order], np.asarray(contents.vectors)[order])
    return found


def test_two_concurrent_shards_fill_one_cache_like_one_process(tmp_path: Path) -> None:
    shared, single = tmp_path / "shared", tmp_path / "single"
    path = pipeline(tmp_path, shared)
    workers = [features(path, "--shard", "0/2"), features(path, "--shard", "1/2")]
    reports = [finish(worker) for worker in workers]
    for shard, report in enumerate(reports):
        assert report["shard"] == f"{shard}/2"
        for modality in report["modalities"]:  # type: ignore[attr-defined]
            assert modality["shard"] == f"{shard}/2" and modality["encoded"] == modality["shard_items"] == 150

    again = finish(features(path))  # one process, every item: everything is cached
    assert again["shard"] is None
    assert [(m["encoded"], m["cached"]) for m in again["modalities"]] == [(0, 300), (0, 300)]  # type: ignore[attr-defined]

    finish(features(pipeline(tmp_path, single)))  # the reference: one process into another cache
    sharded, reference = stores(shared), stores(single)
    assert sharded.keys() == reference.keys() and len(sharded) == 2
    for name, (keys, vectors) in reference.items():
        assert len(keys) == 300
        np.testing.assert_array_equal(sharded[name][0], keys)
        np.testing.assert_array_equal(sharded[name][1], vectors)


def test_each_torchrun_worker_takes_its_shard(tmp_path: Path) -> None:
    path = pipeline(tmp_path, tmp_path / "cache", image=False)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--no-python",
               str(Path(sys.executable).with_name("fusionrec")), "features", str(path), "--quiet"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**env, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    for shard in ("0/2", "1/2"):
        assert f"shard {shard}: 150 of the 300 items with text" in done.stdout
    again = finish(features(path))
    assert [(m["encoded"], m["cached"]) for m in again["modalities"]] == [(0, 300)]  # type: ignore[attr-defined]


def test_a_merge_keeps_rows_another_writer_added_meanwhile(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, "text", "fp")
    keys = np.array([b"%032d" % i for i in range(4)], dtype="S32")
    vectors = np.arange(16, dtype=np.float32).reshape(4, 4)
    store.merge(keys[:2], vectors[:2], 4)
    stale = store.load()  # a writer that looked before the next one wrote …
    store.merge(keys[2:], vectors[2:], 4)
    assert stale is not None and len(stale.keys) == 2
    merged = store.merge(keys[:1], vectors[:1] + 100, 4)  # … still keeps every row it does not replace
    assert sorted(merged.keys.tolist()) == sorted(keys.tolist())
    rows = {bytes(k): v for k, v in zip(merged.keys.tolist(), np.asarray(merged.vectors), strict=True)}
    np.testing.assert_array_equal(rows[keys[0].tobytes()], vectors[0] + 100)
    np.testing.assert_array_equal(rows[keys[3].tobytes()], vectors[3])


def test_shards_split_positions_by_modulo() -> None:
    assert Shard(1, 3).owns(range(10)) == [1, 4, 7]
    everything = sorted(p for i in range(3) for p in Shard(i, 3).owns(range(10)))
    assert everything == list(range(10))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2/2", "--shard '2/2': the shard I must be in 0..N-1 and N at least 1; with N=2 give 0 to 1"),
        ("0/0", "--shard '0/0': the shard I must be in 0..N-1"),
        ("1", "--shard '1': expected I/N"),
        ("-1/2", "--shard '-1/2': expected I/N"),
        ("a/b", "--shard 'a/b': expected I/N"),
    ],
)
def test_bad_shards_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(FusionrecError) as caught:
        parse_shard(text)
    assert str(caught.value).startswith(message)


def test_torchrun_variables_give_the_shard_and_the_option_wins() -> None:
    assert shard_from_env({"RANK": "2", "WORLD_SIZE": "4"}) == Shard(2, 4)
    assert shard_from_env({}) is None and shard_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert resolve_shard("1/3", {"RANK": "0", "WORLD_SIZE": "2"}) == Shard(1, 3)
    assert resolve_shard("0/1", {}) is None  # one shard is everything
    with pytest.raises(FusionrecError, match=r"RANK=3 and WORLD_SIZE=\(unset\): torchrun sets both"):
        shard_from_env({"RANK": "3"})
    with pytest.raises(FusionrecError, match=r"RANK/WORLD_SIZE '4/2': the shard I must be in 0\.\.N-1"):
        shard_from_env({"RANK": "4", "WORLD_SIZE": "2"})


def test_a_bad_shard_option_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pipeline(tmp_path, tmp_path / "cache")
    assert cli.main(["features", str(path), "--shard", "3/2"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --shard '3/2': the shard I must be in 0..N-1 and N at least 1; with N=2 give 0 to 1"
    assert not (tmp_path / "cache").exists()
