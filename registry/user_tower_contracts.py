"""The user-tower contract, run by :func:`fusionrec.registry.testing.check_component` for every user tower.

On seeded random histories (left-padded, some rows empty, user ids given as the engine always gives them): the
factory returns a :class:`~fusionrec.core.user_tower.UserTower` with ``item_dim`` and ``out_dim`` equal to the
context's ``item_dim`` and an integer ``max_history >= 0``; the output is ``(batch, item_dim)`` float32 and finite,
empty histories included; the amount of left padding and the contents of padding positions do not change it; each
row is encoded on its own; gradients reach the parameters (and, for towers that read histories, the real items but
never the padding); two builds under the same seed agree; save → load gives the same outputs. A ``sequential``
tower's :meth:`~fusionrec.core.user_tower.UserTower.encode_sequence` must end with :meth:`encode_history`'s vector
and be causal: position ``t`` does not change when items after ``t`` do.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusionrec.core.params import ComponentSpec
from fusionrec.registry.tables import Registry

if TYPE_CHECKING:
    import torch

BATCH, LONGEST, EXTRA_PADDING = 6, 6, 3
ATOL = 1e-5


def left_pad(items: list[torch.Tensor], length: int, dim: int, fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack histories of different lengths into ``(batch, length, dim)``, left-padded with ``fill``, and a mask."""
    import torch

    history = torch.full((len(items), length, dim), fill)
    mask = torch.zeros(len(items), length, dtype=torch.bool)
    for row, real in enumerate(items):
        if len(real):
            history[row, length - len(real) :] = real
            mask[row, length - len(real) :] = True
    return history, mask


def user_tower_contract(registry: Registry, spec: ComponentSpec, context: Mapping[str, Any]) -> Any:
    import torch

    from fusionrec.core.user_tower import UserTower
    from fusionrec.registry.persist import load_module, save_module

    label = f"user tower {spec.type!r}"
    item_dim, n_users = int(context["item_dim"]), int(context["n_users"])

    def build() -> UserTower:
        torch.manual_seed(0)
        built = registry.build(spec, **context)
        assert isinstance(built, UserTower), f"{label}: the factory must return a fusionrec.core.user_tower.UserTower"
        return built

    tower = build().eval()
    assert tower.item_dim == item_dim, f"{label}: item_dim {tower.item_dim} != {item_dim}"
    assert tower.out_dim == item_dim, f"{label}: out_dim {tower.out_dim} must equal item_dim {item_dim}"
    max_history = getattr(tower, "max_history", None)
    assert isinstance(max_history, int) and max_history >= 0, f"{label}: max_history must be an int >= 0"

    # real lengths: full, partial, empty, one item; the engine feeds at most max_history items
    longest = min(LONGEST, max_history)
    lengths = [min(n, longest) for n in (LONGEST, 4, 0, 1, 2, LONGEST)][:BATCH]
    gen = torch.Generator().manual_seed(1)
    items = [torch.randn(n, item_dim, generator=gen) for n in lengths]
    users = torch.randint(0, n_users, (BATCH,), generator=gen) if n_users > 0 else torch.zeros(BATCH, dtype=torch.long)
    history, mask = left_pad(items, longest, item_dim)

    with torch.no_grad():
        out = tower(history, mask, users)
    assert isinstance(out, torch.Tensor) and out.shape == (BATCH, item_dim), f"{label}: output shape {out.shape}"
    assert out.dtype == torch.float32, f"{label}: output dtype {out.dtype}, expected float32"
    assert torch.isfinite(out).all(), f"{label}: the user vectors contain NaN or inf (row 2 has an empty history)"

    # more left padding, holding junk, changes nothing
    wider = min(longest + EXTRA_PADDING, max_history) if max_history else EXTRA_PADDING
    padded, padded_mask = left_pad(items, wider, item_dim, fill=1e3)
    with torch.no_grad():
        out_padded = tower(padded, padded_mask, users)
    assert torch.allclose(out_padded, out, atol=ATOL), (
        f"{label}: the same histories padded to {wider} instead of {longest} positions (padding holding 1e3) give "
        f"other user vectors: padding must not count"
    )
    noisy = history.clone()
    noisy[~mask] = torch.randn(int((~mask).sum()), item_dim, generator=gen) * 1e3
    with torch.no_grad():
        out_noisy = tower(noisy, mask, users)
    assert torch.allclose(out_noisy, out, atol=ATOL), f"{label}: the contents of padding positions changed the output"

    # each row is encoded on its own (no batch statistics in eval mode)
    with torch.no_grad():
        single = tower(history[:1], mask[:1], users[:1])
    assert torch.allclose(single, out[:1], atol=ATOL), f"{label}: a row's user vector depends on the batch"

    # gradients reach the parameters and the real items, never the padding
    tower.train()
    inputs = history.clone().requires_grad_(True)
    target = torch.randn(BATCH, item_dim, generator=gen)
    (tower(inputs, mask, users) * target).sum().backward()
    params = [p for p in tower.parameters() if p.requires_grad]
    for name, p in tower.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"{label}: non-finite gradient for {name}"
    if params:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), (
            f"{label}: parameters get no gradient"
        )
    if inputs.grad is not None:
        assert torch.isfinite(inputs.grad).all(), f"{label}: non-finite gradient for the history"
        assert torch.all(inputs.grad[~mask] == 0), f"{label}: padding positions receive a gradient"
    if max_history > 0:
        assert inputs.grad is not None and inputs.grad[mask].abs().sum() > 0, (
            f"{label}: reads histories (max_history {max_history}) but the gradient does not reach the items"
        )
    tower.zero_grad(set_to_none=True)
    tower.eval()

    # the same seed builds the same tower
    with torch.no_grad():
        again = build().eval()(history, mask, users)
    assert torch.equal(again, out), f"{label}: two builds under the same seed differ"

    if getattr(tower, "sequential", False):
        _sequential(tower, label, history, mask, users, out, gen)

    # save → load gives the same outputs
    with tempfile.TemporaryDirectory() as tmp:
        save_module(tower, Path(tmp) / "tower")
        loaded = load_module(Path(tmp) / "tower", registry).eval()
    with torch.no_grad():
        reloaded = loaded(history, mask, users)
    assert torch.allclose(reloaded, out, atol=1e-6), f"{label}: outputs differ after save → load"
    return tower


def _sequential(
    tower: Any,
    label: str,
    history: torch.Tensor,
    mask: torch.Tensor,
    users: torch.Tensor,
    out: torch.Tensor,
    gen: torch.Generator,
) -> None:
    import torch

    with torch.no_grad():
        states = tower.encode_sequence(history, mask, users)
    batch, length, dim = history.shape
    assert states.shape == (batch, length, dim), f"{label}: encode_sequence shape {tuple(states.shape)}"
    assert states.dtype == torch.float32 and torch.isfinite(states).all(), (
        f"{label}: encode_sequence gives non-finite (or non-float32) values"
    )
    rows = mask.any(dim=1)
    assert torch.allclose(states[rows, -1], out[rows], atol=ATOL), (
        f"{label}: encode_sequence's last position differs from encode_history"
    )
    for t in range(length - 1):
        changed = history.clone()
        changed[:, t + 1 :] = torch.randn(batch, length - t - 1, dim, generator=gen) * 3
        with torch.no_grad():
            after = tower.encode_sequence(changed, mask, users)
        real = mask[:, t]
        assert torch.allclose(after[real, t], states[real, t], atol=ATOL), (
            f"{label}: encode_sequence is not causal: position {t} changes when later items do"
        )
