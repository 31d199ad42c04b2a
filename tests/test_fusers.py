"""The built-in fusers compute what their docs say."""

from __future__ import annotations

import math

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
