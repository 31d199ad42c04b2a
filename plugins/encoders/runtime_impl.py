"""Fast inference for frozen pretrained encoders: export once to ONNX, run with OpenVINO or ONNX Runtime.

:class:`FastPath` holds one encoder's choice of runtime (see :mod:`fusionrec.plugins.encoders.runtime` for the
names and the contract). It is lazy: nothing is exported or compiled until the encoder's first batch, which also
serves as the fidelity check (the eager torch vectors of that batch are computed too and compared item by item).

Exported models live in the cache folder, keyed by the encoder's fingerprint like its vectors::

    <cache>/exported/<encoder name>-<hash of fingerprint, torch version, export format>/
        model.onnx           float32, dynamic batch (and sequence) axes
        model.int8.onnx      the dynamically quantised copy (text encoders with quantize: int8)

Each folder is written into a temporary folder and renamed into place, so a reader never sees half an export, and
two processes exporting at once both end with a complete one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.io import cache_root
from fusionrec.plugins.encoders.runtime import AUTO_ORDER, COSINE_BOUND, INSTALL_HINT, PACKAGES

log = logging.getLogger("fusionrec.encoders.runtime")

EXPORT_FORMAT = 1
"""Version of the export layout and recipe; part of the folder key, so a changed recipe never reads an old file."""

OPSET = 17

Backend = Callable[[Sequence[torch.Tensor]], torch.Tensor]
"""Runs the exported module on its inputs (in ``input_names`` order) and returns its output as a float tensor."""


def missing_packages(runtime: str, quantize: str = "none") -> list[str]:
    """The import names that ``runtime`` (and ``quantize``) need and that are not installed."""
    needed = [*PACKAGES.get(runtime, ()), *(PACKAGES["int8"] if quantize == "int8" else ())]
    return [name for name in dict.fromkeys(needed) if importlib.util.find_spec(name) is None]


def cosine_per_row(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (zero rows count as 1 when both are)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    dots = (a64 * b64).sum(axis=1)
    both_zero = (np.linalg.norm(a64, axis=1) == 0) & (np.linalg.norm(b64, axis=1) == 0)
    return np.where(both_zero, 1.0, dots / np.where(norms == 0, 1.0, norms))


class FastPath:
    """One frozen encoder's inference runtime, chosen on its first batch.

    Args:
        label: names the encoder in logs and errors (``timm``, ``sentence_transformer``).
        runtime: the ``runtime`` parameter.
        quantize: the ``quantize`` parameter (``none`` or ``int8``).
        module: the torch module to export (its ``forward`` takes the inputs positionally, in ``input_names``
            order, and returns one tensor).
        input_names: names of the module's inputs in the exported model.
        dynamic_axes: per input name, its axes whose size varies (``{0: "batch"}``).
        fingerprint: the encoder's fingerprint (keys the exported model).
        keep_float: substrings of MatMul node names that int8 quantisation leaves in float32.
    """

    def __init__(
        self,
        label: str,
        runtime: str,
        quantize: str,
        module: nn.Module,
        input_names: Sequence[str],
        dynamic_axes: dict[str, dict[int, str]],
        fingerprint: Callable[[], str],
        keep_float: Sequence[str] = (),
    ) -> None:
        self.label = label
        self.requested = runtime
        self.quantize = quantize
        self.module = module
        self.input_names = list(input_names)
        self.dynamic_axes = dynamic_axes
        self.fingerprint = fingerprint
        self.keep_float = tuple(keep_float)
        self.cache_folder: Path | None = None
        self.chosen: str | None = "torch" if runtime == "torch" else None  # None: decided on the first batch
        self.reason = "asked for" if runtime == "torch" else ""
        self._backend: Backend | None = None
        if runtime not in ("auto", "torch", "compile"):
            missing = missing_packages(runtime, quantize)
            if missing:
                raise ConfigError.at(
                    ("runtime",),
                    f"{label}: runtime '{runtime}' needs {', '.join(missing)}, which is not installed: "
                    f"`{INSTALL_HINT}`, or runtime: auto (falls back to torch)",
                )
        if quantize == "int8" and missing_packages("int8"):
            raise ConfigError.at(
                ("quantize",),
                f"{label}: quantize: int8 needs {', '.join(missing_packages('int8'))}, which is not installed: "
                f"`{INSTALL_HINT}`, or quantize: none",
            )

    def __getstate__(self) -> dict[str, Any]:
        """DataLoader workers get the encoder without the compiled model (they only preprocess)."""
        state = dict(self.__dict__)
        state["_backend"] = None
        state["chosen"] = None if self.requested != "torch" else "torch"
        return state

    @property
    def uses_torch(self) -> bool:
        """Whether batches go to the eager torch model (decided: torch; or asked for torch)."""
        return self.chosen == "torch"

    def export_folder(self) -> Path:
        """Where this encoder's exported model lives: keyed by fingerprint, torch version and export format."""
        key = f"{EXPORT_FORMAT}\0{torch.__version__}\0{self.fingerprint()}"
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()
        root = self.cache_folder if self.cache_folder is not None else cache_root()
        return root / "exported" / f"{self.label}-{digest}"

    def run(
        self,
        inputs: Sequence[torch.Tensor],
        finish: Callable[[torch.Tensor], torch.Tensor],
        eager: Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """The batch's vectors through the chosen runtime (choosing it on the first batch).

        Args:
            inputs: the module's inputs, in ``input_names`` order.
            finish: turns the module's output into the encoder's vectors (pooling, normalising).
            eager: the encoder's eager torch vectors for this batch (the reference).
        """
        if self.chosen == "torch":
            return eager()
        if self._backend is None:
            return self._first_batch(inputs, finish, eager)
        return finish(self._backend(inputs))

    def _first_batch(
        self,
        inputs: Sequence[torch.Tensor],
        finish: Callable[[torch.Tensor], torch.Tensor],
        eager: Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """Try the runtimes in order on this batch; keep the first whose vectors pass the fidelity bound."""
        reference = eager()
        if self.requested == "auto":
            candidates = [name for name in AUTO_ORDER if not missing_packages(name, self.quantize)]
            if self.quantize == "int8":
                candidates = ["onnx"]  # int8 runs on ONNX Runtime (OpenVINO ran its int8 graph slower than float)
            skipped = [name for name in AUTO_ORDER if name not in candidates]
            notes = [f"{name}: not installed ({INSTALL_HINT})" for name in skipped if self.quantize == "none"]
        else:
            candidates, notes = [self.requested], []
        bound = COSINE_BOUND[self.quantize]
        for name in candidates:
            try:
                backend = self._build(name, inputs)
                vectors = finish(backend(inputs))
            except Exception as exc:  # an exporter or runtime failure: the next runtime, or torch
                if self.requested != "auto":
                    raise FusionrecError(f"{self.label}: runtime '{name}' failed: {type(exc).__name__}: {exc}") from exc
                notes.append(f"{name}: failed ({type(exc).__name__}: {exc})")
                continue
            cosines = cosine_per_row(vectors.numpy(), reference.numpy())
            worst = int(np.argmin(cosines)) if len(cosines) else 0
            if len(cosines) == 0 or cosines[worst] >= bound:
                self._backend, self.chosen = backend, name
                low = float(cosines.min()) if len(cosines) else 1.0
                self.reason = f"least cosine to torch {low:.6f} over {len(cosines)} items (bound {bound})"
                log.info("%s: runtime %s (%s)", self.label, name, self.reason)
                return vectors
            note = f"{name}: item {worst} of the first batch has cosine {cosines[worst]:.6f} to torch, below {bound}"
            if self.requested != "auto" or self.quantize == "int8":
                fix = "quantize: none" if self.quantize == "int8" else "runtime: torch (or auto)"
                raise FusionrecError(f"{self.label}: fidelity check failed: {note}; set {fix}")
            notes.append(note)
        self.chosen, self.reason = "torch", "; ".join(notes) or "no fast runtime"
        log.warning("%s: runtime auto falls back to torch (%s)", self.label, self.reason)
        return reference

    def _build(self, name: str, inputs: Sequence[torch.Tensor]) -> Backend:
        threads = torch.get_num_threads()
        if name == "compile":
            compiled = torch.compile(self.module, dynamic=True)
            return lambda xs: compiled(*xs).float()
        path = self._exported(inputs)
        if self.quantize == "int8":
            path = self._quantized(path)
        if name == "openvino":
            return openvino_backend(path, self.input_names, threads)
        return onnxruntime_backend(path, self.input_names, threads)

    def _exported(self, inputs: Sequence[torch.Tensor]) -> Path:
        folder = self.export_folder()
        target = folder / "model.onnx"
        if not target.is_file():
            log.info("%s: exporting the model to %s (once)", self.label, target)
            write_folder_atomically(folder, "model.onnx", lambda tmp: self._export(inputs, tmp))
        return target

    def _export(self, inputs: Sequence[torch.Tensor], target: Path) -> None:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            example = tuple(x.clone().contiguous() for x in inputs)  # inference tensors cannot be traced
            torch.onnx.export(
                self.module,
                example,
                str(target),
                input_names=self.input_names,
                output_names=["output"],
                dynamic_axes={**self.dynamic_axes, "output": dict(next(iter(self.dynamic_axes.values())))},
                opset_version=OPSET,
                dynamo=False,
            )

    def _quantized(self, source: Path) -> Path:
        target = source.with_name("model.int8.onnx")
        if not target.is_file():
            write_folder_atomically(source.parent, target.name, lambda tmp: quantize_int8(source, tmp, self.keep_float))
        return target


def write_folder_atomically(folder: Path, name: str, write: Callable[[Path], None]) -> None:
    """Create ``folder/name`` by ``write(path)`` into a temporary file beside it, then rename it into place."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
    try:
        write(tmp / name)
        os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def quantize_int8(source: Path, target: Path, keep_float: Sequence[str]) -> None:
    """Dynamic int8 quantisation of ``source``'s MatMuls with constant weights, per channel (onnxruntime).

    MatMuls whose node name contains one of ``keep_float`` stay float32: for MiniLM the feed-forward output layers
    (after GELU, with the widest activations) took the least item cosine from 0.987 to 0.993 on the bundled texts.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    excluded = [n.name for n in graph.node if n.op_type == "MatMul" and any(k in n.name for k in keep_float)]
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(max(level, logging.ERROR))  # the quantiser logs a line per tensor, and advice, on the root logger
    try:
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=excluded
        )
    finally:
        root.setLevel(level)


def onnxruntime_backend(path: Path, input_names: Sequence[str], threads: int) -> Backend:
    """An ONNX Runtime CPU session on ``threads`` threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        feed = {name: np.ascontiguousarray(x.numpy()) for name, x in zip(input_names, inputs, strict=True)}
        return torch.from_numpy(session.run(None, feed)[0]).float()

    return run


def openvino_backend(path: Path, input_names: Sequence[str], threads: int) -> Backend:
    """The ONNX model compiled by OpenVINO for the CPU in float32 (its bf16 default on AMX CPUs fails fidelity).

    The THROUGHPUT hint ran EfficientNet-Lite0 batches of 32 faster than LATENCY here (36 against 29 images/s, and
    82 against 42, on 2 shared cores); threads are not pinned to cores, which other processes share.
    """
    import openvino as ov

    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "THROUGHPUT",
        "INFERENCE_NUM_THREADS": threads,
        "ENABLE_CPU_PINNING": False,
    }
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def run(inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        feed = {name: np.ascontiguousarray(x.numpy()) for name, x in zip(input_names, inputs, strict=True)}
        result = request.infer(feed)
        return torch.from_numpy(np.array(result[compiled.output(0)], copy=True)).float()

    return run


__all__ = ["FastPath", "FastPathEncoder", "cosine_per_row", "missing_packages", "quantize_int8"]


class FastPathEncoder:
    """What an encoder with a :class:`FastPath` (``self._fast``, ``None`` when it runs on torch alone) reports and
    accepts: the runtime in use and the folder exported models are cached in."""

    _fast: FastPath | None

    @property
    def runtime(self) -> str | None:
        """The runtime in use (``torch``, ``onnx``, ``openvino``, ``compile``); ``None`` until the first batch."""
        return "torch" if self._fast is None else self._fast.chosen

    def set_cache_folder(self, folder: Path) -> None:
        if self._fast is not None:
            self._fast.cache_folder = Path(folder)
