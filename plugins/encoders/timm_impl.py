"""The ``timm`` image encoder: a timm model's pooled features, with timm's own evaluation preprocessing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from timm.data import create_transform, resolve_data_config  # type: ignore[attr-defined]
from torch import nn

from fusionrec.core.encoder import Encoder
from fusionrec.core.errors import ConfigError, did_you_mean
from fusionrec.core.params import as_kwargs
from fusionrec.plugins.encoders.encoder_files import read_encoder, write_encoder
from fusionrec.plugins.encoders.image_io import open_rgb
from fusionrec.plugins.encoders.runtime_impl import FastPath, FastPathEncoder
from fusionrec.plugins.encoders.timm import PACKAGED_WEIGHTS, TimmParams
from fusionrec.plugins.encoders.timm_weights import (
    file_sha256,
    load_into,
    packaged_weight_file,
    read_state_dict,
    state_sha256,
)


def check_model_name(model: str) -> None:
    """Raise a :class:`ConfigError` (with the closest timm names) unless timm knows ``model``.

    Only built-in architectures, optionally with a pretrained tag (``resnet18.a1_in1k``: it selects timm's
    preprocessing and class count for those weights; nothing is downloaded). Hub names (``hf-hub:…``) are refused
    by the parameters already.
    """
    architecture, _, tag = model.partition(".")
    if ":" in model or not timm.is_model(architecture):
        names = timm.list_models()
        raise ConfigError.at(
            ("model",),
            f"unknown timm model '{model}'.{did_you_mean(architecture, names)} "
            f'timm {timm.__version__} has {len(names)} architectures: python -c "import timm; '
            f"print(timm.list_models('*{architecture[:6]}*'))\" lists the similar ones",
        )
    if tag:
        tagged = timm.list_pretrained(f"{architecture}.*")
        if model not in tagged:
            tags = [name.partition(".")[2] for name in tagged]
            raise ConfigError.at(
                ("model",),
                f"timm model '{architecture}' has no pretrained tag '{tag}'.{did_you_mean(tag, tags)} "
                f"Its tags: {', '.join(tags) or 'none'}; or leave the tag out",
            )


def create_network(
    model: str, weights: str | Path, image_size: int | None = None, *, classifier: bool = False
) -> tuple[nn.Module, str | None]:
    """Build a timm model and load its weights.

    Args:
        model: timm architecture name.
        weights: ``"none"``, a packaged weight name or a state dict file.
        image_size: input side, passed to models whose input size is fixed (ViTs); others take any size.
        classifier: keep the ImageNet classifier (and require it in the weight file) instead of removing it.

    Returns:
        The model (classifier removed unless asked for) and the weights' identity, ``"sha256:…"`` of the weight
        file (``None`` for random initialisation).
    """
    check_model_name(model)
    kwargs: dict[str, Any] = {}
    pretrained_cfg = timm.models.get_pretrained_cfg(model)
    if image_size is not None and getattr(pretrained_cfg, "fixed_input_size", False):
        kwargs["img_size"] = image_size
    if weights == "none":
        if not classifier:
            kwargs["num_classes"] = 0
        return timm.create_model(model, pretrained=False, **kwargs), None
    packaged = isinstance(weights, str) and weights in PACKAGED_WEIGHTS
    path = packaged_weight_file(str(weights)) if packaged else Path(weights)
    source = f"'{weights}' ({path})" if packaged else str(path)
    state = read_state_dict(path)
    identity = f"sha256:{file_sha256(path)}"  # the same bytes are the same weights, packaged or copied
    network = timm.create_model(model, pretrained=False, **kwargs)
    load_into(network, state, source=source, need_classifier=classifier)
    if not classifier:
        # keeps the global pooling: the output is the pooled features
        network.reset_classifier(0)  # type: ignore[operator]
    return network, identity


def split_transform(transform: Any) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    """timm's evaluation transform as its Pillow steps and the ``(mean, std)`` of its final to-tensor + normalise.

    Those last two steps are done in numpy by :meth:`TimmEncoder.preprocess`, with the same float32 operations
    (divide by 255, subtract the mean, divide by the std). Done by torch they are two tiny multi-threaded ops per
    image: on 2 cores under load (load average 10) they took 80 + 68 ms per poster with 2 torch threads against
    3 + 2 ms with one, while the whole numpy version takes about 1 ms. ``(transform, None)`` when the transform
    does not end that way (it then runs as it is).
    """
    from torchvision import transforms as tv

    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-1], tv.Normalize):
        return transform, None
    if type(steps[-2]).__name__ not in ("ToTensor", "MaybeToTensor") or any(
        isinstance(step, tv.Normalize | tv.ToTensor) for step in steps[:-2]
    ):
        return transform, None
    normalize = steps[-1]
    mean = np.asarray(torch.as_tensor(normalize.mean, dtype=torch.float32), dtype=np.float32).reshape(1, 1, -1)
    std = np.asarray(torch.as_tensor(normalize.std, dtype=torch.float32), dtype=np.float32).reshape(1, 1, -1)
    return tv.Compose(steps[:-2]), (mean, std)


class TimmEncoder(FastPathEncoder, Encoder):
    """Any timm image model; its pooled features (no classifier) are the item's image vector.

    Preprocessing is timm's evaluation transform for the model (``resolve_data_config`` + ``create_transform``:
    resize, centre crop, normalise), with the input side overridable by ``image_size``. Frozen (the default), the
    model is in eval mode with gradients off and runs under :func:`torch.inference_mode`; trainable, it is exposed
    through :attr:`module` for end-to-end training.
    """

    modality = "image"
    name = "timm"

    def __init__(
        self,
        model: str = "tf_efficientnet_lite0",
        weights: str | Path = "efficientnet-lite0",
        image_size: int | None = None,
        trainable: bool = False,
        runtime: str = "auto",
        *,
        _state: dict[str, torch.Tensor] | None = None,
        _weights_id: str | None = None,
    ) -> None:
        self.params = TimmParams(
            model=model, weights=weights, image_size=image_size, trainable=trainable, runtime=runtime
        )
        if _state is not None:  # load(): the saved weights replace whatever ``weights`` names
            self._model, _ = create_network(model, "none", image_size)
            self._model.load_state_dict(_state, strict=True)
            self._weights_id = _weights_id
        else:
            self._model, self._weights_id = create_network(model, self.params.weights, image_size)
        self._trainable = trainable
        if not trainable:
            self._model.eval()
            self._model.requires_grad_(False)
        # channels-last convolutions: tf_efficientnet_lite0 runs ~1.7x faster on 2 CPU cores (27 → 47 images/s at
        # batch 32), resnet18 ~1.3x, ViTs the same; outputs differ from the default layout by < 1e-5
        self._model.to(memory_format=torch.channels_last)
        overrides = {"input_size": (3, image_size, image_size)} if image_size is not None else {}
        self.data_config: dict[str, Any] = resolve_data_config(overrides, model=self._model)  # type: ignore[no-untyped-call]
        self._transform = create_transform(**self.data_config, is_training=False)
        self._pil_steps, self._scale = split_transform(self._transform)
        # head_hidden_size: models with a pre-logits layer (MobileNetV3) pool to that width, not num_features
        dim: Any = getattr(self._model, "head_hidden_size", None) or self._model.num_features
        self._dim = int(dim)
        self._state_id: str | None = None
        # frozen models may run exported (ONNX Runtime, OpenVINO), chosen and checked on the first batch
        self._fast = (
            None
            if trainable
            else FastPath(
                self.name,
                self.params.runtime,
                "none",
                self._model,
                ["pixels"],
                {"pixels": {0: "batch"}},
                self.fingerprint,
            )
        )

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def trainable(self) -> bool:
        return self._trainable

    @property
    def module(self) -> nn.Module:
        return self._model

    def preprocess(self, raw: Any) -> torch.Tensor:
        """Open the image with Pillow (as RGB) and apply timm's evaluation transform."""
        if self._scale is None:
            tensor: torch.Tensor = self._transform(open_rgb(raw))
            return tensor
        mean, std = self._scale
        pixels = np.asarray(self._pil_steps(open_rgb(raw)), dtype=np.float32) / np.float32(255)
        return torch.from_numpy(np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1)))

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        device = next(self._model.parameters()).device
        if self._fast is None or self._fast.uses_torch or device.type != "cpu":
            return self._eager(batch, device)
        return self._fast.run([batch.float()], lambda out: out, lambda: self._eager(batch, device))

    def _eager(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        batch = batch.to(device, memory_format=torch.channels_last, non_blocking=True)
        out: torch.Tensor = self._model(batch)
        return out.float()

    def weights_identity(self) -> str:
        """The weight file's hash, or for random-init and trainable models the hash of the current weights."""
        if self._trainable:
            return f"state:{state_sha256(self._model)}"  # training changes them: hash what is there now
        if self._weights_id is not None:
            return self._weights_id
        if self._state_id is None:
            self._state_id = f"state:{state_sha256(self._model)}"
        return self._state_id

    def fingerprint(self) -> str:
        """Registered name, model, weights' identity and the resolved transform, whose ``input_size`` is the
        image size (so ``image_size: null`` and the model's default size, written out, share cached vectors)."""
        transform = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(self.data_config.items())}
        return json.dumps(
            {
                "encoder": self.name,
                "model": self.params.model,
                "weights": self.weights_identity(),
                "transform": transform,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def save(self, directory: Path) -> None:
        """Write the parameters, and the weights unless they come unchanged from a package."""
        packaged = isinstance(self.params.weights, str) and self.params.weights in PACKAGED_WEIGHTS
        keep_state = self._trainable or not packaged
        write_encoder(
            Path(directory),
            self.name,
            self.params,
            self._model if keep_state else None,
            weights_id=self._weights_id,
        )

    @classmethod
    def load(cls, directory: Path) -> TimmEncoder:
        saved = read_encoder(Path(directory), cls.name)
        params = TimmParams.model_validate(saved.params)
        return cls(**as_kwargs(params), _state=saved.state, _weights_id=saved.extra.get("weights_id"))
