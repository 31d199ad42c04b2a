"""Inference runtimes of the pretrained encoders (``runtime:`` and ``quantize:``): names, fields, rules.

Light on purpose (no torch, onnxruntime or openvino import): the ``timm`` and ``sentence_transformer`` parameter
models use it. The runtimes themselves are in :mod:`fusionrec.plugins.encoders.runtime_impl`.

- ``torch``: the eager PyTorch model (the reference every other runtime is checked against).
- ``onnx``: the model exported once to ONNX and run by ONNX Runtime (``pip install 'fusionrec[fast]'``).
- ``openvino``: the same exported ONNX model compiled by OpenVINO for the CPU in float32 (``fusionrec[fast]``).
- ``compile``: ``torch.compile`` of the eager model (needs a C++ compiler; compiles again for each new input
  shape, so its first batches take minutes: never chosen by ``auto``).
- ``auto`` (the default): the first of ``openvino``, ``onnx`` that is installed and passes the fidelity check on
  the first batch, else ``torch`` (the log says which and why). That order is what measured fastest on 2 CPU
  cores for EfficientNet-Lite0 and MiniLM (docs/benchmarks.md).

Fidelity is part of the contract: on the first batch an encoder runs, every item's vector from the chosen runtime
agrees with the eager torch vector to cosine >= 0.999 (``quantize: int8``: >= 0.99). ``auto`` falls back to torch
when it does not; an explicit runtime raises. Because of that bound, the runtime is not part of an encoder's
fingerprint (vectors cached by one runtime serve the others); ``quantize: int8`` is, since it changes the vectors
measurably.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

RuntimeName = Literal["auto", "torch", "onnx", "openvino", "compile"]
QuantizeName = Literal["none", "int8"]

AUTO_ORDER: tuple[str, ...] = ("openvino", "onnx")
"""What ``auto`` tries, fastest first (measured on 2 CPU cores, docs/benchmarks.md), before falling back to torch."""

COSINE_BOUND = {"none": 0.999, "int8": 0.99}
"""The least cosine similarity per item to the eager torch vector that a runtime must reach, by ``quantize``."""

PACKAGES = {"onnx": ("onnxruntime",), "openvino": ("openvino",), "int8": ("onnxruntime", "onnx")}
"""The import names each runtime (and int8 quantisation) needs; ``pip install 'fusionrec[fast]'`` installs them."""

INSTALL_HINT = "pip install 'fusionrec[fast]'"


def runtime_field() -> Any:
    """The ``runtime`` parameter, documented alike for every encoder that offers it."""
    return Field(
        "auto",
        description="Inference runtime for the frozen model: auto (default: openvino, else onnx, whichever is "
        "installed and passes the fidelity check on the first batch, else torch), torch (eager), onnx (ONNX "
        "Runtime), openvino (OpenVINO, float32) or compile (torch.compile). Every runtime's vectors agree with "
        "torch's to cosine >= 0.999 per item (checked on the first batch), so the runtime is not part of the "
        f"feature-cache key. onnx and openvino need `{INSTALL_HINT}`; the model is exported once and kept under the "
        "cache folder's exported/. Trainable models always run in torch.",
    )


def quantize_field() -> Any:
    """The ``quantize`` parameter of text encoders."""
    return Field(
        "none",
        description="none, or int8: dynamic int8 quantisation of the exported model's linear layers (per channel; "
        "the feed-forward output layers stay float32, they lose the most), run by ONNX Runtime. Vectors agree with "
        "float32 torch to cosine >= 0.99 per item (checked on the first batch); part of the feature-cache key. "
        f"Needs runtime auto or onnx and `{INSTALL_HINT}`.",
    )


def check_runtime(runtime: str, quantize: str = "none", trainable: bool = False) -> None:
    """Raise :class:`ValueError` (shown as a parameter error) for combinations that cannot run.

    Args:
        runtime: the ``runtime`` parameter.
        quantize: the ``quantize`` parameter (``none`` for encoders without one).
        trainable: whether the model is trained (then it runs in torch).
    """
    if trainable and runtime not in ("auto", "torch"):
        raise ValueError(
            f"runtime '{runtime}' serves frozen models only, and this one is trainable: set runtime: auto (or "
            "torch), or trainable: false"
        )
    if quantize == "int8" and runtime not in ("auto", "onnx"):
        raise ValueError(
            f"quantize: int8 runs on ONNX Runtime, not on runtime '{runtime}': set runtime: onnx (or auto), or "
            "quantize: none"
        )
