"""The recurrent text encoder behind the ``rnn`` plugin: Embedding → LSTM/GRU → pooling → projection."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fusionrec.core.encoder import Encoder
from fusionrec.core.errors import FusionrecError
from fusionrec.core.params import as_kwargs
from fusionrec.plugins.encoders.encoder_files import read_encoder, write_encoder
from fusionrec.plugins.encoders.rnn import RNNParams
from fusionrec.plugins.encoders.text_support import NotFittedError, fingerprint_of
from fusionrec.plugins.encoders.text_tokens import TOKENIZER_FILE, WordPiece, WordVocabulary

NAME = "rnn"
VOCABULARY_FILE = "vocabulary.json"


class TokenBatch(NamedTuple):
    """A collated batch: token ids padded to the longest text, and each text's length (≥ 1)."""

    ids: torch.Tensor
    lengths: torch.Tensor


class RecurrentTextNet(nn.Module):
    """Embedding + LSTM/GRU over packed sequences, pooled (final state or mean of outputs), projected.

    Sequences are packed, so padding never reaches the recurrent cell: a text's vector does not depend on the
    other texts of its batch.
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        *,
        cell: str,
        hidden: int,
        layers: int,
        bidirectional: bool,
        pooling: str,
        dim: int | None,
        embedding_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.directions = 2 if bidirectional else 1
        self.layers = layers
        self.hidden = hidden
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        recurrent = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = recurrent(
            embedding_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        width = hidden * self.directions
        self.proj: nn.Module = nn.Linear(width, dim) if dim is not None else nn.Identity()
        self.out_dim = dim if dim is not None else width

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embedding(ids))
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, state = self.rnn(packed)
        if self.pooling == "last":
            final = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c); GRU: h
            top = final.view(self.layers, self.directions, final.shape[1], self.hidden)[-1]
            pooled = torch.cat(list(top), dim=1)
        else:
            padded, _ = pad_packed_sequence(outputs, batch_first=True)  # zeros past each text's end
            pooled = padded.sum(dim=1) / lengths.to(padded.device, padded.dtype).unsqueeze(1)
        return self.proj(pooled)  # type: ignore[no-any-return]


def state_digest(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, shapes, dtypes and bytes), independent of its device."""
    sha = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().flatten()
        sha.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}\0".encode())
        sha.update(flat.view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


class RNNEncoder(Encoder):
    """The seed paper's f_RNN: token ids → Embedding → LSTM/GRU → pooled state → linear projection to ``dim``.

    With the ``word`` tokenizer the vocabulary (and with it the embedding table) is built by :meth:`fit` from the
    catalogue's texts, so the network exists only after fit; ``wordpiece`` uses the packaged BERT vocabulary and
    builds the network at once. :meth:`preprocess` turns a text into at most ``max_length`` ids (an empty text
    becomes one padding token, so every text has a vector); :meth:`collate` pads a batch and records lengths.
    """

    modality = "text"
    name = NAME

    def __init__(
        self,
        cell: str = "lstm",
        hidden: int = 128,
        layers: int = 1,
        bidirectional: bool = False,
        pooling: str = "last",
        dim: int | None = 128,
        embedding_dim: int = 128,
        tokenizer: str = "word",
        min_count: int = 1,
        max_vocab: int | None = 30000,
        max_length: int = 64,
        dropout: float = 0.0,
        trainable: bool = True,
        *,
        tokenizer_file: Path | None = None,
    ) -> None:
        """Build the encoder; ``tokenizer_file`` (not a pipeline parameter) reads WordPiece from a saved copy."""
        self.params = RNNParams(
            cell=cell,
            hidden=hidden,
            layers=layers,
            bidirectional=bidirectional,
            pooling=pooling,
            dim=dim,
            embedding_dim=embedding_dim,
            tokenizer=tokenizer,
            min_count=min_count,
            max_vocab=max_vocab,
            max_length=max_length,
            dropout=dropout,
            trainable=trainable,
        )
        self._dim = dim if dim is not None else hidden * (2 if bidirectional else 1)
        self.vocabulary: WordVocabulary | WordPiece | None = None
        self.net: RecurrentTextNet | None = None
        self._frozen_state: str | None = None
        if tokenizer == "wordpiece":
            self._use_vocabulary(WordPiece(tokenizer_file))

    def _use_vocabulary(self, vocabulary: WordVocabulary | WordPiece) -> None:
        p = self.params
        self.vocabulary = vocabulary
        self.net = RecurrentTextNet(
            len(vocabulary),
            vocabulary.pad_id,
            cell=p.cell,
            hidden=p.hidden,
            layers=p.layers,
            bidirectional=p.bidirectional,
            pooling=p.pooling,
            dim=p.dim,
            embedding_dim=p.embedding_dim,
            dropout=p.dropout,
        )
        self.net.requires_grad_(p.trainable)
        self._frozen_state = None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def trainable(self) -> bool:
        return self.params.trainable

    @property
    def module(self) -> torch.nn.Module | None:
        """The network; ``None`` before :meth:`fit` with the word tokenizer."""
        return self.net

    def fit(self, corpus: Sequence[Any]) -> None:
        """Word tokenizer: build the vocabulary from ``corpus`` and a freshly initialised network over it.
        WordPiece: nothing to learn (the vocabulary is fixed), the network is kept."""
        if self.params.tokenizer == "word":
            vocabulary = WordVocabulary.fit(
                (str(text) for text in corpus), min_count=self.params.min_count, max_vocab=self.params.max_vocab
            )
            self._use_vocabulary(vocabulary)

    def preprocess(self, raw: Any) -> torch.Tensor:
        """The text's token ids, truncated to ``max_length``; an empty text is one padding token.

        Raises:
            NotFittedError: (a ValueError) the word vocabulary has not been built: call :meth:`fit` first.
        """
        if self.vocabulary is None:
            raise NotFittedError(f"{NAME}: the word vocabulary is built by fit(corpus); call fit before encoding")
        ids = self.vocabulary.ids(str(raw))[: self.params.max_length] or [self.vocabulary.pad_id]
        return torch.tensor(ids, dtype=torch.long)

    def collate(self, items: Sequence[torch.Tensor]) -> TokenBatch:
        pad_id = self.vocabulary.pad_id if self.vocabulary is not None else 0
        lengths = torch.tensor([len(item) for item in items], dtype=torch.long)
        width = int(lengths.max()) if len(items) else 0
        ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        for row, item in enumerate(items):
            ids[row, : len(item)] = item
        return TokenBatch(ids, lengths)

    def embed(self, batch: TokenBatch) -> torch.Tensor:
        if self.net is None:
            raise NotFittedError(f"{NAME}: the word vocabulary is built by fit(corpus); call fit before encoding")
        if batch.ids.shape[0] == 0:
            return torch.empty(0, self._dim, device=self.net.embedding.weight.device)
        device = self.net.embedding.weight.device
        out: torch.Tensor = self.net(batch.ids.to(device), batch.lengths)
        return out

    def _state(self) -> str | None:
        if self.net is None:
            return None
        if self.params.trainable:
            return state_digest(self.net)  # training changes the weights: hash what is there now
        if self._frozen_state is None:
            self._frozen_state = state_digest(self.net)
        return self._frozen_state

    def fingerprint(self) -> str:
        """Name, parameters, the vocabulary's hash and the weights' hash (random init or trained, they decide)."""
        return fingerprint_of(
            NAME,
            {
                "params": self.params.model_dump(mode="json", exclude={"trainable"}),
                "vocabulary": self.vocabulary.digest() if self.vocabulary is not None else None,
                "state": self._state(),
            },
        )

    def save(self, directory: Path) -> None:
        """Write the parameters, the vocabulary (word list or WordPiece tokenizer.json) and the state dict."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.vocabulary is not None:
            file = VOCABULARY_FILE if isinstance(self.vocabulary, WordVocabulary) else TOKENIZER_FILE
            self.vocabulary.save(directory / file)
        write_encoder(directory, NAME, self.params, self.net, fitted=self.net is not None)

    @classmethod
    def load(cls, directory: Path) -> RNNEncoder:
        """Rebuild from :meth:`save`'s folder: vocabulary, network, weights (``torch.load(weights_only=True)``)."""
        directory = Path(directory)
        saved = read_encoder(directory, NAME)
        params = RNNParams.model_validate(saved.params)
        fitted = bool(saved.extra.get("fitted")) and saved.state is not None
        wordpiece = params.tokenizer == "wordpiece"
        encoder = cls(**as_kwargs(params), tokenizer_file=directory / TOKENIZER_FILE if wordpiece and fitted else None)
        if not fitted:
            return encoder
        if not wordpiece:
            encoder._use_vocabulary(WordVocabulary.load(directory / VOCABULARY_FILE))
        assert encoder.net is not None and saved.state is not None
        try:
            encoder.net.load_state_dict(saved.state, strict=True)
        except RuntimeError as exc:
            raise FusionrecError(f"{directory}: the saved weights do not fit this network: {exc}") from exc
        encoder._frozen_state = None
        return encoder
