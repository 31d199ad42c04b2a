"""The built-in fusers compute what their docs say."""

from __future__ import annotations

import math

import pytest
import torch

from fusionrec.registry import get_registry


def build(name: str, input_dims: dict[str, int], **params: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_registry().create("fuser", name, {"input_dims": input_dims}, **params).eval()


def test_attention_weights_are_the_softmax_of_image_text_inner_products() -> None:
    fuser = build("attention", {"image": 6, "text": 4}, dim=8)
    image, text = torch.randn(5, 6), torch.randn(5, 4)
    out = fuser({"image": image, "text": text})
    h_img, h_txt = fuser.proj[0](image), fuser.proj[1](text)
    e_img = (fuser.query(h_img) * fuser.key(h_txt)).sum(-1) / math.sqrt(8)
    e_txt = (fuser.query(h_txt) * fuser.key(h_img)).sum(-1) / math.sqrt(8)
    expected = torch.softmax(torch.stack([e_img, e_txt], dim=1), dim=1)
    assert torch.allclose(out.weights, expected, atol=1e-6)
    assert torch.allclose(out.fused, expected[:, :1] * h_img + expected[:, 1:] * h_txt, atol=1e-6)


def test_attention_with_one_modality_present_returns_its_projection() -> None:
    fuser = build("attention", {"image": 6, "text": 4}, dim=8)
    image, text = torch.randn(3, 6), torch.randn(3, 4)
    mask = {"image": torch.tensor([True, False, True]), "text": torch.tensor([False, True, True])}
    out = fuser({"image": image, "text": text}, mask)
    assert torch.allclose(out.weights[0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(out.fused[0], fuser.proj[0](image[:1])[0], atol=1e-6)
    assert torch.allclose(out.fused[1], fuser.proj[1](text[1:2])[0], atol=1e-6)


def test_attention_temperature_flattens_the_weights() -> None:
    sharp = build("attention", {"image": 6, "text": 4}, dim=8, temperature=0.01)
    flat = build("attention", {"image": 6, "text": 4}, dim=8, temperature=1e6)
    features = {"image": torch.randn(50, 6), "text": torch.randn(50, 4)}
    spread_flat = (flat(features).weights - 0.5).abs().max()
    spread_sharp = (sharp(features).weights - 0.5).abs().mean()
    assert spread_flat < 1e-4
    assert spread_sharp > 0.3


def test_attention_normalize_scores_and_fuses_layer_normed_projections() -> None:
    fuser = build("attention", {"image": 6, "text": 4}, dim=8, normalize=True)
    image, text = torch.randn(5, 6) * 100.0, torch.randn(5, 4) * 0.01  # wildly different scales
    out = fuser({"image": image, "text": text})
    norm = torch.nn.functional.layer_norm
    h_img, h_txt = norm(fuser.proj[0](image), (8,)), norm(fuser.proj[1](text), (8,))
    e_img = (fuser.query(h_img) * fuser.key(h_txt)).sum(-1) / math.sqrt(8)
    e_txt = (fuser.query(h_txt) * fuser.key(h_img)).sum(-1) / math.sqrt(8)
    expected = torch.softmax(torch.stack([e_img, e_txt], dim=1), dim=1)
    torch.testing.assert_close(out.weights, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.fused, expected[:, :1] * h_img + expected[:, 1:] * h_txt, atol=1e-5, rtol=1e-5)
    plain = build("attention", {"image": 6, "text": 4}, dim=8)  # same seed, same weights: the seed formula
    assert not torch.allclose(plain({"image": image, "text": text}).weights, out.weights)


def test_attention_modality_dropout_only_while_training_and_keeps_one() -> None:
    fuser = build("attention", {"image": 6, "text": 4}, dim=8, modality_dropout=0.5)
    features = {"image": torch.randn(400, 6), "text": torch.randn(400, 4)}
    evaluated = fuser(features).weights
    assert bool((evaluated > 0).all())  # eval mode: nothing dropped
    fuser.train()
    torch.manual_seed(1)
    weights = fuser(features).weights
    one_left = (weights == 1.0).any(dim=1)
    assert 0.3 < float(one_left.float().mean()) < 0.7  # P(exactly one dropped) = 0.5
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(400))  # never both dropped
    mask = {"image": torch.zeros(400, dtype=torch.bool), "text": torch.ones(400, dtype=torch.bool)}
    assert torch.equal(fuser(features, mask).weights[:, 1], torch.ones(400))  # a sole modality is never dropped
    from fusionrec.plugins.fusers.attention_impl import AttentionFuser

    with pytest.raises(ValueError, match=r"modality_dropout must be in \[0, 1\)"):
        AttentionFuser({"a": 2}, modality_dropout=1.0)


def test_attention_learns_to_prefer_the_informative_modality() -> None:
    # The target depends on the image only; trained end to end, attention should shift weight onto the image.
    torch.manual_seed(0)
    fuser = get_registry().create("fuser", "attention", {"input_dims": {"image": 8, "text": 8}}, dim=8)
    head = torch.nn.Linear(8, 1)
    opt = torch.optim.Adam([*fuser.parameters(), *head.parameters()], lr=0.05)
    image, text = torch.randn(256, 8), torch.randn(256, 8)
    target = image[:, :1] * 2.0
    before = fuser({"image": image, "text": text}).weights[:, 0].mean().item()
    for _ in range(100):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(head(fuser({"image": image, "text": text}).fused), target)
        loss.backward()
        opt.step()
    after = fuser({"image": image, "text": text}).weights[:, 0].mean().item()
    assert loss.item() < 0.1
    assert before < 0.6 and after > 0.9


def test_plain_concat_is_the_concatenation_with_norm_share_weights() -> None:
    fuser = build("concat", {"image": 3, "text": 2})
    image, text = torch.tensor([[3.0, 0.0, 4.0]]), torch.tensor([[0.0, 5.0]])
    out = fuser({"image": image, "text": text})
    assert fuser.out_dim == 5
    assert torch.equal(out.fused, torch.tensor([[3.0, 0.0, 4.0, 0.0, 5.0]]))
    assert torch.allclose(out.weights, torch.tensor([[0.5, 0.5]]))


def test_concat_zeroes_absent_modalities_and_tells_the_mlp() -> None:
    fuser = build("concat", {"image": 3, "text": 2}, dim=4)
    first = fuser._first
    assert first is not None and first.in_features == 3 + 2 + 2  # features + presence bits
    image, text = torch.randn(2, 3), torch.randn(2, 2)
    mask = {"image": torch.tensor([True, False]), "text": torch.tensor([True, True])}
    out = fuser({"image": image, "text": text}, mask)
    assert out.weights[1, 0] == 0 and out.weights[1, 1] == 1
    expected = fuser.mlp(torch.cat([torch.zeros(1, 3), text[1:], torch.tensor([[0.0, 1.0]])], dim=1))
    assert torch.allclose(out.fused[1:], expected, atol=1e-6)


def test_any_modality_name_works() -> None:
    dims = {"type": 3, "keys": 4, "forward": 2}
    for name in ("attention", "concat"):
        fuser = build(name, dims)
        out = fuser({m: torch.randn(2, d) for m, d in dims.items()})
        assert out.weights.shape == (2, 3)


# --- cross_attention, gated, low_rank, mean ---------------------------------------------------------------------

NEW_FUSERS = ("cross_attention", "gated", "low_rank", "mean")
DIMS = {"image": 6, "text": 4, "audio": 3}


def features_of(batch: int, dims: dict[str, int] = DIMS, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, d, generator=gen) for m, d in dims.items()}


def test_cross_attention_is_multi_head_attention_pooled_by_the_attention_received() -> None:
    fuser = build("cross_attention", DIMS, dim=8, heads=2)
    x = features_of(4)
    mask = {"audio": torch.tensor([True, False, True, False]), "text": torch.tensor([True, True, False, False])}
    out = fuser(x, mask)
    present = torch.stack([torch.ones(4, dtype=torch.bool), mask["text"], mask["audio"]], dim=1)
    h = torch.stack([proj(x[m]) for proj, m in zip(fuser.proj, DIMS, strict=True)], dim=1) * present.unsqueeze(-1)
    # the attention written out: per-head scaled dot products over the present keys, averaged over heads
    mha = fuser.attention
    q, k, v = (h @ w.T + b for w, b in zip(mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3), strict=True))
    heads, d_head = 2, 4
    split = [t.reshape(4, 3, heads, d_head).transpose(1, 2) for t in (q, k, v)]  # (B, heads, M, d_head)
    logits = split[0] @ split[1].transpose(-1, -2) / math.sqrt(d_head)
    logits = logits.masked_fill(~present[:, None, None, :], float("-inf"))
    attention = torch.softmax(logits, dim=-1)  # (B, heads, M queries, M keys)
    context = mha.out_proj((attention @ split[2]).transpose(1, 2).reshape(4, 3, 8))
    received = attention.mean(dim=1)  # (B, M queries, M keys), heads averaged
    weights = torch.stack([received[b][present[b]].mean(dim=0) for b in range(4)])  # mean over the present queries
    assert torch.allclose(out.weights, weights, atol=1e-6)
    tokens = h + context
    assert torch.allclose(out.fused, (weights.unsqueeze(-1) * tokens).sum(dim=1), atol=1e-5)
    # row 3: only the image is present, so it weighs 1 and its token attends to itself only
    assert torch.allclose(out.weights[3], torch.tensor([1.0, 0.0, 0.0]))
    h_img = fuser.proj[0](x["image"][3:])
    value = h_img @ mha.in_proj_weight.chunk(3)[2].T + mha.in_proj_bias.chunk(3)[2]
    assert torch.allclose(out.fused[3:], h_img + mha.out_proj(value), atol=1e-5)


def test_cross_attention_needs_heads_that_divide_dim() -> None:
    from fusionrec.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"heads \(3\) must divide dim \(8\)"):
        get_registry().spec("fuser", {"type": "cross_attention", "dim": 8, "heads": 3})


def test_gated_weights_are_the_masked_softmax_of_the_gate_network() -> None:
    fuser = build("gated", DIMS, dim=5, hidden=7)
    x = features_of(3)
    mask = {"image": torch.tensor([True, False, True]), "audio": torch.tensor([False, True, True])}
    out = fuser(x, mask)
    present = torch.stack([mask["image"], torch.ones(3, dtype=torch.bool), mask["audio"]], dim=1)
    inputs = {m: x[m] * present[:, i : i + 1] for i, m in enumerate(DIMS)}
    h = torch.stack([proj(inputs[m]) for proj, m in zip(fuser.proj, DIMS, strict=True)], dim=1)
    h = h * present.unsqueeze(-1)
    logits = fuser.gate(torch.cat([h.flatten(1), present.float()], dim=1))
    weights = torch.softmax(logits.masked_fill(~present, float("-inf")), dim=1)
    assert torch.allclose(out.weights, weights, atol=1e-6)
    assert torch.allclose(out.fused, (weights.unsqueeze(-1) * h).sum(dim=1), atol=1e-6)
    assert out.weights[0, 2] == 0 and out.weights[1, 0] == 0


def test_gated_learns_to_prefer_the_informative_modality() -> None:
    torch.manual_seed(0)
    fuser = get_registry().create("fuser", "gated", {"input_dims": {"image": 8, "text": 8}}, dim=8, hidden=16)
    head = torch.nn.Linear(8, 1)
    opt = torch.optim.Adam([*fuser.parameters(), *head.parameters()], lr=0.03)
    x = features_of(256, {"image": 8, "text": 8})
    target = x["image"][:, :1] * 2.0
    for _ in range(80):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(head(fuser(x).fused), target)
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    assert fuser(x).weights[:, 0].mean().item() > 0.8


def test_low_rank_equals_the_full_tensor_fusion_it_factorises() -> None:
    # LMF's defining identity: Σ_r λ_r Π_m (x̂_m W_m^(r)) = (x̂_1 ⊗ x̂_2) · W with W = Σ_r λ_r W_1^(r) ⊗ W_2^(r)
    fuser = build("low_rank", {"image": 3, "text": 2}, dim=4, rank=3)
    with torch.no_grad():  # random constant rows and bias, not the initial ones and zeros
        for factor in fuser.factors:
            factor.normal_()
        fuser.bias.normal_()
    x = features_of(5, {"image": 3, "text": 2})
    ones = torch.ones(5, 1)
    x1, x2 = torch.cat([x["image"], ones], dim=1), torch.cat([x["text"], ones], dim=1)
    w1, w2 = fuser.factors
    full = torch.einsum("r,rid,rjd->ijd", fuser.rank_weights, w1, w2)  # (4, 3, dim)
    expected = torch.einsum("bi,bj,ijd->bd", x1, x2, full) + fuser.bias
    assert torch.allclose(fuser({"image": x["image"], "text": x["text"]}).fused, expected, atol=1e-5)


def test_low_rank_absent_modalities_contribute_only_the_constant_factor() -> None:
    fuser = build("low_rank", DIMS, dim=4, rank=2)
    x = features_of(3)
    mask = {"text": torch.tensor([False, True, False]), "audio": torch.tensor([True, False, False])}
    out = fuser(x, mask)
    zeroed = {
        "image": x["image"],
        "text": x["text"] * mask["text"][:, None],
        "audio": x["audio"] * mask["audio"][:, None],
    }
    assert torch.allclose(out.fused, fuser(zeroed).fused, atol=1e-6)  # absent = input 0 = the constant factor only
    # weights: how far the fused vector moves when a modality is dropped, normalised over the present ones
    full = fuser(x)
    moved = []
    for m in DIMS:
        dropped = fuser(x, {m: torch.zeros(3, dtype=torch.bool)})
        moved.append((full.fused - dropped.fused).norm(dim=1))
    expected = torch.stack(moved, dim=1)
    expected = expected / expected.sum(dim=1, keepdim=True)
    assert torch.allclose(full.weights, expected, atol=1e-5)
    assert torch.allclose(out.weights[2], torch.tensor([1.0, 0.0, 0.0]))  # only the image present


def test_low_rank_fits_a_multiplicative_interaction_that_mean_cannot() -> None:
    dims = {"image": 4, "text": 4}
    x = features_of(256, dims, seed=1)
    target = x["image"][:, :1] * x["text"][:, :1]

    def final_loss(name: str, **params: object) -> float:
        torch.manual_seed(0)
        fuser = get_registry().create("fuser", name, {"input_dims": dims}, **params)
        head = torch.nn.Linear(fuser.out_dim, 1)
        opt = torch.optim.Adam([*fuser.parameters(), *head.parameters()], lr=0.05)
        for _ in range(60):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(head(fuser(x).fused), target)
            loss.backward()
            opt.step()
        return loss.item()

    low_rank, mean = final_loss("low_rank", dim=8, rank=4), final_loss("mean", dim=8)
    assert low_rank < 0.1 < 0.5 < mean  # the target has variance 1; an additive fuser explains none of it


def test_mean_is_the_mean_of_the_present_projections() -> None:
    fuser = build("mean", DIMS, dim=5)
    x = features_of(3)
    mask = {"image": torch.tensor([True, False, False]), "text": torch.tensor([True, True, False])}
    mask["audio"] = torch.tensor([False, True, False])
    out = fuser(x, mask)
    h = {m: proj(x[m]) for proj, m in zip(fuser.proj, DIMS, strict=True)}
    assert torch.allclose(out.fused[0], (h["image"][0] + h["text"][0]) / 2, atol=1e-6)
    assert torch.allclose(out.fused[1], (h["text"][1] + h["audio"][1]) / 2, atol=1e-6)
    assert torch.equal(out.fused[2], torch.zeros(5))  # nothing present: the zero vector
    assert torch.allclose(out.weights, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 0.0]]))


@pytest.mark.parametrize("name", NEW_FUSERS)
def test_nan_in_absent_rows_reaches_neither_output_nor_gradients(name: str) -> None:
    fuser = build(name, DIMS, dim=8).train()
    x = features_of(4)
    mask = {"text": torch.tensor([False, True, True, False]), "audio": torch.tensor([True, False, True, False])}
    mask["image"] = torch.tensor([True, True, False, False])
    for m in DIMS:
        x[m][~mask[m]] = float("nan")
    out = fuser(x, mask)
    assert torch.isfinite(out.fused).all() and torch.isfinite(out.weights).all()
    (out.fused.pow(2).sum() + out.weights.sum()).backward()
    for param in fuser.parameters():
        assert param.grad is None or torch.isfinite(param.grad).all()


@pytest.mark.parametrize("name", NEW_FUSERS)
def test_new_fusers_work_with_any_modality_name_and_size(name: str) -> None:
    dims = {"type": 3, "keys": 4, "forward": 2}
    fuser = build(name, dims, dim=4)
    assert fuser.out_dim == 4 and fuser.modalities == tuple(dims)
    out = fuser({m: torch.randn(2, d) for m, d in dims.items()})
    assert out.fused.shape == (2, 4) and out.weights.shape == (2, 3)
