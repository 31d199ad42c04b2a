"""The TF-IDF encoder behind the ``bow`` plugin, on scikit-learn's ``TfidfVectorizer``.

The weights are scikit-learn's defaults: ``tf × idf`` with ``idf(t) = ln((1 + n) / (1 + df(t))) + 1`` (``n`` item
texts, ``df(t)`` of them containing ``t``), each vector then L2-normalised. Tokens are runs of two or more word
characters (scikit-learn's ``token_pattern``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionrec.core.encoder import Encoder
from fusionrec.core.errors import DataError, FusionrecError
from fusionrec.core.io import atomic_write_text
from fusionrec.core.params import as_kwargs
from fusionrec.plugins.encoders.bow import BowParams
from fusionrec.plugins.encoders.encoder_files import read_encoder, write_encoder
from fusionrec.plugins.encoders.text_support import NotFittedError, fingerprint_of

NAME = "bow"
TFIDF_FILE = "tfidf.json"


class BowEncoder(Encoder):
    """TF-IDF bag of words over a vocabulary fitted on the catalogue: dense, L2-normalised float32 vectors.

    :meth:`fit` learns the vocabulary and IDF weights; :attr:`dim` is the number of kept terms (known after fit). A
    text without any known term gets the zero vector.
    """

    modality = "text"
    name = NAME

    def __init__(
        self,
        max_features: int | None = 2000,
        min_df: int = 1,
        ngram_range: Sequence[int] = (1, 1),
        sublinear_tf: bool = False,
        lowercase: bool = True,
    ) -> None:
        self.params = BowParams(
            max_features=max_features,
            min_df=min_df,
            ngram_range=tuple(ngram_range),
            sublinear_tf=sublinear_tf,
            lowercase=lowercase,
        )
        self.terms: list[str] | None = None
        self.idf: np.ndarray | None = None
        self._vectorizer: Any = None

    def _new_vectorizer(self, vocabulary: dict[str, int] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]

        p = self.params
        return TfidfVectorizer(
            lowercase=p.lowercase,
            ngram_range=p.ngram_range,
            min_df=p.min_df if vocabulary is None else 1,
            max_features=p.max_features if vocabulary is None else None,
            sublinear_tf=p.sublinear_tf,
            vocabulary=vocabulary,
            norm="l2",
            use_idf=True,
            smooth_idf=True,
            dtype=np.float64,
        )

    def _use(self, terms: list[str], idf: np.ndarray) -> None:
        self.terms = terms
        self.idf = np.asarray(idf, dtype=np.float64)
        self._vectorizer = self._new_vectorizer({term: i for i, term in enumerate(terms)})
        self._vectorizer.idf_ = self.idf

    @property
    def dim(self) -> int:
        """The number of kept terms.

        Raises:
            NotFittedError: before :meth:`fit` (the vocabulary decides the size).
        """
        if self.terms is None:
            raise NotFittedError(f"{NAME}: the vector size is the vocabulary's, known after fit(corpus)")
        return len(self.terms)

    def fit(self, corpus: Sequence[Any]) -> None:
        """Learn the vocabulary and IDF weights from every item's text.

        Raises:
            DataError: no term survives (the texts are empty, or min_df is above every term's document count).
        """
        texts = [str(text) for text in corpus]
        vectorizer = self._new_vectorizer()
        try:
            vectorizer.fit(texts)
        except ValueError as exc:  # "empty vocabulary", "max_df corresponds to < documents than min_df", …
            raise DataError(
                f"{NAME}: the {len(texts)} item texts give no vocabulary (min_df={self.params.min_df}, "
                f"ngram_range={list(self.params.ngram_range)}): {exc}. Lower min_df, or check that items have text."
            ) from exc
        terms = [""] * len(vectorizer.vocabulary_)
        for term, index in vectorizer.vocabulary_.items():
            terms[index] = term
        self._use(terms, vectorizer.idf_)

    def embed(self, batch: Sequence[str]) -> torch.Tensor:
        """Tokenise and weigh the whole batch at once (preprocess stays the identity: no worker processes needed).

        Raises:
            NotFittedError: before :meth:`fit`.
        """
        if self._vectorizer is None:
            raise NotFittedError(f"{NAME}: the vocabulary is built by fit(corpus); call fit before encoding")
        if not batch:
            return torch.empty(0, self.dim)
        matrix = self._vectorizer.transform([str(text) for text in batch])
        return torch.from_numpy(matrix.toarray().astype(np.float32))

    def _state_digest(self) -> str | None:
        if self.terms is None or self.idf is None:
            return None
        sha = hashlib.sha256("\n".join(self.terms).encode())
        sha.update(np.ascontiguousarray(self.idf, dtype="<f8").tobytes())
        return sha.hexdigest()

    def fingerprint(self) -> str:
        """Name, parameters and a hash of the fitted vocabulary and IDF weights."""
        return fingerprint_of(NAME, {"params": self.params.model_dump(mode="json"), "tfidf": self._state_digest()})

    def save(self, directory: Path) -> None:
        """Write the parameters and (when fitted) the vocabulary with its IDF weights, as JSON."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.terms is not None and self.idf is not None:
            tfidf = {"terms": self.terms, "idf": [float(x) for x in self.idf]}
            atomic_write_text(directory / TFIDF_FILE, json.dumps(tfidf, ensure_ascii=False))
        write_encoder(directory, NAME, self.params, fitted=self.terms is not None)

    @classmethod
    def load(cls, directory: Path) -> BowEncoder:
        """Rebuild from :meth:`save`'s folder; the vectors equal the saved encoder's."""
        directory = Path(directory)
        saved = read_encoder(directory, NAME)
        encoder = cls(**as_kwargs(BowParams.model_validate(saved.params)))
        if saved.extra.get("fitted"):
            file = directory / TFIDF_FILE
            try:
                tfidf = json.loads(file.read_text(encoding="utf-8"))
                terms, idf = list(tfidf["terms"]), np.asarray(tfidf["idf"], dtype=np.float64)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise FusionrecError(f"{file}: unreadable TF-IDF state: {exc}") from exc
            if len(terms) != len(idf):
                raise FusionrecError(f"{file}: {len(terms)} terms but {len(idf)} IDF weights")
            encoder._use(terms, idf)
        return encoder
