"""Deliberately broken fusers: the contract tests must catch them."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from pydantic import ConfigDict

from fusionrec.core.fusion import Fuser, FusionOutput, masked_softmax
from fusionrec.core.params import Params
from fusionrec.registry import hookimpl


class SumFuser(Fuser):
    """Sums the inputs, forgetting to zero the absent ones."""

    def __init__(self, input_dims: Mapping[str, int]) -> None:
        super().__init__(input_dims)
        self.out_dim = max(input_dims.values())
        self.scale = torch.nn.Parameter(torch.ones(1))

    def fuse(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> FusionOutput:
        total = sum(
            torch.nn.functional.pad(features[m], (0, self.out_dim - features[m].shape[1])) for m in self.modalities
        )
        weights = masked_softmax(torch.zeros(mask.shape), mask)
        return FusionOutput(self.scale * total, weights)  # type: ignore[arg-type]


class LaxParams(Params):
    model_config = ConfigDict(extra="allow")


class LeakyPlugin:
    @hookimpl
    def register_fusers(self, register):  # type: ignore[no-untyped-def]
        register("leaky.sum", SumFuser)
        register("leaky.lax", SumFuser, params=LaxParams)
